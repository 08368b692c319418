"""`fuzz`: hfseg's readers on mutated real files, for a bounded time; every case must end in a read image or in
`hfseg.io.MedicalFileError`, within bounded time and memory.

```
python -m benchmarks.fuzz --minutes 5              # writes benchmarks/results/fuzz.json and fuzz.md
python -m benchmarks.fuzz --cases 200 --seed 1
```

The inputs are real files (pydicom's and nibabel's bundled test data, pictures written with Pillow), mutated by
truncation at a random offset, random bit flips, byte overwrites in the header, edits of header fields (DICOM
elements through pydicom, NIfTI header fields through nibabel, PNG IHDR sizes) and files whose header claims a
huge size. Each case is read by `hfseg.io.read` and by the Space's `hfseg.app.uploads.read_upload`. A case is a
failure when a reader raises anything else, takes longer than `--case_seconds` or allocates more than
`--case_mb` (tracemalloc peak, which counts numpy's buffers). Failing files are kept in `--keep` for replay.
The mutations are plain functions of their parameters, so `tests/io/test_fuzz.py` draws the same ones with
hypothesis.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import io
import logging
import os
import platform
import random
import struct
import tempfile
import time
import tracemalloc
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DICOM_SOURCES = ("CT_small.dcm", "MR_small.dcm", "rtdose.dcm", "SC_rgb_rle.dcm", "MR_small_RLE.dcm")
NIFTI_SOURCES = ("anatomical.nii", "reoriented_anat_moved.nii", "functional.nii", "standard.nii.gz",
                 "example_nifti2.nii.gz")
DICOM_FIELDS = ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "SamplesPerPixel",
                "NumberOfFrames", "PhotometricInterpretation", "RescaleSlope", "RescaleIntercept", "PixelSpacing",
                "ImageOrientationPatient", "ImagePositionPatient", "PixelPaddingValue", "TransferSyntaxUID",
                "PixelData")
DICOM_VALUES = (0, 1, 3, 7, 8, 16, 17, 32, 255, 65535, "", "nan", "inf", "-1", "1e309", "abc", "MONOCHROME1",
                "PALETTE COLOR", "YBR_FULL_422", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.50", "1.2.3")
NIFTI_FIELDS = ("dim", "datatype", "bitpix", "vox_offset", "pixdim", "scl_slope", "scl_inter", "qform_code",
                "sform_code", "srow_x", "magic", "extension")
NIFTI_VALUES = (0, 1, -1, 2, 3, 4, 7, 8, 16, 64, 255, 512, 1536, 2304, 32767, 1e30, float("nan"), float("inf"))


# -- sources -----------------------------------------------------------------------------------------------------
def _picture(fmt: str, array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


@functools.cache
def sources() -> dict[str, bytes]:
    """The unmutated files by name (`.dcm`, `.nii`, `.nii.gz`, `.png`, `.tif`, `.bmp`, `.jpg`): pydicom's and
    nibabel's bundled test files that are installed, and small pictures written with Pillow."""
    import nibabel.testing
    from pydicom.data import get_testdata_file

    found: dict[str, bytes] = {}
    for name in DICOM_SOURCES:
        path = get_testdata_file(name, download=False)
        if path:
            found[name] = Path(path).read_bytes()
    for name in NIFTI_SOURCES:
        path = Path(nibabel.testing.data_path) / name
        if path.is_file():
            found[name] = path.read_bytes()
    grey = (np.arange(48 * 40) % 251).astype(np.uint8).reshape(48, 40)
    found["grey.png"] = _picture("PNG", grey)
    found["grey16.png"] = _picture("PNG", (np.arange(30 * 20) * 97 % 65535).astype(np.uint16).reshape(30, 20))
    found["rgb.png"] = _picture("PNG", np.stack([grey, grey[::-1], 255 - grey], -1))
    found["grey.tif"] = _picture("TIFF", grey)
    found["grey.bmp"] = _picture("BMP", grey)
    found["grey.jpg"] = _picture("JPEG", grey)
    return found


# -- mutations (plain functions of their parameters) ---------------------------------------------------------------
def truncate(data: bytes, fraction: float) -> bytes:
    """The first `fraction` of the file (at least one byte, at most all but one)."""
    return data[: min(max(1, int(len(data) * fraction)), len(data) - 1)]


def flip_bits(data: bytes, flips: Sequence[tuple[float, int]]) -> bytes:
    """`data` with bit `bit` of the byte at `position` (a fraction of the length) flipped, for each flip."""
    out = bytearray(data)
    for position, bit in flips:
        out[min(int(position * len(out)), len(out) - 1)] ^= 1 << (bit % 8)
    return bytes(out)


def overwrite_header(data: bytes, edits: Sequence[tuple[int, int]], span: int = 1024) -> bytes:
    """`data` with byte `offset % span` (the header region) set to `value`, for each edit."""
    out = bytearray(data)
    for offset, value in edits:
        out[offset % min(span, len(out))] = value & 0xFF
    return bytes(out)


def edit_dicom(data: bytes, edits: Sequence[tuple[str, Any]]) -> bytes | None:
    """The DICOM file with each (keyword, value) set through pydicom (`PixelData` truncated to `value` bytes when
    an int, `TransferSyntaxUID` in the file meta); None when pydicom cannot write the result."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns of every value that does not fit its element's VR
        _set_dicom(ds, edits)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.save_as(buffer, enforce_file_format=False)
    except Exception:  # noqa: BLE001  (a value pydicom cannot encode: no case)
        return None
    return buffer.getvalue()


def _set_dicom(ds: Any, edits: Sequence[tuple[str, Any]]) -> None:
    for keyword, value in edits:
        try:
            if keyword == "TransferSyntaxUID":
                ds.file_meta.TransferSyntaxUID = str(value)
            elif keyword == "PixelData":
                ds.PixelData = ds.PixelData[: int(value) if isinstance(value, int) else 0]
            elif keyword in ("PixelSpacing", "ImageOrientationPatient", "ImagePositionPatient"):
                count = {"PixelSpacing": 2, "ImagePositionPatient": 3}.get(keyword, 6)
                setattr(ds, keyword, [str(value) or "0"] * count)
            else:
                setattr(ds, keyword, value)
        except (TypeError, ValueError, OverflowError, struct.error):
            continue


def edit_nifti(data: bytes, edits: Sequence[tuple[str, int, Any]], compress: bool | None = None) -> bytes:
    """The NIfTI file with each (field, index, value) set in its header through nibabel (`extension`: an
    extension flag and one extension claiming `value` bytes); gzip-compressed when `compress` (default: as given)."""
    import nibabel as nib

    packed = data[:2] == b"\x1f\x8b"
    raw = bytearray(gzip.decompress(data) if packed else data)
    klass = nib.Nifti2Header if raw[:4] in (b"\x1c\x02\x00\x00", b"\x00\x00\x02\x1c") else nib.Nifti1Header
    header = klass.from_fileobj(io.BytesIO(bytes(raw)), check=False)
    extension = None
    for field, index, value in edits:
        try:
            if field == "extension":
                extension = int(value) if isinstance(value, (int, float)) and value == value else 2 ** 31 - 1
            elif field == "magic":
                header["magic"] = (b"n+1", b"ni1", b"n+2", b"xyz")[index % 4]
            elif header[field].shape:
                values = header[field].copy()
                values[index % values.shape[0]] = value
                header[field] = values
            else:
                header[field] = value
        except (TypeError, ValueError, OverflowError):
            continue
    block = header.binaryblock
    raw[: len(block)] = block
    if extension is not None:
        size = len(block)
        raw[size:size + 4] = b"\x01\0\0\0"
        raw[size + 4:size + 12] = struct.pack(header.endianness + "ii", max(-2 ** 31, min(extension, 2 ** 31 - 1)), 4)
    out = bytes(raw)
    return gzip.compress(out, mtime=0) if (packed if compress is None else compress) else out


def png_claiming(width: int, height: int, depth: int = 8, colour: int = 0, rows: int = 4) -> bytes:
    """A PNG whose header declares `width` x `height` pixels but which holds `rows` short rows of data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\0" + bytes(range(16)) for _ in range(rows)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


# -- files that claim a huge size --------------------------------------------------------------------------------
def huge_cases() -> dict[str, bytes]:
    """Small files whose headers declare huge images, by name (the suffix is the type)."""
    import nibabel as nib

    def nifti(shape: tuple[int, ...], dtype=np.int16) -> bytes:
        header = nib.Nifti1Header()
        header.set_data_shape(shape)
        header.set_data_dtype(dtype)
        header["vox_offset"] = 352
        return header.binaryblock + b"\0" * 4 + b"\0" * 64

    cases: dict[str, bytes] = {}
    big = nifti((32767, 32767, 32767))
    cases["nifti-32767-cubed.nii"] = big
    cases["nifti-32767-cubed.nii.gz"] = gzip.compress(big, mtime=0)
    cases["nifti-1g-voxels-in-100-bytes.nii.gz"] = gzip.compress(nifti((1024, 1024, 1000), np.uint8), mtime=0)
    small = nifti((2, 2, 2))
    cases["nifti-extension-2gb.nii.gz"] = edit_nifti(gzip.compress(small), [("vox_offset", 0, 368),
                                                                          ("extension", 0, 2 ** 31 - 16)])
    cases["nifti-vox-offset-1e30.nii"] = edit_nifti(small, [("vox_offset", 0, 1e30)])
    ct = sources().get("CT_small.dcm")
    if ct is not None:
        cases["dicom-65535-squared.dcm"] = edit_dicom(ct, [("Rows", 65535), ("Columns", 65535)]) or b""
        cases["dicom-billion-frames.dcm"] = edit_dicom(ct, [("NumberOfFrames", "1000000000")]) or b""
    rle = sources().get("MR_small_RLE.dcm")
    if rle is not None:
        cases["dicom-rle-16k-frames.dcm"] = edit_dicom(rle, [("NumberOfFrames", "16384")]) or b""
    cases["png-60000-squared.png"] = png_claiming(60000, 60000)
    cases["png-30000-squared-16bit.png"] = png_claiming(30000, 30000, depth=16)
    return {name: data for name, data in cases.items() if data}


# -- running one case --------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What one reader did with one file: `"read"`, `"refused"` (a `MedicalFileError`) or `"failed"` (any other
    exception: `error` names it), in `seconds`, with `peak_bytes` allocated (tracemalloc)."""

    result: str
    seconds: float
    peak_bytes: int
    error: str | None = None


def readers() -> dict[str, Callable[[Path], Any]]:
    """`hfseg.io.read` and the Space's `read_upload`, by name."""
    from hfseg.app.uploads import read_upload
    from hfseg.io import read

    return {"read": read, "upload": read_upload}


class FallbackLog(logging.Handler):
    """The warnings `hfseg.app.uploads` logs when a reader raised something other than `MedicalFileError` (the
    upload path turns it into an `UploadError`, but it is a reader's bug all the same)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def run_case(reader: Callable[[Path], Any], path: Path) -> Outcome:
    """`reader(path)` timed and traced; nothing but `MedicalFileError` is expected (nor a logged fallback)."""
    from hfseg.io import MedicalFileError

    records = FallbackLog()
    uploads = logging.getLogger("hfseg.app.uploads")
    uploads.addHandler(records)
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader(path)
        result, error = "read", None
    except MedicalFileError:
        result, error = "refused", None
    except Exception as err:  # noqa: BLE001  (what the fuzzer looks for)
        result, error = "failed", f"{type(err).__name__}: {str(err)[:200]}"
    finally:
        uploads.removeHandler(records)
    if records.records and error is None:
        cause = records.records[0].exc_info
        result, error = "failed", (f"{type(cause[1]).__name__} (caught by the upload path): {str(cause[1])[:200]}"
                                   if cause else records.records[0].getMessage())
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    if not tracing:
        tracemalloc.stop()
    return Outcome(result, seconds, peak, error)


def random_case(rng: random.Random) -> tuple[str, bytes] | None:
    """One mutated file (name, bytes) drawn with `rng`, or None when the drawn edit cannot be written."""
    found = sources()
    name = rng.choice(sorted(found))
    data = found[name]
    how = rng.choice(["truncate", "flip", "header", "fields", "fields"])
    if how == "truncate":
        return f"truncate-{name}", truncate(data, rng.random())
    if how == "flip":
        flips = [(rng.random(), rng.randrange(8)) for _ in range(rng.choice([1, 4, 32]))]
        return f"flip-{name}", flip_bits(data, flips)
    if how == "header":
        return f"header-{name}", overwrite_header(data, [(rng.randrange(1024), rng.randrange(256))
                                                         for _ in range(rng.choice([1, 4]))])
    count = rng.randint(1, 3)
    if name.endswith(".dcm"):
        edited = edit_dicom(data, [(rng.choice(DICOM_FIELDS), rng.choice(DICOM_VALUES)) for _ in range(count)])
        return (f"fields-{name}", edited) if edited else None
    if ".nii" in name:
        edits = [(rng.choice(NIFTI_FIELDS), rng.randrange(8), rng.choice(NIFTI_VALUES)) for _ in range(count)]
        compress = rng.random() < 0.5
        return f"fields-{name.split('.')[0]}{'.nii.gz' if compress else '.nii'}", edit_nifti(data, edits, compress)
    width, height = rng.choice([(60000, 60000), (0, 4), (2 ** 31 - 1, 1), (40, 48), (100000, 3)])
    return f"ihdr-{name.split('.')[0]}.png", png_claiming(width, height, rng.choice([1, 8, 16]), rng.choice([0, 2, 6]))


# -- the run -----------------------------------------------------------------------------------------------------
def fuzz(seconds: float, seed: int = 0, max_cases: int | None = None, case_seconds: float = 10.0,
         case_mb: float = 256.0, keep: Path | None = None, workdir: Path | None = None) -> dict[str, Any]:
    """Run the huge-header cases, then random mutations until `seconds` pass (or `max_cases`); returns counts by
    reader and outcome, the failures, the slowest case and the largest allocation."""
    logging.getLogger("nibabel").setLevel(logging.CRITICAL)  # nibabel logs every odd header field
    rng = random.Random(seed)
    run_readers = readers()
    counts: Counter = Counter()
    failures: list[dict[str, Any]] = []
    slowest = {"seconds": 0.0}
    largest = {"peak_mb": 0.0}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=workdir) as folder:
        queue = list(huge_cases().items())
        index = 0
        tracemalloc.start()
        try:
            while queue or (time.perf_counter() - start < seconds and (max_cases is None or index < max_cases)):
                case = queue.pop(0) if queue else random_case(rng)
                if case is None:
                    continue
                name, data = case
                path = Path(folder) / f"{index:06d}-{name}"
                path.write_bytes(data)
                index += 1
                bad = False
                for reader_name, reader in run_readers.items():
                    outcome = run_case(reader, path)
                    peak_mb = outcome.peak_bytes / 1024 ** 2
                    problem = outcome.error or (f"took {outcome.seconds:.1f} s" if outcome.seconds > case_seconds
                                                else f"allocated {peak_mb:.0f} MB" if peak_mb > case_mb else None)
                    counts[(reader_name, "failed" if problem else outcome.result)] += 1
                    if problem:
                        bad = True
                        failures.append({"case": path.name, "reader": reader_name, "problem": problem})
                    if outcome.seconds > slowest["seconds"]:
                        slowest = {"seconds": round(outcome.seconds, 3), "case": path.name, "reader": reader_name}
                    if peak_mb > largest["peak_mb"]:
                        largest = {"peak_mb": round(peak_mb, 1), "case": path.name, "reader": reader_name}
                if bad and keep is not None:
                    keep.mkdir(parents=True, exist_ok=True)
                    (keep / path.name).write_bytes(data)
                path.unlink()
        finally:
            tracemalloc.stop()
    return {"cases": index, "seconds": round(time.perf_counter() - start, 1), "seed": seed,
            "outcomes": {f"{r}/{o}": n for (r, o), n in sorted(counts.items())}, "failures": failures[:50],
            "failure_count": len(failures), "slowest": slowest, "largest_allocation": largest}


def markdown(report: dict[str, Any]) -> str:
    rows = "\n".join(f"| {key} | {count} |" for key, count in report["outcomes"].items())
    slow, big = report["slowest"], report["largest_allocation"]
    lines = [f"# Fuzzed readers ({report['cases']} cases, {report['seconds']} s, seed {report['seed']})", "",
             f"Machine: {report['machine']}; {report['versions']}; load average {report['load_average']}.", "",
             "| reader / outcome | cases |", "|---|---|", rows, "",
             f"Failures: {report['failure_count']}. Slowest case: {slow.get('case')} ({slow.get('reader')}, "
             f"{slow['seconds']} s). Largest allocation (tracemalloc peak): {big.get('case')} ({big.get('reader')}, "
             f"{big['peak_mb']} MB)."]
    lines += [f"- {f['case']} ({f['reader']}): {f['problem']}" for f in report["failures"][:20]]
    return "\n".join(lines) + "\n"


def _versions() -> str:
    from importlib.metadata import version

    return ", ".join(f"{p} {version(p)}" for p in ("pydicom", "nibabel", "pillow", "numpy"))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--cases", type=int, default=None,
                        help="stop after this many cases (the huge-header ones included)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--case_seconds", type=float, default=10.0)
    parser.add_argument("--case_mb", type=float, default=256.0)
    parser.add_argument("--keep", type=Path, default=None, help="folder for the files that fail")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "fuzz.json")
    args = parser.parse_args(argv)
    report = fuzz(args.minutes * 60, args.seed, args.cases, args.case_seconds, args.case_mb, args.keep)
    from .common import cpu_model

    report["machine"] = f"{cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    report["versions"] = _versions()
    report["load_average"] = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    from .common import write_report

    write_report(args.output, report, markdown(report))

    return report


if __name__ == "__main__":
    main()
