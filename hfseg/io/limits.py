"""The readers' size limit: a file is refused from the size its header declares, before any pixel is decoded.

A small file can declare a huge image (a 300-byte NIfTI header of 32767³ voxels, a DICOM of 65535 x 65535 pixels
and a billion frames, a PNG "decompression bomb"); allocating what it declares would exhaust memory. `MAX_PIXELS`
(2³⁰ = 1.07 G pixels or voxels, 4 GB as float32) is far above real CT and MR volumes (a 512 x 512 x 2000 CT is
0.5 G); `hfseg.io.read(path, max_pixels=N)` raises or lowers it, `max_pixels=None` removes it.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from .errors import MedicalFileError

MAX_PIXELS = 2 ** 30


class SizedReader(io.BufferedReader):
    """A file whose reads never ask for more than it holds. pydicom reads an element's declared length, and Pillow
    a PNG chunk's, in one `read(n)`, and `read(n)` allocates n bytes first: one flipped bit in a length would
    allocate gigabytes for a 10 KB file."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(io.FileIO(path, "rb"))
        self.size = os.fstat(self.fileno()).st_size

    def read(self, size: int | None = -1) -> bytes:
        if size is not None and size > 0:
            size = min(size, max(0, self.size - self.tell()))
        return super().read(size)


def check_declared(path: str | Path, declared: str, count: int, limit: int | None, unit: str = "voxels") -> None:
    """A `MedicalFileError` when `count` (what the header declares, described by `declared`, e.g.
    `"512 x 512 x 300"`) is over `limit`; nothing when `limit` is None. At the default limit the message says how
    to raise it."""
    if limit is None or count <= limit:
        return
    how = (f" If the file is genuine, raise the limit: hfseg.io.read(path, max_pixels={count}) (None: no limit)."
           if limit == MAX_PIXELS else "")
    raise MedicalFileError(f"{path} declares {declared} = {count} {unit}, over the limit of {limit} {unit}. Unless the "
                           f"file is truncated or corrupt (a damaged header), crop or downsample the image first.{how}")
