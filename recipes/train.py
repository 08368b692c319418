"""Train any hfseg model on any hfseg dataset: `accelerate launch recipes/train.py [--config X.yaml] [key=value ...]`.

With no arguments it trains the Attention U-Net on the embedded `demo` dataset (recipes/configs/demo.yaml), a few
minutes on a laptop CPU. Add `--num_processes N` to `accelerate launch` for data-parallel training.

`task: classification` (in the YAML or `--task classification`) trains an image classifier (`model.name` one of
`hfseg.available_classifiers()`) on a `ClassLabel` column (`data.label_column`) instead of a segmentation model.

Examples:
    accelerate launch recipes/train.py --config recipes/configs/chaos_attention_unet.yaml --data_dir data/CHAOS
    accelerate launch recipes/train.py --config recipes/configs/brain_tumor_resnet18.yaml --data_dir data/brain-tumor
    accelerate launch recipes/train.py model.name=segformer-b0 optim.lr=3e-4 --epochs 5
    accelerate launch recipes/train.py --output_dir runs/demo --resume latest
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hfseg.training import load_config, train

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "demo.yaml"

# Plain flags -> config keys.
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config (default: %(default)s)")
    types = {"epochs": int, "max_steps": int, "batch_size": int, "lr": float, "seed": int}
    for flag, key in FLAGS.items():
        parser.add_argument(f"--{flag}", type=types.get(flag, str), default=None, help=f"sets {key}")
    parser.add_argument("--push_to_hub", action="store_true", help="sets train.push_to_hub")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. optim.lr=3e-4")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    values = {key: getattr(args, flag) for flag, key in FLAGS.items() if getattr(args, flag) is not None}
    if args.push_to_hub:
        values["train.push_to_hub"] = True
    config = load_config(args.config, args.overrides, values=values)
    train(config)


if __name__ == "__main__":
    main()
