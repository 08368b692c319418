"""Evaluate and compare trained models on a dataset split: `python recipes/evaluate.py --models A B --dataset demo`.

Each model (a `save_pretrained` folder such as a run's `best/`, or a Hub id) predicts every item of the split at
native resolution (optionally with flip TTA and a sliding window); the Markdown comparison table is printed and
`<output_dir>/` gets report.md, report.csv, dice.png, overlays/<model>/*.png (TP green, FP red, FN blue) and
<model>/metrics.json.

Runs in one process; `accelerate launch recipes/evaluate.py ...` works too (on the launcher's device), but the work
is not split: with several processes only the main one evaluates and the others exit.

Examples:
    python recipes/evaluate.py --models runs/demo/best runs/unet/best --dataset demo
    python recipes/evaluate.py --models runs/brats/best --dataset brats2020-h5 --data_dir data/BraTS --regions brats
    python recipes/evaluate.py --models runs/uw/best --dataset uw-madison-gi --data_dir data/uw --sliding_window --tta
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hfseg.evaluation import evaluate_models, write_metrics, write_report
from hfseg.training.config import parse_override


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", required=True, help="model folders or Hub ids")
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
    parser.add_argument("--device", default=None, help="default: cuda when available (or the accelerate device)")
    # Metrics and report.
    parser.add_argument("--regions", default=None, help="also score class unions, e.g. brats (WT/TC/ET)")
    parser.add_argument("--no_surface", action="store_true", help="skip HD/HD95/ASSD")
    parser.add_argument("--instance", action="store_true", help="also PQ and AJI")
    parser.add_argument("--spacing", type=float, nargs=2, default=None, metavar=("ROW", "COL"),
                        help="pixel size in mm (default: the dataset's pixel_spacing column, else 1)")
    parser.add_argument("--reduction", choices=("image", "dataset"), default="image",
                        help="per-case means (default) or metrics pooled over all pixels")
    parser.add_argument("--overlays", type=int, default=4, help="overlay images per model (0: none)")
    parser.add_argument("--overlay_class", type=int, default=None, help="class of the overlays (default: foreground)")
    parser.add_argument("--output_dir", default=None, help="default: reports/<dataset>")
    return parser.parse_args(argv)


def _device(requested: str | None) -> tuple[str | None, bool]:
    """The device to use and whether this process is the main one (under `accelerate launch`)."""
    try:
        from accelerate import PartialState
    except ImportError:  # pragma: no cover
        return requested, True
    state = PartialState()
    return requested or str(state.device), state.is_main_process


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device, is_main = _device(args.device)
    if not is_main:
        return {}
    options = dict(parse_override(item) for item in args.data_options)
    sliding = (tuple(args.window) if args.window else "auto") if args.sliding_window else None
    results = evaluate_models(
        args.models, args.dataset, split=args.split, data_dir=args.data_dir, data_options=options,
        max_samples=args.max_samples, tta_flip=args.tta, sliding_window=sliding, overlap=args.overlap,
        surface=not args.no_surface, instance=args.instance, spacing=args.spacing, regions=args.regions,
        examples=args.overlays, device=device,
    )
    output_dir = Path(args.output_dir or Path("reports") / args.dataset)
    write_metrics(results, output_dir)
    report = write_report(results, output_dir, reduction=args.reduction, overlay_class=args.overlay_class,
                          num_overlays=args.overlays, title=f"{args.dataset} ({args.split})")
    print(report["markdown"])
    print(f"\nReport written to {report['paths']['report']}")
    return results


if __name__ == "__main__":
    main()
