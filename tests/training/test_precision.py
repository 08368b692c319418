"""`train.mixed_precision: auto`: bf16 on hardware with native bf16, fp32 elsewhere; `no` always holds."""

import logging

import pytest
import torch

from hfseg.training import load_config
from hfseg.training import precision
from hfseg.training.precision import ENV_VARIABLE, cpu_bf16_feature, resolve_mixed_precision


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv(ENV_VARIABLE, raising=False)


def cpu(monkeypatch, avx512_bf16, amx=False):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)


def gpu(monkeypatch, available, bf16):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)


def test_auto_is_the_default_and_a_valid_value():
    assert load_config("demo").train.mixed_precision == "auto"
    with pytest.raises(ValueError, match="auto"):
        load_config("demo", ["train.mixed_precision=fp8"])


@pytest.mark.parametrize("avx512, amx, expected, feature", [(True, False, "bf16", "AVX512-BF16"),
                                                            (False, True, "bf16", "AMX-BF16"),
                                                            (False, False, "no", None)])
def test_auto_on_cpu_follows_the_native_bf16_instructions(monkeypatch, avx512, amx, expected, feature):
    cpu(monkeypatch, avx512, amx)
    assert cpu_bf16_feature() == feature
    assert resolve_mixed_precision("auto", "cpu") == expected
    assert resolve_mixed_precision("auto", torch.device("cpu")) == expected


def test_missing_or_failing_capability_checks_count_as_absent(monkeypatch):
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert resolve_mixed_precision("auto", "cpu") == "no"

    def broken():
        raise RuntimeError("cpuinfo failed")

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", broken, raising=False)
    assert cpu_bf16_feature() is None


@pytest.mark.parametrize("bf16, expected", [(True, "bf16"), (False, "no")])
def test_auto_on_gpu_follows_cuda_bf16_support(monkeypatch, bf16, expected):
    cpu(monkeypatch, not bf16)  # the CPU's answer must not leak into the GPU's
    gpu(monkeypatch, True, bf16)
    assert resolve_mixed_precision("auto", "cuda") == expected
    assert resolve_mixed_precision("auto") == expected  # no device: CUDA when available


def test_auto_without_a_gpu_checks_the_cpu(monkeypatch):
    cpu(monkeypatch, True)
    gpu(monkeypatch, False, True)
    assert resolve_mixed_precision("auto") == "bf16"
    assert resolve_mixed_precision("auto", "mps") == "no"


@pytest.mark.parametrize("value", ["no", "fp16", "bf16"])
def test_explicit_values_are_kept_whatever_the_hardware(monkeypatch, value):
    cpu(monkeypatch, value != "bf16")
    assert resolve_mixed_precision(value, "cpu") == value


def test_the_environment_variable_replaces_auto_and_no_forces_fp32(monkeypatch):
    cpu(monkeypatch, True)
    monkeypatch.setenv(ENV_VARIABLE, "no")
    assert [resolve_mixed_precision(v, "cpu") for v in ("auto", "bf16", "fp16", "no")] == ["no"] * 4
    cpu(monkeypatch, False)
    monkeypatch.setenv(ENV_VARIABLE, "BF16")
    assert resolve_mixed_precision("auto", "cpu") == "bf16"
    assert resolve_mixed_precision("no", "cpu") == "no"  # the config's no holds too
    monkeypatch.setenv(ENV_VARIABLE, "fp8")
    with pytest.raises(ValueError, match=ENV_VARIABLE):
        resolve_mixed_precision("auto", "cpu")


def test_unknown_value_is_an_error():
    with pytest.raises(ValueError, match="no, fp16, bf16, auto"):
        resolve_mixed_precision("half", "cpu")


def test_the_choice_and_its_reason_are_logged(monkeypatch, caplog):
    cpu(monkeypatch, True)
    with caplog.at_level(logging.INFO, logger=precision.__name__):
        resolve_mixed_precision("auto", "cpu")
    assert "bf16 autocast on cpu" in caplog.text and "AVX512-BF16" in caplog.text and "=no" in caplog.text
    caplog.clear()
    cpu(monkeypatch, False)
    with caplog.at_level(logging.INFO, logger=precision.__name__):
        resolve_mixed_precision("auto", "cpu")
    assert "fp32 on cpu" in caplog.text and "no native bf16" in caplog.text


def test_the_trainer_runs_with_the_resolved_precision(monkeypatch, tmp_path):
    """auto reaches the Accelerator as the resolved value (here fp32: no native bf16 mocked)."""
    from hfseg.training.trainer import Trainer

    cpu(monkeypatch, False)
    cfg = load_config("demo", ["model.kwargs.base_channels=4", "model.kwargs.depth=2", "data.size=[32, 32]",
                               "data.max_train_samples=8", "data.max_eval_samples=4", "train.report_to=null",
                               f"data.options.cache_dir={tmp_path / 'cache'}", f"train.output_dir={tmp_path / 'run'}"])
    threads = torch.get_num_threads()
    try:
        assert Trainer(cfg).accelerator.mixed_precision == "no"
        cpu(monkeypatch, True)
        assert Trainer(cfg).accelerator.mixed_precision == "bf16"
    finally:
        torch.set_num_threads(threads)
