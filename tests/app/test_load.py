"""The Space under load (a small `spaces/load_test.py`): every request is answered or told the queue is full, none
fails, and the server answers afterwards; and gradio's image cache is written atomically (the cause of the
`RemoteProtocolError` seen under load)."""

import sys
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from hfseg.app import ui

from .conftest import EXAMPLES, SPACES

sys.path.insert(0, str(SPACES))
import load_test  # noqa: E402  (spaces/load_test.py)

sys.path.remove(str(SPACES))


@pytest.fixture
def small_queue_app(gated_model, monkeypatch):
    """The app with a queue of one waiting event; its first segmentation is held until the queue has refused a
    request, so that the refusal does not depend on the machine's speed."""
    refused, real_segment = threading.Event(), ui.segment
    held = []

    def segment(*args, **kwargs):
        if not held:
            held.append(True)
            refused.wait(60)
        return real_segment(*args, **kwargs)

    monkeypatch.setattr(ui, "segment", segment)
    threads = torch.get_num_threads()
    demo = ui.launch(gated_model, EXAMPLES, max_queue=1, prevent_thread_lock=True,
                     server_port=load_test.free_port(), quiet=True)
    try:
        yield demo.local_url, refused
    finally:
        demo.close()
        torch.set_num_threads(threads)


class Watched(list):
    """A results list that sets `event` once a request was refused because the queue was full."""

    def __init__(self, event: threading.Event):
        super().__init__()
        self.event = event

    def append(self, result):
        super().append(result)
        if result.outcome == "queue_full":
            self.event.set()


def test_every_request_is_answered_or_told_the_queue_is_full(small_queue_app, gated_model, tmp_path):
    url, refused = small_queue_app
    big = load_test.make_big_dicom(tmp_path, tiles=4)
    files = [str(EXAMPLES / "brain_06.png"), str(EXAMPLES / "brain_mr.dcm"), str(big)]
    assert big.stat().st_size > 512 * 512 * 2  # a 16-bit CT, tiled (4 MB in the script)
    results = load_test.run_load(url, files, gated_model, sessions=4, requests=2, output_dir=str(tmp_path / "dl"),
                                 retry_after=0.1, results=Watched(refused))
    summary = load_test.summarize(results)
    assert summary["requests"] == 8 and summary["error"] == 0 and summary["message"] == 0, summary
    assert summary["queue_full"] >= 1 and summary["answered"] >= 2, summary
    assert all("Queue is full" in r.detail for r in results if r.outcome == "queue_full")
    assert load_test.request(load_test.connect(url, str(tmp_path)), gated_model, files[2]) == ("answered", "")
    assert load_test.default_model(url) == gated_model


def test_gradio_image_cache_is_written_atomically(tmp_path):
    """A client downloading a cached image while another request caches the same image (the same answer) reads it
    whole: gradio's own `save_pil_to_cache` truncates and rewrites the file in place."""
    from gradio import processing_utils

    ui.build_demo("some/model")
    assert processing_utils.save_pil_to_cache is ui._save_pil_to_cache
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8))
    path = ui._save_pil_to_cache(image, str(tmp_path), format="png")
    data = open(path, "rb").read()
    assert data == processing_utils.encode_pil_to_bytes(image, "png") and Image.open(path).size == (128, 128)
    assert path.startswith(str(tmp_path / processing_utils.hash_bytes(data)))  # where gradio puts it
    torn, stop = [], threading.Event()

    def read() -> None:
        while not stop.is_set():
            size = len(open(path, "rb").read())
            if size != len(data):
                torn.append(size)

    reader = threading.Thread(target=read)
    reader.start()
    deadline = time.monotonic() + 1.0
    try:
        while time.monotonic() < deadline:
            assert ui._save_pil_to_cache(image, str(tmp_path), format="png") == path
    finally:
        stop.set()
        reader.join()
    assert torn == []
    assert [p.name for p in (tmp_path / processing_utils.hash_bytes(data)).iterdir()] == ["image.png"]


def test_the_recorded_model_is_a_repository_path_or_as_given(tmp_path):
    """No path of the machine that ran the load test lands in the committed load_test.json."""
    assert load_test.shown(str(SPACES / "model")) == "spaces/model"
    assert load_test.shown("someone/model") == "someone/model"
    assert load_test.shown(str(tmp_path)) == str(tmp_path)
