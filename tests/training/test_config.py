"""Recipe config: YAML + dotted overrides, unknown keys listed, validation, saved config reloads identically."""

from pathlib import Path

import pytest

from hfseg.training.config import RecipeConfig, load_config, parse_override


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {name: unet, kwargs: {base_channels: 8}}\noptim: {lr: 0.1}\ntrain: {epochs: 3}\n")
    cfg = load_config(path, ["optim.lr=3e-4", "model.kwargs.depth=2", "data.size=[64, 32]", "train.max_steps=null"])
    assert cfg.model.name == "unet" and cfg.model.kwargs == {"base_channels": 8, "depth": 2}
    assert cfg.optim.lr == pytest.approx(3e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.data.size == [64, 32] and cfg.train.epochs == 3 and cfg.train.max_steps is None


def test_flags_come_before_overrides():
    cfg = load_config(None, ["optim.lr=0.5"], values={"optim.lr": 0.1, "train.seed": 7})
    assert cfg.optim.lr == 0.5 and cfg.train.seed == 7


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.learning_rate=1", r"Unknown config key optim.'learning_rate' in section 'optim'; valid keys: name, lr"),
        ("modle.name=unet", r"Unknown config key 'modle' in the top level; valid keys: model, data"),
        ("loss.name=iou", r"loss.name='iou' is not allowed; choose one of ce, dice, dice_ce, focal"),
        ("train.epochs=0", r"train.epochs must be a positive number"),
        ("train.checkpointing=often", r"train.checkpointing must be 'epoch' or a positive number"),
        ("optim.lr.x=1", r"'optim.lr' is not a section"),
        ("data.size=[1]", r"data.size must be \[height, width\]"),
    ],
)
def test_bad_values_are_named(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, [override])


def test_override_syntax():
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_override("a=1e-3") == ("a", 1e-3)
    assert parse_override("a=segformer-b0") == ("a", "segformer-b0")
    with pytest.raises(ValueError, match="not key=value"):
        parse_override("optim.lr")


def test_saved_config_reloads_identically(tmp_path):
    cfg = load_config(None, ["model.name=segformer-b0", "augment.hflip=0.5", "scheduler.milestones=[3, 6]"])
    cfg.save(tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    assert RecipeConfig() == load_config(None)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="does not exist, and it is not a bundled config name; bundled: .*demo"):
        load_config("nowhere.yaml")
    with pytest.raises(FileNotFoundError, match="does not exist"):  # a folder path never falls back to a bundled one
        load_config("elsewhere/configs/demo.yaml")


def test_config_is_a_bundled_name_or_a_path(tmp_path, monkeypatch):
    from hfseg.training.config import CONFIGS_DIR, config_path

    assert config_path("demo") == config_path("demo.yaml") == CONFIGS_DIR / "demo.yaml"
    assert load_config("chaos_attention_unet").data.dataset == "chaos-mr-t2spir"
    (tmp_path / "demo.yaml").write_text("train: {epochs: 3}\n")
    monkeypatch.chdir(tmp_path)
    assert config_path("demo.yaml") == Path("demo.yaml")  # an existing file wins over the bundled name
    assert load_config("demo.yaml").train.epochs == 3 and load_config("demo").train.epochs == 20


def test_every_study_config_loads_and_names_real_models_and_datasets():
    import hfseg
    import hfseg.data
    from hfseg.training.config import bundled_configs

    configs = bundled_configs()
    assert len(configs) >= 22 and "demo" in configs and "chaos_attention_unet" in configs
    for path in configs:
        cfg = load_config(path)
        names = hfseg.available_classifiers() if cfg.task == "classification" else hfseg.available_models()
        assert cfg.model.name in names, path
        assert cfg.data.dataset in hfseg.data.available(), path
