"""The peers behind hfseg's model interface: logits shape, `save_pretrained` round trip, clear install error."""

import pytest
import torch

from benchmarks.peers import PEERS, PeerSegmenter, build_peer, peer_available


@pytest.mark.parametrize("name", list(PEERS))
def test_peer_takes_pixel_values_and_round_trips(name, tmp_path):
    if not peer_available(name):
        pytest.skip(f"{PEERS[name][0]} is not installed")
    torch.manual_seed(0)
    model = build_peer(name, num_channels=1, num_labels=3).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        logits = model(pixel_values=x, output_attentions=True).logits
    assert logits.shape == (2, 3, 64, 64)
    model.save_pretrained(tmp_path)
    loaded = PeerSegmenter.from_pretrained(tmp_path).eval()
    assert loaded.name == name
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values=x).logits, logits)


def test_unknown_peer_lists_the_peers():
    with pytest.raises(ValueError, match="monai-attention-unet"):
        PeerSegmenter("nnunet")
