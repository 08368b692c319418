"""`hfseg plan`: the nnU-Net-style plan of a volume dataset, printed and saved as JSON.

    hfseg plan --dataset nnunet --data_dir data/Dataset004_Hippocampus
    hfseg plan --dataset demo3d --configuration 2d --output plan.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

DESCRIPTION = """\
Plan a volume dataset as nnU-Net does: a fingerprint of the training cases (spacings, shapes after cropping to the
non-zero region, foreground intensities per channel) gives the target spacing, patch size, batch size, network
stages (strides and kernels) and per-channel normalization. The recipe makes the same plan when its config has a
plan section (recipes/configs/nnunet_3d.yaml); any field can be overridden there (plan.patch_size=[64,64,64]) or
here with --set.
"""
EPILOG = """\
Examples:
    hfseg plan --dataset nnunet --data_dir data/Dataset004_Hippocampus
    hfseg plan --dataset demo3d --configuration 2d --output runs/plan_2d.json
    hfseg plan --dataset nnunet --data_dir data/Task09_Spleen --memory_budget_gb 8 --set batch_size=4
"""


def add_plan_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--dataset", required=True, help="an hfseg.data.load name of a volume dataset (nnunet, demo3d)")
    parser.add_argument("--data_dir", default=None, help="the dataset's folder (not for demo3d)")
    parser.add_argument("--data_options", nargs="*", default=[], metavar="KEY=VALUE",
                        help="options of hfseg.data.load, values as YAML (e.g. fold=1 cache_dir=.cache)")
    parser.add_argument("--configuration", default="3d_fullres", choices=("3d_fullres", "2d"),
                        help="nnU-Net's configuration to plan (default: %(default)s)")
    parser.add_argument("--memory_budget_gb", type=float, default=None,
                        help="memory the training step may use (default: the planner's)")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", dest="overrides",
                        help="plan fields to override, values as YAML (e.g. patch_size=[64,64,64])")
    parser.add_argument("--split", default="train", help="the split to plan from (default: %(default)s)")
    parser.add_argument("--output", default=None, help="write the plan as JSON to this file")
    return parser


def _pairs(items: list[str], flag: str) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"error: {flag} {item!r} is not KEY=VALUE")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def run_plan(args: argparse.Namespace) -> int:
    """Load the dataset, plan it, print the plan and write it with --output; returns the exit code."""
    from ..data import load
    from ..planning import plan

    splits = load(args.dataset, args.data_dir, **_pairs(args.data_options, "--data_options"))
    if args.split not in splits:
        print(f"error: dataset {args.dataset!r} has no split {args.split!r}; it has {', '.join(splits)}")
        return 2
    options = {"configuration": args.configuration}
    if args.memory_budget_gb is not None:
        options["memory_budget_gb"] = args.memory_budget_gb
    result = plan(splits[args.split], overrides=_pairs(args.overrides, "--set") or None, **options)
    print(result.describe())
    if args.output:
        path = Path(args.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        print(f"Plan written to {path}")
    return 0
