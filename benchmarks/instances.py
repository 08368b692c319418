"""`instances`: Dice, PQ and AJI of touching nuclei, semantic target + connected components vs boundary target +
watershed, hfseg models against smp and MONAI at an equal training budget.

```
python -m benchmarks.instances                                  # 300 steps x seeds 0,1,2 x 6 models x 2 targets
python -m benchmarks.instances --seeds 0 --steps 100 --models hfseg-attention-unet,monai-attention-unet
```

Data: `benchmarks.nuclei` tiles (synthetic fluorescence, touching elliptical nuclei, 16-bit instance masks;
`--train` + `--validation` tiles of `--size` px, generated once with `--data_seed`), read by the `image-mask-folder`
loader with `instance_masks: true`. Each model is trained by the real recipe (`hfseg.training.trainer.Trainer`, as
`benchmarks.quality` does, peers handed over as `model=`) on two targets:

- **semantic**: background / foreground (`boundary: false`); instances are the connected components of the
  predicted foreground (`instances="connected"`), and, as a third row, the distance-transform watershed of it
  (`instances="watershed"` on a semantic model);
- **boundary**: background / interior / boundary (the 3-class target, 1 px per side); instances by seeded watershed
  on the predicted probabilities (`instances="watershed"`).

Equal budget: `--steps` Adam steps (`--lr`, no schedule) of batch `--batch_size`, Dice + cross-entropy, flips, fp32.
Scored by `hfseg.evaluation.evaluate_model` on the validation tiles against the true instance maps: foreground
Dice (`regions["foreground"]`, pooled), PQ and AJI (`instances`, pooled over tiles), means and standard deviations
over `--seeds`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from . import common
from .models import HFSEG_MODELS
from .nuclei import write_nuclei_folder
from .peers import PEERS, build_peer, peer_available
from .quality import _mean_std

DEMO_CONFIG = "demo"
# hfseg's benchmark models, and the Attention U-Net upsampling by nearest neighbour (its decoder blocks read the
# upsampled map at full width next to the skip, as smp's Unet does): thin boundaries come out sharper than through
# a 2x2 transposed convolution. The `-1conv` one is the demo recipe's model (one 3x3 convolution per decoder level).
INSTANCE_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    **HFSEG_MODELS,
    "hfseg-attention-unet-nearest": ("attention-unet", {"base_channels": 16, "upsample": "nearest"}),
    "hfseg-attention-unet-nearest-1conv": ("attention-unet", {"base_channels": 16, "upsample": "nearest",
                                                              "convs_per_block": 1}),
}
MODELS = ("hfseg-attention-unet", "hfseg-attention-unet-nearest", "hfseg-attention-unet-nearest-1conv",
          "hfseg-timm-unet-resnet18", "smp-unet-resnet18", "monai-attention-unet")
# target -> (loader options, [(row name, evaluate_model instances=)])
TARGETS: dict[str, tuple[dict[str, Any], list[tuple[str, str]]]] = {
    "semantic": ({"instance_masks": True, "boundary": False},
                 [("semantic + connected", "connected"), ("semantic + distance watershed", "watershed")]),
    "boundary": ({"instance_masks": True}, [("boundary + watershed", "watershed")]),
}
MAIN_ROWS = ("semantic + connected", "boundary + watershed")


def run_config(name: str, target: str, seed: int, args: argparse.Namespace, data_dir: Path, output_dir: Path) -> Any:
    """The recipe config of one equal-budget run of model `name` on `target` with `seed`."""
    from hfseg.training.config import load_config

    options = {**TARGETS[target][0], "cache_dir": str(data_dir / ".cache")}
    values: dict[str, Any] = {
        "data.dataset": "image-mask-folder", "data.data_dir": str(data_dir), "data.options": options,
        "data.size": [args.size, args.size],
        "optim.name": "adam", "optim.lr": args.lr, "scheduler.name": "none", "scheduler.warmup_steps": 0,
        "loss.name": "dice_ce", "augment": {"hflip": 0.5, "vflip": 0.5},
        "train.batch_size": args.batch_size, "train.max_steps": args.steps, "train.epochs": 10**6,
        "train.eval_every": 10**6, "train.checkpointing": 10**9, "train.checkpoints_total_limit": 1,
        "train.seed": seed, "train.output_dir": str(output_dir), "train.overwrite_output_dir": True, "train.report_to": None,
        "train.panels": 0,
        "train.mixed_precision": "no",
    }
    if name in INSTANCE_MODELS:
        zoo_name, kwargs = INSTANCE_MODELS[name]
        values.update({"model.name": zoo_name, "model.kwargs": dict(kwargs)})
    else:
        values.update({"model.name": name, "model.kwargs": {}})
    return load_config(DEMO_CONFIG, values=values)


def train_and_score(name: str, target: str, seed: int, args: argparse.Namespace, data_dir: Path,
                    output_dir: Path) -> list[dict[str, Any]]:
    """Train one model on one target, then score it on the validation tiles: one record per row of `TARGETS`."""
    from accelerate.utils import set_seed

    from hfseg.evaluation import evaluate_model
    from hfseg.training.trainer import Trainer

    cfg = run_config(name, target, seed, args, data_dir, output_dir)
    model = None
    if name in PEERS:
        set_seed(seed)
        model = build_peer(name, num_channels=1, num_labels=3 if target == "boundary" else 2)
    trainer = Trainer(cfg, model=model)
    summary = trainer.fit()
    net = trainer.accelerator.unwrap_model(trainer.model).eval()
    if name in PEERS:  # evaluation reads the class count from `config`, which the peers' wrapper lacks
        net.config = SimpleNamespace(num_labels=net.num_labels, id2label=dict(trainer.data.id2label))
    records = []
    for row, method in TARGETS[target][1]:
        result = evaluate_model((net, trainer.data.processor), trainer.data.eval, instances=method, surface=False,
                                per_case=False, batch_size=args.batch_size, device="cpu")
        objects = result["instances"]
        records.append({"row": row, "seed": seed, "dice": result["regions"]["foreground"]["dice"],
                        "pq": objects["pq"], "sq": objects["sq"], "rq": objects["rq"], "aji": objects["aji"],
                        "num_true": objects["num_true"], "num_pred": objects["num_pred"],
                        "seconds": summary["seconds"], "steps": summary["steps"]})
    return records


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("dice", "pq", "aji", "sq", "rq", "seconds"):
        out[f"{key}_mean"], out[f"{key}_std"] = _mean_std([r[key] for r in records])
    out["runs"] = list(records)
    return out


def check_targets(results: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Per row: the best hfseg model and the best peer by mean Dice and mean PQ, and whether hfseg is above."""
    out: dict[str, Any] = {}
    for row, models in results.items():
        hfseg = {n: r for n, r in models.items() if n in INSTANCE_MODELS}
        peers = {n: r for n, r in models.items() if n in PEERS}
        if not hfseg or not peers:
            continue
        entry: dict[str, Any] = {}
        for metric in ("dice", "pq"):
            best = max(hfseg, key=lambda n: hfseg[n][f"{metric}_mean"])
            peer = max(peers, key=lambda n: peers[n][f"{metric}_mean"])
            entry[metric] = {"hfseg": best, "peer": peer, "difference": hfseg[best][f"{metric}_mean"]
                             - peers[peer][f"{metric}_mean"]}
            entry[metric]["above"] = entry[metric]["difference"] > 0
        out[row] = entry
    return out


def markdown_report(report: dict[str, Any]) -> str:
    s, m = report["settings"], report["machine"]
    lines = [
        "### `instances`", "",
        f"`benchmarks.nuclei` tiles ({s['train']} train / {s['validation']} validation, {s['size']} px, data seed "
        f"{s['data_seed']}, {s['touching_fraction']:.0%} of the validation nuclei touching another), {s['steps']} "
        f"steps x batch {s['batch_size']}, Adam {s['lr']}, Dice+CE, flips, seeds {', '.join(map(str, s['seeds']))}, "
        f"{s['threads']} threads. Foreground Dice, PQ and AJI pooled over the validation tiles against the true "
        f"instance maps (mean +- sd over seeds). Machine: {m['cpu']} ({m['cpu_count']} cores), {_load(report)}; "
        f"torch {m['versions'].get('torch')}, monai {m['versions'].get('monai')}, smp "
        f"{m['versions'].get('segmentation-models-pytorch')}.", "",
    ]
    headers = ["instances", "model", "fg Dice", "PQ", "AJI", "SQ", "RQ", "train s"]
    rows = []
    for row, models in report["results"].items():
        for name, r in models.items():
            rows.append([row, f"`{name}`"] + [f"{r[f'{k}_mean']:.4f} +- {r[f'{k}_std']:.4f}"
                                                for k in ("dice", "pq", "aji")]
                        + [f"{r['sq_mean']:.3f}", f"{r['rq_mean']:.3f}", f"{r['seconds_mean']:.0f}"])
    lines.append(common.markdown_table(headers, rows))
    for row, entry in (report.get("targets") or {}).items():
        parts = [f"{metric} `{e['hfseg']}` {'above' if e['above'] else 'below'} `{e['peer']}` by "
                 f"{e['difference']:+.4f}" for metric, e in entry.items()]
        lines += ["", f"{row}: " + "; ".join(parts) + "."]
    if report.get("skipped"):
        lines += ["", f"Skipped (library not installed): {', '.join(report['skipped'])}."]
    return "\n".join(lines) + "\n"


def _load(report: dict[str, Any]) -> str:
    runs = [v for v in report["machine"].get("load_average_runs") or [] if v is not None]
    if runs:  # a report from --records: the runs' own load averages
        return f"load average {min(runs):.1f}-{max(runs):.1f} at the end of the runs"
    return (f"load average {common.fmt(report['machine']['load_average_1min'], 2)} at start, "
            f"{common.fmt(report.get('load_average_end'), 2)} at the end")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of: {', '.join(MODELS)}")
    parser.add_argument("--targets", default=",".join(TARGETS), help="semantic, boundary or both")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=128, help="tile size in pixels")
    parser.add_argument("--train", type=int, default=64, help="training tiles")
    parser.add_argument("--validation", type=int, default=16, help="validation tiles")
    parser.add_argument("--data_seed", type=int, default=0)
    parser.add_argument("--data_dir", default=None, help="existing or new nuclei folder (default: a temporary one)")
    parser.add_argument("--keep_runs", default=None, help="folder to keep the run outputs in (default: deleted)")
    parser.add_argument("--output", default=None, help="JSON path (default benchmarks/results/instances.json)")
    parser.add_argument("--records", default=None,
                        help="JSON-lines file each scored run is appended to as it finishes (runs split over "
                             "several processes share one)")
    parser.add_argument("--report_from", default=None,
                        help="write the report from this --records file instead of training")
    return parser.parse_args(argv)


def _touching(data_dir: Path) -> float:
    import numpy as np
    from PIL import Image

    from .nuclei import touching_fraction

    masks = sorted((data_dir / "validation" / "masks").glob("*.png"))
    values = [touching_fraction(np.asarray(Image.open(p))) for p in masks]
    return float(np.nanmean(values)) if values else float("nan")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import hfseg  # noqa: F401  (first: a thread count set after importing hfseg is the recipe's to keep)

    torch.set_num_threads(args.threads)
    requested = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in requested if n not in MODELS]
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if unknown or set(targets) - set(TARGETS):
        raise SystemExit(f"Unknown model(s) or target(s) {unknown + sorted(set(targets) - set(TARGETS))}; models: "
                         f"{', '.join(MODELS)}; targets: {', '.join(TARGETS)}.")
    skipped = [n for n in requested if n in PEERS and not peer_available(n)]
    names = [n for n in requested if n not in skipped]
    seeds = [int(s) for s in args.seeds.split(",")]
    machine = common.machine_info(torch.device("cpu"))
    if args.report_from:
        return _report_from(args, machine, skipped)
    scratch = Path(tempfile.mkdtemp(prefix="hfseg-instances-"))
    data_dir = Path(args.data_dir) if args.data_dir else scratch / "nuclei"
    if not (data_dir / "train" / "images").is_dir():
        write_nuclei_folder(data_dir, args.train, args.validation, args.size, args.data_seed)
    root = Path(args.keep_runs) if args.keep_runs else scratch / "runs"
    rows = [row for target in targets for row, _ in TARGETS[target][1]]
    records: dict[str, dict[str, list[dict[str, Any]]]] = {row: {n: [] for n in names} for row in rows}
    try:
        for seed in seeds:  # seeds outermost: an interrupted run still has every model at the first seeds
            for target in targets:
                for name in names:
                    for record in train_and_score(name, target, seed, args, data_dir,
                                                  root / f"{target}-{name}-seed{seed}"):
                        records[record["row"]][name].append(record)
                        if args.records:
                            with open(args.records, "a") as file:
                                file.write(json.dumps({"model": name, "load_average": os.getloadavg()[0],
                                                       **record}) + "\n")
                        print(f"  {record['row']:30s} {name:26s} seed {seed}: Dice {record['dice']:.4f} PQ "
                              f"{record['pq']:.4f} AJI {record['aji']:.4f} ({record['seconds']:.0f} s)", flush=True)
        touching = _touching(data_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return _write(args, machine, skipped, records, seeds, targets, touching)


def _report_from(args: argparse.Namespace, machine: dict[str, Any], skipped: list[str]) -> dict[str, Any]:
    """The report of the runs in a `--records` file (the data folder is regenerated to measure touching)."""
    lines, seen = [], set()
    for text in Path(args.report_from).read_text().splitlines():
        line = json.loads(text) if text.strip() else None
        if line and (line["row"], line["model"], line["seed"]) not in seen:  # a run repeated: its first record
            seen.add((line["row"], line["model"], line["seed"]))
            lines.append(line)
    records: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for line in lines:
        records.setdefault(line["row"], {}).setdefault(line["model"], []).append(line)
    order = [row for target in TARGETS for row, _ in TARGETS[target][1] if row in records]
    records = {row: {n: records[row][n] for n in MODELS if n in records[row]} for row in order}
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(args.data_dir) if args.data_dir else Path(scratch) / "nuclei"
        if not (data_dir / "train" / "images").is_dir():
            write_nuclei_folder(data_dir, args.train, args.validation, args.size, args.data_seed)
        touching = _touching(data_dir)
    seeds = sorted({line["seed"] for line in lines})
    machine["load_average_runs"] = [line.get("load_average") for line in lines]
    targets = [t for t in TARGETS if any(row in records for row, _ in TARGETS[t][1])]
    return _write(args, machine, skipped, records, seeds, targets, touching)


def _write(args, machine, skipped, records, seeds, targets, touching) -> dict[str, Any]:
    results = {row: {n: summarize(r) for n, r in models.items() if r} for row, models in records.items()}
    settings = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seeds": seeds,
                "threads": args.threads, "size": args.size, "train": args.train, "validation": args.validation,
                "data_seed": args.data_seed, "touching_fraction": touching, "targets": targets}
    report = {"benchmark": "instances", "settings": settings, "machine": machine, "results": results,
              "targets": check_targets({row: results[row] for row in MAIN_ROWS if row in results}),
              "skipped": skipped, "load_average_end": os.getloadavg()[0]}
    output = Path(args.output) if args.output else common.RESULTS_DIR / "instances.json"
    common.write_report(output, report, markdown_report(report))
    return report


if __name__ == "__main__":
    main()
