"""`hfseg datasets`: the dataset names `hfseg.data.load` (and `--dataset`) accept, with what each one is."""

from __future__ import annotations


def print_datasets() -> None:
    from ..data import available, dataset_modality

    print("datasets (hfseg.data.load(name, data_dir, ...); --dataset NAME --data_dir DIR):")
    for name, description in available().items():
        modality = dataset_modality(name)
        print(f"  {name:26s} {f'[{modality}] ' if modality else ''}{description}")
