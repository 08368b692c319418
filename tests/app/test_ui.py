"""The Gradio app: its event handlers, the launched app called with `gradio_client`, and a real headless Chromium
(Debian's `chromium` and `chromium-driver`, driven by selenium) that clicks an example and sees the overlay."""

import shutil
import socket
import time

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from hfseg.app.predict import AUTO_CLASS, analyze
from hfseg.app.ui import build_demo, describe_model, example_files, inspect_file, launch
from hfseg.app.uploads import read_upload
from hfseg.training.report import PALETTE

from .conftest import EXAMPLES, ID2LABEL
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
