import librosa
import numpy as np
import pytest
import torch

from esc50_lightning.features import (
    RandomCrop,
    RandomGain,
    RandomStretch,
    RandomTimeShift,
    SpecAugment,
    SpectrogramFrontend,
    Standardize,
    pool,
    power_to_db,
    stretch_and_shift,
)
from esc50_lightning.features.spectrogram import log_frequency_fbanks

RATE = 16000


def noise_burst(seed=0, seconds=1.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(int(RATE * seconds), generator=g) * 0.1
    x[: RATE // 4] *= 10
    return x


@pytest.mark.parametrize("kind, bins", [("linear", 513), ("log_freq", 64), ("log_mel", 64)])
def test_shapes(kind, bins):
    front = SpectrogramFrontend(kind, RATE, n_fft=1024, hop_length=256, n_mels=64)
    out = front(torch.stack([noise_burst(0), noise_burst(1)]))
    assert out.shape == (2, bins, 1 + RATE // 256)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("n_fft, win, hop, mels", [(1024, None, 512, 128), (2048, 1024, 256, 64), (512, 400, 160, 40)])
def test_log_mel_equals_librosa(n_fft, win, hop, mels):
    """Tolerance: 1e-3 dB (float32 FFT against librosa's float32 numpy FFT)."""
    x = noise_burst(3).numpy()
    ours = SpectrogramFrontend("log_mel", RATE, n_fft, win, hop, mels)(torch.from_numpy(x)).numpy()
    ref = librosa.power_to_db(librosa.feature.melspectrogram(
        y=x, sr=RATE, n_fft=n_fft, win_length=win, hop_length=hop, n_mels=mels), top_db=80.0)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-3)


def test_db_is_per_example():
    """A clip's features do not depend on its batch mates (unlike AmplitudeToDB on a batch)."""
    front = SpectrogramFrontend("log_mel", RATE, 512, None, 256, 40)
    quiet, loud = noise_burst(0) * 1e-3, noise_burst(1) * 10
    alone = front(quiet)
    batched = front(torch.stack([quiet, loud]))[0]
    torch.testing.assert_close(alone, batched)
    assert alone.max() - alone.min() <= 80.0 + 1e-4


def test_power_to_db_floor():
    p = torch.tensor([[[1.0, 1e-12], [1e-3, 1e-9]]])
    db = power_to_db(p, top_db=50)
    assert db.max() == 0 and db.min() == -50


def test_log_frequency_bins_are_log_spaced_and_never_empty():
    fb = log_frequency_fbanks(513, 32.7, 8000, 96, RATE)
    assert fb.shape == (513, 96)
    assert torch.allclose(fb.sum(0), torch.ones(96))
    centres = SpectrogramFrontend("log_freq", RATE, 1024, None, 512, 96).bin_frequencies(RATE)
    ratios = centres[40:] / centres[39:-1]
    assert ratios.std() / ratios.mean() < 0.05  # constant ratio above the FFT resolution
    assert (centres.diff() >= 0).all()


def test_pooling():
    x = torch.arange(24.0).reshape(2, 3, 4)
    assert pool(x, "mean").shape == (2, 3)
    torch.testing.assert_close(pool(x, "max"), x[..., -1])
    assert pool(x, "meanstd").shape == (2, 6)
    assert pool(x, "stats").shape == (2, 15)
    torch.testing.assert_close(pool(x, "delta_mean"), torch.ones(2, 3))
    with pytest.raises(ValueError, match="unknown pooling"):
        pool(x, "median")


def test_standardize_uses_given_statistics():
    train = torch.randn(10, 4, 20) * 3 + 5
    norm = Standardize(4).fit(train)
    z = norm(train)
    torch.testing.assert_close(z.mean(dim=(0, 2)), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(norm(torch.full((1, 4, 2), 5.0)), (5 - norm.mean) / norm.std * torch.ones(1, 4, 2))


def test_augmentations_change_training_batches_only():
    x = torch.randn(8, 32, 50)
    for module in (RandomGain(6), RandomTimeShift(0.5), SpecAugment(2, 8, 2, 10), RandomStretch(0.2, 3)):
        module.train()
        y = module(x)
        assert y.shape == x.shape and not torch.equal(y, x)
        module.eval()
        assert torch.equal(module(x), x)
    shifted = RandomTimeShift(0.5).train()(x)
    torch.testing.assert_close(shifted.sort(-1).values, x.sort(-1).values)  # a roll keeps the frames
    masked = SpecAugment(1, 8, 0, 10).train()(x)
    assert ((masked == 0).all(-1).sum(-1) <= 8).all()  # at most 8 whole bins masked per example


def test_random_crop_cuts_contiguous_windows_per_example():
    x = torch.arange(100.0).expand(16, 4, 100)  # frame index as the value
    crop = RandomCrop(30).train()
    y = crop(x)
    assert y.shape == (16, 4, 30)
    steps = y.diff(dim=-1)
    assert (steps == 1).all()  # contiguous windows
    assert (y[:, :1] == y).all() and len(set(y[:, 0, 0].tolist())) > 1  # one start per example
    assert torch.equal(crop.eval()(x), x) and torch.equal(RandomCrop(200).train()(x), x)


def test_stretch_and_shift_move_content_where_expected():
    x = torch.zeros(2, 32, 64)
    x[:, 10, 24:40] = 1.0  # a tone in bin 10, frames 24-39 (centred on the clip)
    same = stretch_and_shift(x, torch.ones(2), torch.zeros(2))
    torch.testing.assert_close(same, x)
    up = stretch_and_shift(x, torch.ones(2), torch.tensor([3.0, -2.0]))
    assert up[0].sum(-1).argmax() == 13 and up[1].sum(-1).argmax() == 8  # whole bins: exact moves
    slow = stretch_and_shift(x, torch.tensor([2.0, 0.5]), torch.zeros(2))
    active = slow[:, 10] > 0.5
    assert active[0].sum() == 32 and active[0, 16:48].all()  # twice as long, around the centre
    assert active[1, 16:48].sum() == 8 and active[1, 28:36].all()  # half as long (edges reflect)
    assert slow.shape == x.shape


def band_starts(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(widths, starts)`` of one-band masks ``(n, size)``; the start of an empty band is -1."""
    widths = masks.sum(-1)
    starts = torch.where(widths > 0, masks.float().argmax(-1), torch.full_like(widths, -1))
    return widths, starts


def test_spec_augment_draws_each_width_then_every_start_that_fits_alike():
    """SpecAugment's band: a width uniform over ``0 .. width - 1``, then a start uniform over the
    ``size - width`` starts it draws from. torchaudio's ``FrequencyMasking``/``TimeMasking`` with
    ``iid_masks`` draw the same widths, but their start from ``size - v`` with ``v`` the width
    before rounding down, so the last start comes about half as often as the others (and in the
    input's dtype: in bf16 the positions are rounded). That is why ours stays."""
    from torchaudio.transforms import FrequencyMasking

    from esc50_lightning.features.augment import random_bands

    torch.manual_seed(0)
    n, size, width = 200_000, 10, 4
    widths, starts = band_starts(random_bands(n, 1, width, size, torch.device("cpu")))
    theirs_w, theirs_s = band_starts(FrequencyMasking(width, iid_masks=True)(torch.ones(n, size, 1))[..., 0] == 0)
    for w in range(width):
        assert (widths == w).float().mean() == pytest.approx(1 / width, abs=0.005)
        assert (theirs_w == w).float().mean() == pytest.approx(1 / width, abs=0.005)
    for w in range(1, width):
        ours = torch.bincount(starts[widths == w], minlength=size)[: size - w].float()
        assert ours.min() / ours.max() > 0.9  # every start alike
        theirs = torch.bincount(theirs_s[theirs_w == w], minlength=size)[: size - w].float()
        assert theirs[-1] / theirs[:-1].mean() < 0.6  # their last start: about half as often
