"""Files for the hfseg.io tests, made here with pydicom and nibabel: DICOM series cut from pydicom's CT_small.dcm
(known pixels and positions, shuffled file names), and the world coordinates the DICOM standard gives them."""

from __future__ import annotations

import copy
import gzip
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@dataclass
class Series:
    """A series written by `write_series`, in patient order (ascending along the slice normal)."""

    folder: Path
    uid: str
    stored: np.ndarray  # (rows, columns, slices) stored values
    positions: np.ndarray  # (slices, 3) ImagePositionPatient, LPS
    iop: np.ndarray
    spacing: tuple[float, float]  # PixelSpacing (between rows, between columns)
    sop_uids: list[str]
    files: list[Path] = field(default_factory=list)  # the file of each slice

    def world(self, column, row, k):
        """RAS+ coordinates of voxel (column, row, slice k), by the DICOM standard's equation (C.7.6.2.1.1)."""
        lps = (self.positions[k] + column * self.spacing[1] * self.iop[:3] + row * self.spacing[0] * self.iop[3:])
        return (LPS_TO_RAS @ np.r_[lps, 1.0])[:3]


def rotation(seed: int) -> np.ndarray:
    """A random right-handed rotation (columns: row cosine, column cosine, normal)."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def ct_small() -> pydicom.Dataset:
    return pydicom.dcmread(get_testdata_file("CT_small.dcm"))


def write_series(folder: Path, n: int = 5, iop=AXIAL, gap: float = 5.0, seed: int = 0, uid: str | None = None,
                 size: int | None = None, name: str = "IMG", pixels=None, **attributes) -> Series:
    """`n` slices of CT_small.dcm along the normal of `iop`, `gap` mm apart, each with its own random pixels (or
    `pixels[k]`), new SOPInstanceUIDs, one SeriesInstanceUID, shuffled InstanceNumbers and file names that do not
    follow the slice order. `size` (rows, or (rows, columns)) sets the slice size; `attributes` are set on every
    slice (a callable gets k)."""
    folder.mkdir(parents=True, exist_ok=True)
    base = ct_small()
    rng = np.random.default_rng(seed)
    uid = uid or generate_uid()
    iop = np.asarray(iop, dtype=np.float64)
    normal = np.cross(iop[:3], iop[3:])
    origin = np.array([float(v) for v in base.ImagePositionPatient])
    rows, cols = (size, size) if isinstance(size, int) else size or (int(base.Rows), int(base.Columns))
    file_order = rng.permutation(n)
    numbers = rng.permutation(n) + 1
    stack, positions, sop_uids, files = [], [], [], []
    for k in range(n):
        ds = copy.deepcopy(base)
        if pixels is not None:
            array = np.asarray(pixels[k], dtype=np.int16)
        else:
            array = rng.integers(0, 3000, size=(rows, cols)).astype(np.int16)
        ds.Rows, ds.Columns = array.shape
        ds.PixelData = array.tobytes()
        position = origin + k * gap * normal
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in iop]
        ds.SliceLocation = f"{position @ normal:.6f}"
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = uid
        ds.InstanceNumber = int(numbers[k])
        for keyword, value in attributes.items():
            setattr(ds, keyword, value(k) if callable(value) else value)
        path = folder / f"{name}{file_order[k]:04d}.dcm"
        ds.save_as(path)
        stack.append(array)
        positions.append(np.array([float(v) for v in ds.ImagePositionPatient]))
        sop_uids.append(str(ds.SOPInstanceUID))
        files.append(path)
    spacing = tuple(float(v) for v in pydicom.dcmread(files[0], stop_before_pixels=True).PixelSpacing)
    return Series(folder, uid, np.stack(stack, axis=-1), np.array(positions), iop, spacing, sop_uids, files)


PHILIPS_ENHANCED = Path(nib.__file__).parent / "nicom" / "tests" / "data" / "philips_mprage.dcm.gz"


def philips_subset(path: Path, count: int = 6, seed: int = 0, slopes=None) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` frames of nibabel's Philips Enhanced MR file (frames along the slice normal), stored in a
    random order with random pixels and, optionally, per-frame RescaleSlope `slopes[original frame]`; returns
    (stored_order, pixels): stored frame f is original frame stored_order[f] and holds pixels[f]."""
    with gzip.open(PHILIPS_ENHANCED) as packed:
        ds = pydicom.dcmread(packed)
    rng = np.random.default_rng(seed)
    stored_order = rng.permutation(count)
    groups = [copy.deepcopy(ds.PerFrameFunctionalGroupsSequence[int(i)]) for i in stored_order]
    if slopes is not None:
        for group, original in zip(groups, stored_order):
            group.PixelValueTransformationSequence[0].RescaleSlope = f"{slopes[original]:g}"
    ds.PerFrameFunctionalGroupsSequence = groups
    ds.NumberOfFrames = count
    pixels = rng.integers(0, 1000, size=(count, int(ds.Rows), int(ds.Columns))).astype(np.uint16)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path)
    return stored_order, pixels
