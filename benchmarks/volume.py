"""`volume`: a trained 2D model on a whole brain volume, read as NIfTI and as a DICOM series, against the truth.

```
python -m benchmarks.volume --model runs/demo/best
```

The MNI ICBM152 2009a T1 template that nilearn ships (197 x 233 x 189 voxels of 1 mm, the `demo` dataset's source)
is written twice into a work folder: as a NIfTI copy, and as an MR DICOM series of axial slices with the template's
geometry (ImagePositionPatient / ImageOrientationPatient from its affine) and shuffled file names. Each is read with
`hfseg.io.read`, predicted with `hfseg.inference.predict` (slice by slice) and written with `write_mask` (NIfTI; the
series also as DICOM-SEG), and each step is timed. The masks are scored against the demo's label rule applied to the
template's full-resolution slices (no crop, no resize), per class and as mean foreground Dice, on the slices the
demo keeps (brain area at least `min_brain_fraction` of the largest) and on all slices. The two masks must agree
voxel for voxel in world space: the series is the same volume in another storage order.

`--slab N` keeps the N middle axial slices only (for a quick check).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import common

TEMPLATE = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


def template_path() -> Path:
    from importlib import resources

    return Path(str(resources.files("nilearn") / "datasets" / "data" / TEMPLATE))


def truth_slices(min_brain_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """(labels (Z, rows, columns) by the demo's rule on the template's display slices, kept slice mask (Z,))."""
    from scipy.ndimage import binary_fill_holes

    from hfseg.data.demo import template_slices

    slices = template_slices()
    gm, wm = slices["gm"] / 255.0, slices["wm"] / 255.0
    labels = np.zeros(gm.shape, np.uint8)
    for z, (g, w) in enumerate(zip(gm, wm)):
        label = np.where(binary_fill_holes(g + w >= 0.1), 1, 0)
        label[(g >= 0.5) & (g >= w)] = 2
        label[(w >= 0.5) & (w > g)] = 3
        labels[z] = label
    areas = (labels > 0).reshape(len(labels), -1).sum(1)
    return labels, areas >= min_brain_fraction * areas.max()


def write_inputs(folder: Path, slab: int | None = None, seed: int = 0) -> tuple[Path, Path, slice]:
    """The template as `t1.nii.gz` and as `series/` (shuffled names); `slab` keeps that many middle axial slices."""
    import nibabel as nib
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    from hfseg.io import from_slices, read_nifti, to_slices

    t1 = read_nifti(template_path(), dtype="stored")
    slices = to_slices(t1.array, t1.affine, "axial")
    index = [to_slices(i, t1.affine, "axial") for i in np.indices(t1.array.shape)]
    keep = slice(None) if not slab else slice((len(slices) - slab) // 2, (len(slices) - slab) // 2 + slab)
    # The slab as its own NIfTI: the kept display slices back in the template's storage order, its affine shifted.
    first = int(index[2][keep][0, 0, 0]) if slab else 0
    affine = t1.affine.copy()
    affine[:3, 3] = t1.affine[:3, :3] @ [0, 0, first] + t1.affine[:3, 3]
    nifti = folder / "t1.nii.gz"
    nib.save(nib.Nifti1Image(from_slices(slices[keep], affine, "axial"), affine), nifti)

    def lps(k: int, r: int, c: int) -> np.ndarray:
        ras = t1.affine @ np.array([index[a][k, r, c] for a in range(3)] + [1.0])
        return np.array([-ras[0], -ras[1], ras[2]])

    series = folder / "series"
    series.mkdir()
    study, series_uid, frame = generate_uid(), generate_uid(), generate_uid()
    ks = list(range(len(slices)))[keep]
    names = list(range(len(ks)))
    random.Random(seed).shuffle(names)
    for n, k in enumerate(ks):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(k), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series_uid, frame
        ds.Modality, ds.PatientName, ds.PatientID, ds.StudyDate = "MR", "MNI152^Template", "mni152", "20090101"
        ds.SeriesNumber, ds.InstanceNumber = 1, n + 1
        origin, row, col = lps(k, 0, 0), lps(k, 0, 1) - lps(k, 0, 0), lps(k, 1, 0) - lps(k, 0, 0)
        ds.ImagePositionPatient = [f"{v:.4f}" for v in origin]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in np.r_[row / np.linalg.norm(row), col / np.linalg.norm(col)]]
        ds.PixelSpacing = [f"{np.linalg.norm(col):.4f}", f"{np.linalg.norm(row):.4f}"]
        ds.SliceThickness = "1"
        ds.Rows, ds.Columns = slices[k].shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.ascontiguousarray(slices[k]).astype(np.uint16).tobytes()
        ds.save_as(series / f"IMG{names[n]:04d}.dcm", enforce_file_format=True)
    return nifti, series, keep


def dice(pred: np.ndarray, truth: np.ndarray, classes: Sequence[int]) -> list[float]:
    return [float(2 * ((pred == c) & (truth == c)).sum() / max((pred == c).sum() + (truth == c).sum(), 1))
            for c in classes]


def run(model_path: str, folder: Path, slab: int | None, batch_size: int, device: str) -> dict[str, Any]:
    from hfseg.inference import load_model, predict
    from hfseg.io import read, to_slices, write_mask

    model, processor = load_model(model_path, device=device)
    names = {int(k): v for k, v in model.config.id2label.items()}
    start = time.perf_counter()
    nifti, series, keep = write_inputs(folder, slab)
    truth, kept = truth_slices()
    truth, kept = truth[keep], kept[keep]
    rows, masks = [], {}
    for name, path, formats in (("nifti", nifti, ("nifti",)), ("dicom series", series, ("nifti", "dicom-seg"))):
        t0 = time.perf_counter()
        image = read(path)
        t1 = time.perf_counter()
        labels = predict(model, processor, image, batch_size=batch_size, progress=False)
        t2 = time.perf_counter()
        for fmt in formats:
            write_mask(labels, image, folder / f"{name.replace(' ', '_')}_mask{'.dcm' if fmt == 'dicom-seg' else '.nii.gz'}",
                       format=fmt, id2label=names)
        t3 = time.perf_counter()
        pred = to_slices(labels, image.affine, "axial")
        masks[name] = pred
        kept_dice, all_dice = dice(pred[kept], truth[kept], (1, 2, 3)), dice(pred, truth, (1, 2, 3))
        rows.append({"input": name, "shape": list(image.array.shape), "read_s": round(t1 - t0, 2),
                     "predict_s": round(t2 - t1, 2), "write_s": round(t3 - t2, 2), "formats": list(formats),
                     "dice_kept": [round(d, 4) for d in kept_dice], "mean_dice_kept": round(float(np.mean(kept_dice)), 4),
                     "dice_all": [round(d, 4) for d in all_dice], "mean_dice_all": round(float(np.mean(all_dice)), 4)})
    return {"model": model_path, "classes": [names.get(c, str(c)) for c in (1, 2, 3)],
            "slices": int(len(truth)), "kept_slices": int(kept.sum()),
            "masks_agree": bool(np.array_equal(masks["nifti"], masks["dicom series"])),
            "setup_s": round(time.perf_counter() - start - sum(r["read_s"] + r["predict_s"] + r["write_s"]
                                                               for r in rows), 2), "results": rows}


def markdown(report: dict[str, Any]) -> str:
    lines = [f"Model `{report['model']}`, {report['slices']} axial slices ({report['kept_slices']} kept by the demo's "
             f"rule); the NIfTI and DICOM-series masks agree voxel for voxel: {report['masks_agree']}. "
             f"Machine: {report['machine'].get('cpu')} ({report['machine'].get('cpu_count')} cores), "
             f"{report['machine'].get('torch_threads')} threads, load average "
             f"{report['machine'].get('load_average_1min'):.1f} at the end; torch {report['versions'].get('torch')}.",
             "",
             "| input | read s | predict s | write s | Dice " + " | Dice ".join(report["classes"]) +
             " (kept) | mean fg Dice kept | mean fg Dice all |",
             "|---|---|---|---|" + "---|" * len(report["classes"]) + "---|---|"]
    for row in report["results"]:
        lines.append(f"| {row['input']} | {row['read_s']} | {row['predict_s']} | {row['write_s']} | "
                     + " | ".join(f"{d:.3f}" for d in row["dice_kept"])
                     + f" | {row['mean_dice_kept']:.3f} | {row['mean_dice_all']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a demo-trained model folder, e.g. runs/demo/best")
    parser.add_argument("--slab", type=int, default=None, help="keep this many middle axial slices")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", default="benchmarks/results/volume.json")
    args = parser.parse_args(argv)
    device = common.setup_torch(args.threads, args.device)
    with tempfile.TemporaryDirectory() as work:
        report = run(args.model, Path(work), args.slab, args.batch_size, str(device))
    report["machine"] = common.machine_info(device)
    report["versions"] = report["machine"]["versions"]
    path = common.write_json(args.output, report)
    path.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
