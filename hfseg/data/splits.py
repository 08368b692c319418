"""Seeded, leak-free splits: whole groups (patients, cases, volumes) go to one split."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def group_split(groups: Sequence[str], validation_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of the train and validation items, with every group entirely on one side.

    The sorted unique groups are shuffled with `seed` and the first `ceil(fraction * n_groups)` go to validation,
    keeping at least one group on each side when there are two or more (a single group all trains). The same groups and seed always give the same split.
    """
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}.")
    unique = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(unique))
    n_val = 0
    if validation_fraction > 0 and len(unique) >= 2:  # a single group cannot be split: all of it trains
        n_val = min(max(math.ceil(validation_fraction * len(unique)), 1), len(unique) - 1)
    held_out = {unique[i] for i in order[:n_val]}
    train = [i for i, g in enumerate(groups) if g not in held_out]
    validation = [i for i, g in enumerate(groups) if g in held_out]
    return train, validation
