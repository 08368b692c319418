"""`quality3d`: validation Dice of 3D models trained with an equal budget by the volume recipe, and a global Otsu
threshold.

```
python -m benchmarks.quality3d                                   # both tasks, 200 steps x batch 2, seeds 0,1,2
python -m benchmarks.quality3d --tasks white_matter --seeds 0 --models hfseg-attention-unet-3d,otsu
```

Data: the `demo3d` cases (`hfseg.data.demo3d`: ten brain MRI volumes made from the MNI template at 3-5 mm, each
deformed and with its own contrast) written as an nnU-Net raw folder, with two label sets: `tissue` (CSF and other
brain, grey matter, white matter) and `white_matter` (binary). Fold 0 of nnU-Net's five folds: 8 cases train, the 2
held-out cases are scored whole, per case in 3D (`case_mean_foreground_dice`: the mean over held-out cases of each
case's mean foreground Dice).

Every network is trained by the same recipe, `recipes/configs/nnunet_3d.yaml` on that folder (the plan, patch
sampling with foreground oversampling, nnU-Net's augmentation, Dice + CE, Adam, polynomial schedule) with
`--max_steps` and `--batch_size` as given. Two settings are fixed for all, so that every network fits the same
patches on a CPU: `plan.base_width` (hfseg's widths 16-32-64-128...) and `plan.patch_size` (a multiple of 16, which
MONAI's 4 poolings need). The hfseg model is the config's own (Attention U-Net, instance norm, leaky ReLU, deep
supervision); the MONAI peers (`benchmarks.peers`, 16-32-64-128-256) are handed to the same loop. `otsu` thresholds
each held-out volume at its Otsu threshold (256-bin histogram), labelling above as foreground (binary task only).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import common
from .peers import build_peer, peer_available
from .quality import _mean_std

HFSEG = "hfseg-attention-unet-3d"
MODELS = (HFSEG, "monai-attention-unet", "monai-unet", "otsu")
TASKS = {"tissue": None, "white_matter": 3}  # the demo3d class kept as foreground (None: all classes)
METRIC = "case_mean_foreground_dice"


def write_task(folder: Path, task: str) -> Path:
    """The demo3d cases as an nnU-Net folder with the labels of `task`."""
    import nibabel as nib

    from hfseg.data.demo3d import write_nnunet_folder

    write_nnunet_folder(folder)
    keep = TASKS[task]
    if keep is not None:
        for path in sorted((folder / "labelsTr").glob("*.nii.gz")):
            label = nib.load(path)
            binary = (np.asarray(label.dataobj) == keep).astype(np.uint8)
            nib.save(nib.Nifti1Image(binary, label.affine, label.header), path)
        meta = json.loads((folder / "dataset.json").read_text())
        meta["labels"] = {"background": 0, task: 1}
        (folder / "dataset.json").write_text(json.dumps(meta, indent=2))
    return folder


def run_config(data_dir: Path, seed: int, steps: int, batch_size: int, base_width: int, patch: Sequence[int],
               output_dir: Path, cache_dir: Path) -> Any:
    from hfseg.training.config import load_config

    return load_config("nnunet_3d", values={
        "data.data_dir": str(data_dir), "data.options": {"fold": 0, "cache_dir": str(cache_dir)},
        "plan.base_width": base_width, "plan.patch_size": list(patch), "train.max_steps": steps,
        "train.batch_size": batch_size, "train.seed": seed, "train.output_dir": str(output_dir),
        "train.report_to": None, "train.panels": 0, "train.checkpointing": 10**9, "train.eval_every": 10**6,
        "train.checkpoints_total_limit": 1})


def train_once(name: str, cfg: Any, seed: int, num_labels: int) -> dict[str, Any]:
    from accelerate.utils import set_seed

    from hfseg.training.trainer import train

    model = None
    if name != HFSEG:
        set_seed(seed)
        model = build_peer(name, num_channels=1, num_labels=num_labels, spatial_dims=3)
    with common.stopwatch() as elapsed:
        summary = train(cfg, model=model)
    final = summary.get("final") or {}
    return {"seed": seed, "dice": final.get(METRIC), "pooled_dice": final.get("mean_foreground_dice"),
            "seconds": summary["seconds"], "wall_s": elapsed(), "steps": summary["steps"]}


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of `values`: the histogram split maximizing the between-class variance."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(hist).astype(np.float64)
    total = weight[-1]
    mean = np.cumsum(hist * centres)
    between = (mean[-1] * weight / total - mean) ** 2 / np.maximum(weight * (total - weight), 1e-12) * total
    return float(centres[int(np.argmax(between[:-1]))])


def otsu_dice(data_dir: Path, cache_dir: Path) -> dict[str, Any]:
    """Mean over the held-out cases of the Dice of `image > otsu(image)` against the binary label."""
    import hfseg.data
    from hfseg.data.volumes import case_arrays

    validation = hfseg.data.load("nnunet", str(data_dir), fold=0, cache_dir=str(cache_dir))["validation"]
    scores = []
    for i in range(len(validation)):
        case = case_arrays(validation, i)
        image = case.image[0]
        pred, truth = image > otsu_threshold(image.ravel()), case.label > 0
        scores.append(2 * float((pred & truth).sum()) / max(float(pred.sum() + truth.sum()), 1.0))
    return {"seed": None, "dice": float(np.mean(scores)), "seconds": 0.0, "steps": 0}


def markdown_report(report: dict[str, Any]) -> str:
    s, m = report["settings"], report["machine"]
    lines = ["### `quality3d`", "",
             f"demo3d as an nnU-Net folder, fold 0 (8 train, 2 held-out cases scored whole), the nnunet_3d recipe: "
             f"{s['steps']} steps x batch {s['batch_size']}, patch {' x '.join(map(str, s['patch']))}, hfseg base "
             f"width {s['base_width']}, seeds {', '.join(map(str, s['seeds']))}, {s['threads']} threads. Machine: "
             f"{m['cpu']} ({m['cpu_count']} cores); torch {m.get('versions', {}).get('torch')}.", "",
             "Held-out per-case mean foreground Dice (mean +- sd over seeds), and training wall time:", ""]
    headers = ["task", "model", "Dice", "train s"]
    rows = []
    for task, results in report["results"].items():
        for name, r in results.items():
            rows.append([task, f"`{name}`", f"{r['dice_mean']:.4f} +- {r['dice_std']:.4f}",
                         f"{r['seconds_mean']:.0f}" if name != "otsu" else "-"])
    lines.append(common.markdown_table(headers, rows))
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {', '.join(MODELS)}")
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of {', '.join(TASKS)}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--base_width", type=int, default=16)
    parser.add_argument("--patch", type=int, nargs=3, default=[48, 64, 48])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=None, help="JSON path (default benchmarks/results/quality3d.json)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    models = [n.strip() for n in args.models.split(",") if n.strip()]
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    bad = [n for n in models if n not in MODELS] + [t for t in tasks if t not in TASKS]
    if bad:
        raise SystemExit(f"Unknown model(s) or task(s): {', '.join(bad)}.")
    skipped = [n for n in models if n.startswith("monai") and not peer_available(n)]
    models = [n for n in models if n not in skipped]
    seeds = [int(s) for s in args.seeds.split(",")]
    machine = common.machine_info(torch.device("cpu"))
    root = Path(tempfile.mkdtemp(prefix="hfseg-quality3d-"))
    results: dict[str, dict[str, Any]] = {}
    try:
        for task in tasks:
            data_dir = write_task(root / f"Dataset99{len(results)}_{task}", task)
            num_labels = 4 if TASKS[task] is None else 2
            runs: dict[str, list[dict[str, Any]]] = {n: [] for n in models}
            if "otsu" in runs:  # a threshold separates one class from the rest only
                if TASKS[task] is None:
                    del runs["otsu"]
                else:
                    runs["otsu"].append(otsu_dice(data_dir, root / "cache"))
            for seed in seeds:
                for name in [n for n in models if n != "otsu"]:
                    cfg = run_config(data_dir, seed, args.steps, args.batch_size, args.base_width, args.patch,
                                     root / f"{task}-{name}-{seed}", root / "cache")
                    result = train_once(name, cfg, seed, num_labels)
                    runs[name].append(result)
                    print(f"  {task:12s} {name:26s} seed {seed}: Dice {result['dice']:.4f} in "
                          f"{result['seconds']:.0f} s", flush=True)
            results[task] = {}
            for name, items in runs.items():
                dice, dice_std = _mean_std([r["dice"] for r in items])
                seconds, _ = _mean_std([r["seconds"] for r in items])
                results[task][name] = {"dice_mean": dice, "dice_std": dice_std, "seconds_mean": seconds,
                                       "runs": items}
    finally:
        shutil.rmtree(root, ignore_errors=True)
        torch.set_num_threads(previous)
    settings = {"steps": args.steps, "batch_size": args.batch_size, "base_width": args.base_width,
                "patch": list(args.patch), "seeds": seeds, "threads": args.threads, "metric": METRIC}
    report = {"benchmark": "quality3d", "settings": settings, "machine": machine, "results": results,
              "skipped": skipped}
    output = Path(args.output) if args.output else common.RESULTS_DIR / "quality3d.json"
    common.write_report(output, report, markdown_report(report))
    return report


if __name__ == "__main__":
    main()
