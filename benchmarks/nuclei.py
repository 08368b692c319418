"""`nuclei`: synthetic fluorescence tiles of touching nuclei with 16-bit instance masks, as an `image-mask-folder`.

```
python -m benchmarks.nuclei data/nuclei                      # 64 train + 16 validation tiles, 128 px, seed 0
python -m benchmarks.nuclei data/nuclei --size 256 --train 200 --seed 3
```

Each tile holds elliptical nuclei (semi-axes 3-9 px at 128 px, random orientation). About a third of them
(`touching`) are placed against an earlier one, at 75-100 % of the sum of their radii, so they touch or overlap
(more nuclei end up touching: the report gives the measured fraction); an overlapping pixel goes to the nucleus
whose own elliptical distance is smaller, which gives touching objects a shared border, as in real clusters.
Intensity: a per-nucleus brightness with a dome profile (dimmer towards the rim, so touching nuclei meet in a faint
valley), smooth texture, a smooth uneven background, Gaussian blur (the optics) and Gaussian plus shot-like noise.
Everything is drawn from `numpy.random.default_rng(seed)`: a seed gives the same files.

Layout written (`hfseg.data.load("image-mask-folder", root, instance_masks=True)` reads it):
```
root/train/images/tile_0000.png   (8-bit grey)      root/train/masks/tile_0000.png   (16-bit instance ids)
root/validation/images/...                          root/validation/masks/...
```
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage


def _ellipse_distance(shape: tuple[int, int], centre: np.ndarray, axes: np.ndarray, angle: float) -> np.ndarray:
    """Normalized elliptical distance of every pixel from `centre` (1 on the rim)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    dy, dx = yy - centre[0], xx - centre[1]
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    return np.sqrt((u / axes[0]) ** 2 + (v / axes[1]) ** 2)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return field / (field.std() + 1e-8)


def nuclei_tile(rng: np.random.Generator, size: int = 128, count: tuple[int, int] = (18, 32),
                touching: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    """One tile: the image (uint8, (size, size)) and its instance map (uint16, 0 = background, 1..N)."""
    scale = size / 128
    shape = (size, size)
    n = int(rng.integers(count[0], count[1] + 1) * scale**2)
    centres: list[np.ndarray] = []
    radii: list[float] = []
    best = np.full(shape, np.inf, dtype=np.float32)
    owner = np.zeros(shape, dtype=np.int32)
    profile = np.zeros(shape, dtype=np.float32)
    for _ in range(n):
        major = rng.uniform(5.0, 9.0) * scale
        axes = np.array([major, major * rng.uniform(0.6, 1.0)], dtype=np.float32)
        radius = float(axes.mean())
        if centres and rng.random() < touching:
            k = int(rng.integers(len(centres)))
            direction = rng.uniform(0, 2 * np.pi)
            distance = (radius + radii[k]) * rng.uniform(0.75, 1.0)
            centre = centres[k] + distance * np.array([np.sin(direction), np.cos(direction)], dtype=np.float32)
        else:
            centre = rng.uniform(0, size, size=2).astype(np.float32)
        # keep isolated placements from landing inside an existing nucleus
        if any(np.linalg.norm(centre - c) < 0.6 * (radius + r) for c, r in zip(centres, radii)):
            continue
        d = _ellipse_distance(shape, centre, axes, float(rng.uniform(0, np.pi)))
        take = (d <= 1.0) & (d < best)
        ident = len(centres) + 1
        owner[take], best[take] = ident, d[take]
        brightness = rng.uniform(0.45, 1.0)
        profile[take] = brightness * (1.0 - 0.45 * d[take] ** 2)
        centres.append(centre)
        radii.append(radius)
    # drop ids whose pixels were all taken by later nuclei (or lie outside the tile), then renumber
    ids = np.unique(owner)
    ids = ids[ids != 0]
    lookup = np.zeros(owner.max() + 1, dtype=np.uint16)
    lookup[ids] = np.arange(1, len(ids) + 1)
    instances = lookup[owner]
    texture = 1.0 + 0.12 * _smooth_noise(rng, shape, 1.5 * scale)
    background = 0.06 + 0.04 * _smooth_noise(rng, shape, 25 * scale)
    signal = ndimage.gaussian_filter(profile * texture, rng.uniform(0.8, 1.4) * scale) + background
    noisy = signal + rng.normal(0, 0.03, shape) + rng.normal(0, 1, shape) * 0.04 * np.sqrt(np.clip(signal, 0, None))
    image = np.clip(noisy * 255, 0, 255).astype(np.uint8)
    return image, instances


def write_nuclei_folder(root: str | Path, train: int = 64, validation: int = 16, size: int = 128, seed: int = 0,
                        touching: float = 0.35) -> Path:
    """Write `train` + `validation` tiles under `root` (see the module docstring); returns `root`."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("validation", validation)):
        images, masks = root / split / "images", root / split / "masks"
        images.mkdir(parents=True, exist_ok=True)
        masks.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, instances = nuclei_tile(rng, size, touching=touching)
            Image.fromarray(image).save(images / f"tile_{i:04d}.png")
            Image.fromarray(instances).save(masks / f"tile_{i:04d}.png")  # uint16 -> 16-bit PNG (mode I;16)
    return root


def touching_fraction(instances: np.ndarray) -> float:
    """Share of the nuclei of an instance map that touch another one (4-neighbourhood)."""
    ids = np.unique(instances)
    ids = ids[ids != 0]
    if not len(ids):
        return float("nan")
    touching = set()
    for a, b in ((instances[1:], instances[:-1]), (instances[:, 1:], instances[:, :-1])):
        pairs = (a != b) & (a > 0) & (b > 0)
        touching.update(a[pairs].tolist())
        touching.update(b[pairs].tolist())
    return len(touching) / len(ids)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="output folder")
    parser.add_argument("--train", type=int, default=64)
    parser.add_argument("--validation", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--touching", type=float, default=0.35, help="share of nuclei placed against another")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> Path:
    args = parse_args(argv)
    root = write_nuclei_folder(args.root, args.train, args.validation, args.size, args.seed, args.touching)
    print(f"Wrote {args.train} + {args.validation} tiles of {args.size} px to {root}")
    return root


if __name__ == "__main__":
    main()
