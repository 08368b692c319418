"""Hugging Face Space: the hfseg segmentation demo (`python spaces/app.py` runs it locally).

The model is `$HFSEG_MODEL` (a local run folder or a Hub id), else `hfseg.app.DEFAULT_HUB_MODEL`; the UI itself
lives in `hfseg.app.ui`.
"""

from pathlib import Path

from hfseg.app import launch

EXAMPLES = Path(__file__).resolve().parent / "examples"

if __name__ == "__main__":
    launch(examples=EXAMPLES)
