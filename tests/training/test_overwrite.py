"""Runs never overwrite each other: a new run into a folder holding one is refused unless resumed or overwritten."""

import pytest

from hfseg.cli import main as hfseg_main
from hfseg.training import load_config
from hfseg.training.checkpoints import RUN_FILES, OutputDirInUse, check_output_dir, clear_run_results
from hfseg.training.cli import train_main
from hfseg.training.trainer import Trainer

TINY = ["model.kwargs.base_channels=4", "model.kwargs.depth=2", "data.size=[32, 32]", "data.max_train_samples=8",
        "data.max_eval_samples=4", "train.batch_size=8", "train.report_to=null", "train.panels=0"]


def previous_run(folder):
    """What a finished run leaves: its config, metrics, checkpoints, best/ and final/ (contents do not matter)."""
    for name in ("checkpoints/step_0000004", "best", "final"):
        (folder / name).mkdir(parents=True)
    (folder / "config.yaml").write_text("task: segmentation\n")
    (folder / "metrics.json").write_text("{}")
    (folder / "notes.txt").write_text("mine")


@pytest.mark.parametrize("name", RUN_FILES)
def test_any_run_file_marks_the_folder_as_taken(tmp_path, name):
    (tmp_path / name).mkdir() if "." not in name else (tmp_path / name).write_text("")
    with pytest.raises(OutputDirInUse, match=r"--resume latest.*--overwrite_output_dir"):
        check_output_dir(tmp_path, None, False)
    assert check_output_dir(tmp_path, "latest", False) == [name]
    assert check_output_dir(tmp_path, None, True) == [name]


def test_an_empty_or_unrelated_folder_is_free(tmp_path):
    assert check_output_dir(tmp_path / "new", None, False) == []
    (tmp_path / "notes.txt").write_text("mine")
    assert check_output_dir(tmp_path, None, False) == []


@pytest.mark.parametrize("entry", ["trainer", "recipe", "hfseg"])
def test_a_new_run_into_a_used_folder_is_refused_before_any_work(tmp_path, entry):
    out = tmp_path / "run"
    previous_run(out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(OutputDirInUse, match=f"{out}.*config.yaml, metrics.json, checkpoints, best, final"):
        if entry == "trainer":
            Trainer(load_config("demo", [*TINY, f"train.output_dir={out}"]))
        elif entry == "recipe":
            train_main(["--output_dir", str(out), *TINY])
        else:
            hfseg_main(["train", "--output_dir", str(out), *TINY])
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # nothing touched


def test_overwrite_clears_the_previous_results_only(tmp_path):
    out = tmp_path / "run"
    previous_run(out)
    removed = clear_run_results(out)
    assert sorted(p.name for p in removed) == ["best", "checkpoints", "final", "metrics.json"]
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "notes.txt"]


def test_the_overwrite_flag_reaches_the_trainer(tmp_path):
    out = tmp_path / "run"
    previous_run(out)
    cfg = load_config("demo", [*TINY, f"train.output_dir={out}", f"data.options.cache_dir={tmp_path / 'cache'}",
                               "train.overwrite_output_dir=true"])
    Trainer(cfg)  # accepted; the old results are gone before the new run writes anything
    assert not (out / "checkpoints").exists() and not (out / "best").exists() and (out / "notes.txt").is_file()


@pytest.mark.parametrize("flag", [[], ["--overwrite_output_dir"]])
def test_the_command_line_flag_sets_the_config(monkeypatch, flag):
    import hfseg.training

    seen = []
    monkeypatch.setattr(hfseg.training, "train", seen.append)
    train_main(["--output_dir", "somewhere", *flag])
    hfseg_main(["train", "--output_dir", "somewhere", *flag])
    assert [cfg.train.overwrite_output_dir for cfg in seen] == [bool(flag)] * 2
