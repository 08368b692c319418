"""`benchmarks.models` with tiny settings: it runs, writes JSON and Markdown, and its measurements are sound."""

import json
import mmap

import pytest
import torch

from benchmarks import common, models


def test_tiny_run_writes_results_and_ratios(tmp_path):
    names = ["hfseg-attention-unet", "hfseg-unet"]
    baseline = "hfseg-unet"
    report = models.main(["--models", ",".join(names), "--baseline", baseline, "--rounds", "1", "--steps", "1",
                          "--warmup", "1", "--size", "32", "--batch_size", "2", "--no_memory",
                          "--output", str(tmp_path / "m.json")])
    saved = json.loads((tmp_path / "m.json").read_text())
    assert list(saved["results"]) == names and saved["settings"]["size"] == 32
    base = saved["results"][baseline]
    assert base["train_speedup"] == pytest.approx(1.0) and base["infer_speedup"] == pytest.approx(1.0)
    for row in saved["results"].values():
        assert row["train_images_per_s"] > 0 and row["infer_ms"] > 0 and row["params_m"] > 0
        assert row["gflops"] > 0
    assert "| `hfseg-attention-unet` |" in (tmp_path / "m.md").read_text()
    assert report["machine"]["versions"]["torch"] == torch.__version__.split("+")[0]


def test_gflops_match_a_hand_count():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, pixel_values):
            return self.conv(pixel_values)

    # 2 FLOPs per multiply-add: 2 * batch * H * W * C_out * C_in * k * k
    assert common.forward_gflops(Wrapped(), torch.randn(2, 3, 16, 16)) == pytest.approx(
        2 * 2 * 16 * 16 * 8 * 3 * 9 / 1e9)


def test_peak_memory_sees_a_known_allocation():
    with common.PeakMemory(torch.device("cpu")) as peak:
        # 48 MiB of new pages, each touched: a fresh anonymous mapping, whatever the allocator kept from earlier tests.
        block = mmap.mmap(-1, 48 * 2**20)
        for offset in range(0, len(block), mmap.PAGESIZE):
            block[offset] = 1
        block.close()
    assert 40 <= peak.mib <= 80, (peak.mib, peak.method)


def test_memory_probe_in_process():
    settings = models.Settings(size=32, batch_size=2, warmup=1)
    found = models.probe_memory("hfseg-unet", settings, torch.device("cpu"), steps=1)
    assert found["train_peak_mib"] >= 0 and found["infer_peak_mib"] >= 0 and found["method"]


def test_peers_against_monai(tmp_path):
    pytest.importorskip("monai")
    report = models.main(["--models", "hfseg-attention-unet,monai-attention-unet", "--rounds", "1", "--steps", "1",
                          "--warmup", "1", "--size", "32", "--batch_size", "2", "--no_memory",
                          "--output", str(tmp_path / "m.json")])
    assert report["targets"]["model"] == "hfseg-attention-unet"
    assert set(report["targets"]["met"]) == {"train_speedup", "infer_speedup"}


def test_unknown_model_is_an_error():
    with pytest.raises(SystemExit, match="available"):
        models.main(["--models", "nope"])


def test_bf16_flag_forms():
    assert models.settings_from(models.parse_args([])).bf16 == "none"
    assert models.settings_from(models.parse_args(["--bf16"])).tag == "cpu-bf16"
    hfseg_only = models.settings_from(models.parse_args(["--bf16", "hfseg", "--channels_last"]))
    assert hfseg_only.tag == "cpu-bf16hfseg-cl"
    assert models._probe_args("-x", hfseg_only)[:3] == ["--probe=-x", "--device", "cpu"]
    assert "--bf16" in models._probe_args("hfseg-unet", hfseg_only)


def test_one_conv_row_has_one_convolution_per_decoder_level():
    two, one = models.build_model("hfseg-attention-unet"), models.build_model("hfseg-attention-unet-1conv")
    assert [len(b.stage.convs) for b in one.unet.decoder.blocks] == [1, 1, 1, 1]
    assert [len(b.stage.convs) for b in two.unet.decoder.blocks] == [2, 2, 2, 2]
    x = torch.randn(1, 1, 32, 32)
    # The four decoder convolutions it leaves out: C -> C 3x3 at each level (C = 128, 64, 32, 16 at 4, 8, 16, 32 px).
    dropped = sum(2 * (32 // 2**i) ** 2 * c * c * 9 for i, c in enumerate((16, 32, 64, 128))) / 1e9
    assert common.forward_gflops(two, x) - common.forward_gflops(one, x) == pytest.approx(dropped, rel=1e-6)
