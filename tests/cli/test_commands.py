"""The `hfseg` command: subcommands in-process, then from an installed wheel outside the checkout (`hfseg train`,
`hfseg models`, `accelerate launch -m hfseg.cli train`), with the bundled configs travelling in the wheel."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import hfseg.training
from hfseg.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY = ["model.kwargs.base_channels=4", "model.kwargs.depth=2", "data.size=[32,32]", "train.report_to=null",
        "train.panels=0", "data.max_train_samples=16", "data.max_eval_samples=8"]


def test_train_parses_like_the_recipe(monkeypatch):
    seen = []
    monkeypatch.setattr(hfseg.training, "train", lambda cfg: seen.append(cfg) or {})
    main(["train", "--config", "chaos_attention_unet", "--max_steps", "3", "--lr", "0.1", "train.seed=5"])
    (cfg,) = seen
    assert cfg.data.dataset == "chaos-mr-t2spir" and cfg.train.max_steps == 3 and cfg.optim.lr == 0.1
    assert cfg.train.seed == 5
    main(["train"])
    assert seen[1].data.dataset == "demo" and seen[1].train.epochs == 20  # the bundled demo by default


def test_help_and_errors(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "accelerate launch --multi_gpu --num_processes 2 -m hfseg.cli train" in out and "recipes/train.py" in out
    assert "chaos_attention_unet" in out  # the bundled configs are listed
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "--help"])
    assert exit_.value.code == 0 and "--sliding_window" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2 and "{train,predict,evaluate,plan,models,datasets}" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="not a bundled config name; bundled: .*demo"):
        main(["train", "--config", "no_such_study"])


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh virtual environment with the wheel built from this checkout installed, and the main environment's
    packages (torch, transformers, ...) visible through a `.pth` path line, which does not run the editable
    install's finder there: `hfseg` comes from the wheel."""
    pytest.importorskip("build", reason="the dev extra's `build` builds the wheel")
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a copy, so the build writes nothing into the checkout
    shutil.copytree(ROOT / "hfseg", source / "hfseg", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", root / "dist", source], cwd=root)
    (wheel,) = (root / "dist").glob("hfseg-*.whl")
    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=root)
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--quiet", wheel],
        cwd=root)
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root).strip()
    (Path(site) / "main_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def run(command, cwd, **env):
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    environment.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1", **env})
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done.stdout + done.stderr


def test_the_wheel_holds_the_package_and_its_configs(installed, tmp_path):
    code = "import hfseg, hfseg.training.config as c; print(hfseg.__file__); print(len(c.bundled_configs()))"
    file, count = run([installed / "bin" / "python", "-c", code], cwd=tmp_path).split()[-2:]
    assert Path(file).is_relative_to(installed) and int(count) >= 22
    models = run([installed / "bin" / "hfseg", "models"], cwd=tmp_path)
    assert models == run([installed / "bin" / "python", "-m", "hfseg", "models"], cwd=tmp_path)
    assert "attention-unet" in models and "segformer-b0" in models


def test_hfseg_train_from_the_wheel(installed, tmp_path):
    out = tmp_path / "run"
    log = run([installed / "bin" / "hfseg", "train", "--max_steps", "4", "--output_dir", out, *TINY,
               f"data.options.cache_dir={tmp_path / 'cache'}"], cwd=tmp_path)
    assert "2 steps per epoch, max_steps=4" in log and "2 epochs, 4 steps" in log
    folder = out / "best" if (out / "best").is_dir() else out / "final"
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert (out / "final" / "model.safetensors").is_file()


def test_accelerate_launch_runs_the_installed_module(installed, tmp_path):
    out = tmp_path / "run"
    launcher = ["-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no"]
    log = run([installed / "bin" / "python", *launcher, "-m", "hfseg.cli", "train", "--max_steps", "1",
               "--output_dir", out, *TINY, f"data.options.cache_dir={tmp_path / 'cache'}"], cwd=tmp_path)
    assert "1 steps in" in log and (out / "final" / "model.safetensors").is_file()


def test_datasets_lists_every_loader_with_its_modality(capsys):
    from hfseg.data import available, dataset_modality

    main(["datasets"])
    out = capsys.readouterr().out
    for name in available():
        line = next(line for line in out.splitlines() if line.strip().startswith(name + " "))
        assert (f"[{dataset_modality(name)}]" in line) == (dataset_modality(name) is not None)
    assert "[MR]" in out and "[CT]" in out


def test_python_m_hfseg_is_the_hfseg_command():
    done = subprocess.run([sys.executable, "-m", "hfseg", "predict", "--help"], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0 and "--output-dir" in done.stdout and "dicom-seg" in done.stdout
    done = subprocess.run([sys.executable, "-m", "hfseg", "predict", "--no-such-flag"], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_evaluate_runs_shipped_model_code_only_with_trust_remote_code(shipped_code_checkpoint, tmp_path):
    folder, marker = shipped_code_checkpoint
    args = ["evaluate", "--models", str(folder), "--dataset", "demo", "--max_samples", "1",
            "--output_dir", str(tmp_path / "report")]
    with pytest.raises(Exception, match="trust_remote_code"):
        main(args)
    assert not marker.exists()  # refused before any shipped code ran
    with pytest.raises(Exception):  # the code runs, then the model (no such class) fails to load
        main([*args, "--trust-remote-code"])
    assert marker.exists()
