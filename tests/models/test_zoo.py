"""The model zoo: every transformers family at tiny sizes, pretrained loading from local checkpoints, channel
adaptation that keeps the pretrained filters, and clear errors."""

import pytest
import timm
import torch
from safetensors.torch import save_file
from transformers import AutoModelForSemanticSegmentation

import hfseg
from hfseg.models.zoo import adapt_input_weight

TINY_FAMILIES = {
    "segformer-b0": dict(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 1, 1],
                         decoder_hidden_size=16),
    "upernet-convnext-tiny": dict(backbone_config=dict(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32]),
                                  hidden_size=16, auxiliary_channels=8),
    "upernet-swin-tiny": dict(backbone_config=dict(embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                                                   window_size=4), hidden_size=16, auxiliary_channels=8),
    "dpt-large": dict(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32,
                      backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 16, 24, 32], fusion_hidden_size=16,
                      image_size=64, patch_size=16),
    "beit-base": dict(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32,
                      out_indices=[1, 2, 3, 4], image_size=64, patch_size=16, pool_scales=[1, 2],  # 1-based: layers 1-4
                      auxiliary_channels=8),
}


def test_every_family_name_is_listed():
    names = hfseg.available_models()
    for name in ["segformer-b0", "segformer-b5", "upernet-convnext-small", "upernet-swin-base", "dpt-large",
                 "beit-base", "beit-large", "unet", "timm-unet"]:
        assert name in names


@pytest.mark.parametrize("family", list(TINY_FAMILIES))
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_family_forward_backward(family, channels):
    model = hfseg.create_model(family, num_labels=3, num_channels=channels, **TINY_FAMILIES[family])
    x = torch.randn(2, channels, 64, 64)
    out = model(pixel_values=x, labels=torch.randint(0, 3, (2, 64, 64)))
    assert out.logits.shape[:2] == (2, 3)
    assert torch.isfinite(out.loss) and out.loss.item() > 0
    out.loss.backward()


@pytest.mark.parametrize("family", ["segformer-b1", "upernet-convnext-small", "upernet-swin-tiny", "beit-base"])
def test_full_size_configs_match_the_published_checkpoints(family):
    config = hfseg.FAMILIES[family].make_config()
    if family == "segformer-b1":
        assert config.hidden_sizes == [64, 128, 320, 512] and config.decoder_hidden_size == 256
    elif family == "upernet-convnext-small":
        assert config.backbone_config.depths == [3, 3, 27, 3] and config.auxiliary_in_channels == 384
    elif family == "upernet-swin-tiny":
        assert config.backbone_config.embed_dim == 96 and config.auxiliary_in_channels == 384
    else:
        assert config.out_indices == [3, 5, 7, 11] and config.image_size == 640


def test_adapt_input_weight_rules():
    w = torch.randn(8, 3, 3, 3)
    torch.testing.assert_close(adapt_input_weight(w, 1), w.sum(1, keepdim=True))
    four = adapt_input_weight(w, 4)
    torch.testing.assert_close(four[:, :3], w * 0.75)
    torch.testing.assert_close(four[:, 3], w[:, 0] * 0.75)
    # An input whose channels are all equal keeps its first-layer response when going 3 -> 1 channel.
    x = torch.randn(1, 1, 5, 5)
    torch.testing.assert_close(torch.conv2d(x.expand(1, 3, 5, 5), w), torch.conv2d(x, adapt_input_weight(w, 1)))


@pytest.fixture(scope="module")
def segformer_checkpoint(tmp_path_factory):
    """A tiny RGB Segformer with 5 classes, saved as a stand-in for `nvidia/mit-b0`."""
    path = tmp_path_factory.mktemp("segformer")
    torch.manual_seed(1)
    hfseg.create_model("segformer-b0", num_labels=5, **TINY_FAMILIES["segformer-b0"]).save_pretrained(path)
    return path


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_pretrained_checkpoint_new_head_and_adapted_channels(segformer_checkpoint, channels):
    source = AutoModelForSemanticSegmentation.from_pretrained(segformer_checkpoint)
    model = hfseg.create_model("segformer-b0", pretrained=str(segformer_checkpoint),
                               id2label={0: "background", 1: "liver"}, num_channels=channels)
    assert model.config.num_labels == 2 and model.config.id2label[1] == "liver"
    assert model.decode_head.classifier.out_channels == 2
    # The first conv: segformer.stages.0.patch_embeddings.proj (segformer.encoder.patch_embeddings.0.proj in 5.4)
    stem = next(n for n, m in source.named_modules() if isinstance(m, torch.nn.Conv2d)) + ".weight"
    src, new = source.state_dict(), model.state_dict()
    torch.testing.assert_close(new[stem], adapt_input_weight(src[stem], channels))
    for key, value in src.items():  # everything but the stem and the classifier is the pretrained weight
        if key != stem and not key.startswith("decode_head.classifier"):
            torch.testing.assert_close(new[key], value, msg=key)
    out = model(pixel_values=torch.randn(1, channels, 64, 64), labels=torch.randint(0, 2, (1, 64, 64)))
    assert out.logits.shape[1] == 2 and torch.isfinite(out.loss)


def test_checkpoint_folder_as_name_and_family_mismatch(segformer_checkpoint, tmp_path):
    model = hfseg.create_model(str(segformer_checkpoint), num_labels=3)
    assert model.config.model_type == "segformer" and model.config.num_labels == 3
    with pytest.raises(ValueError, match="is a 'segformer' model, not a 'upernet-convnext-tiny'"):
        hfseg.create_model("upernet-convnext-tiny", pretrained=str(segformer_checkpoint))
    hfseg.create_model("unet", base_channels=4, depth=2).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="is a 'hfseg_unet' model, not a 'segformer-b0'"):
        hfseg.create_model("segformer-b0", pretrained=str(tmp_path))


def test_unet_checkpoint_fine_tuned_to_new_labels_and_channels(tmp_path):
    source = hfseg.create_model("attention-unet", base_channels=4, depth=2, num_labels=4)
    source.save_pretrained(tmp_path)
    model = hfseg.create_model("attention-unet", pretrained=str(tmp_path), num_labels=2, num_channels=1)
    stem = "unet.encoder.stages.0.convs.0.0.weight"
    torch.testing.assert_close(model.state_dict()[stem], source.state_dict()[stem].sum(1, keepdim=True))
    assert model.config.num_channels == 1 and model.head.out_channels == 2
    assert model(torch.randn(1, 1, 20, 20)).logits.shape == (1, 2, 20, 20)


def test_timm_unet_with_pretrained_encoder_file(tmp_path):
    """`pretrained=<file>` loads timm weights into the encoder (the real path uses timm's Hub weights)."""
    torch.manual_seed(3)
    weights = timm.create_model("resnet18").state_dict()
    save_file(weights, tmp_path / "resnet18.safetensors")
    model = hfseg.create_model("timm-unet", encoder="resnet18", num_labels=2, num_channels=1,
                               pretrained=str(tmp_path / "resnet18.safetensors"))
    encoder = model.unet.encoder.backbone.state_dict()
    torch.testing.assert_close(encoder["conv1.weight"], weights["conv1.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(encoder["layer4.1.conv2.weight"], weights["layer4.1.conv2.weight"])


def test_hub_ids_go_to_the_hub_path(monkeypatch):
    asked = []

    def fake_from_pretrained(name, *args, **kwargs):
        asked.append(name)
        raise OSError("offline")

    monkeypatch.setattr("hfseg.models.zoo.AutoConfig.from_pretrained", fake_from_pretrained)
    for args, kwargs in [(("segformer-b0",), {"pretrained": True}), (("upernet-swin-tiny",), {"pretrained": True}),
                         (("some-org/liver-unet",), {}), (("beit-base",), {"pretrained": "org/beit-ct"})]:
        with pytest.raises(OSError, match="Cannot load the checkpoint"):
            hfseg.create_model(*args, num_labels=2, **kwargs)
    assert asked == ["nvidia/mit-b0", "openmmlab/upernet-swin-tiny", "some-org/liver-unet", "org/beit-ct"]


def test_zoo_errors():
    with pytest.raises(ValueError, match="Unknown model 'segformer-b9'.*segformer-b0"):
        hfseg.create_model("segformer-b9")
    with pytest.raises(ValueError, match="no published weights"):
        hfseg.create_model("unet", pretrained=True)
    with pytest.raises(ValueError, match="disagrees with id2label"):
        hfseg.create_model("unet", num_labels=3, id2label={0: "a", 1: "b"})


@pytest.mark.parametrize(("name", "kwargs", "message"), [
    ("attention-unet", {"base_chanels": 16}, "Unknown UNetConfig field 'base_chanels'; did you mean 'base_channels'"),
    ("unet", {"temporal_window": 3}, r"Unknown UNetConfig field 'temporal_window'\. UNetConfig fields: "),
    ("segformer-b0", {"hiden_sizes": [8]}, "Unknown SegformerConfig field 'hiden_sizes'; did you mean 'hidden_sizes'"),
    ("upernet-swin-tiny", {"auxilary_channels": 8},
     "Unknown UperNetConfig field 'auxilary_channels'; did you mean 'auxiliary_channels'"),
    ("upernet-convnext-tiny", {"backbone_config": {"depth": [1, 1, 1, 1]}},
     "Unknown ConvNextConfig backbone_config field 'depth'; did you mean 'depths'"),
    ("dpt-large", {"neck_hidden_size": [8]}, "Unknown DPTConfig field 'neck_hidden_size'; did you mean "
                                             "'neck_hidden_sizes'"),
    ("beit-base", {"out_indice": [0]}, "Unknown BeitConfig field 'out_indice'; did you mean 'out_indices'"),
])
def test_unknown_config_fields_are_errors_with_close_matches(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        hfseg.create_model(name, num_labels=2, **kwargs)


def test_generic_config_keywords_reach_every_family():
    for family in ["segformer-b0", "upernet-convnext-tiny", "beit-base"]:
        model = hfseg.create_model(family, num_labels=2, output_hidden_states=True, problem_type=None,
                                   **TINY_FAMILIES[family])
        assert model.config.output_hidden_states


def test_a_typo_fails_before_any_download(monkeypatch):
    def offline(*args, **kwargs):
        raise AssertionError("the Hub was asked")

    monkeypatch.setattr("hfseg.models.zoo.AutoConfig.from_pretrained", offline)
    with pytest.raises(ValueError, match="did you mean 'decoder_hidden_size'"):
        hfseg.create_model("segformer-b0", pretrained=True, decoder_hiden_size=16)


def test_checkpoint_overrides_are_fields_its_config_stores(segformer_checkpoint, tmp_path):
    hfseg.create_model("unet", base_channels=4, depth=2).save_pretrained(tmp_path)
    assert hfseg.create_model(str(tmp_path), dropout=0.25, output_hidden_states=True).config.dropout == 0.25
    assert hfseg.create_model("unet", pretrained=str(tmp_path), dropout=0.5).config.dropout == 0.5
    with pytest.raises(ValueError, match="Unknown UNetConfig override 'dropot'; did you mean 'dropout'"):
        hfseg.create_model(str(tmp_path), dropot=0.1)
    with pytest.raises(ValueError, match="Unknown UNetConfig override 'base_channels'.*takes overrides of the fields"):
        hfseg.create_model("unet", pretrained=str(tmp_path), base_channels=8)  # the weights fix the widths
    with pytest.raises(ValueError, match="did you mean 'classifier_dropout_prob'"):
        hfseg.create_model(str(segformer_checkpoint), classifier_dropout=0.2)


@pytest.mark.slow
@pytest.mark.parametrize("family", list(hfseg.FAMILIES))
def test_full_size_families_run(family):
    model = hfseg.create_model(family, num_labels=4, num_channels=1).eval()
    size = 640 if family.startswith("beit") else 384 if family.startswith("dpt") else 128
    with torch.no_grad():
        logits = model(pixel_values=torch.randn(1, 1, size, size)).logits
    assert logits.shape[:2] == (1, 4)
