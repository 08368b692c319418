"""The `hfseg` command: train, evaluate and use segmentation models.

    hfseg train --config demo --max_steps 300 --output_dir runs/demo
    hfseg predict --model runs/demo/best brain.nii.gz dicom_series/ pictures/ --output-dir masks
    hfseg evaluate --model runs/demo/best --dataset demo
    hfseg plan --dataset nnunet --data_dir data/Dataset004_Hippocampus
    hfseg models
    hfseg datasets
    accelerate launch --multi_gpu --num_processes 2 -m hfseg.cli train --config demo  # data-parallel

`train` and `evaluate` are the recipes of `hfseg.training.cli` (the same flags as `recipes/train.py` and
`recipes/evaluate.py`). `python -m hfseg` is the same command. Exit codes: 0 on success, 2 on bad arguments,
1 when an input or the run failed.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def print_models() -> None:
    """The version and the models `hfseg.create_model` builds."""
    from .. import __version__
    from ..models.presets import UNET_PRESETS
    from ..models.zoo import FAMILIES

    print(f"hfseg {__version__}: create_model(name, num_labels=..., num_channels=..., pretrained=...)")
    print("U-Net presets (hfseg_unet):")
    for name, kwargs in UNET_PRESETS.items():
        print(f"  {name:26s} {', '.join(f'{k}={v}' for k, v in kwargs.items())}")
    print("transformers families (default pretrained checkpoint):")
    for name, family in FAMILIES.items():
        print(f"  {name:26s} {family.model_class.__name__} ({family.checkpoint})")


def build_parser() -> argparse.ArgumentParser:
    from ..training import cli as recipes
    from . import plan as plan_cli
    from . import predict as predict_cli

    parser = argparse.ArgumentParser(prog="hfseg", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="{train,predict,evaluate,plan,models,datasets}")
    raw = argparse.RawDescriptionHelpFormatter
    train = commands.add_parser("train", help="train a model (the recipe)", description=recipes.TRAIN_DESCRIPTION,
                                epilog=recipes.TRAIN_EPILOG, formatter_class=raw)
    recipes.add_train_arguments(train)
    predict = commands.add_parser("predict", help="segment scans and pictures into mask files",
                                  description=predict_cli.DESCRIPTION, epilog=predict_cli.EPILOG, formatter_class=raw)
    predict_cli.add_predict_arguments(predict)
    evaluate = commands.add_parser("evaluate", help="evaluate and compare trained models",
                                   description=recipes.EVALUATE_DESCRIPTION, formatter_class=raw)
    recipes.add_evaluate_arguments(evaluate)
    plan = commands.add_parser("plan", help="plan a volume dataset (nnU-Net's rules)", description=plan_cli.DESCRIPTION,
                               epilog=plan_cli.EPILOG, formatter_class=raw)
    plan_cli.add_plan_arguments(plan)
    commands.add_parser("models", help="list the models hfseg builds")
    commands.add_parser("datasets", help="list the datasets hfseg loads")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        from ..training.cli import run_train

        run_train(args)
    elif args.command == "predict":
        from .predict import run_predict

        code = run_predict(args)
        if code:
            raise SystemExit(code)
    elif args.command == "evaluate":
        from ..training.cli import run_evaluate

        run_evaluate(args)
    elif args.command == "plan":
        from .plan import run_plan

        code = run_plan(args)
        if code:
            raise SystemExit(code)
    elif args.command == "models":
        print_models()
    elif args.command == "datasets":
        from .datasets import print_datasets

        print_datasets()
    else:
        parser.print_help()
        parser.exit(2)
