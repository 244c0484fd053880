"""The networks: any input shape the DataModule gives, and the CNN's channels-last layout."""

from __future__ import annotations

import pytest
import torch

from esc50_lightning.models import CNN, MLP, Conv1D
from esc50_lightning.models.nets import ResidualBlock


def residual_cnn(*args, **kwargs) -> CNN:
    return CNN(*args, residual=True, **kwargs)


def freq_aware_cnn(*args, **kwargs) -> CNN:
    return CNN(*args, freq_aware=True, **kwargs)


@pytest.mark.parametrize("net_class", [MLP, Conv1D, CNN, residual_cnn, freq_aware_cnn])
@pytest.mark.parametrize("shape", [(64, 50), (40, 173)])
def test_nets_map_any_spectrogram_shape_to_logits(net_class, shape) -> None:
    net = net_class(*shape, num_classes=7).eval()
    assert net(torch.randn(3, *shape)).shape == (3, 7)


def test_cnn_channels_last_computes_the_same_function() -> None:
    torch.manual_seed(0)
    plain = CNN(32, 40, 5, channels=(8, 16)).eval()
    nhwc = CNN(32, 40, 5, channels=(8, 16), channels_last=True).eval()
    nhwc.load_state_dict(plain.state_dict())
    conv = nhwc.features[1]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(4, 32, 40)
    torch.testing.assert_close(nhwc(x), plain(x), atol=1e-5, rtol=1e-4)


def test_residual_block_adds_its_input_back() -> None:
    same, wider = ResidualBlock(8, 8), ResidualBlock(8, 16)
    for block in (same, wider):  # a body that outputs zero leaves relu(shortcut(x))
        torch.nn.init.zeros_(block.body[-1].weight)
    x = torch.randn(2, 8, 6, 10)
    torch.testing.assert_close(same(x), torch.relu(x))
    assert wider(x).shape == (2, 16, 6, 10)
    plain = CNN(16, 20, 3, channels=(4, 8)).state_dict()
    assert plain["features.1.weight"].shape == (4, 1, 3, 3)  # the plain CNN stays flat: its keys as before
    assert "features.1.shortcut.0.weight" in CNN(16, 20, 3, channels=(4, 8), residual=True).state_dict()


@pytest.mark.parametrize("variant", [residual_cnn, freq_aware_cnn])
def test_cnn_variants_channels_last_compute_the_same_function(variant) -> None:
    torch.manual_seed(0)
    plain = variant(32, 40, 5, channels=(8, 16)).eval()
    nhwc = variant(32, 40, 5, channels=(8, 16), channels_last=True).eval()
    nhwc.load_state_dict(plain.state_dict())
    x = torch.randn(4, 32, 40)
    torch.testing.assert_close(nhwc(x), plain(x), atol=1e-5, rtol=1e-4)


def test_compiled_network_keeps_checkpoint_keys_and_function() -> None:
    from lightning.pytorch import Trainer

    from esc50_lightning.models import AudioClassifier

    torch.manual_seed(0)

    def build(bins: int, frames: int, classes: int) -> torch.nn.Module:
        return CNN(bins, frames, classes, channels=(4,))

    plain = AudioClassifier(build, input_shape=(8, 12), num_classes=3).eval()
    compiled = AudioClassifier(build, input_shape=(8, 12), num_classes=3, compile=True).eval()
    compiled.load_state_dict(plain.state_dict())
    compiled.configure_model()
    assert not compiled.compiled  # no Trainer (as in load_from_checkpoint): stays eager
    compiled.trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    compiled.configure_model()
    compiled.configure_model()  # fit, then test: still compiled once
    assert compiled.compiled and list(compiled.state_dict()) == list(plain.state_dict())
    x = torch.randn(2, 8, 12)
    torch.testing.assert_close(compiled(x), plain(x), atol=1e-5, rtol=1e-4)
    torch._dynamo.reset()  # forget this toy shape: later tests compile the CNN at their own shapes


def test_freq_aware_cnn_normalises_each_band_and_sees_its_position() -> None:
    """Each band's own loudness and spread are taken out (the plain CNN's single input BatchNorm
    cannot do that), and the band's position enters as a second channel, outside the checkpoint."""
    torch.manual_seed(0)
    x = torch.randn(8, 16, 20)
    gain, offset = torch.linspace(0.5, 3, 16).view(1, 16, 1), torch.linspace(-20, 5, 16).view(1, 16, 1)
    aware, plain = freq_aware_cnn(16, 20, 5, channels=(4, 8), dropout=0.0), CNN(16, 20, 5, channels=(4, 8), dropout=0.0)
    torch.testing.assert_close(aware(x * gain + offset), aware(x), atol=1e-4, rtol=1e-3)  # train mode: batch statistics
    assert not torch.allclose(plain(x * gain + offset), plain(x), atol=1e-2)
    assert aware.features[0].weight.shape == (4, 2, 3, 3)  # bands and their position
    assert aware.band_position.flatten().tolist() == pytest.approx(torch.linspace(-1, 1, 16).tolist())
    assert not any("band_position" in key for key in aware.state_dict())
