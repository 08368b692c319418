"""The Gradio app: its event handlers, the launched app called with `gradio_client`, and a real headless Chromium
(Debian's `chromium` and `chromium-driver`, driven by selenium) that clicks an example and sees the overlay."""

import shutil
import socket
import subprocess
import sys
import threading
import time

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from hfseg.app import ui
from hfseg.app.models import ModelPolicy
from hfseg.app.predict import AUTO_CLASS, analyze
from hfseg.app.ui import build_demo, describe_model, example_files, inspect_file, launch
from hfseg.app.uploads import read_upload
from hfseg.viz import PALETTE

from .conftest import EXAMPLES, ID2LABEL, SPACE_MODEL
from .test_predict import reference_mask

EXAMPLE_NAMES = ["brain_06.png", "brain_16.png", "brain_25.png", "brain_mr.dcm", "brain_volume.nii.gz"]


# -- handlers ------------------------------------------------------------------------------------------------------
def test_describe_model(gated_model, tmp_path):
    dropdown, annotated, info = describe_model(gated_model)
    assert dropdown.choices == [(c, c) for c in [AUTO_CLASS, *ID2LABEL.values()]]
    assert annotated.color_map["tissue"] == "#e6194b"
    assert "attention gates" in info and "tissue" in info
    dropdown, _, info = describe_model(str(tmp_path / "missing"))
    assert info.startswith("⚠️") and "not found" in info
    _, _, info = describe_model(str(tmp_path / "missing"), ModelPolicy.only(gated_model))
    assert info.startswith("⚠️") and "is not one of this demo's models" in info


def test_inspect_file_sets_the_slice_slider(tmp_path):
    slider, status = inspect_file(str(EXAMPLES / "brain_volume.nii.gz"))
    assert slider.visible and slider.maximum == 4 and slider.value == 2 and "5 slices" in status
    slider, _ = inspect_file(str(EXAMPLES / "brain_06.png"))
    assert slider.visible is False
    (tmp_path / "x.txt").write_text("?")
    _, status = inspect_file(str(tmp_path / "x.txt"))
    assert status.startswith("⚠️") and "unsupported file type" in status


def test_example_files_are_the_bundled_examples():
    assert [p.rsplit("/", 1)[-1] for p in example_files(EXAMPLES)] == EXAMPLE_NAMES
    assert example_files(None) == []
    assert isinstance(build_demo("some/model", EXAMPLES), gr.Blocks)


def _dropdowns(demo: gr.Blocks) -> dict[str, gr.Dropdown]:
    return {b.label: b for b in demo.blocks.values() if isinstance(b, gr.Dropdown)}


def test_the_models_are_a_dropdown_of_the_allowlist(gated_model, classifier_model):
    policy = ModelPolicy(models=(gated_model, "a/b"), labels={gated_model: "demo"})
    picks = _dropdowns(build_demo(policy))
    model, classifier = picks["Segmentation model"], picks["Classifier (optional)"]
    assert model.choices == [("demo", gated_model), ("a/b", "a/b")] and model.value == gated_model
    assert not model.allow_custom_value and not classifier.visible and not classifier.allow_custom_value
    picks = _dropdowns(build_demo(ModelPolicy(models=(gated_model,), classifiers=(classifier_model,),
                                              allow_any=True)))
    model, classifier = picks["Segmentation model"], picks["Classifier (optional)"]
    assert model.allow_custom_value and "type a local run folder" in model.info
    assert classifier.visible and classifier.allow_custom_value
    assert classifier.choices == [("none", ""), (classifier_model, classifier_model)] and classifier.value == ""


def test_every_model_call_shares_one_queue_slot():
    demo = build_demo("some/model")
    runs = [fn for fn in demo.fns.values() if fn.name == "segment_event"]
    assert len(runs) == 4 and {(fn.concurrency_limit, fn.concurrency_id) for fn in runs} == {(1, "segment")}
    assert demo._queue.max_size == ui.MAX_QUEUE and demo._queue.default_concurrency_limit == 1
    assert build_demo("some/model", max_queue=3)._queue.max_size == 3
    assert [fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"] == ["segment"]


def test_launch_sets_the_threads_and_warms_up_the_default(monkeypatch, gated_model):
    calls, warmed = [], threading.Event()

    def warm_up(model, policy):
        calls.append(("warm_up", model, policy.models))
        warmed.set()

    monkeypatch.setattr(ui, "configure_threads", lambda: calls.append("threads"))
    monkeypatch.setattr(ui, "warm_up", warm_up)
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: calls.append(sorted(kwargs)))
    launch(gated_model, EXAMPLES, quiet=True)
    assert warmed.wait(30) and calls[0] == "threads"
    assert ("warm_up", gated_model, (gated_model,)) in calls
    assert ["allowed_paths", "app_kwargs", "css", "max_file_size", "quiet"] in calls


def test_without_gradio_the_error_says_how_to_install_it():
    code = ("import sys; sys.modules['gradio'] = None\n"
            "import hfseg.app\n"  # the rest of the app imports without gradio
            "from hfseg.app import segment, ModelPolicy\n"
            "for load in (lambda: hfseg.app.launch, lambda: __import__('hfseg.app.ui')):\n"
            "    try:\n"
            "        load()\n"
            "    except ModuleNotFoundError as err:\n"
            "        print(err)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    message = 'The hfseg demo app needs gradio, which is not installed: pip install "hfseg[app]"'
    assert result.stdout.count(message) == 2, result.stdout


# -- the launched app ----------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(gated_model):
    demo = launch(gated_model, EXAMPLES, prevent_thread_lock=True, server_port=_free_port(), quiet=True)
    yield demo.local_url
    demo.close()


def test_client_segments_a_dicom(app_url, gated_model):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    annotated, (image_path, overlay_path), table, cam, gallery, scores, status = client.predict(
        gated_model, handle_file(str(EXAMPLES / "brain_mr.dcm")), 0, AUTO_CLASS, "", api_name="/segment")
    upload = read_upload(EXAMPLES / "brain_mr.dcm")
    mask = reference_mask(gated_model, upload.image)
    sy, sx = upload.spacing
    assert table["headers"] == ["class", "pixels", "% of image", "area (mm²)"]
    assert [row[1] for row in table["data"]] == [int((mask == k).sum()) for k in ID2LABEL]
    assert [row[3] for row in table["data"]] == [pytest.approx((mask == k).sum() * sy * sx, abs=0.01)
                                                 for k in ID2LABEL]
    expected = analyze(gated_model, upload, explain=False)
    np.testing.assert_array_equal(np.asarray(Image.open(overlay_path).convert("RGB")), expected.overlay)
    np.testing.assert_array_equal(np.asarray(Image.open(image_path).convert("RGB")), expected.display)
    labels = {a["label"] for a in annotated["value"]["annotations"]}
    assert labels == {ID2LABEL[k] for k in np.unique(mask) if k}
    assert annotated["color_map"]["lesion"] == "#3cb44b"
    assert Image.open(cam).size == (128, 128) and len(gallery) == 3
    assert "brain_mr.dcm" in status and "1.48 x 1.48 mm" in status


def test_client_bad_upload_is_a_message(app_url, gated_model, tmp_path):
    from gradio_client import Client, handle_file

    (tmp_path / "notes.txt").write_text("not an image")
    outputs = Client(app_url, verbose=False).predict(gated_model, handle_file(str(tmp_path / "notes.txt")), 0,
                                                      AUTO_CLASS, "", api_name="/segment")
    assert outputs[-1].startswith("⚠️") and "unsupported file type" in outputs[-1]
    assert outputs[2]["data"] in ([], [[None, None, None, None]], [["", "", "", ""]])


def test_client_cannot_use_a_model_off_the_list(app_url, monkeypatch):
    from gradio_client import Client, handle_file

    from hfseg.app import models

    monkeypatch.setattr(models, "_load", lambda *args: pytest.fail("a refused model was loaded"))
    with pytest.raises(Exception, match="not in the list of choices"):
        Client(app_url, verbose=False).predict("someone/model", handle_file(str(EXAMPLES / "brain_06.png")), 0,
                                               AUTO_CLASS, "", api_name="/segment")


def test_the_space_as_deployed_segments_an_example(monkeypatch):
    """No variables set, no Hub: the Space offers its bundled model, which segments the brain tissues."""
    from gradio_client import Client, handle_file

    for name in ("HFSEG_MODEL", "HFSEG_MODELS", "HFSEG_CLASSIFIERS", "HFSEG_ALLOW_ANY_MODEL"):
        monkeypatch.delenv(name, raising=False)
    policy = ModelPolicy.from_environment(bundled=SPACE_MODEL)
    demo = launch(policy, EXAMPLES, prevent_thread_lock=True, server_port=_free_port(), quiet=True)
    try:
        outputs = Client(demo.local_url, verbose=False).predict(
            policy.default, handle_file(str(EXAMPLES / "brain_mr.dcm")), 0, AUTO_CLASS, "", api_name="/segment")
    finally:
        demo.close()
    table, status = outputs[2], outputs[-1]
    assert "⚠️" not in status and "model `hfseg demo" in status
    pixels = {row[0]: row[1] for row in table["data"]}
    assert set(pixels) == {"background", "csf_other_brain", "grey_matter", "white_matter"}
    assert all(pixels[name] > 0 for name in pixels) and pixels["grey_matter"] > 0.2 * 128 * 128  # 5100 in truth


def test_server_refuses_oversized_uploads(app_url, tmp_path):
    import httpx

    big = tmp_path / "big.png"
    with open(big, "wb") as handle:
        handle.truncate(21 * 1024 * 1024)
    with open(big, "rb") as handle:
        response = httpx.post(f"{app_url}gradio_api/upload", files={"files": ("big.png", handle)}, timeout=60)
    assert response.status_code == 413
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(small)
    with open(small, "rb") as handle:
        assert httpx.post(f"{app_url}gradio_api/upload", files={"files": ("small.png", handle)}).status_code == 200


# -- a real browser ------------------------------------------------------------------------------------------------
def _chrome():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,1800"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def _near(pixels: np.ndarray, colour: np.ndarray, tolerance: float = 70.0) -> int:
    """Pixels within `tolerance` (RGB distance) of `colour`."""
    return int((np.linalg.norm(pixels[..., :3].astype(float) - colour, axis=-1) < tolerance).sum())


def test_browser_shows_the_overlay(app_url, gated_model, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    mask = reference_mask(gated_model, read_upload(EXAMPLES / "brain_16.png").image)
    shown = [k for k in np.unique(mask) if k and (mask == k).mean() > 0.05]
    assert shown, "the test model must predict some foreground"
    browser = _chrome()
    try:
        browser.get(app_url)
        wait = WebDriverWait(browser, 60)
        wait.until(lambda b: [e for e in b.find_elements(By.CSS_SELECTOR, ".gallery-item") if e.text])
        region = browser.find_element(By.ID, "overlay")
        region.screenshot(str(tmp_path / "before.png"))
        example = next(e for e in browser.find_elements(By.CSS_SELECTOR, ".gallery-item") if e.text == "brain_16.png")
        example.click()
        wait.until(lambda b: " px" in b.find_element(By.ID, "status").text)
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#overlay img"))
        time.sleep(1.0)  # let the mask images finish drawing
        browser.save_screenshot(str(tmp_path / "page.png"))
        region = browser.find_element(By.ID, "overlay")
        region.screenshot(str(tmp_path / "overlay.png"))
        legend = region.text
    finally:
        browser.quit()
    before = np.asarray(Image.open(tmp_path / "before.png").convert("RGB"))
    after = np.asarray(Image.open(tmp_path / "overlay.png").convert("RGB"))
    for k in shown:
        assert _near(before, PALETTE[k]) == 0
        assert _near(after, PALETTE[k]) > 0.02 * after.shape[0] * after.shape[1], ID2LABEL[k]
        assert ID2LABEL[k] in legend


# -- nothing read from the server ----------------------------------------------------------------------------------
def test_the_file_route_serves_no_local_file_but_the_examples(app_url, gated_model):
    import httpx

    example = EXAMPLES / "brain_06.png"
    assert httpx.get(f"{app_url}gradio_api/file={example}", timeout=60).status_code == 200  # allowed_paths
    port = app_url.rstrip("/").rsplit(":", 1)[-1]
    for path in ("/etc/passwd", SPACE_MODEL / "model.safetensors", SPACE_MODEL / "config.json",
                 EXAMPLES.parent / "app.py", f"{gated_model}/config.json", f"{EXAMPLES}/../app.py",
                 "../../../../etc/passwd"):
        response = httpx.get(f"{app_url}gradio_api/file={path}", timeout=60)
        assert response.status_code in (403, 404), (path, response.status_code)
    for url in (f"http://127.0.0.1:{port}/config", "https://huggingface.co/someone/model/resolve/main/config.json",
                " HTTPS://example.org/x"):  # gradio would fetch a public URL for the visitor
        response = httpx.get(f"{app_url}gradio_api/file={url}", timeout=60)
        assert response.status_code == 403 and "not URLs" in response.text, (url, response.text)


def _call(app_url: str, data: list) -> str:
    """The event stream of one `/segment` call through gradio's REST API (no client-side checks)."""
    import httpx

    posted = httpx.post(f"{app_url}gradio_api/call/segment", json={"data": data}, timeout=60)
    assert posted.status_code == 200, posted.text
    return httpx.get(f"{app_url}gradio_api/call/segment/{posted.json()['event_id']}", timeout=120).text


def test_an_input_naming_a_server_file_is_never_read(app_url, gated_model, monkeypatch, tmp_path):
    """A request whose file is a path on the server (not an upload) is refused before the app sees it."""
    from hfseg.app import predict

    read = []
    monkeypatch.setattr(predict, "read_upload", lambda *args, **kwargs: read.append(args) or pytest.fail("read"))
    secret = tmp_path / "patient.dcm"
    secret.write_bytes((EXAMPLES / "brain_mr.dcm").read_bytes())
    for path in (str(secret), str(EXAMPLES / "brain_mr.dcm"), "/etc/passwd"):
        stream = _call(app_url, [gated_model, {"path": path, "meta": {"_type": "gradio.FileData"}}, 0, AUTO_CLASS,
                                 ""])
        assert "event: error" in stream and "event: complete" not in stream, stream
    assert read == []


def test_a_typed_model_never_reaches_from_pretrained(app_url, gated_model, plain_model, monkeypatch):
    """Off the list: a Hub id, a real model folder on the server, a path; as the model or the classifier."""
    from hfseg.app import models

    loaded = []
    monkeypatch.setattr(models, "load_model", lambda *args, **kwargs: loaded.append(args) or pytest.fail("loaded"))
    for model, classifier in (("someone/model", ""), (plain_model, ""), ("../../etc", ""),
                              (gated_model, "someone/classifier"), (gated_model, plain_model)):
        stream = _call(app_url, [model, None, 0, AUTO_CLASS, classifier])
        assert "event: error" in stream and "event: complete" not in stream, stream
        # Gradio 6.0 sends the dropdown's refusal as `data: null`; later releases name the value.
        assert "data: null" in stream or "not in the list of choices" in stream, stream
    assert loaded == []
