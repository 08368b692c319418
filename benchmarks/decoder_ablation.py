"""`decoder_ablation`: what makes segmentation_models_pytorch's resnet18 U-Net train better than hfseg's `timm-unet`.

```
python -m benchmarks.decoder_ablation                                   # every variant, seeds 0,1,2, 300 steps
python -m benchmarks.decoder_ablation --variants base,nearest --seeds 0 --runs runs.jsonl  # some, kept per run
python -m benchmarks.decoder_ablation --report runs.jsonl               # the table of the runs kept so far
```

Every variant is hfseg's U-Net on a random-init timm resnet18 as the `timm-unet` preset was before these switches
(`base`: transposed-conv upsampling, 1x1 head, `weight_init="fan_out"`) with one or more `UNetConfig` fields switched
towards smp's `Unet("resnet18")` (`upsample="nearest"`, `head_kernel_size=3`, `weight_init="fan_in"`; all three is
today's `timm-unet` preset), or one part of `weight_init="fan_in"` alone (a re-initialisation of the built model);
`smp-unet-resnet18` is the peer itself. All are trained as `benchmarks.quality` trains them (the recipe on the `demo`
dataset: `--steps` Adam steps of batch `--batch_size` at `--lr`, no schedule, Dice + CE, flips), each model built after
`accelerate.utils.set_seed(seed)`. Runs are appended to `--runs` (JSON lines) as they finish, so that the ablation
can be spread over several processes and resumed; the report is the mean and sd of the final validation mean
foreground Dice per variant.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import common
from .peers import build_peer
from .quality import _mean_std, run_config

SMP = "smp-unet-resnet18"
# The timm-unet preset before the smp-shaped switches, on resnet18.
BASE_KWARGS: dict[str, Any] = {"encoder": "resnet18", "upsample": "transpose", "head_kernel_size": 1,
                               "weight_init": "fan_out"}


def _decoder_fan_in(model: nn.Module) -> None:
    """smp's decoder and head initialisation alone: decoder convs kaiming-uniform (fan-in), head xavier-uniform."""
    for m in model.unet.decoder.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_uniform_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    nn.init.xavier_uniform_(model.head.weight)
    nn.init.zeros_(model.head.bias)


def _zero_init_last(model: nn.Module) -> None:
    """timm's own ResNet initialisation alone: the last batch norm of each residual block at weight 0."""
    for m in model.unet.encoder.backbone.modules():
        if hasattr(m, "zero_init_last"):
            m.zero_init_last()


def _stem_default(model: nn.Module) -> None:
    """smp's stem for `in_channels != 3` without weights: the first convolution at PyTorch's default init."""
    model.unet.encoder.backbone.conv1.reset_parameters()


# name -> (config kwargs on top of BASE_KWARGS, a re-initialisation of the built model or None)
VARIANTS: dict[str, tuple[dict[str, Any], Callable[[nn.Module], None] | None]] = {
    "base": ({}, None),
    "nearest": ({"upsample": "nearest"}, None),
    "head3": ({"head_kernel_size": 3}, None),
    "decoder-fan-in": ({}, _decoder_fan_in),
    "zero-init-last": ({}, _zero_init_last),
    "stem-default": ({}, _stem_default),
    "weight-init-fan-in": ({"weight_init": "fan_in"}, None),
    "nearest+head3": ({"upsample": "nearest", "head_kernel_size": 3}, None),
    "nearest+head3+fan-in": ({"upsample": "nearest", "head_kernel_size": 3, "weight_init": "fan_in"}, None),
    SMP: ({}, None),
}


def build_variant(name: str, seed: int, num_labels: int) -> nn.Module:
    """The model of variant `name`, built after `set_seed(seed)` (as the recipe builds its models)."""
    from accelerate.utils import set_seed

    from hfseg.models.zoo import create_model

    set_seed(seed)
    if name == SMP:
        return build_peer(SMP, num_channels=1, num_labels=num_labels)
    kwargs, reinit = VARIANTS[name]
    model = create_model("timm-unet", num_labels=num_labels, num_channels=1, **{**BASE_KWARGS, **kwargs})
    if reinit is not None:
        with torch.no_grad():
            reinit(model)
    return model


def train_variant(name: str, seed: int, steps: int, batch_size: int, lr: float, output_dir: str,
                  **data: Any) -> dict[str, Any]:
    """One run of variant `name`: the final validation Dice and the loop's seconds. `data`: `run_config`'s
    `cache_dir`, `max_train_samples`, `max_eval_samples`, `size`."""
    import os

    from hfseg.data import DEMO_ID2LABEL
    from hfseg.training.trainer import train

    cfg = run_config("timm-unet", seed, steps, batch_size, lr, output_dir, **data)
    model = build_variant(name, seed, len(DEMO_ID2LABEL))
    load = os.getloadavg()[0]
    with common.stopwatch() as elapsed:
        summary = train(cfg, model=model)
    final = summary.get("final") or {}
    return {"variant": name, "seed": seed, "dice": final.get("mean_foreground_dice"), "seconds": summary["seconds"],
            "wall_s": elapsed(), "load_average_1min": load, "steps": summary["steps"],
            "parameters": sum(p.numel() for p in model.parameters())}


# benchmarks.quality's models that are variants here (same protocol): its rows can join the table.
QUALITY_MODELS = {"hfseg-timm-unet-resnet18": "base", SMP: SMP}


def read_runs(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def quality_runs(path: Path) -> list[dict[str, Any]]:
    """The runs of a `benchmarks.quality` report of the models in `QUALITY_MODELS`, as variant runs. Its
    `hfseg-timm-unet-resnet18` is `base` only in a report from before the switches (`timm-unet` is smp-shaped since)."""
    report = json.loads(path.read_text())
    load = report["machine"].get("load_average_1min")
    return [{**run, "variant": variant, "source": path.name, "load_average_1min": load}
            for model, variant in QUALITY_MODELS.items() for run in report["results"].get(model, {}).get("runs", [])]


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per variant (in `VARIANTS` order): Dice mean and sd over its seeds, seconds, parameters, load averages."""
    out = {}
    for name in [*VARIANTS, *sorted({r["variant"] for r in runs} - set(VARIANTS))]:
        mine = sorted((r for r in runs if r["variant"] == name), key=lambda r: (r.get("source", ""), r["seed"]))
        if not mine:
            continue
        dice, sd = _mean_std([r["dice"] for r in mine])
        seconds, _ = _mean_std([r["seconds"] for r in mine])
        out[name] = {"dice_mean": dice, "dice_std": sd, "seconds_mean": seconds, "seeds": [r["seed"] for r in mine],
                     "dice": [r["dice"] for r in mine], "parameters": mine[0].get("parameters"),
                     "load_average_1min": [r.get("load_average_1min") for r in mine],
                     "sources": sorted({r.get("source", "this benchmark") for r in mine}), "runs": mine}
    return out


def markdown_report(report: dict[str, Any]) -> str:
    s, m = report["settings"], report["machine"]
    loads = [x for r in report["results"].values() for x in r["load_average_1min"] if x is not None]
    load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "n/a"
    lines = [
        "### `decoder_ablation`", "",
        f"demo dataset ({s.get('size') or 128} px), {s['steps']} steps x batch {s['batch_size']}, Adam {s['lr']}, no "
        f"schedule, Dice+CE, flips, {s['threads']} thread(s) per run. Machine: {m['cpu']} ({m['cpu_count']} cores), "
        f"load average {load} at the runs' starts. hfseg `timm-unet` (resnet18, random init) with the "
        "switches named (`base`: the preset before them; `nearest+head3+fan-in`: the preset today); "
        "`smp-unet-resnet18` is smp's `Unet(\"resnet18\")`. Runs from `benchmarks.quality` (same protocol) are "
        "marked in `source`. " + ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items()) + ".",
        "",
    ]
    base = report["results"].get("base", {}).get("dice_mean")
    headers = ["variant", "seeds", "val Dice (mean +- sd)", "per seed", "vs base", "parameters", "source"]
    rows = []
    for name, r in report["results"].items():
        delta = f"{r['dice_mean'] - base:+.4f}" if base is not None else ""
        params = f"{r['parameters'] / 1e6:.2f} M" if r["parameters"] else ""
        rows.append([f"`{name}`", ",".join(map(str, r["seeds"])), f"{r['dice_mean']:.4f} +- {r['dice_std']:.4f}",
                     " / ".join(f"{d:.4f}" for d in r["dice"]), delta, params, ", ".join(r["sources"])])
    lines.append(common.markdown_table(headers, rows))
    return "\n".join(lines) + "\n"


def write_report(runs_path: Path, output: Path, settings: dict[str, Any],
                 quality: Path | None = None) -> dict[str, Any]:
    machine = common.machine_info(torch.device("cpu"))
    runs = read_runs(runs_path) + (quality_runs(quality) if quality else [])
    report = {"benchmark": "decoder_ablation", "settings": settings, "machine": machine, "results": summarize(runs)}
    common.write_report(output, report, markdown_report(report))
    return report


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of: "
                                                                        f"{', '.join(VARIANTS)}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", type=int, default=None, help="image size (default: the demo config's 128)")
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--max_eval_samples", type=int, default=None)
    parser.add_argument("--cache_dir", default=None, help="datasets cache for the demo dataset")
    parser.add_argument("--runs", default=None, help="JSON-lines file the runs are appended to (default: a temp file)")
    parser.add_argument("--report", default=None, help="only write the report of this runs file")
    parser.add_argument("--quality", default=None, help="a benchmarks.quality JSON from before the switches whose "
                                                         "hfseg-timm-unet-resnet18 and smp runs join the table")
    parser.add_argument("--output", default=None, help="JSON path (default benchmarks/results/decoder_ablation.json)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    settings = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "threads": args.threads,
                "size": args.size, "max_train_samples": args.max_train_samples,
                "max_eval_samples": args.max_eval_samples, "metric": "mean_foreground_dice"}
    output = Path(args.output) if args.output else common.RESULTS_DIR / "decoder_ablation.json"
    if args.report:
        return write_report(Path(args.report), output, settings, Path(args.quality) if args.quality else None)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"Unknown variant(s) {', '.join(unknown)}; available: {', '.join(VARIANTS)}.")
    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="hfseg-decoder-ablation-"))
    runs_path = Path(args.runs) if args.runs else root / "runs.jsonl"
    try:
        for seed in (int(s) for s in args.seeds.split(",")):
            for name in names:
                result = train_variant(name, seed, args.steps, args.batch_size, args.lr, str(root / f"{name}-{seed}"),
                                       size=args.size, max_train_samples=args.max_train_samples,
                                       max_eval_samples=args.max_eval_samples, cache_dir=args.cache_dir)
                with runs_path.open("a") as f:
                    f.write(json.dumps(result) + "\n")
                print(f"  {name:24s} seed {seed}: Dice {result['dice']:.4f} in {result['seconds']:.0f} s "
                      f"(load {result['load_average_1min']:.1f})", flush=True)
        return write_report(runs_path, output, settings, Path(args.quality) if args.quality else None)
    finally:
        torch.set_num_threads(previous)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
