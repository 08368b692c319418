"""Training data whose random draws depend on (seed, epoch, sample index) only, so a resumed run is exact.

A run killed mid-epoch and resumed (`--resume latest`, accelerate's `skip_first_batches`) must see every later
item shuffled and augmented as the uninterrupted run did. torch's defaults do not give that: the transform draws
from the global RNG of the main process or of a worker, whose state depends on everything drawn before, and each
new `DataLoader` iterator draws its `_base_seed` (the workers' seeds) from the main process's global RNG.

```python
sampler = EpochSampler(len(train), seed=42)
loader = DataLoader(KeyedDataset(train.with_transform(transform), seed=42), sampler=sampler, batch_size=8,
                    generator=torch.Generator().manual_seed(42))
sampler.set_epoch(3)  # accelerate's `DataLoaderShard.set_epoch` reaches it too
```

`EpochSampler` yields `(epoch, index)` keys in an order drawn from `item_seed(seed, epoch)` (the same on every
process, so accelerate's `BatchSamplerShard` shares one permutation out), and `KeyedDataset` fetches item `index`
under `item_rng(seed, epoch, index)`. The epoch travels with each key, so it reaches persistent workers too, which
a `set_epoch` on the main process's dataset object would not. The loader gets its own `generator`, so creating an
iterator (a new epoch, a resumed epoch) draws nothing from the global RNG, which accelerate saves and restores
with each checkpoint for the model's own draws (dropout).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from ..data.transforms import item_rng, item_seed

__all__ = ["EpochSampler", "KeyedDataset"]


class EpochSampler(Sampler[tuple[int, int]]):
    """`(epoch, index)` keys of a dataset of `length` items: a permutation seeded by (seed, epoch), or in order.

    Iterating twice in one epoch gives the same keys (nothing is consumed); `set_epoch` moves to another epoch.
    """

    def __init__(self, length: int, seed: int, shuffle: bool = True) -> None:
        self.length, self.seed, self.shuffle, self.epoch = int(length), int(seed), shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(item_seed(self.seed, self.epoch))
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = range(self.length)
        epoch = self.epoch
        for index in order:
            yield epoch, index


class KeyedDataset(Dataset):
    """A map-style dataset read by `(epoch, index)` keys: item `index` of `dataset`, fetched (so transformed) under
    `item_rng(seed, epoch, index)`. A plain int `index` reads as epoch 0."""

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset, self.seed = dataset, int(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | Sequence[int]) -> Any:
        epoch, index = (0, key) if isinstance(key, int) else key
        with item_rng(self.seed, int(epoch), int(index)):
            return self.dataset[int(index)]

    def __getitems__(self, keys: Sequence[Any]) -> list[Any]:
        return [self[key] for key in keys]
