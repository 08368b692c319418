"""The one error type of hfseg's file layer: a file that cannot be used, with a message naming it and the fix."""

from __future__ import annotations


class MedicalFileError(ValueError):
    """A file or folder that cannot be read or written as asked; the message names the file and says what to do.

    The dataset loaders' `DatasetFormatError` and the Space's `UploadError` are subclasses, so one `except
    MedicalFileError` catches every refused input.
    """
