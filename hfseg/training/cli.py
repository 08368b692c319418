"""The recipes' command lines: `hfseg train` / `recipes/train.py` and `hfseg evaluate` / `recipes/evaluate.py`.

Each command is an `add_*_arguments(parser)` (so `hfseg.cli` mounts it as a subcommand and the recipe files parse
the same flags), a `run_*(args)` doing the work, and a `*_main(argv)` for the recipe files.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .config import bundled_configs, load_config, parse_override

TRAIN_DESCRIPTION = """\
Train any hfseg model on any hfseg dataset: `hfseg train [--config NAME|X.yaml] [--flag value ...] [key=value ...]`.

With no arguments it trains the Attention U-Net on the embedded `demo` dataset (the bundled config `demo`), a few
minutes on a laptop CPU. `--config` takes a bundled config name (the study configs shipped with hfseg, listed under
--config) or the path of a YAML file; flags and dotted `key=value` overrides apply on top, and the resolved config is
saved with the run (`<output_dir>/config.yaml`). `--max_steps` bounds the run whatever `--epochs` says.

`task: classification` (in the YAML or `--task classification`) trains an image classifier (`model.name` one of
`hfseg.available_classifiers()`) on a `ClassLabel` column (`data.label_column`) instead of a segmentation model.

Examples:
    hfseg train --config chaos_attention_unet --data_dir data/CHAOS
    hfseg train --config brain_tumor_resnet18 --data_dir data/brain-tumor
    hfseg train --epochs 5 model.name=segformer-b0 'model.kwargs={}' optim.lr=3e-4  # drop demo's U-Net fields
    hfseg train --output_dir runs/demo --resume latest
"""
TRAIN_EPILOG = """\
`hfseg train` runs in one process (as `accelerate launch` does with one process). Multi-process (data-parallel) runs
go through accelerate's launcher with the same flags (`--multi_gpu` also on a CPU-only machine, over gloo):
    accelerate launch --multi_gpu --num_processes 2 -m hfseg.cli train --config demo
    accelerate launch --multi_gpu --num_processes 2 recipes/train.py --config demo  # from a checkout
"""

EVALUATE_DESCRIPTION = """\
Evaluate and compare trained models on a dataset split: `hfseg evaluate --models A B --dataset demo`.

Each model (a `save_pretrained` folder such as a run's `best/`, or a Hub id; `--model` and `--models` are one flag)
predicts every item of the split at native resolution, `--batch_size` items at a time (optionally with flip TTA and a
sliding window); the Markdown comparison table is printed and `<output_dir>/` gets report.md, report.csv, dice.png,
overlays/<model>/*.png (TP green, FP red, FN blue) and <model>/metrics.json. A dataset with a `case_id` column
(demo, BraTS, CHAOS, UW-Madison) is also scored per case (its slices stacked as one volume): `case_*` keys in
metrics.json and per_case.csv, one row per model and case.

Runs in one process; `accelerate launch recipes/evaluate.py ...` works too (on the launcher's device), but the work
is not split: with several processes only the main one evaluates and the others exit.

Examples:
    hfseg evaluate --models runs/demo/best runs/unet/best --dataset demo
    hfseg evaluate --models runs/brats/best --dataset brats2020-h5 --data_dir data/BraTS --regions brats
    hfseg evaluate --models runs/uw/best --dataset uw-madison-gi --data_dir data/uw --sliding_window --tta
"""

DEFAULT_CONFIG = "demo"

# Plain flags of `train` -> config keys.
FLAGS = {
    "task": "task",
    "output_dir": "train.output_dir",
    "model": "model.name",
    "dataset": "data.dataset",
    "data_dir": "data.data_dir",
    "epochs": "train.epochs",
    "max_steps": "train.max_steps",
    "batch_size": "train.batch_size",
    "lr": "optim.lr",
    "seed": "train.seed",
    "resume": "train.resume",
    "mixed_precision": "train.mixed_precision",
    "hub_model_id": "train.hub_model_id",
}
TYPES = {"epochs": int, "max_steps": int, "batch_size": int, "lr": float, "seed": int}


def _parser(description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=description, epilog=epilog,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


# -- train -------------------------------------------------------------------------------------------------------
def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The training recipe's arguments on `parser`."""
    parser.add_argument("--config", default=DEFAULT_CONFIG,
                        help=f"a bundled config name or a YAML file (default: %(default)s); bundled: "
                             f"{', '.join(bundled_configs())}")
    for flag, key in FLAGS.items():
        parser.add_argument(f"--{flag}", type=TYPES.get(flag, str), default=None, help=f"sets {key}")
    parser.add_argument("--push_to_hub", action="store_true", help="sets train.push_to_hub")
    parser.add_argument("--overwrite_output_dir", action="store_true",
                        help="sets train.overwrite_output_dir: start a new run in an output_dir that holds one (its "
                             "checkpoints, best/, final/ and metrics are removed first)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. optim.lr=3e-4")
    return parser


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    """Load the config named by parsed `args` (then its flags, then its overrides) and train; returns the summary."""
    from . import train

    values = {key: getattr(args, flag) for flag, key in FLAGS.items() if getattr(args, flag) is not None}
    if args.push_to_hub:
        values["train.push_to_hub"] = True
    if args.overwrite_output_dir:
        values["train.overwrite_output_dir"] = True
    return train(load_config(args.config, args.overrides, values=values))


def train_main(argv: list[str] | None = None) -> dict[str, Any]:
    """`recipes/train.py`: parse `argv` (default: the command line) and train."""
    return run_train(add_train_arguments(_parser(TRAIN_DESCRIPTION, TRAIN_EPILOG)).parse_args(argv))


# -- evaluate ----------------------------------------------------------------------------------------------------
def add_evaluate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The evaluation recipe's arguments on `parser`."""
    parser.add_argument("--models", "--model", dest="models", nargs="+", required=True,
                        help="model folders or Hub ids (one or more)")
    parser.add_argument("--dataset", required=True, help="an hfseg.data.load name, e.g. demo")
    parser.add_argument("--data_dir", default=None, help="the dataset's folder (not for demo)")
    parser.add_argument("--data_options", nargs="*", default=[], metavar="KEY=VALUE",
                        help="options of hfseg.data.load, values as YAML (e.g. cache_dir=.cache size=128)")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--max_samples", type=int, default=None, help="evaluate the first N items only")
    # Inference.
    parser.add_argument("--tta", action="store_true", help="flip test-time augmentation (4 flips, mean softmax)")
    parser.add_argument("--sliding_window", action="store_true",
                        help="tile native-resolution images with windows of the processor's size")
    parser.add_argument("--window", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="sliding-window size (default: the processor's size)")
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--batch_size", type=int, default=4,
                        help="items per forward pass (windows per pass with --sliding_window; default: %(default)s)")
    parser.add_argument("--num_workers", type=int, default=0,
                        help="DataLoader processes decoding the items (default: %(default)s, in the main process)")
    parser.add_argument("--device", default=None, help="default: cuda when available (or the accelerate device)")
    # Metrics and report.
    parser.add_argument("--regions", default=None, help="also score class unions, e.g. brats (WT/TC/ET)")
    parser.add_argument("--no_surface", action="store_true", help="skip HD/HD95/ASSD")
    parser.add_argument("--instance", action="store_true", help="also PQ and AJI (the same as --instances connected)")
    parser.add_argument("--instances", choices=("connected", "watershed"), default=None,
                        help="object-level PQ/AJI and foreground Dice, objects as connected components of the "
                             "prediction or separated by a seeded watershed (boundary models, or the distance "
                             "transform of a semantic model's foreground); truth: the dataset's instances column "
                             "(image-mask-folder with instance_masks=true), else connected components")
    parser.add_argument("--no_cases", action="store_true",
                        help="skip the per-case (volume) metrics of a dataset with a case_id column")
    parser.add_argument("--spacing", type=float, nargs=2, default=None, metavar=("ROW", "COL"),
                        help="pixel size in mm (default: the dataset's pixel_spacing column, else 1)")
    parser.add_argument("--reduction", choices=("image", "case", "dataset"), default="image",
                        help="the main table: per-image means (default), per-case (volume) means, or metrics "
                             "pooled over all pixels (report.md adds a per-case table whenever there are cases)")
    parser.add_argument("--overlays", type=int, default=4, help="overlay images per model (0: none)")
    parser.add_argument("--overlay_class", type=int, default=None, help="class of the overlays (default: foreground)")
    parser.add_argument("--output_dir", default=None, help="default: reports/<dataset>")
    parser.add_argument("--trust-remote-code", "--trust_remote_code", dest="trust_remote_code", action="store_true",
                        help="run model code shipped with a checkpoint (off by default: only for code you trust)")
    return parser


def _device(requested: str | None) -> tuple[str | None, bool]:
    """The device to use and whether this process is the main one (under `accelerate launch`)."""
    from accelerate import PartialState

    state = PartialState()
    return requested or str(state.device), state.is_main_process


def run_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate `args.models`, write the report and print its table; returns the results (empty off the main
    process)."""
    from ..evaluation import case_table, evaluate_models, write_metrics, write_report
    from ..evaluation.report import write_csv

    device, is_main = _device(args.device)
    if not is_main:
        return {}
    options = dict(parse_override(item) for item in args.data_options)
    sliding = (tuple(args.window) if args.window else "auto") if args.sliding_window else None
    results = evaluate_models(
        args.models, args.dataset, split=args.split, data_dir=args.data_dir, data_options=options,
        max_samples=args.max_samples, tta_flip=args.tta, sliding_window=sliding, overlap=args.overlap,
        surface=not args.no_surface, instance=args.instance, instances=args.instances, spacing=args.spacing,
        regions=args.regions,
        examples=args.overlays, device=device, batch_size=args.batch_size, num_workers=args.num_workers,
        per_case=not args.no_cases, trust_remote_code=args.trust_remote_code,
    )
    output_dir = Path(args.output_dir or Path("reports") / args.dataset)
    write_metrics(results, output_dir)
    columns, rows = case_table(results)
    if rows:
        write_csv(output_dir / "per_case.csv", columns, rows)
    report = write_report(results, output_dir, reduction=args.reduction, overlay_class=args.overlay_class,
                          num_overlays=args.overlays, title=f"{args.dataset} ({args.split})")
    print(report["markdown"])
    print(f"\nReport written to {report['paths']['report']}")
    if rows:
        print(f"Per-case metrics ({len(rows)} rows) written to {output_dir / 'per_case.csv'}")
    return results


def evaluate_main(argv: list[str] | None = None) -> dict[str, Any]:
    """`recipes/evaluate.py`: parse `argv` (default: the command line) and evaluate."""
    return run_evaluate(add_evaluate_arguments(_parser(EVALUATE_DESCRIPTION)).parse_args(argv))
