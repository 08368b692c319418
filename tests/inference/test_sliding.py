"""`sliding_window`: nnU-Net's window placement and Gaussian, stitching, padding, mirror TTA, stitching device."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from torch import nn
from transformers.modeling_outputs import SemanticSegmenterOutput

import hfseg
from hfseg.inference import compute_steps, gaussian_importance_map, sliding_window
from hfseg.inference import sliding


def _conv_net(dims: int, channels: int = 2, labels: int = 3, seed: int = 0) -> nn.Module:
    """A small nonlinear network with a receptive field of 5 voxels: its logits depend on the window borders."""
    torch.manual_seed(seed)
    conv = nn.Conv3d if dims == 3 else nn.Conv2d
    return nn.Sequential(conv(channels, 4, 3, padding=1), nn.ReLU(), conv(4, labels, 3, padding=1)).eval()


def _pointwise(dims: int, channels: int = 2, labels: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return (nn.Conv3d if dims == 3 else nn.Conv2d)(channels, labels, 1).eval()


def _image(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@torch.inference_mode()
def _whole(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    return model(image[None])[0]


# -- window placement and weights ------------------------------------------------------------------------------
def test_steps_match_hand_computed_nnunet_steps():
    # 160: target step 48, ceil(64 / 48) + 1 = 3 windows, 32 apart; 128: ceil(32 / 48) + 1 = 2; 96: one window.
    assert compute_steps((160, 128, 96), (96, 96, 96), 0.5) == [[0, 32, 64], [0, 32], [0]]
    # 100 - 32 = 68 over ceil(68 / 16) + 1 = 6 windows: 13.6 apart, rounded.
    assert compute_steps((100,), (32,), 0.5) == [[0, 14, 27, 41, 54, 68]]
    assert compute_steps((13,), (8,), 0.5) == [[0, 2, 5]]  # 2.5 rounds half to even, as numpy's round
    assert compute_steps((64, 65), (32, 32), 1.0) == [[0, 32], [0, 16, 33]]  # no overlap where it tiles exactly
    assert compute_steps((40,), (4,), 0.1) == [list(range(37))]  # the step is at least one voxel
    with pytest.raises(ValueError, match="step"):
        compute_steps((64,), (32,), 0.0)
    with pytest.raises(ValueError, match="pad"):
        compute_steps((16,), (32,), 0.5)


def test_gaussian_map_properties():
    weights = gaussian_importance_map((16, 12, 9))
    assert weights.shape == (16, 12, 9) and weights.dtype == torch.float32
    assert weights.max() == pytest.approx(1.0, abs=1e-6) and weights.min() > 0
    torch.testing.assert_close(weights, weights.flip(0, 1, 2), rtol=0, atol=0)
    # sigma = 1/8 of the patch: one sigma away from the centre of an odd axis the weight falls to exp(-1/2).
    odd = gaussian_importance_map((17,), 0.125)
    assert odd[8] == 1 and odd[8 + 2] == pytest.approx(np.exp(-0.5 * (2 / (17 / 8)) ** 2), rel=1e-6)
    # An underflowing Gaussian: its zeros are replaced by its smallest non-zero value.
    g = np.exp(-0.5 * ((np.arange(64) - 31.5) / 0.64) ** 2)
    raw = torch.from_numpy(np.einsum("i,j,k->ijk", g, g, g) / g.max() ** 3).float()
    narrow = gaussian_importance_map((64, 64, 64), sigma_scale=0.01)
    assert (raw == 0).any() and torch.equal(narrow[raw > 0], raw[raw > 0])
    assert (narrow[raw == 0] == raw[raw > 0].min()).all()


def test_gaussian_map_matches_nnunets_filtered_delta():
    """nnU-Net's compute_gaussian: a delta at the centre blurred with scipy, scaled to a maximum of 1 (odd sizes,
    where its centre `n // 2` is the exact centre)."""
    size = (15, 9, 11)
    delta = np.zeros(size)
    delta[tuple(n // 2 for n in size)] = 1
    expected = gaussian_filter(delta, [n / 8 for n in size], 0, mode="constant", cval=0)
    expected /= expected.max()
    np.testing.assert_allclose(gaussian_importance_map(size).numpy(), expected, rtol=1e-5, atol=1e-7)


# -- stitching -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dims", [2, 3])
def test_one_window_equals_the_whole_forward(dims):
    model = _conv_net(dims)
    image = _image(2, *(12,) * dims)
    out = sliding_window(model, image, 12)
    assert out.shape == (3, *(12,) * dims) and out.dtype == torch.float32
    torch.testing.assert_close(out, _whole(model, image), rtol=1e-5, atol=1e-5)


def test_a_transformers_model_is_called_for_its_logits():
    torch.manual_seed(0)
    model = hfseg.UNetForSemanticSegmentation(hfseg.UNetConfig(num_channels=1, num_labels=2, base_channels=4,
                                                               depth=2)).eval()
    image = _image(1, 16, 16)
    with torch.inference_mode():
        whole = model(pixel_values=image[None]).logits[0]
    torch.testing.assert_close(sliding_window(model, image, (16, 16)), whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,patch,step", [
    ((2, 20, 17), (8, 8), 0.5),
    ((2, 33, 16), (16, 6), 0.3),
    ((2, 14, 11, 9), (6, 6, 6), 0.5),
    ((2, 10, 7, 13), (4, 7, 5), 1.0),
    ((2, 5, 20, 6), (8, 8, 8), 0.5),  # smaller than the patch on two axes: padded
])
def test_a_pointwise_model_gives_the_whole_result_for_any_layout(shape, patch, step):
    """Every window predicts the same logit for a voxel, so the weighted average is that logit."""
    model = _pointwise(len(shape) - 1)
    image = _image(*shape)
    out = sliding_window(model, image, patch, step=step, batch_size=2)
    assert out.shape == (3, *shape[1:])
    torch.testing.assert_close(out, _whole(model, image), rtol=1e-5, atol=1e-5)


def test_padding_is_zero_and_centred():
    model = _conv_net(3)
    image = _image(2, 5, 12, 9)
    patch = (8, 12, 12)
    # Hand-made: pad 3 -> (1, 2) on the first axis and 3 -> (1, 2) on the last, predict once, crop.
    padded = F.pad(image, (1, 2, 0, 0, 1, 2))
    expected = _whole(model, padded)[:, 1:6, :, 1:10]
    torch.testing.assert_close(sliding_window(model, image, patch), expected, rtol=1e-5, atol=1e-5)


def test_batch_sizes_and_weighting_paths_agree():
    model = _conv_net(3)
    image = _image(2, 14, 11, 10)
    one = sliding_window(model, image, (6, 6, 6), batch_size=1)
    three = sliding_window(model, image, (6, 6, 6), batch_size=3)
    torch.testing.assert_close(one, three, rtol=1e-5, atol=1e-6)
    # The default divides by per-axis sums of the separable Gaussian; a given map uses a weight accumulator.
    given = sliding_window(model, image, (6, 6, 6), importance=gaussian_importance_map((6, 6, 6)))
    torch.testing.assert_close(one, given, rtol=1e-5, atol=1e-6)
    # Windows really blend: not the whole forward (the net sees different borders).
    assert not torch.allclose(one, _whole(model, image), atol=1e-3)


def test_matches_monai_where_the_layouts_coincide():
    """48 with patch 32 and half overlap: nnU-Net and MONAI both start windows at 0 and 16; with MONAI's
    importance map (floored at 1e-3) both blend the same windows the same way."""
    inferers = pytest.importorskip("monai.inferers")
    from monai.data.utils import compute_importance_map

    model = _conv_net(2)
    image = _image(2, 48, 40)
    weights = compute_importance_map((32, 32), mode="gaussian", sigma_scale=0.125)
    with torch.inference_mode():
        expected = inferers.sliding_window_inference(image[None], (32, 32), 2, model, overlap=0.5,
                                                     mode="gaussian", sigma_scale=0.125)[0]
    out = sliding_window(model, image, (32, 32), batch_size=2, importance=weights)
    torch.testing.assert_close(out, torch.as_tensor(expected), rtol=1e-5, atol=1e-5)


# -- mirror TTA ------------------------------------------------------------------------------------------------
def test_mirroring_a_flip_equivariant_model_changes_nothing():
    model = _pointwise(3)
    image = _image(2, 10, 9, 8)
    plain = sliding_window(model, image, (6, 6, 6))
    torch.testing.assert_close(sliding_window(model, image, (6, 6, 6), mirror_axes=(0, 1, 2)), plain,
                               rtol=1e-5, atol=1e-5)


class Ramp(nn.Module):
    """Logits = input x a ramp along each axis: position-dependent, so mirroring changes them."""

    def forward(self, pixel_values):
        shape = pixel_values.shape[2:]
        ramp = torch.ones(shape)
        for axis, n in enumerate(shape):
            ramp = ramp * torch.linspace(0.5, 2.0 + axis, n).view(*(-1 if a == axis else 1 for a in range(len(shape))))
        return SemanticSegmenterOutput(logits=torch.cat([pixel_values * ramp, -pixel_values * ramp ** 2], 1))


def test_mirroring_averages_the_flipped_back_logits():
    model = Ramp()
    image = _image(1, 8, 6, 7)
    x = image[None]
    views = [()] + [c for r in (1, 2) for c in itertools.combinations((2, 4), r)]  # axes 0 and 2 of (8, 6, 7)
    expected = torch.stack([model(x.flip(d)).logits.flip(d) if d else model(x).logits for d in views]).mean(0)[0]
    out = sliding_window(model, image, (8, 6, 7), mirror_axes=(0, 2))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(out, model(x).logits[0], atol=1e-3)
    with pytest.raises(ValueError, match="mirror_axes"):
        sliding_window(model, image, (8, 6, 7), mirror_axes=(3,))


# -- devices, dtypes, errors -----------------------------------------------------------------------------------
def test_stitching_on_the_cpu_equals_the_default():
    model = _conv_net(3)
    image = _image(2, 14, 11, 10)
    default = sliding_window(model, image, (6, 6, 6), batch_size=2)
    cpu = sliding_window(model, image, (6, 6, 6), batch_size=2, stitch_device="cpu")
    assert cpu.device.type == "cpu"
    torch.testing.assert_close(cpu, default, rtol=0, atol=0)


def test_auto_stitching_falls_back_to_the_cpu(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 0)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (3 * 2**30, 80 * 2**30))
    assert sliding._stitch_device(None, cuda, 2**29) == cuda
    assert sliding._stitch_device(None, cuda, 2**30 + 1) == torch.device("cpu")  # the margin is kept free
    assert sliding._stitch_device("cuda", cuda, 2**40) == cuda  # asked for: no check
    assert sliding._stitch_device(None, torch.device("cpu"), 2**60) == torch.device("cpu")

    zeros = torch.zeros

    def no_room(*args, device=None, **kwargs):
        if torch.device(device).type == "cuda":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return zeros(*args, device=device, **kwargs)

    monkeypatch.setattr(torch, "zeros", no_room)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    total, weight = sliding._accumulators((2, 4, 4), True, cuda, auto=True)
    assert total.device.type == "cpu" and weight.shape == (4, 4)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        sliding._accumulators((2, 4, 4), True, cuda, auto=False)


def test_the_model_dtype_is_kept():
    model = _pointwise(2).to(torch.bfloat16)
    seen = []

    def predict(x):
        seen.append(x.dtype)
        return model(x)

    image = _image(2, 12, 12)
    out = sliding_window(predict, image.bfloat16(), (8, 8))
    assert out.dtype == torch.float32 and set(seen) == {torch.bfloat16}
    torch.testing.assert_close(sliding_window(model, image, (8, 8)), _whole(model, image.bfloat16()).float(),
                               rtol=2e-2, atol=2e-2)


def test_errors_name_the_fix():
    image = _image(1, 8, 8)
    with pytest.raises(ValueError, match="interpolate"):
        sliding_window(lambda x: x[..., ::2, ::2], image, 8)
    with pytest.raises(ValueError, match="channel axis"):
        sliding_window(lambda x: x, image[0], 8)
    with pytest.raises(ValueError, match="patch_size"):
        sliding_window(lambda x: x, image, (8, 8, 8))


def test_cpu_windows_go_channels_last_with_their_values():
    from hfseg.inference.sliding import channels_last_windows

    for shape in ((2, 1, 4, 5, 6), (2, 3, 4, 5, 6), (2, 1, 7, 8), (2, 3, 7, 8)):
        x = torch.randn(shape)
        y = channels_last_windows(x)
        assert torch.equal(x, y)
        fmt = torch.channels_last_3d if x.dim() == 5 else torch.channels_last
        assert y.is_contiguous(memory_format=fmt) and y.stride(1) == 1
