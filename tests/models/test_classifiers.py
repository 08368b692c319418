"""Image classifiers: every name builds for 1/3/4 channels, round-trips through the Auto class, pretrained routes."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    TimmWrapperForImageClassification,
)

import hfseg
from hfseg.models import adapt_input_weight
from hfseg.models.classifiers import TIMM_CLASSIFIERS, SmallCNNConfig, SmallCNNForImageClassification

ID2LABEL = {0: "glioma", 1: "meningioma", 2: "pituitary"}
SIZE = 32  # a multiple of the ViT patch (16)


HEAVY = {"resnet50", "vgg16", "vit-small"}  # their 3/4-channel builds take the same path as resnet18's / vit-tiny's
CASES = [pytest.param(name, channels, marks=[pytest.mark.slow] if name in HEAVY and channels != 1 else [])
         for name in hfseg.available_classifiers() for channels in (1, 3, 4)]


def build(name, channels=1, **kwargs):
    return hfseg.create_classifier(name, id2label=ID2LABEL, num_channels=channels, image_size=(SIZE, SIZE),
                                   **kwargs).eval()


@pytest.mark.parametrize(("name", "channels"), CASES)
def test_every_classifier_gives_one_logit_per_class(name, channels):
    model = build(name, channels)
    with torch.no_grad():
        logits = model(pixel_values=torch.randn(2, channels, SIZE, SIZE)).logits
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    expected = SmallCNNForImageClassification if name == "small-cnn" else TimmWrapperForImageClassification
    assert type(model) is expected and model.config.id2label == ID2LABEL


@pytest.mark.parametrize("name", hfseg.available_classifiers())
def test_save_and_auto_class_reload_give_identical_logits(name, tmp_path):
    model = build(name, channels=1)
    model.save_pretrained(tmp_path)
    hfseg.UNetImageProcessor(num_channels=1, do_resize=True, size={"height": SIZE, "width": SIZE}).save_pretrained(
        tmp_path)
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    x = torch.randn(2, 1, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values=x).logits, model(pixel_values=x).logits, rtol=0, atol=0)
    assert type(loaded) is type(model) and loaded.config.id2label == ID2LABEL
    assert isinstance(processor, hfseg.UNetImageProcessor) and processor.size == {"height": SIZE, "width": SIZE}


def test_a_new_timm_classifier_keeps_timm_initialisation():
    # The wrapper alone re-initialises every conv with normal(0.02); create_classifier must give timm's own init.
    torch.manual_seed(0)
    model = hfseg.create_classifier("resnet18", num_labels=3, num_channels=1)
    torch.manual_seed(0)
    reference = timm.create_model("resnet18", num_classes=3, in_chans=1)
    ours = model.timm_model.state_dict()
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(ours[key], value, rtol=0, atol=0, msg=key)


def test_vgg16_is_vgg16_with_batch_norm_and_vit_takes_the_image_size():
    assert TIMM_CLASSIFIERS["vgg16"].architecture == "vgg16_bn"
    vgg = hfseg.create_classifier("vgg16", num_labels=2)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in vgg.modules()) == 13
    vit = hfseg.create_classifier("vit-tiny", num_labels=2, num_channels=1, image_size=(48, 32))
    assert vit.config.model_args["img_size"] == [48, 32]
    assert vit(pixel_values=torch.randn(1, 1, 48, 32)).logits.shape == (1, 2)
    with pytest.raises(ValueError, match="must be a multiple of 16"):
        hfseg.create_classifier("vit-small", num_labels=2, image_size=(40, 40))


def test_pretrained_true_loads_timm_weights_with_channel_and_head_adaptation(monkeypatch):
    calls = []
    real = timm.create_model

    def fake(name, pretrained=False, **kwargs):  # the Hub is out of reach: record the call, build without weights
        calls.append((name, pretrained, kwargs))
        return real(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", fake)
    model = hfseg.create_classifier("vit-small", id2label=ID2LABEL, num_channels=1, pretrained=True,
                                    image_size=(64, 64), drop_path_rate=0.1)
    weighted = [call for call in calls if call[1]]  # (the wrapper builds its placeholder without weights)
    assert weighted == [("vit_small_patch16_224", True,
                         {"num_classes": 3, "drop_path_rate": 0.1, "in_chans": 1, "img_size": [64, 64]})]
    assert model.config.num_labels == 3
    with pytest.raises(ValueError, match="small-cnn has no published weights"):
        hfseg.create_classifier("small-cnn", num_labels=2, pretrained=True)


def test_pretrained_weights_file_is_adapted_by_timm(tmp_path):
    source = timm.create_model("resnet18")  # ImageNet-shaped: 3 channels, 1000 classes
    save_file(source.state_dict(), str(tmp_path / "weights.safetensors"))
    model = hfseg.create_classifier("resnet18", num_labels=2, num_channels=4,
                                    pretrained=str(tmp_path / "weights.safetensors"))
    net = model.timm_model
    torch.testing.assert_close(net.layer4[1].conv2.weight, source.layer4[1].conv2.weight, rtol=0, atol=0)
    # Four channels: the filters repeated cyclically and scaled by 3/4 (timm's adapt_input_conv).
    expected = torch.cat([source.conv1.weight, source.conv1.weight[:, :1]], dim=1) * 0.75
    torch.testing.assert_close(net.conv1.weight, expected)
    assert net.fc.weight.shape == (2, 512)


def test_pretrained_folder_new_head_new_channels_and_wrong_kind(tmp_path):
    saved = build("resnet18", channels=1)
    saved.save_pretrained(tmp_path / "r18")
    model = hfseg.create_classifier("resnet18", id2label={0: "a", 1: "b"}, pretrained=str(tmp_path / "r18"))
    assert model.config.id2label == {0: "a", 1: "b"} and model.timm_model.fc.weight.shape == (2, 512)
    torch.testing.assert_close(model.timm_model.layer1[0].conv1.weight, saved.timm_model.layer1[0].conv1.weight)
    three = hfseg.create_classifier(str(tmp_path / "r18"), num_channels=3)
    torch.testing.assert_close(three.timm_model.conv1.weight, adapt_input_weight(saved.timm_model.conv1.weight, 3))
    assert three.config.model_args["in_chans"] == 3 and three.config.id2label == ID2LABEL
    with pytest.raises(ValueError, match="not a 'resnet50'"):
        hfseg.create_classifier("resnet50", num_labels=2, pretrained=str(tmp_path / "r18"))
    hfseg.create_model("unet", num_labels=2, base_channels=4, depth=2).save_pretrained(tmp_path / "unet")
    with pytest.raises(ValueError, match="not an image classifier"):
        hfseg.create_classifier(str(tmp_path / "unet"))


def test_unknown_name_lists_the_classifiers():
    with pytest.raises(ValueError, match="allowed names: resnet18, resnet50, vgg16, vit-tiny, vit-small, small-cnn"):
        hfseg.create_classifier("resnet-18", num_labels=2)


def test_small_cnn_loss_backward_and_binary_head():
    model = hfseg.create_classifier("small-cnn", num_labels=3, num_channels=1, hidden_sizes=[4, 8], dropout=0.0)
    x, labels = torch.randn(4, 1, 20, 28), torch.tensor([0, 2, 1, 2])
    out = model(pixel_values=x, labels=labels)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, labels))
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert [tuple(h.shape) for h in model(pixel_values=x, output_hidden_states=True).hidden_states] == [
        (4, 4, 10, 14), (4, 8, 5, 7)]
    binary = hfseg.create_classifier("small-cnn", num_labels=1, hidden_sizes=[4])
    out = binary(pixel_values=torch.randn(2, 3, 8, 8), labels=torch.tensor([0, 1]))
    torch.testing.assert_close(out.loss, F.binary_cross_entropy_with_logits(out.logits[:, 0], torch.tensor([0.0, 1.0])))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"hidden_sizes": []}, "at least one positive"),
    ({"kernel_size": 4}, "positive odd"),
    ({"global_pool": "mean"}, "allowed values: avg, max"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
])
def test_small_cnn_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SmallCNNConfig(**kwargs)


def test_unknown_small_cnn_fields_are_errors_with_close_matches():
    with pytest.raises(ValueError, match="Unknown SmallCNNConfig field 'hiden_sizes'; did you mean 'hidden_sizes'"):
        hfseg.create_classifier("small-cnn", num_labels=2, hiden_sizes=[4])
    with pytest.raises(ValueError, match=r"Unknown SmallCNNConfig field 'spatial_dims'\. SmallCNNConfig fields: "):
        SmallCNNConfig(spatial_dims=3)
    config = SmallCNNConfig(num_labels=3, output_hidden_states=True, torch_dtype="float32", problem_type=None)
    assert config.num_labels == 3 and config.output_hidden_states and config.dtype == torch.float32


def test_saved_small_cnn_config_with_an_unknown_key_loads_and_overrides_are_checked(tmp_path):
    build("small-cnn", channels=1, hidden_sizes=[4, 8]).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="Unknown SmallCNNConfig override 'dropot'; did you mean 'dropout'"):
        hfseg.create_classifier(str(tmp_path), dropot=0.1)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "spatial_dims": 2, "torch_dtype": "float32"}))
    with pytest.warns(UserWarning, match="Ignoring 'spatial_dims' in the saved SmallCNNConfig"):
        model = hfseg.create_classifier(str(tmp_path), dropout=0.25)
    assert model.config.dropout == 0.25 and model.config.hidden_sizes == [4, 8]


def test_timm_checkpoint_overrides_are_checked(tmp_path):
    build("resnet18", channels=1).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="Unknown TimmWrapperConfig override 'model_arg'; did you mean 'model_args'"):
        hfseg.create_classifier(str(tmp_path), model_arg={"drop_rate": 0.1})


LOADER = textwrap.dedent(
    """
    import sys
    sys.modules["hfseg"] = None  # any `import hfseg` now fails: the code must come from the checkpoint folder
    import torch
    from transformers import AutoModelForImageClassification
    folder = sys.argv[1]
    model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
    assert not type(model).__module__.startswith("hfseg"), type(model).__module__
    with torch.no_grad():
        logits = model(pixel_values=torch.load(folder + "/x.pt")).logits
    torch.save(logits, folder + "/out.pt")
    print(type(model).__module__)
    """
)


def test_small_cnn_loads_as_remote_code_without_hfseg(tmp_path):
    model = build("small-cnn", channels=4, hidden_sizes=[4, 8, 8])
    model.save_pretrained(tmp_path)
    assert {"configuration_small_cnn.py", "modeling_small_cnn.py"} <= set(os.listdir(tmp_path))
    x = torch.randn(2, 4, 24, 20)
    torch.save(x, tmp_path / "x.pt")
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", LOADER, str(tmp_path)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "transformers_modules" in result.stdout
    with torch.no_grad():
        torch.testing.assert_close(torch.load(tmp_path / "out.pt"), model(pixel_values=x).logits, rtol=0, atol=0)


def test_config_field_checks_are_the_unet_config_files_own():
    """configuration_small_cnn.py repeats the field checks of configuration_unet.py (each file is copied alone next
    to a checkpoint for remote code): the copies must not drift apart."""
    import inspect

    from hfseg.models.classifiers import configuration_small_cnn as small_cnn
    from hfseg.models.unet import configuration_unet as unet

    assert small_cnn.LEGACY_CONFIG_KEYS == unet.LEGACY_CONFIG_KEYS
    for name in ("config_keywords", "check_config_fields"):
        assert inspect.getsource(getattr(small_cnn, name)) == inspect.getsource(getattr(unet, name)), name
