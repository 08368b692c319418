"""`quality`: validation Dice and wall time of every model trained with an equal budget by the real recipe.

```
python -m benchmarks.quality                                        # 300 steps x seeds 0,1,2 x all models
python -m benchmarks.quality --steps 100 --seeds 0 --models hfseg-attention-unet,monai-attention-unet
```

Each run is `hfseg.training.trainer.train` on the bundled `demo` config (the `demo` dataset at 128x128) with the
budget overridden equally for all models: `--steps` optimizer steps of batch `--batch_size`, Adam at `--lr`, no
schedule, Dice + cross-entropy, horizontal and vertical flips, one evaluation at the end. hfseg models are built by
the recipe from their zoo names (as in `benchmarks.models`); the peers (`benchmarks.peers`) are built seeded by
`accelerate.utils.set_seed(seed)` and handed to the same loop (`Trainer(cfg, model=...)`). Reported per model:
the final validation mean foreground Dice (mean and standard deviation over the seeds), the training loop's wall
time (the recipe's `seconds`: steps, evaluation, checkpoint), and Dice per second of training.
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from . import common
from .models import ALL_MODELS, BASELINE, HFSEG_MODELS, TARGET
from .peers import PEERS, build_peer, peer_available

DEMO_CONFIG = "demo"  # the bundled config (hfseg/training/configs/demo.yaml)
METRIC = "mean_foreground_dice"


def run_config(name: str, seed: int, steps: int, batch_size: int, lr: float, output_dir: str,
               precision: str = "no", channels_last: bool = False, compile: bool = False,
               cache_dir: str | None = None, max_train_samples: int | None = None,
               max_eval_samples: int | None = None, size: int | None = None) -> Any:
    """The recipe config of one equal-budget run of model `name` with `seed`."""
    from hfseg.training.config import load_config

    values: dict[str, Any] = {
        "optim.name": "adam", "optim.lr": lr, "scheduler.name": "none", "scheduler.warmup_steps": 0,
        "loss.name": "dice_ce", "augment": {"hflip": 0.5, "vflip": 0.5},
        "train.batch_size": batch_size, "train.max_steps": steps, "train.epochs": 10**6,
        "train.eval_every": 10**6, "train.checkpointing": 10**9, "train.checkpoints_total_limit": 1,
        "train.seed": seed, "train.output_dir": output_dir, "train.overwrite_output_dir": True, "train.report_to": None,
        "train.panels": 0,
        "train.mixed_precision": precision, "model.channels_last": channels_last, "model.compile": compile,
    }
    if name in HFSEG_MODELS:
        zoo_name, kwargs = HFSEG_MODELS[name]
        values.update({"model.name": zoo_name, "model.kwargs": dict(kwargs)})
    else:
        values.update({"model.name": name, "model.kwargs": {}})
    if cache_dir:
        values["data.options"] = {"cache_dir": cache_dir}
    if max_train_samples:
        values["data.max_train_samples"] = max_train_samples
    if max_eval_samples:
        values["data.max_eval_samples"] = max_eval_samples
    if size:
        values["data.size"] = [size, size]
    return load_config(DEMO_CONFIG, values=values)


def train_once(name: str, cfg: Any, seed: int) -> dict[str, Any]:
    """One run; returns the final validation Dice, the loop's seconds and the whole call's wall seconds."""
    from accelerate.utils import set_seed

    from hfseg.data import DEMO_ID2LABEL
    from hfseg.training.trainer import train

    model = None
    if name in PEERS:
        set_seed(seed)
        model = build_peer(name, num_channels=1, num_labels=len(DEMO_ID2LABEL))
    with common.stopwatch() as elapsed:
        summary = train(cfg, model=model)
    final = summary.get("final") or {}
    return {"seed": seed, "dice": final.get(METRIC), "seconds": summary["seconds"], "wall_s": elapsed(),
            "steps": summary["steps"]}


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    dice, dice_std = _mean_std([r["dice"] for r in runs])
    seconds, seconds_std = _mean_std([r["seconds"] for r in runs])
    return {"dice_mean": dice, "dice_std": dice_std, "seconds_mean": seconds, "seconds_std": seconds_std,
            "dice_per_s": dice / seconds if seconds else float("nan"), "runs": list(runs)}


def check_targets(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`TARGET` Dice >= `BASELINE` Dice (within the baseline's spread), and which model has the best Dice/s."""
    out: dict[str, Any] = {}
    if TARGET in results and BASELINE in results:
        t, b = results[TARGET], results[BASELINE]
        out["dice_difference"] = t["dice_mean"] - b["dice_mean"]
        out["same_or_better_dice"] = t["dice_mean"] >= b["dice_mean"] - max(b["dice_std"], t["dice_std"])
    if results:
        out["best_dice_per_s"] = max(results, key=lambda n: results[n]["dice_per_s"])
    return out


def markdown_report(report: dict[str, Any]) -> str:
    s, m = report["settings"], report["machine"]
    lines = [
        "### `quality`", "",
        f"demo dataset ({s['size'] or 128} px), {s['steps']} steps x batch {s['batch_size']}, Adam {s['lr']}, Dice+CE, "
        f"flips, seeds {', '.join(map(str, s['seeds']))}; precision {s['precision']}, channels_last "
        f"{s['channels_last']}, compile {s['compile']}, {s['threads']} threads. Machine: {m['cpu']} "
        f"({m['cpu_count']} cores), load average {common.fmt(m['load_average_1min'], 2)} at start.", "",
    ]
    headers = ["model", "val Dice (mean +- sd)", "train s (mean +- sd)", "Dice per 100 s"]
    rows = [[f"`{n}`", f"{r['dice_mean']:.4f} +- {r['dice_std']:.4f}", f"{r['seconds_mean']:.0f} +- "
             f"{r['seconds_std']:.0f}", f"{100 * r['dice_per_s']:.3f}"] for n, r in report["results"].items()]
    lines.append(common.markdown_table(headers, rows))
    targets = report.get("targets") or {}
    if "dice_difference" in targets:
        lines += ["", f"`{TARGET}` - `{BASELINE}` Dice: {targets['dice_difference']:+.4f} "
                      f"({'same or better' if targets['same_or_better_dice'] else 'worse'} within one sd)."]
    if "best_dice_per_s" in targets:
        lines += [f"Best Dice per second: `{targets['best_dice_per_s']}`."]
    if report.get("skipped"):
        lines += ["", f"Skipped (library not installed): {', '.join(report['skipped'])}."]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(ALL_MODELS), help=f"comma-separated subset of: "
                                                                        f"{', '.join(ALL_MODELS)}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="train.mixed_precision=bf16")
    parser.add_argument("--channels_last", action="store_true", help="model.channels_last=true")
    parser.add_argument("--compile", action="store_true", help="model.compile=true")
    parser.add_argument("--size", type=int, default=None, help="image size (default: the demo config's 128)")
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--max_eval_samples", type=int, default=None)
    parser.add_argument("--cache_dir", default=None, help="datasets cache for the demo dataset")
    parser.add_argument("--keep_runs", default=None, help="folder to keep the run outputs in (default: deleted)")
    parser.add_argument("--output", default=None, help="JSON path (default benchmarks/results/quality.json)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    requested = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in requested if n not in ALL_MODELS]
    if unknown:
        raise SystemExit(f"Unknown model(s) {', '.join(unknown)}; available: {', '.join(ALL_MODELS)}.")
    skipped = [n for n in requested if n in PEERS and not peer_available(n)]
    names = [n for n in requested if n not in skipped]
    seeds = [int(s) for s in args.seeds.split(",")]
    machine = common.machine_info(torch.device("cpu"))
    precision = "bf16" if args.bf16 else "no"
    root = Path(args.keep_runs) if args.keep_runs else Path(tempfile.mkdtemp(prefix="hfseg-quality-"))
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    try:
        for seed in seeds:  # seeds outermost: an interrupted run still has every model at the first seeds
            for name in names:
                cfg = run_config(name, seed, args.steps, args.batch_size, args.lr, str(root / f"{name}-seed{seed}"),
                                 precision, args.channels_last, args.compile, args.cache_dir,
                                 args.max_train_samples, args.max_eval_samples, args.size)
                result = train_once(name, cfg, seed)
                runs[name].append(result)
                print(f"  {name:26s} seed {seed}: Dice {result['dice']:.4f} in {result['seconds']:.0f} s")
    finally:
        if not args.keep_runs:
            shutil.rmtree(root, ignore_errors=True)
    results = {n: summarize(r) for n, r in runs.items()}
    settings = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seeds": seeds,
                "threads": args.threads, "precision": precision, "channels_last": args.channels_last,
                "compile": args.compile, "size": args.size, "max_train_samples": args.max_train_samples,
                "max_eval_samples": args.max_eval_samples, "metric": METRIC}
    report = {"benchmark": "quality", "settings": settings, "machine": machine, "results": results,
              "targets": check_targets(results), "skipped": skipped}
    output = Path(args.output) if args.output else common.RESULTS_DIR / "quality.json"
    common.write_report(output, report, markdown_report(report))
    return report


if __name__ == "__main__":
    main()
