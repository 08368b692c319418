"""`data`: samples/s of each dataset loader plus augmentation through the recipe's `DataLoader`, against training.

```
python -m benchmarks.data                                   # demo + a synthetic image-mask-folder, 0 and 2 workers
python -m benchmarks.data --data_dir liver-voc=/data/ganzang --data_dir brats2020-h5=/data/brats
```

For each dataset, augmentation preset and worker count the loader is built exactly as the recipe builds it
(`load_config` -> `load_recipe_data` -> `build_dataloaders`: decoding, intensity normalization, augmentation,
resize to `--size`, collation), and timed over `--batches` batches after the first one (the first batch, which
includes starting the workers, is reported apart). The training step rate is measured the same way as in
`benchmarks.models` (`--train_model`, default the demo's Attention U-Net) unless `--train_rate` gives it.

`headroom` = loader samples/s / training images/s: above 1 the loader keeps up. With 0 workers the data work is
serial with the step, so `data_share` = training images/s / loader samples/s is the fraction of each step spent
waiting for data. Datasets other than `demo` need their files (`--data_dir NAME=PATH`); without one,
`image-mask-folder` runs on a synthetic folder of PNGs (`--synthetic_size` px, resized to `--size` by the recipe).
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import common

AUGMENT_PRESETS: dict[str, dict[str, Any]] = {
    "none": {},
    "flips": {"hflip": 0.5, "vflip": 0.5},
    "full": {"hflip": 0.5, "vflip": 0.5, "rot90": 0.5, "rotate_degrees": 15, "scale": [0.6, 1.0],
             "elastic_alpha": 30.0, "elastic_sigma": 5.0, "elastic_p": 0.3, "brightness": 0.1, "contrast": 0.1,
             "gamma": [0.8, 1.25], "noise_std": 0.02, "intensity_p": 0.5},
}


SYNTHETIC_ID2LABEL = {0: "background", 1: "outer", 2: "middle", 3: "inner"}


def write_synthetic_folder(root: Path, count: int = 64, size: int = 256, num_classes: int = 4, seed: int = 0) -> Path:
    """`count` grey PNG images with class-index PNG masks in the `image-mask-folder` layout under `root`."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    for i in range(count):
        cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
        radius = np.hypot(yy - cy, xx - cx)
        radii = np.sort(rng.uniform(size / 10, size / 2, num_classes - 1))  # nested discs, class 0 outside
        mask = (num_classes - 1 - np.digitize(radius, radii)).astype(np.uint8)
        image = np.clip(mask * 50 + rng.normal(40, 20, (size, size)), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"case{i:03d}.png")
        Image.fromarray(mask).save(root / "masks" / f"case{i:03d}.png")
    return root


def recipe_loader(dataset: str, data_dir: str | None, augment: dict[str, Any], workers: int, batch_size: int,
                  size: int, options: dict[str, Any] | None = None) -> torch.utils.data.DataLoader:
    """The recipe's training `DataLoader` for `dataset` with this augmentation and worker count."""
    from hfseg.training.config import load_config
    from hfseg.training.data import build_dataloaders, load_recipe_data

    cfg = load_config(values={
        "data.dataset": dataset, "data.data_dir": data_dir, "data.size": [size, size],
        "data.num_workers": workers, "data.options": dict(options or {}), "augment": dict(augment),
        "train.batch_size": batch_size, "train.report_to": None,
    })
    data = load_recipe_data(cfg)
    train_loader, _ = build_dataloaders(cfg, data)
    return train_loader


def _endless(loader: torch.utils.data.DataLoader) -> Iterator[dict[str, torch.Tensor]]:
    for _ in itertools.count():
        yield from loader


def time_loader(loader: torch.utils.data.DataLoader, batches: int) -> dict[str, float]:
    """Seconds to the first batch, then samples/s over the next `batches` batches (epochs restart as needed)."""
    batches_iter = _endless(loader)
    with common.stopwatch() as first:
        next(batches_iter)
    first_s = first()
    samples = 0
    with common.stopwatch() as elapsed:
        for batch in itertools.islice(batches_iter, batches):
            samples += int(batch["pixel_values"].shape[0])
    seconds = elapsed()
    return {"first_batch_s": first_s, "samples": samples, "seconds": seconds, "samples_per_s": samples / seconds}


def training_rate(model: str, batch_size: int, size: int, threads: int | None, steps: int = 6) -> float:
    """Training images/s of `model` on a random batch (median step after 2 warm-up steps), as in `models`."""
    from .models import Runner, Settings

    settings = Settings(batch_size=batch_size, size=size, threads=threads)
    device = common.setup_torch(threads, "cpu")
    runner = Runner(model, settings, device)
    for _ in range(2):
        runner.train_step()
    times = [common.timed(runner.train_step, device) for _ in range(steps)]
    return batch_size / common.summarize(times)["median_s"]


def _parse_dirs(items: Sequence[str]) -> dict[str, str]:
    dirs = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--data_dir {item!r}: expected NAME=PATH, e.g. liver-voc=/data/ganzang.")
        name, path = item.split("=", 1)
        dirs[name] = path
    return dirs


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="demo,image-mask-folder",
                        help="comma-separated hfseg.data loader names (others need --data_dir)")
    parser.add_argument("--data_dir", action="append", default=[], help="NAME=PATH for a loader that reads files")
    parser.add_argument("--augment", default=",".join(AUGMENT_PRESETS),
                        help=f"comma-separated presets: {', '.join(AUGMENT_PRESETS)}")
    parser.add_argument("--workers", default="0,2", help="comma-separated DataLoader worker counts")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train_model", default="hfseg-attention-unet")
    parser.add_argument("--train_rate", type=float, default=None, help="training images/s (skip measuring it)")
    parser.add_argument("--synthetic_count", type=int, default=64)
    parser.add_argument("--synthetic_size", type=int, default=256)
    parser.add_argument("--cache_dir", default=None, help="datasets cache for the loaders (default: datasets')")
    parser.add_argument("--output", default=None, help="JSON path (default benchmarks/results/data.json)")
    return parser.parse_args(argv)


def markdown_report(report: dict[str, Any]) -> str:
    s, m = report["settings"], report["machine"]
    lines = [
        "### `data`", "",
        f"Batch {s['batch_size']}, resized to {s['size']}x{s['size']}, {s['batches']} batches timed after the first; "
        f"training rate {report['train_images_per_s']:.1f} images/s ({report['train_source']}). Machine: {m['cpu']} "
        f"({m['cpu_count']} cores), load average {common.fmt(m['load_average_1min'], 2)} at start.", "",
    ]
    headers = ["dataset", "augment", "workers", "first batch s", "samples/s", "headroom", "data share (0 workers)"]
    rows = [[f"`{r['dataset']}`", r["augment"], r["workers"], common.fmt(r["first_batch_s"], 2),
             common.fmt(r["samples_per_s"]), common.fmt(r["headroom"], 2) + ("" if r["headroom"] >= 1 else " (!)"),
             common.fmt(100 * r["data_share"], 0, " %") if r["workers"] == 0 else ""]
            for r in report["results"]]
    lines.append(common.markdown_table(headers, rows))
    lines += ["", "headroom = loader samples/s / training images/s (above 1: the loader keeps up); data share = the "
                  "part of a step spent loading when loading is serial (0 workers)."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    dirs = _parse_dirs(args.data_dir)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    augments = [a.strip() for a in args.augment.split(",") if a.strip()]
    unknown = [a for a in augments if a not in AUGMENT_PRESETS]
    if unknown:
        raise SystemExit(f"Unknown augment preset(s) {', '.join(unknown)}; available: {', '.join(AUGMENT_PRESETS)}.")
    workers = [int(w) for w in args.workers.split(",")]
    machine = common.machine_info(torch.device("cpu"))
    if args.train_rate is None:
        train_rate = training_rate(args.train_model, args.batch_size, args.size, args.threads)
        source = f"{args.train_model}, measured"
    else:
        train_rate, source = args.train_rate, "given"
    print(f"training rate: {train_rate:.1f} images/s ({source})")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            data_dir = dirs.get(name)
            if name == "image-mask-folder" and data_dir is None:
                data_dir = str(write_synthetic_folder(Path(tmp) / "synthetic", args.synthetic_count,
                                                      args.synthetic_size))
            elif name != "demo" and data_dir is None:
                print(f"Skipping {name}: it needs --data_dir {name}=PATH.")
                continue
            options = {"cache_dir": args.cache_dir} if args.cache_dir else {}
            if name == "image-mask-folder" and name not in dirs:
                options = {"cache_dir": os.path.join(tmp, "cache"), "id2label": SYNTHETIC_ID2LABEL}
            for augment, count in itertools.product(augments, workers):
                loader = recipe_loader(name, data_dir, AUGMENT_PRESETS[augment], count, args.batch_size, args.size,
                                       options)
                timing = time_loader(loader, args.batches)
                del loader
                row = {"dataset": name, "augment": augment, "workers": count, **timing,
                       "headroom": timing["samples_per_s"] / train_rate,
                       "data_share": train_rate / timing["samples_per_s"]}
                results.append(row)
                print(f"  {name:20s} {augment:6s} workers {count}: {timing['samples_per_s']:8.1f} samples/s "
                      f"(first batch {timing['first_batch_s']:.2f} s), headroom {row['headroom']:.2f}")
    settings = {k: getattr(args, k) for k in ("batches", "batch_size", "size", "threads", "train_model")}
    report = {"benchmark": "data", "settings": settings, "machine": machine, "train_images_per_s": train_rate,
              "train_source": source, "results": results,
              "data_never_bottleneck": all(r["headroom"] >= 1 for r in results if r["workers"] > 0)}
    output = Path(args.output) if args.output else common.RESULTS_DIR / "data.json"
    common.write_report(output, report, markdown_report(report))
    return report


if __name__ == "__main__":
    main()
