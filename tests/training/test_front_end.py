"""Tests of training.front_end: Tango's waveform preparation, AudioLDM's log-mel and the loudness-aware mixup.

The mel is checked against an independent NumPy implementation (framed rfft, NumPy's Hann window, transformers' mel
filter bank), the mixing rule against its closed form on signals whose loudness is known.
"""

import math

import numpy as np
import pytest
import torch
from transformers.audio_utils import mel_filter_bank

from datasets_scripts.audio import ClipError
from training.front_end import (
    HOP_LENGTH,
    SAMPLING_RATE,
    TARGET_FRAMES,
    TARGET_SAMPLES,
    TangoMelSpectrogram,
    a_weighting_db,
    crop_or_pad,
    gain_db,
    mix_loudness_aware,
    mixup,
    normalize_waveform,
    prepare_waveform,
)


def reference_mel_filters() -> np.ndarray:
    """librosa's default mel filters for Tango (slaney scale and norm, 64 mels to 8 kHz), from transformers."""
    return mel_filter_bank(
        num_frequency_bins=513,
        num_mel_filters=64,
        min_frequency=0,
        max_frequency=8000,
        sampling_rate=16000,
        norm="slaney",
        mel_scale="slaney",
    )


def tone(frequency, seconds, rate=SAMPLING_RATE, amplitude=0.5, phase=0.0):
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t + phase)).astype(np.float32)


def reference_log_mel(audio: np.ndarray) -> np.ndarray:
    """AudioLDM's mel, written from its description with NumPy only: reflect-pad 512, frames of 1024 every 160,
    periodic Hann, |rfft|, slaney mel filters, natural log floored at 1e-5."""
    audio = np.asarray(audio, dtype=np.float64)
    padded = np.pad(audio, (512, 512), mode="reflect")
    starts = np.arange(0, len(padded) - 1024 + 1, 160)
    frames = np.stack([padded[s : s + 1024] for s in starts])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)
    magnitude = np.abs(np.fft.rfft(frames * window, axis=-1))
    filters = reference_mel_filters()
    return np.log(np.maximum(magnitude @ filters, 1e-5))


@pytest.fixture(scope="module")
def mel():
    return TangoMelSpectrogram()


def test_constants():
    assert (SAMPLING_RATE, HOP_LENGTH, TARGET_FRAMES, TARGET_SAMPLES) == (16000, 160, 1024, 163840)


def test_mel_matches_numpy_reference(mel):
    rng = np.random.default_rng(0)
    audio = 0.3 * tone(440, 2.0) + 0.1 * tone(3100, 2.0) + 0.05 * rng.standard_normal(32000).astype(np.float32)
    expected = reference_log_mel(audio)
    assert expected.shape == (201, 64)
    got = mel(torch.from_numpy(audio)[None], num_frames=201)[0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    # Default frame count is samples // hop: the STFT's 201st frame is cut, as Tango's _pad_spec does.
    default = mel(torch.from_numpy(audio)[None])[0].numpy()
    assert default.shape == (200, 64)
    np.testing.assert_array_equal(default, got[:200])


def test_mel_full_length_shape_padding_and_dtypes(mel):
    rng = np.random.default_rng(1)
    audio = torch.from_numpy(0.2 * rng.standard_normal((2, TARGET_SAMPLES)).astype(np.float32))
    out = mel(audio)
    assert out.shape == (2, TARGET_FRAMES, 64) and out.dtype == torch.float32
    np.testing.assert_allclose(out[1].numpy(), reference_log_mel(audio[1].numpy())[:TARGET_FRAMES], atol=1e-4, rtol=0)
    # Missing frames are zeros (Tango's _pad_spec), the 1025th STFT frame is real.
    longer = mel(audio, num_frames=1030)
    torch.testing.assert_close(longer[:, :1024], out)
    assert torch.all(longer[:, 1025:] == 0) and not torch.all(longer[:, 1024] == 0)
    # bf16 input is computed in float32: only the input's rounding differs.
    from_bf16 = mel(audio.bfloat16())
    assert from_bf16.dtype == torch.float32
    torch.testing.assert_close(from_bf16, mel(audio.bfloat16().float()))
    # A module cast to bf16 still computes in float32 and keeps no state in its state dict.
    assert mel.state_dict() == {}
    torch.testing.assert_close(TangoMelSpectrogram().to(torch.bfloat16)(audio), out)
    # 1-D input gives (frames, mels).
    torch.testing.assert_close(mel(audio[0]), out[0])


def test_mel_tone_lands_in_its_band_and_silence_is_the_floor(mel):
    filters = reference_mel_filters()
    for frequency in (1000.0, 4000.0):
        log_mel = mel(torch.from_numpy(tone(frequency, 1.0))[None])[0]
        expected_bin = int(np.argmax(filters[round(frequency / (16000 / 1024))]))
        assert int(log_mel[10:-10].mean(0).argmax()) == expected_bin
    silence = mel(torch.zeros(1, 16000))
    torch.testing.assert_close(silence, torch.full_like(silence, math.log(1e-5)))
    # NaNs become zeros and the input is clipped to [-1, 1] before the STFT.
    dirty = torch.from_numpy(tone(1000.0, 1.0, amplitude=3.0))[None].clone()
    dirty[0, 100] = float("nan")
    clean = torch.nan_to_num(dirty).clamp(-1, 1)
    torch.testing.assert_close(mel(dirty), mel(clean))


def test_mel_rejects_bad_input(mel):
    with pytest.raises(ValueError, match="512"):
        mel(torch.zeros(1, 400))
    with pytest.raises(ValueError, match=r"\(1, 1, 16000\)"):
        mel(torch.zeros(1, 1, 16000))
    with pytest.raises(ValueError, match="win_length=2048"):
        TangoMelSpectrogram({**mel_config(), "win_length": 2048})


def mel_config():
    from pipelines.tango_clap.architectures import TANGO_STFT_CONFIG

    return dict(TANGO_STFT_CONFIG)


def test_normalize_waveform_centres_and_scales_each_row():
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.standard_normal((3, 5000)).astype(np.float32)) * torch.tensor([[0.01], [1.0], [7.0]]) + 2
    y = normalize_waveform(x)
    torch.testing.assert_close(y.mean(-1), torch.zeros(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(y.abs().amax(-1), torch.full((3,), 0.5), atol=1e-6, rtol=0)
    # Tango's formula on one row.
    row = x[1] - x[1].mean()
    torch.testing.assert_close(y[1], 0.5 * row / (row.abs().max() + 1e-8))


def test_crop_or_pad():
    x = torch.arange(100, dtype=torch.float32)
    torch.testing.assert_close(crop_or_pad(x, 40), x[:40])
    padded = crop_or_pad(x, 130)
    torch.testing.assert_close(padded[:100], x)
    assert torch.all(padded[100:] == 0)
    starts = []
    for seed in range(8):
        first = crop_or_pad(x, 40, torch.Generator().manual_seed(seed))
        again = crop_or_pad(x, 40, torch.Generator().manual_seed(seed))
        torch.testing.assert_close(first, again)
        start = int(first[0])
        torch.testing.assert_close(first, x[start : start + 40])
        starts.append(start)
    assert len(set(starts)) > 3
    # A random generator does not shift a clip that already fits.
    torch.testing.assert_close(crop_or_pad(x[:30], 40, torch.Generator().manual_seed(0))[:30], x[:30])


def test_prepare_waveform_resamples_pads_and_normalises():
    # 5 s of a 440 Hz stereo tone at 44.1 kHz with a DC offset: mono, 16 kHz, centred, padded, peak 0.5.
    left = tone(440, 5.0, rate=44100, amplitude=0.3) + 0.2
    stereo = np.stack([left, left])
    out = prepare_waveform(stereo, 44100)
    assert out.shape == (TARGET_SAMPLES,) and out.dtype == torch.float32
    assert abs(float(out.abs().max()) - 0.5) < 1e-6
    assert torch.all(out[80000 + 10 :] == 0)
    spectrum = np.abs(np.fft.rfft(out[:80000].numpy()))
    assert abs(np.argmax(spectrum) * 16000 / 80000 - 440) < 1
    assert abs(float(out[:80000].mean())) < 1e-3
    # A 12 s clip is cut to 10.24 s: the start (Tango) without a generator, a seeded random stretch with one.
    long = np.concatenate([tone(300, 6.0, rate=22050), tone(2000, 6.0, rate=22050)])
    start = prepare_waveform(torch.from_numpy(long), 22050)
    crop_a = prepare_waveform(long, 22050, generator=torch.Generator().manual_seed(3))
    crop_b = prepare_waveform(long, 22050, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(crop_a, crop_b)
    assert start.shape == crop_a.shape == (TARGET_SAMPLES,)
    assert abs(float(crop_a.abs().max()) - 0.5) < 1e-6
    # Equal to Tango's steps written out: resample, normalize_wav, keep the start, peak 0.5.
    import torchaudio

    resampled = torchaudio.functional.resample(torch.from_numpy(long), 22050, 16000)
    tango = normalize_waveform(resampled)[:TARGET_SAMPLES]
    torch.testing.assert_close(start, 0.5 * tango / tango.abs().max())


def test_prepare_waveform_failures():
    with pytest.raises(ClipError) as info:
        prepare_waveform(np.zeros(16000, dtype=np.float32), 16000)
    assert info.value.reason == "silent"
    with pytest.raises(ClipError) as info:
        prepare_waveform(np.zeros((1, 0), dtype=np.float32), 16000)
    assert info.value.reason == "empty"
    bad = tone(440, 1.0)
    bad[5] = np.inf
    with pytest.raises(ClipError) as info:
        prepare_waveform(bad, 16000)
    assert info.value.reason == "non_finite"
    # A long clip whose cut keeps only digital silence is skipped as silent rather than amplified.
    quiet_tail = np.concatenate([tone(440, 1.0), np.zeros(16000 * 30, dtype=np.float32)])
    with pytest.raises(ClipError) as info:
        prepare_waveform(quiet_tail, 16000, num_samples=16000, generator=torch.Generator().manual_seed(0))
    assert info.value.reason == "silent"


def test_a_weighting_curve():
    weights = a_weighting_db(16000, 2048)
    freqs = np.linspace(0, 8000, 1025)
    assert weights.shape == (1025,)
    assert weights[0] == -80.0
    # IEC 61672 A-weighting: 0 dB at 1 kHz, -19.1 dB at 100 Hz, +1.0 dB at 4 kHz (to ~0.1 dB).
    for frequency, expected in ((1000, 0.0), (100, -19.1), (4000, 1.0)):
        assert abs(np.interp(frequency, freqs, weights) - expected) < 0.15, frequency


def test_gain_db_tracks_level_and_frames():
    sound = tone(1000, 2.0)
    gains = gain_db(sound)
    # Frames of 2048 every 1024 while a whole frame fits.
    assert gains.shape == ((32000 - 2048) // 1024 + 1,)
    np.testing.assert_allclose(gain_db(0.5 * sound), gains - 20 * math.log10(2), atol=1e-6)
    assert np.all(gain_db(np.zeros(32000)) == -80.0)
    # A-weighting: a 100 Hz tone of the same amplitude is ~19 dB quieter than 1 kHz.
    assert 18 < gains.max() - gain_db(tone(100, 2.0)).max() < 20.5
    with pytest.raises(ValueError, match="22050"):
        gain_db(sound, 22050)


def test_mix_loudness_aware_weights_the_louder_sound_less():
    # Same frequency, orthogonal phases: equal A-weighting, and least squares separates the two in the mix.
    loud = tone(1000, 2.0, amplitude=0.5, phase=np.pi / 2)
    soft = tone(1000, 2.0, amplitude=0.1)
    mixed = mix_loudness_aware(loud, soft)
    assert mixed.dtype == np.float32 and mixed.shape == loud.shape
    gain_difference = gain_db(loud).max() - gain_db(soft).max()
    assert abs(gain_difference - 20 * math.log10(5)) < 0.01
    t = 1 / (1 + 10 ** (gain_difference / 20))
    assert abs(t - 1 / 6) < 1e-3
    (a, b), *_ = np.linalg.lstsq(np.stack([loud, soft], 1).astype(np.float64), mixed.astype(np.float64), rcond=None)
    norm = math.sqrt(t**2 + (1 - t) ** 2)
    assert abs(a - t / norm) < 1e-4 and abs(b - (1 - t) / norm) < 1e-4
    # The louder source gets the smaller weight, so the two come out about equally loud.
    assert a < b and abs(a * 0.5 - b * 0.1) < 1e-3
    # Equal sounds mix half and half; a ratio favours the first.
    np.testing.assert_allclose(mix_loudness_aware(soft, soft), soft * math.sqrt(2), atol=1e-6)
    (a, b), *_ = np.linalg.lstsq(np.stack([loud, soft], 1).astype(np.float64), mix_loudness_aware(loud, soft, 0.8))
    # t = 1 / (1 + 5 * 0.2 / 0.8) = 4 / 9, so a / b = t / (1 - t) = 0.8.
    assert abs(a / b - 0.8) < 1e-3
    with pytest.raises(ValueError, match="ratio"):
        mix_loudness_aware(loud, soft, 1.0)


def test_mixup_pairs_captions_and_peak():
    rng = np.random.default_rng(3)
    waveforms = torch.from_numpy(rng.uniform(-0.5, 0.5, (5, 8192)).astype(np.float32))
    waveforms *= torch.tensor([[1.0], [0.2], [0.5], [0.05], [1.0]])
    captions = ["A dog barks", "NASA rocket launches", "Rain falls", "Birds sing", "A man speaks"]
    mixed, mixed_captions = mixup(waveforms, captions, generator=torch.Generator().manual_seed(0))
    assert mixed.shape == (4, 8192) and len(mixed_captions) == 4
    # Peak 0.5 over all mixtures together, not each.
    assert abs(float(mixed.abs().max()) - 0.5) < 1e-6
    assert float(mixed.abs().amax(-1).min()) < 0.49
    by_caption = {}
    for i in range(5):
        for j in range(i + 1, 5):
            second = captions[j][0].lower() + captions[j][1:]
            by_caption[f"{captions[i]} and {second}"] = (i, j)
    assert "Rain falls and nASA rocket launches" not in by_caption  # only i < j pairs
    assert "A dog barks and nASA rocket launches" in by_caption  # only the first letter is lowered
    raw = []
    for caption in mixed_captions:
        i, j = by_caption[caption]
        raw.append(mix_loudness_aware(waveforms[i].numpy(), waveforms[j].numpy()))
    raw = np.stack(raw)
    np.testing.assert_allclose(mixed.numpy(), raw / np.abs(raw).max() * 0.5, atol=1e-6)
    # Deterministic given the generator; other seeds give other pairs.
    again = mixup(waveforms, captions, generator=torch.Generator().manual_seed(0))
    assert again[1] == mixed_captions and torch.equal(again[0], mixed)
    orders = {tuple(mixup(waveforms, captions, generator=torch.Generator().manual_seed(s))[1]) for s in range(6)}
    assert len(orders) > 1


@pytest.mark.parametrize(
    "batch,num_items,expected", [(0, 4, 0), (1, 4, 0), (2, 4, 1), (3, 4, 3), (4, 4, 4), (6, 2, 2)]
)
def test_mixup_count(batch, num_items, expected):
    waveforms = torch.rand(batch, 4096, dtype=torch.float64) - 0.5
    mixed, mixed_captions = mixup(waveforms, [f"C{i}" for i in range(batch)], num_items=num_items)
    assert mixed.shape == (expected, 4096) and len(mixed_captions) == expected
    assert mixed.dtype == torch.float64
    assert len(set(mixed_captions)) == expected
