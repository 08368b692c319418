"""Hugging Face Space: the hfseg segmentation demo (`python spaces/app.py` runs it locally).

It offers the model bundled in `model/` (an Attention U-Net trained on hfseg's `demo` dataset, see
`model/README.md`), unless the operator's environment variables say otherwise: `HFSEG_MODEL` (the default model),
`HFSEG_MODELS` (the models offered), `HFSEG_CLASSIFIERS`, `HFSEG_ALLOW_ANY_MODEL=1` (visitors may type any folder or
Hub id) and `HFSEG_TRUST_REMOTE_CODE=1` (see `hfseg.app.models`); `HFSEG_MAX_QUEUE` is how many requests may wait
in the queue before visitors are told it is full (default `hfseg.app.ui.MAX_QUEUE`). The UI itself lives in
`hfseg.app.ui`; torch uses every core for one image at a time (`OMP_NUM_THREADS` to use fewer), with idle threads
sleeping (`OMP_WAIT_POLICY`).
"""

import os
from pathlib import Path

# OpenMP threads waiting for work sleep instead of spinning (read when torch loads, so before hfseg is imported): on a
# shared or CPU-quota machine spinning threads take the cores the working ones need. Next to a busy process, one
# 256 x 256 prediction with GradCAM on 2 cores took 0.7 s instead of 2 to 6 s.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from hfseg.app import ModelPolicy, launch  # noqa: E402

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE / "examples"
MODEL = HERE / "model"
MAX_QUEUE_ENV = "HFSEG_MAX_QUEUE"


def max_queue() -> int:
    """The queue's size: `$HFSEG_MAX_QUEUE`, else `hfseg.app.ui.MAX_QUEUE`."""
    from hfseg.app.ui import MAX_QUEUE

    value = os.environ.get(MAX_QUEUE_ENV, "").strip()
    if value and not (value.isdigit() and int(value) > 0):
        raise SystemExit(f"{MAX_QUEUE_ENV}={value!r}: give a positive whole number of waiting requests.")
    return int(value) if value else MAX_QUEUE


if __name__ == "__main__":
    launch(ModelPolicy.from_environment(bundled=MODEL), examples=EXAMPLES, max_queue=max_queue())
