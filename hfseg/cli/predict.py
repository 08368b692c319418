"""`hfseg predict`: scans and pictures in, mask files aligned with them out, and a CSV of class volumes.

    hfseg predict --model runs/demo/best brain.nii.gz --output-dir masks
    hfseg predict --model runs/demo/best dicom/series/ --format nifti dicom-seg --output-dir masks
    hfseg predict --model runs/demo/best pngs/ --output-dir masks --tta

Each INPUT is a picture (PNG, JPEG, TIFF, BMP), a DICOM file, a folder holding one DICOM series, a NIfTI file, or a
folder of pictures / NIfTI files (each one an input). Volumes are predicted slice by slice with the 2D model
(`--plane`, default axial: see `hfseg.io.orientation`). `--format auto` writes a PNG for a picture and a NIfTI
(`.nii.gz`, the scan's shape and affine) for DICOM and NIfTI inputs; `dicom-seg` writes a DICOM Segmentation
referencing a DICOM source; several formats can be given. Outputs are named after their input
(`<name>_mask.png`, `<name>_mask.nii.gz`, `<name>_seg.dcm`), and `volumes.csv` lists each input's class volumes
in mm³ (areas in mm² for 2D images; voxel / pixel counts when the file gives no spacing).

A bad input (corrupt, unsupported, 4D without `--volume`, several series in one folder) is reported in one line
naming the file and the reason; the other inputs are still written, and the exit code is 1. `--debug` shows
tracebacks.
"""

from __future__ import annotations

import argparse
import csv
import sys
import traceback
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

DESCRIPTION = __doc__.split("\n\n")[0]
EPILOG = "\n\n".join(__doc__.split("\n\n")[1:])
FORMAT_CHOICES = ("auto", "png", "nifti", "dicom-seg")
_SUFFIX = {"png": "_mask.png", "nifti": "_mask.nii.gz", "dicom-seg": "_seg.dcm"}


def add_predict_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="files, DICOM series folders or folders of files")
    parser.add_argument("--model", required=True, help="a trained model: a run folder (runs/demo/best) or Hub id")
    parser.add_argument("--output-dir", "--output_dir", dest="output_dir", required=True, help="where masks go")
    parser.add_argument("--format", nargs="+", default=["auto"], choices=FORMAT_CHOICES,
                        help="mask format(s): auto (PNG for pictures, NIfTI for DICOM and NIfTI), png, nifti, "
                             "dicom-seg (default: auto)")
    parser.add_argument("--plane", "--axis", dest="plane", default=None, type=_plane,
                        help="how volumes are sliced for the 2D model: axial (default), coronal, sagittal, or a "
                             "storage axis 0, 1, 2")
    parser.add_argument("--volume", type=int, default=None, help="the volume of a 4D NIfTI")
    parser.add_argument("--series", default=None, help="the SeriesInstanceUID to read from a folder of several")
    parser.add_argument("--tta", action="store_true", help="average predictions over flips")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: CUDA when available)")
    parser.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=8,
                        help="slices per forward pass (default 8)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="run model code shipped with a Hub checkpoint (off by default)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def _plane(value: str) -> str | int:
    """`--plane`: axial, coronal, sagittal or a storage axis 0-2 (anything else exits with code 2)."""
    from ..io import PLANES

    text = value.strip().lower()
    if text in ("0", "1", "2"):
        return int(text)
    if text not in PLANES:
        raise argparse.ArgumentTypeError(f"{value!r}: choose {', '.join(PLANES)} or a storage axis 0, 1, 2")
    return text


def _formats(requested: list[str], image: Any) -> tuple[list[str], list[str]]:
    """(formats to write, notes on requested formats that do not apply to this input). A format that cannot hold
    this input's mask (PNG for a volume, NIfTI for a picture, DICOM-SEG for a non-DICOM source) is skipped with a
    note when another format is written, and is an error when it is the only one."""
    formats, skipped = [], []
    for name in requested:
        name = ("png" if image.kind == "picture" else "nifti") if name == "auto" else name
        fits = {"png": not image.is_volume, "nifti": image.affine is not None, "dicom-seg": image.kind == "dicom"}
        if name in formats or name in skipped:
            continue
        (formats if fits[name] else skipped).append(name)
    if not formats:
        from ..io import MedicalFileError

        need = {"png": "a 2D image", "nifti": "a scan with geometry (DICOM or NIfTI)", "dicom-seg": "a DICOM source"}
        raise MedicalFileError(f"{image.name}: {' / '.join(skipped)} needs {' / '.join(need[s] for s in skipped)}; "
                               "choose another --format (auto writes PNG for pictures, NIfTI for scans).")
    return formats, [f"no {name} for {image.name}: it is not {'a DICOM source' if name == 'dicom-seg' else 'suitable'}"
                     for name in skipped]


def _reason(err: BaseException, path: Path) -> str:
    """The error's message, prefixed with the input unless it already names it."""
    text = str(err) or type(err).__name__
    return text if str(path) in text or path.name in text else f"{path}: {text}"


def _unique_stem(stem: str, seen: dict[str, int]) -> str:
    count = seen.get(stem, 0)
    seen[stem] = count + 1
    return stem if count == 0 else f"{stem}_{count + 1}"


def class_volumes(labels: np.ndarray, image: Any, id2label: Mapping[int, str]) -> tuple[str, dict[str, float]]:
    """(unit, {class name: volume}) of a label map: mm³ for volumes, mm² for 2D images, voxels without spacing."""
    unit_size = image.voxel_volume()
    unit = ("mm3" if image.is_volume else "mm2") if unit_size is not None else ("voxels" if image.is_volume else
                                                                                 "pixels")
    counts = np.bincount(labels.ravel().astype(np.int64), minlength=max(len(id2label), 2))
    names = dict(id2label) if len(id2label) > 1 else {0: "background", 1: next(iter(id2label.values()), "foreground")}
    return unit, {names.get(i, f"class_{i}"): float(c) * (unit_size or 1.0) for i, c in enumerate(counts)}


def _id2label(model: Any) -> dict[int, str]:
    labels = getattr(getattr(model, "config", None), "id2label", None) or {}
    return {int(k): str(v) for k, v in labels.items()}


def run_predict(args: argparse.Namespace) -> int:
    """Predict every input (see the module docstring); returns the exit code (0, or 1 when any input failed)."""
    from tqdm.auto import tqdm

    from ..inference import check_input, is_classifier, load_model, model_name, predict
    from ..io import MedicalFileError, list_inputs, read, write_mask

    output_dir = Path(args.output_dir)
    try:
        model, processor = load_model(args.model, device=args.device, trust_remote_code=args.trust_remote_code)
    except (OSError, ValueError) as err:
        if args.debug:
            raise
        hint = ""
        if "trust_remote_code" in str(err) and not args.trust_remote_code:
            hint = (" (this model runs code shipped with it: add --trust-remote-code only if you trust that code, "
                    "since it runs on this machine)")
        print(f"error: cannot load the model {args.model}: {err}{hint}", file=sys.stderr)
        return 1
    if is_classifier(model):
        print(f"error: {args.model} is an image classifier; hfseg predict needs a segmentation model.",
              file=sys.stderr)
        return 1
    id2label = _id2label(model)
    name = model_name(args.model)
    plane = args.plane
    inputs = list_inputs(args.inputs)
    rows, failed, seen, skipped_formats = [], 0, {}, 0
    output_dir.mkdir(parents=True, exist_ok=True)
    for path in tqdm(inputs, desc="inputs", unit="input", disable=None):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                image = read(path, volume=args.volume, series=args.series)
                notes = check_input(processor, image, image.name)
                labels = predict(model, processor, image, plane=plane, batch_size=args.batch_size,
                                 tta_flip=args.tta, warn=False)
                formats, skipped = _formats(args.format, image)
                skipped_formats += len(skipped)
                stem = _unique_stem(image.stem, seen)
                written, write_errors = [], []
                for fmt in formats:  # each format on its own: one that fails does not lose the others
                    try:
                        written.append(write_mask(labels, image, output_dir / f"{stem}{_SUFFIX[fmt]}", format=fmt,
                                                  id2label=id2label, model_name=name))
                    except (MedicalFileError, ValueError, OSError) as err:
                        if args.debug:
                            traceback.print_exc()
                        write_errors.append(_reason(err, path))
            notes += [str(w.message) for w in caught if not issubclass(w.category, (DeprecationWarning, FutureWarning))]
            for note in dict.fromkeys(notes):
                print(f"warning: {_reason(note, path)}", file=sys.stderr)
            for error in write_errors:
                print(f"error: {error}", file=sys.stderr)
            failed += bool(write_errors)
            unit, volumes = class_volumes(labels, image, id2label)
            rows.append({"input": str(path), "status": "error" if write_errors else "ok",
                         "outputs": ";".join(map(str, written)), "unit": unit,
                         "shape": "x".join(map(str, image.array.shape[:3])), "modality": image.modality or "",
                         "notes": " | ".join(dict.fromkeys(write_errors + notes + skipped)),
                         **{k: round(v, 3) for k, v in volumes.items()}})
        except (MedicalFileError, ValueError, OSError) as err:
            failed += 1
            if args.debug:
                traceback.print_exc()
            reason = _reason(err, path)
            print(f"error: {reason}", file=sys.stderr)
            rows.append({"input": str(path), "status": "error", "notes": reason})
        except Exception as err:  # noqa: BLE001  (a bug, not a bad file: the other inputs still run)
            failed += 1
            if args.debug:
                traceback.print_exc()
            print(f"error: {path}: unexpected {type(err).__name__}: {err} (rerun with --debug for the traceback)",
                  file=sys.stderr)
            rows.append({"input": str(path), "status": "error", "notes": f"{type(err).__name__}: {err}"})
    _write_csv(output_dir / "volumes.csv", rows)
    done = len(inputs) - failed
    if skipped_formats:
        print(f"note: {skipped_formats} requested output(s) did not apply to their input (e.g. DICOM-SEG for a "
              "non-DICOM input) and were skipped; see the notes column of volumes.csv", file=sys.stderr)
    print(f"{done} of {len(inputs)} input(s) written to {output_dir}" + (f", {failed} failed" if failed else "")
          + f"; class volumes in {output_dir / 'volumes.csv'}")
    return 1 if failed else 0


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = ["input", "status", "outputs", "shape", "modality", "unit"]
    for row in rows:
        columns += [key for key in row if key not in columns and key != "notes"]
    columns.append("notes")
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
