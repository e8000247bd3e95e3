"""Tango's audio front end, exactly: waveform preparation, the AudioLDM log-mel spectrogram and loudness-aware mixup.

Every number here is a fact about declare-lab/tango (`tools/torch_tools.py`, `tools/mix.py`) or the AudioLDM STFT
it reuses (`audioldm/audio/stft.py`), cited at the function. The implementation is this project's own: the STFT is
`torch.stft` (not a convolution with a Fourier basis) and the mel matrix comes from torchaudio (not librosa); both
give the same numbers, which `tests/training/test_front_end.py` checks against an independent NumPy version.

The pipeline, per training clip:

1. `prepare_waveform`: mono, 16 kHz, centred and peak-normalised to 0.5, cut or zero-padded to 10.24 s
   (163,840 samples), peak-normalised to 0.5 again.
2. `mixup` (on the batch of prepared waveforms): up to 4 random pairs mixed with Tango's loudness-aware rule, their
   captions joined by " and ".
3. `TangoMelSpectrogram`: natural-log mel magnitudes, `(batch, 1024, 64)` for 10.24 s, the VAE's input.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from transformers.utils import logging

from datasets_scripts.audio import EMPTY, NON_FINITE, SILENT, ClipError, resample, to_mono
from pipelines.tango_clap.architectures import TANGO_STFT_CONFIG

logger = logging.get_logger(__name__)

SAMPLING_RATE: int = int(TANGO_STFT_CONFIG["sampling_rate"])
HOP_LENGTH: int = int(TANGO_STFT_CONFIG["hop_length"])
# Tango trains on `target_length = 1024` mel frames (`train.py`), i.e. 1024 * 160 samples = 10.24 s.
TARGET_FRAMES: int = 1024
TARGET_SAMPLES: int = TARGET_FRAMES * HOP_LENGTH

# A clip whose absolute peak is below this (-80 dBFS) carries nothing to learn from, and dividing by its peak would
# only amplify noise (or divide by zero, which is what Tango's second normalisation does on digital silence).
SILENCE_PEAK: float = 1e-4

# Tango's `normalize_wav` and `read_wav_file` scale waveforms to a peak of 0.5, leaving headroom for the mixup.
_PEAK = 0.5
# `normalize_wav`'s guard against dividing by zero.
_NORMALIZE_EPS = 1e-8

# `tools/mix.py::compute_gain` (from Tokozume et al.'s between-class learning code, which Tango vendors) supports
# these rates only, with an FFT of ~128 ms.
_GAIN_N_FFT: dict[int, int] = {16000: 2048, 44100: 4096}


def normalize_waveform(waveform: torch.Tensor) -> torch.Tensor:
    """
    Tango's `normalize_wav` over the last axis: subtracts the mean, divides by the absolute peak (plus 1e-8) and
    scales by 0.5.

    Args:
        waveform (`torch.Tensor`):
            `(..., samples)`.

    Returns:
        `torch.Tensor`: the same shape and dtype, centred, with an absolute peak of 0.5 (unless silent).
    """
    waveform = waveform - waveform.mean(dim=-1, keepdim=True)
    waveform = waveform / (waveform.abs().amax(dim=-1, keepdim=True) + _NORMALIZE_EPS)
    return waveform * _PEAK


def crop_or_pad(waveform: torch.Tensor, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """
    Cuts the last axis to `num_samples` or zero-pads it at the end.

    Tango's `pad_wav` keeps the start of a longer clip. With a `generator`, the kept stretch starts anywhere instead
    (uniformly), so that long clips are seen in full over the epochs.

    Args:
        waveform (`torch.Tensor`):
            `(..., samples)`.
        num_samples (`int`):
            The wanted length.
        generator (`torch.Generator`, *optional*):
            Draws the start of a random crop. `None` keeps the start (Tango).

    Returns:
        `torch.Tensor`: `(..., num_samples)`, same dtype and device.
    """
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}.")
    length = waveform.shape[-1]
    if length > num_samples:
        start = 0
        if generator is not None:
            start = int(torch.randint(0, length - num_samples + 1, (1,), generator=generator, device=generator.device))
        return waveform[..., start : start + num_samples]
    if length < num_samples:
        return torch.nn.functional.pad(waveform, (0, num_samples - length))
    return waveform


def prepare_waveform(
    waveform: np.ndarray | torch.Tensor,
    sampling_rate: int,
    num_samples: int = TARGET_SAMPLES,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """
    Tango's `read_wav_file` on decoded audio: mono, resampled to 16 kHz, `normalize_waveform`, `crop_or_pad`, then
    divided by its absolute peak and scaled by 0.5 again (so a cut that lost the loudest part is back at 0.5).

    Tango keeps the first channel of a multichannel file; this averages the channels (`to_mono`), the down-mix of the
    `datasets` `Audio` feature and of AF-AudioSet's captioner input.

    Args:
        waveform (`np.ndarray` or `torch.Tensor`):
            `(samples,)` or `(channels, samples)`.
        sampling_rate (`int`):
            The waveform's sample rate in Hz.
        num_samples (`int`, *optional*, defaults to 163840):
            Length of the result at 16 kHz (163,840 = 10.24 s, Tango's).
        generator (`torch.Generator`, *optional*):
            Draws a random crop start for clips longer than `num_samples`; `None` keeps the start (Tango).

    Returns:
        `torch.Tensor`: float32 `(num_samples,)` with an absolute peak of 0.5.

    Raises:
        `ClipError`: `"empty"` for zero samples, `"non_finite"` for NaN or infinite samples, `"silent"` when the clip
        (or the stretch a random crop kept) peaks below `SILENCE_PEAK`.
    """
    if isinstance(waveform, torch.Tensor):
        waveform = waveform.detach().to("cpu", torch.float32).numpy()
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim not in (1, 2):
        raise ValueError(f"Expected a waveform of shape (samples,) or (channels, samples), got {waveform.shape}.")
    mono = to_mono(waveform)
    if mono.shape[-1] == 0:
        raise ClipError(EMPTY, "zero samples")
    if not np.isfinite(mono).all():
        raise ClipError(NON_FINITE, "samples contain NaN or infinity")
    peak = float(np.abs(mono).max())
    if peak < SILENCE_PEAK:
        raise ClipError(SILENT, f"peak {peak:.2e} < {SILENCE_PEAK:.0e}")
    audio = torch.from_numpy(resample(mono, int(sampling_rate), SAMPLING_RATE))
    audio = normalize_waveform(audio)
    audio = crop_or_pad(audio, num_samples, generator)
    peak = float(audio.abs().max())
    # The clip itself is not silent (checked above), so this is a crop that kept only near-silence (-80 dB under the
    # clip's peak); scaling it up to 0.5 would teach the model amplified noise.
    if peak < SILENCE_PEAK * _PEAK:
        raise ClipError(SILENT, f"the {num_samples}-sample crop is silent (peak {peak:.2e} after normalisation)")
    return (audio / peak * _PEAK).to(torch.float32).contiguous()


class TangoMelSpectrogram(torch.nn.Module):
    """
    AudioLDM's `TacotronSTFT.mel_spectrogram` as Tango calls it (`tools/torch_tools.py::get_mel_from_wav`): STFT
    magnitude (not power) with a periodic Hann window, the input reflect-padded by `filter_length // 2` on both
    sides; slaney-scale, slaney-normalised mel filters (librosa's defaults, which AudioLDM uses); natural log of the
    mel magnitudes clamped at `clip_val`. Frames are then cut or zero-padded to a fixed count (Tango's `_pad_spec`).

    The filters and the window are non-persistent buffers: they follow `.to(device)` and never enter a checkpoint.
    Computation is in float32 whatever the input's or the module's dtype.

    Args:
        stft_config (`dict`, *optional*, defaults to `TANGO_STFT_CONFIG`):
            `filter_length`, `hop_length`, `win_length`, `n_mel_channels`, `sampling_rate`, `mel_fmin` and
            `mel_fmax` (Tango's `stft_config.json` keys).
        clip_val (`float`, *optional*, defaults to 1e-5):
            Floor of the mel magnitudes before the log (AudioLDM's `dynamic_range_compression` default).
    """

    def __init__(self, stft_config: dict = TANGO_STFT_CONFIG, clip_val: float = 1e-5):
        super().__init__()
        import torchaudio

        missing = [key for key in TANGO_STFT_CONFIG if key not in stft_config]
        if missing:
            raise ValueError(f"stft_config lacks {missing}; got keys {sorted(stft_config)}.")
        self.n_fft = int(stft_config["filter_length"])
        self.hop_length = int(stft_config["hop_length"])
        self.win_length = int(stft_config["win_length"])
        self.n_mels = int(stft_config["n_mel_channels"])
        self.sampling_rate = int(stft_config["sampling_rate"])
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length={self.win_length} exceeds filter_length={self.n_fft}.")
        if clip_val <= 0:
            raise ValueError(f"clip_val must be positive (it is the floor before a log), got {clip_val}.")
        self.clip_val = float(clip_val)
        f_min = float(stft_config["mel_fmin"])
        # librosa (and so AudioLDM) reads fmax=None as the Nyquist frequency.
        f_max = stft_config["mel_fmax"]
        f_max = self.sampling_rate / 2 if f_max is None else float(f_max)
        if not 0 <= f_min < f_max <= self.sampling_rate / 2:
            raise ValueError(
                f"Need 0 <= mel_fmin < mel_fmax <= sampling_rate / 2, got mel_fmin={f_min}, mel_fmax={f_max}, "
                f"sampling_rate={self.sampling_rate}."
            )
        # AudioLDM: scipy.signal.get_window("hann", win_length, fftbins=True), i.e. the periodic Hann window, which
        # torch.stft centres inside n_fft exactly as librosa's pad_center does.
        self.register_buffer("window", torch.hann_window(self.win_length, periodic=True), persistent=False)
        fbanks = torchaudio.functional.melscale_fbanks(
            n_freqs=self.n_fft // 2 + 1,
            f_min=f_min,
            f_max=f_max,
            n_mels=self.n_mels,
            sample_rate=self.sampling_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        self.register_buffer("mel_basis", fbanks.T.contiguous().to(torch.float32), persistent=False)
        # `.to(torch.bfloat16)` on a parent model would round these buffers too; exact copies are kept aside (not
        # buffers, so no cast reaches them) and used whenever the buffers are no longer float32.
        self._float32_buffers = {"window": self.window.clone(), "mel_basis": self.mel_basis.clone()}

    def _float32(self, name: str, device: torch.device) -> torch.Tensor:
        buffer = getattr(self, name)
        if buffer.dtype == torch.float32:
            return buffer
        return self._float32_buffers[name].to(device)

    def forward(self, waveforms: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """
        Args:
            waveforms (`torch.Tensor`):
                `(batch, samples)` (or `(samples,)`) at `sampling_rate`, in [-1, 1]; any float dtype. Needs more than
                `filter_length // 2` samples (the reflection padding).
            num_frames (`int`, *optional*):
                Frames kept: extra frames are cut, missing ones are zeros (Tango's `_pad_spec`). Defaults to
                `samples // hop_length`, 1024 for 10.24 s; the STFT itself gives one more.

        Returns:
            `torch.Tensor`: float32 log-mel `(batch, num_frames, n_mel_channels)` (or `(num_frames, n_mels)`).
        """
        if waveforms.ndim not in (1, 2):
            raise ValueError(
                f"Expected waveforms of shape (batch, samples) or (samples,), got {tuple(waveforms.shape)}."
            )
        squeeze = waveforms.ndim == 1
        audio = waveforms.reshape(1, -1) if squeeze else waveforms
        if audio.shape[-1] <= self.n_fft // 2:
            raise ValueError(
                f"Need more than {self.n_fft // 2} samples for the STFT's reflection padding, got {audio.shape[-1]}."
            )
        if num_frames is None:
            num_frames = audio.shape[-1] // self.hop_length
        if num_frames <= 0:
            raise ValueError(f"num_frames must be positive, got {num_frames}.")
        # Tango's `wav_to_fbank` cleans NaNs and `get_mel_from_wav` clips to [-1, 1] (AudioLDM asserts that range).
        audio = torch.nan_to_num(audio.to(torch.float32)).clamp(-1.0, 1.0)
        spectrum = torch.stft(
            audio,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self._float32("window", audio.device),
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        magnitude = spectrum.abs()
        mel = torch.matmul(self._float32("mel_basis", audio.device), magnitude)
        log_mel = torch.log(torch.clamp(mel, min=self.clip_val)).transpose(1, 2)
        frames = log_mel.shape[1]
        if frames > num_frames:
            log_mel = log_mel[:, :num_frames]
        elif frames < num_frames:
            log_mel = torch.nn.functional.pad(log_mel, (0, 0, 0, num_frames - frames))
        log_mel = log_mel.contiguous()
        return log_mel[0] if squeeze else log_mel


def a_weighting_db(sampling_rate: int, n_fft: int, min_db: float = -80.0) -> np.ndarray:
    """
    The A-weighting curve in dB at the `n_fft // 2 + 1` bins of an rfft, floored at `min_db` (`tools/mix.py::
    a_weight`, IEC 61672 with the +2.0 dB that sets 1 kHz to ~0 dB). The DC bin is evaluated at 1 Hz.

    Args:
        sampling_rate (`int`):
            Sample rate in Hz.
        n_fft (`int`):
            FFT size.
        min_db (`float`, *optional*, defaults to -80.0):
            The floor.

    Returns:
        `np.ndarray`: float64 `(n_fft // 2 + 1,)`.
    """
    freq = np.linspace(0, sampling_rate // 2, n_fft // 2 + 1)
    freq_sq = freq**2
    # log10(0) is -inf; Tango evaluates the DC bin at 1 Hz, whose weight is under the floor anyway.
    freq_sq[0] = 1.0
    weight = 2.0 + 20.0 * (
        2 * np.log10(12194.0)
        + 2 * np.log10(freq_sq)
        - np.log10(freq_sq + 12194.0**2)
        - np.log10(freq_sq + 20.6**2)
        - 0.5 * np.log10(freq_sq + 107.7**2)
        - 0.5 * np.log10(freq_sq + 737.9**2)
    )
    return np.maximum(weight, min_db)


def gain_db(sound: np.ndarray, sampling_rate: int = 16000, min_db: float = -80.0) -> np.ndarray:
    """
    A-weighted loudness of each frame in dB (`tools/mix.py::compute_gain`, mode "A_weighting"): frames of
    `n_fft` samples (2048 at 16 kHz, 4096 at 44.1 kHz) every `n_fft // 2`, a symmetric-Hann-windowed rfft, the
    power spectrum weighted by `a_weighting_db`, summed; floored at `min_db`.

    A sound shorter than one frame is zero-padded to one frame (Tango would find no frame and fail).

    Args:
        sound (`np.ndarray`):
            `(samples,)`.
        sampling_rate (`int`, *optional*, defaults to 16000):
            16000 or 44100.
        min_db (`float`, *optional*, defaults to -80.0):
            The floor, and the floor of the weighting curve.

    Returns:
        `np.ndarray`: float64 `(frames,)`.
    """
    if sampling_rate not in _GAIN_N_FFT:
        raise ValueError(f"gain_db supports sampling rates {sorted(_GAIN_N_FFT)} (Tango's), got {sampling_rate}.")
    sound = np.asarray(sound, dtype=np.float64)
    if sound.ndim != 1:
        raise ValueError(f"Expected a 1-D sound, got shape {sound.shape}.")
    n_fft = _GAIN_N_FFT[sampling_rate]
    stride = n_fft // 2
    if len(sound) < n_fft:
        sound = np.pad(sound, (0, n_fft - len(sound)))
    # Tango's frames: starts 0, stride, ... while a whole frame fits; the tail that does not fill one is ignored.
    frames = np.lib.stride_tricks.sliding_window_view(sound, n_fft)[::stride]
    # np.hanning(n + 1)[:-1] is the periodic Hann window of length n.
    window = np.hanning(n_fft + 1)[:-1]
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2
    weighted = power * 10.0 ** (a_weighting_db(sampling_rate, n_fft, min_db) / 10.0)
    gain = np.maximum(weighted.sum(axis=-1), 10.0 ** (min_db / 10.0))
    return 10.0 * np.log10(gain)


def mix_loudness_aware(
    sound1: np.ndarray, sound2: np.ndarray, ratio: float = 0.5, sampling_rate: int = 16000
) -> np.ndarray:
    """
    Tango's `tools/mix.py::mix` (between-class learning, Tokozume et al., 2018): with `g1`, `g2` the loudest frame's
    `gain_db` of each sound, `t = 1 / (1 + 10 ** ((g1 - g2) / 20) * (1 - ratio) / ratio)` and the mix is
    `(sound1 * t + sound2 * (1 - t)) / sqrt(t ** 2 + (1 - t) ** 2)`. At `ratio` 0.5 the louder sound gets the smaller
    weight, so both are about equally audible.

    Args:
        sound1 (`np.ndarray`):
            `(samples,)`.
        sound2 (`np.ndarray`):
            `(samples,)`, the same length.
        ratio (`float`, *optional*, defaults to 0.5):
            Perceived share of `sound1`, in (0, 1).
        sampling_rate (`int`, *optional*, defaults to 16000):
            See `gain_db`.

    Returns:
        `np.ndarray`: float32 `(samples,)`.
    """
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be in (0, 1), got {ratio}.")
    sound1 = np.asarray(sound1, dtype=np.float64)
    sound2 = np.asarray(sound2, dtype=np.float64)
    if sound1.shape != sound2.shape or sound1.ndim != 1:
        raise ValueError(f"Expected two 1-D sounds of one length, got shapes {sound1.shape} and {sound2.shape}.")
    gain1 = float(np.max(gain_db(sound1, sampling_rate)))
    gain2 = float(np.max(gain_db(sound2, sampling_rate)))
    t = 1.0 / (1.0 + 10.0 ** ((gain1 - gain2) / 20.0) * (1.0 - ratio) / ratio)
    mixed = (sound1 * t + sound2 * (1.0 - t)) / math.sqrt(t**2 + (1.0 - t) ** 2)
    return mixed.astype(np.float32)


def _uncapitalize(text: str) -> str:
    # Tango's `uncapitalize`: only the first character, so "Dog barks, then Alice speaks" keeps "Alice".
    return text[:1].lower() + text[1:]


def mixup(
    waveforms: torch.Tensor, captions: list[str], num_items: int = 4, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, list[str]]:
    """
    Tango's `augment` on a batch of prepared waveforms: every pair `(i, j)`, `i < j`, in a random order, the first
    `num_items` mixed with `mix_loudness_aware(..., ratio=0.5)` and captioned `"{caption_i} and {caption_j}"` (the
    second uncapitalised); the mixtures together are divided by their joint absolute peak and scaled by 0.5.

    Args:
        waveforms (`torch.Tensor`):
            `(batch, samples)` at 16 kHz.
        captions (`list[str]`):
            One per waveform.
        num_items (`int`, *optional*, defaults to 4):
            Most mixtures made (Tango's default).
        generator (`torch.Generator`, *optional*):
            Shuffles the pairs (CPU generator); `None` uses torch's global generator.

    Returns:
        `tuple[torch.Tensor, list[str]]`: only the mixtures, `(min(num_items, batch * (batch - 1) // 2), samples)`
        in the waveforms' dtype and device, and their captions; none for a batch of fewer than 2.
    """
    if waveforms.ndim != 2:
        raise ValueError(f"Expected waveforms of shape (batch, samples), got {tuple(waveforms.shape)}.")
    if len(captions) != waveforms.shape[0]:
        raise ValueError(f"Got {waveforms.shape[0]} waveforms but {len(captions)} captions.")
    if num_items < 0:
        raise ValueError(f"num_items must be non-negative, got {num_items}.")
    pairs = list(itertools.combinations(range(waveforms.shape[0]), 2))
    if not pairs or num_items == 0:
        return waveforms.new_zeros((0, waveforms.shape[1])), []
    order = torch.randperm(len(pairs), generator=generator).tolist()
    chosen = [pairs[k] for k in order[:num_items]]
    sounds = waveforms.detach().to("cpu", torch.float32).numpy()
    mixed = np.stack([mix_loudness_aware(sounds[i], sounds[j], 0.5, SAMPLING_RATE) for i, j in chosen])
    peak = float(np.abs(mixed).max())
    # Only two digital silences mix to silence; leave those at zero rather than divide by zero.
    if peak > 0:
        mixed = mixed / peak * _PEAK
    mixed_captions = [f"{captions[i]} and {_uncapitalize(captions[j])}" for i, j in chosen]
    return torch.from_numpy(mixed).to(device=waveforms.device, dtype=waveforms.dtype), mixed_captions
