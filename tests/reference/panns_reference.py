"""The published PANNs networks (Kong et al. 2020), as a reference for the parity tests only.

Written from the definition in ``pytorch/models.py`` of ``qiuqiangkong/audioset_tagging_cnn``
(Cnn6, Cnn10, Cnn14, and Cnn14_16k, which is Cnn14 at 16 kHz with a 512-sample window, hop 160
and mel bins up to 8 kHz), on the publisher's own front-end package ``torchlibrosa`` (the dev
extra): ``Spectrogram`` and ``LogmelFilterBank`` with the published settings. Module names are
the published ones, so ``state_dict()`` is what the released checkpoints hold under ``"model"``.
Forward returns ``{"clipwise_output", "embedding"}`` as the published models do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchlibrosa.augmentation import SpecAugmentation
from torchlibrosa.stft import LogmelFilterBank, Spectrogram


class TwoConv(nn.Module):
    """conv3x3-BN-ReLU twice (Cnn10 and Cnn14)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)
        self.conv2 = nn.Conv2d(cout, cout, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x, pool_size=(2, 2)):
        x = F.relu_(self.bn2(self.conv2(F.relu_(self.bn1(self.conv1(x))))))
        return F.avg_pool2d(x, kernel_size=pool_size)


class OneConv5(nn.Module):
    """conv5x5-BN-ReLU (Cnn6)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2), bias=False)
        self.bn1 = nn.BatchNorm2d(cout)

    def forward(self, x, pool_size=(2, 2)):
        return F.avg_pool2d(F.relu_(self.bn1(self.conv1(x))), kernel_size=pool_size)


class Reference(nn.Module):
    def __init__(self, sample_rate, window_size, hop_size, fmin, fmax, block, widths, last_pool=(2, 2)):
        super().__init__()
        self.spectrogram_extractor = Spectrogram(n_fft=window_size, hop_length=hop_size, win_length=window_size,
                                                 window="hann", center=True, pad_mode="reflect", freeze_parameters=True)
        self.logmel_extractor = LogmelFilterBank(sr=sample_rate, n_fft=window_size, n_mels=64, fmin=fmin, fmax=fmax,
                                                 ref=1.0, amin=1e-10, top_db=None, freeze_parameters=True)
        self.spec_augmenter = SpecAugmentation(time_drop_width=64, time_stripes_num=2, freq_drop_width=8,
                                               freq_stripes_num=2)
        self.bn0 = nn.BatchNorm2d(64)
        cin = 1
        for i, cout in enumerate(widths, 1):
            setattr(self, f"conv_block{i}", block(cin, cout))
            cin = cout
        self.n_blocks, self.last_pool = len(widths), last_pool
        self.fc1 = nn.Linear(cin, cin, bias=True)
        self.fc_audioset = nn.Linear(cin, 527, bias=True)

    def forward(self, input, mixup_lambda=None):
        x = self.logmel_extractor(self.spectrogram_extractor(input))  # (batch, 1, time, mel)
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        if self.training:
            x = self.spec_augmenter(x)
        for i in range(1, self.n_blocks + 1):
            pool = self.last_pool if i == self.n_blocks else (2, 2)
            x = F.dropout(getattr(self, f"conv_block{i}")(x, pool_size=pool), p=0.2, training=self.training)
        x = torch.mean(x, dim=3)
        (x1, _) = torch.max(x, dim=2)
        x = x1 + torch.mean(x, dim=2)
        x = F.dropout(x, p=0.5, training=self.training)
        x = F.relu_(self.fc1(x))
        embedding = F.dropout(x, p=0.5, training=self.training)
        return {"clipwise_output": torch.sigmoid(self.fc_audioset(x)), "embedding": embedding}


def Cnn6():
    return Reference(32000, 1024, 320, 50, 14000, OneConv5, (64, 128, 256, 512))


def Cnn10():
    return Reference(32000, 1024, 320, 50, 14000, TwoConv, (64, 128, 256, 512))


def Cnn14():
    return Reference(32000, 1024, 320, 50, 14000, TwoConv, (64, 128, 256, 512, 1024, 2048), last_pool=(1, 1))


def Cnn14_16k():
    return Reference(16000, 512, 160, 50, 8000, TwoConv, (64, 128, 256, 512, 1024, 2048), last_pool=(1, 1))


REFERENCES = {"Cnn6": Cnn6, "Cnn10": Cnn10, "Cnn14": Cnn14, "Cnn14_16k": Cnn14_16k}


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BatchNorm statistics (the published init leaves BN at identity, which a
    parity test would not notice), the front end left as the publisher computes it."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.startswith(("spectrogram_extractor", "logmel_extractor")) or not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith(("running_mean", "bias")):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            elif name.endswith("weight") and t.dim() == 1:
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=g) * (2.0 / fan_in) ** 0.5)
    return model
