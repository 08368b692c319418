"""Writes the Space's example files from the `demo` dataset's validation split (run from the repository root).

- `brain_<z>.png`: three validation slices at different heights, 8-bit grey, as the dataset stores them.
- `brain_mr.dcm`: another validation slice as a 16-bit MR DICOM (values x 16, a 12-bit range) with `PixelSpacing`.
- `brain_volume.nii.gz`: five contiguous validation slices as a small 3D NIfTI (RAS+, voxel sizes in the header),
  stored so that its axial slices in hfseg's display convention (`hfseg.io.to_slices`) are the demo's images.

The demo slices are crops of `side` x `side` 1 mm voxels of the MNI template resized to 128 x 128, so their pixel
spacing is side / 128 mm; it is recomputed here from the dataset's rule.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from scipy.ndimage import binary_fill_holes

import hfseg.data
from hfseg.data.demo import _volumes
from hfseg.io import from_slices

HERE = Path(__file__).parent


def demo_spacing(size: int = 128, min_brain_fraction: float = 0.2, margin: int = 4) -> float:
    """The demo slices' pixel spacing in mm: the crop side (as `hfseg.data.demo.demo_slices` computes it) / size."""
    vol = _volumes()
    tissue = vol["gm"].astype(np.float32) / 255 + vol["wm"].astype(np.float32) / 255
    envelopes = [binary_fill_holes(np.rot90(tissue[:, :, z]) >= 0.1) for z in range(tissue.shape[2])]
    areas = np.array([e.sum() for e in envelopes])
    union = np.any([e for e, a in zip(envelopes, areas) if a >= min_brain_fraction * areas.max()], axis=0)
    rows, cols = np.nonzero(union)
    side = max(np.ptp(rows), np.ptp(cols)) + 1 + 2 * margin
    return side / size


def write_dicom(path: Path, pixels: np.ndarray, spacing: float) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientName, ds.PatientID = "MR", "MNI152^Template", "mni152"
    ds.StudyDate = datetime.date(2009, 1, 1).strftime("%Y%m%d")
    ds.SeriesDescription = "hfseg demo: MNI ICBM152 2009a T1, one axial slice"
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelSpacing = [f"{spacing:.6f}", f"{spacing:.6f}"]
    ds.SliceThickness = "1"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def main() -> None:
    validation = hfseg.data.load("demo")["validation"]
    images = [np.asarray(row["image"]) for row in validation]
    cases = validation["case_id"]
    spacing = demo_spacing(images[0].shape[0])
    n = len(images)
    for i in (n // 5, n // 2, 4 * n // 5):
        Image.fromarray(images[i]).save(HERE / f"brain_{i:02d}.png", optimize=True)
    write_dicom(HERE / "brain_mr.dcm", images[n // 3].astype(np.uint16) * 16, spacing)
    start = next(i for i in range(n - 5) if len(set(cases[i : i + 5])) == 1 and i > n // 3)
    affine = np.diag([spacing, spacing, 1.0, 1.0])  # RAS+
    slices = np.stack([images[i] for i in range(start, start + 5)])
    volume = from_slices(slices, affine, "axial")  # stored (x, y, z); its axial slices are the demo's images
    nib.save(nib.Nifti1Image(volume, affine), HERE / "brain_volume.nii.gz")
    print(f"spacing {spacing:.4f} mm; PNG slices {n // 5}, {n // 2}, {4 * n // 5}; DICOM {n // 3}; "
          f"NIfTI {start}-{start + 4}")


if __name__ == "__main__":
    main()
