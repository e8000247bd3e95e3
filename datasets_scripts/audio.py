"""Decoding, down-mixing, resampling and windowing of source clips for AF-AudioSet.

The paper captions every 10 s window of AudioSet with Audio Flamingo (16 kHz mono input) and scores each caption
with LAION-CLAP (48 kHz mono input). This module turns one decoded clip into those windows, and turns every way a
clip can fail into a `ClipError` with a reason, so that the builder can account for each input clip: either
windows come out, or a failure with a reason does. Nothing is dropped silently.

Decoding uses torchcodec's `AudioDecoder`, the decoder behind the `datasets` `Audio` feature, so files read from a
folder and rows read from a Hub dataset go through the same FFmpeg code path.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
import torchaudio

# Audio Flamingo (1 and 3) and Whisper-style front ends take 16 kHz mono.
CAPTIONER_RATE = 16000
# LAION-CLAP's audio tower (and transformers' `ClapFeatureExtractor`) takes 48 kHz mono.
CLAP_RATE = 48000
# The paper captions 10 s windows (AudioSet clips are 10 s segments).
WINDOW_SECONDS = 10.0
DEFAULT_MIN_SECONDS = 1.0
DEFAULT_SILENCE_DBFS = -60.0

# Failure reasons. They are plain strings so that they can be written into a failures table as they are.
UNREADABLE = "unreadable"  # missing file, a file FFmpeg cannot open, a decoding error
EMPTY = "empty"  # a zero-byte file or a stream that decodes to zero samples
SILENT = "silent"  # every window's peak is below the silence threshold
TOO_SHORT = "too_short"  # the clip is shorter than the minimum length
NOT_AUDIO = "not_audio"  # a file of the source in which FFmpeg finds no audio stream (a README, an image, a video)
# Decodes, but holds NaN or infinite samples (a float WAV written by a diverged model): never scored or captioned.
NON_FINITE = "non_finite"
FAILURE_REASONS = (UNREADABLE, EMPTY, SILENT, TOO_SHORT, NOT_AUDIO, NON_FINITE)

# CLAP_RATE is an integer multiple of CAPTIONER_RATE; window boundaries are defined at 16 kHz and multiplied by
# this factor at 48 kHz, so that the two versions of a window cover exactly the same stretch of time.
_RATE_RATIO = CLAP_RATE // CAPTIONER_RATE
assert _RATE_RATIO * CAPTIONER_RATE == CLAP_RATE


class ClipError(Exception):
    """
    A clip that yields no windows.

    Args:
        reason (`str`):
            One of `FAILURE_REASONS`: `"unreadable"`, `"empty"`, `"silent"`, `"too_short"`, `"not_audio"` or
                `"non_finite"`.
        detail (`str`, *optional*, defaults to `""`):
            Human-readable detail (the path, the decoder's message, the measured length or level).
    """

    def __init__(self, reason: str, detail: str = ""):
        if reason not in FAILURE_REASONS:
            raise ValueError(f"Unknown clip failure reason {reason!r}; expected one of {FAILURE_REASONS}.")
        # Both go to Exception.__init__ so that the error pickles (multiprocessing workers send it back).
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


def _first_line(message: str, limit: int = 300) -> str:
    # torchcodec's messages start with a C++ source location and may be long; keep them readable in a table.
    message = " ".join(str(message).split())
    return message if len(message) <= limit else message[: limit - 3] + "..."


def probe_audio(path: str | os.PathLike) -> str | None:
    """
    Whether FFmpeg finds an audio stream in a file, whatever its name: the test that decides if a file of a folder is
    a clip. Only the container's header is read (torchcodec's `AudioDecoder` opens the file and picks its best audio
    stream; samples are decoded later, by `decode_audio`).

    Args:
        path (`str` or `os.PathLike`):
            The file.

    Returns:
        `str` or `None`: `None` when the file holds an audio stream (one that turns out damaged fails later, as
        `"unreadable"` or `"empty"`), else why it is not audio, for the `"not_audio"` failure's detail.
    """
    from torchcodec.decoders import AudioDecoder

    path = os.fspath(path)
    if not os.path.isfile(path):
        return f"not a file: {path}"
    if os.path.getsize(path) == 0:
        # Nothing tells what a zero-byte file was meant to be; one named like audio (".wav") is listed by its name
        # without probing and fails as "empty".
        return f"{path}: zero-byte file"
    try:
        AudioDecoder(path)
    except (RuntimeError, ValueError) as error:  # torchcodec's "cannot open" and "no audio stream"
        return f"{path}: FFmpeg finds no audio stream ({_first_line(error, 160)})"
    return None


def decode_audio(
    path_or_bytes: str | os.PathLike | bytes | bytearray | memoryview,
) -> tuple[np.ndarray, int]:
    """
    Decodes a whole audio file (any format FFmpeg reads) with torchcodec's `AudioDecoder`.

    Args:
        path_or_bytes (`str`, `os.PathLike` or `bytes`):
            A local file path, or the encoded file's bytes (as stored in a `datasets` `Audio` column).

    Returns:
        `tuple[np.ndarray, int]`: the waveform, float32 of shape `[channels, samples]` in [-1, 1] for integer
        formats, and its sample rate in Hz (the file's own; nothing is resampled here).

    Raises:
        `ClipError`: `"empty"` for a zero-byte input or a stream that decodes to zero samples, `"unreadable"` for a
        missing file, a file FFmpeg cannot open or decode, or samples that are NaN or infinite.
    """
    # Imported here: torchcodec loads the FFmpeg libraries when imported, which listing sources does not need.
    from torchcodec.decoders import AudioDecoder

    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        source: str | bytes = bytes(path_or_bytes)
        label = f"<{len(source)} bytes>"
        if len(source) == 0:
            raise ClipError(EMPTY, "zero-byte audio data")
    else:
        source = os.fspath(path_or_bytes)
        label = source
        if not os.path.isfile(source):
            raise ClipError(UNREADABLE, f"no such file: {source}")
        # FFmpeg reports a zero-byte file as invalid data; it is an empty clip, and saying so helps find truncated
        # downloads, so it is told apart before decoding.
        if os.path.getsize(source) == 0:
            raise ClipError(EMPTY, f"zero-byte file: {source}")

    try:
        decoder = AudioDecoder(source)
    except Exception as error:  # torchcodec raises RuntimeError/ValueError; any failure to open is the same outcome
        raise ClipError(UNREADABLE, f"{label}: cannot open: {_first_line(error)}") from error
    try:
        samples = decoder.get_all_samples()
    except Exception as error:
        # A valid header with no audio frames (e.g. a WAV with zero frames) fails here rather than returning an
        # empty tensor; torchcodec's message, or a header duration of 0, tells it apart from a decoding error.
        duration = getattr(decoder.metadata, "duration_seconds_from_header", None)
        if "no audio frames" in str(error).lower() or duration == 0:
            raise ClipError(EMPTY, f"{label}: no audio frames ({_first_line(error)})") from error
        raise ClipError(UNREADABLE, f"{label}: decoding failed: {_first_line(error)}") from error

    waveform = samples.data.detach().to(torch.float32).cpu().numpy()
    if waveform.ndim == 1:
        waveform = waveform[None, :]
    if waveform.shape[-1] == 0:
        raise ClipError(EMPTY, f"{label}: decoded to zero samples")
    if not np.isfinite(waveform).all():
        raise ClipError(NON_FINITE, f"{label}: decoded samples contain NaN or infinity")
    return np.ascontiguousarray(waveform), int(samples.sample_rate)


def to_mono(waveform: np.ndarray) -> np.ndarray:
    """
    Down-mixes to one channel by averaging the channels (the same down-mix as the `datasets` `Audio` feature's
    `"array"`).

    Args:
        waveform (`np.ndarray`):
            `[channels, samples]`, or `[samples]` for audio that is already mono.

    Returns:
        `np.ndarray`: float32 of shape `[samples]`.
    """
    waveform = np.asarray(waveform)
    if waveform.ndim == 1:
        return waveform.astype(np.float32, copy=False)
    if waveform.ndim != 2:
        raise ValueError(f"Expected a waveform of shape [channels, samples] or [samples], got {waveform.shape}.")
    # Averaging (not summing) keeps the level of a signal present in every channel unchanged and cannot clip.
    return waveform.mean(axis=0, dtype=np.float64).astype(np.float32)


def resample(waveform: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """
    Resamples with `torchaudio.functional.resample`: band-limited sinc interpolation with a Hann-windowed kernel
    (torchaudio's defaults: 6 zero crossings, roll-off 0.99), computed as a polyphase filter over
    `gcd(orig_sr, target_sr)`. See https://docs.pytorch.org/audio/stable/generated/torchaudio.functional.resample.html
    and J. O. Smith, "Digital Audio Resampling" (https://ccrma.stanford.edu/~jos/resample/).

    Args:
        waveform (`np.ndarray`):
            `[..., samples]`.
        orig_sr (`int`):
            The waveform's sample rate in Hz.
        target_sr (`int`):
            The wanted sample rate in Hz.

    Returns:
        `np.ndarray`: float32 of shape `[..., ceil(samples * target_sr / orig_sr)]`.
    """
    if int(orig_sr) != orig_sr or int(target_sr) != target_sr or orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"Sample rates must be positive integers, got {orig_sr} and {target_sr}.")
    waveform = np.asarray(waveform, dtype=np.float32)
    if orig_sr == target_sr:
        return waveform.copy()
    tensor = torch.from_numpy(np.ascontiguousarray(waveform))
    return torchaudio.functional.resample(tensor, int(orig_sr), int(target_sr)).numpy().astype(np.float32, copy=False)


@dataclass
class ClipWindow:
    """
    One window of a clip, ready for the captioner and the CLAP scorer.

    Args:
        clip_id (`str`):
            The clip's id (an AudioSet ytid, a file stem, a dataset row id).
        window_start (`float`):
            Where the window starts in the clip, in seconds.
        audio_16k (`np.ndarray`):
            Mono float32 at `CAPTIONER_RATE` (16 kHz).
        audio_48k (`np.ndarray`):
            Mono float32 at `CLAP_RATE` (48 kHz), covering exactly the same time as `audio_16k`
            (`len(audio_48k) == 3 * len(audio_16k)`).
    """

    clip_id: str
    window_start: float
    audio_16k: np.ndarray
    audio_48k: np.ndarray

    @property
    def window_key(self) -> str:
        """Stable id of the window, `"<clip_id>@<start with 2 decimals>"`: seeds its captioning and marks it done
        when a build resumes, so it must not depend on anything but the clip and the position."""
        return f"{self.clip_id}@{self.window_start:.2f}"

    @property
    def duration(self) -> float:
        """Length of the window in seconds."""
        return len(self.audio_16k) / CAPTIONER_RATE


def _peak_dbfs(samples: np.ndarray) -> float:
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


def make_windows(
    clip_id: str,
    waveform: np.ndarray,
    sample_rate: int,
    window_seconds: float = WINDOW_SECONDS,
    min_seconds: float = DEFAULT_MIN_SECONDS,
    silence_dbfs: float = DEFAULT_SILENCE_DBFS,
) -> list[ClipWindow]:
    """
    Cuts a clip into consecutive windows at 16 kHz and 48 kHz.

    The clip is down-mixed to mono and resampled to both rates from the original (one band-limited step each).
    Windows start at 0, `window_seconds`, `2 * window_seconds`, ...; boundaries are counted in 16 kHz samples and
    multiplied by 3 at 48 kHz, so both versions of a window cover the same samples of time. The last, partial
    window is kept if it lasts at least `min_seconds`, otherwise dropped. Windows whose peak is below
    `silence_dbfs` are skipped.

    Args:
        clip_id (`str`):
            The clip's id, copied into each window.
        waveform (`np.ndarray`):
            `[channels, samples]` or `[samples]`, float.
        sample_rate (`int`):
            The waveform's sample rate in Hz.
        window_seconds (`float`, *optional*, defaults to 10.0):
            Window length in seconds.
        min_seconds (`float`, *optional*, defaults to 1.0):
            Shortest clip, and shortest final partial window, worth captioning.
        silence_dbfs (`float`, *optional*, defaults to -60.0):
            A window whose absolute peak is below this level (dB relative to full scale 1.0) is silent.

    Returns:
        `list[ClipWindow]`: at least one window.

    Raises:
        `ClipError`: `"empty"` for zero samples, `"too_short"` for a clip shorter than `min_seconds`, `"silent"`
        when every window is silent.
    """
    if window_seconds <= 0:
        raise ValueError(f"window_seconds must be positive, got {window_seconds}.")
    if not 0 < min_seconds <= window_seconds:
        raise ValueError(f"min_seconds must be in (0, window_seconds={window_seconds}], got {min_seconds}.")

    mono = to_mono(waveform)
    num_samples = mono.shape[-1]
    if num_samples == 0:
        raise ClipError(EMPTY, f"{clip_id}: zero samples")
    duration = num_samples / sample_rate
    if duration < min_seconds:
        raise ClipError(TOO_SHORT, f"{clip_id}: {duration:.3f} s < {min_seconds} s")

    audio_16k = resample(mono, sample_rate, CAPTIONER_RATE)
    audio_48k = resample(mono, sample_rate, CLAP_RATE)
    # Each resampled length is ceil(samples * rate / sample_rate), so the 48 kHz one can be 1-2 samples short of
    # 3x the 16 kHz one. Trimming both to a common length (< 1/16000 s lost) gives exactly corresponding samples.
    length_16k = min(len(audio_16k), len(audio_48k) // _RATE_RATIO)
    audio_16k = audio_16k[:length_16k]
    audio_48k = audio_48k[: length_16k * _RATE_RATIO]

    window_16k = round(window_seconds * CAPTIONER_RATE)
    # floor, not round: a clip that passed the length check above must not lose its only window to rounding.
    min_16k = max(1, math.floor(min_seconds * CAPTIONER_RATE + 1e-6))

    windows: list[ClipWindow] = []
    num_silent = 0
    for start_16k in range(0, length_16k, window_16k):
        stop_16k = min(start_16k + window_16k, length_16k)
        # The first window is the whole clip when the clip is shorter than a window; it already passed the length
        # check, so only later partial windows are judged against min_seconds.
        if start_16k > 0 and stop_16k - start_16k < min_16k:
            break
        start_seconds = start_16k / CAPTIONER_RATE
        # Silence is judged at the original rate on the same stretch of time: content above 8 kHz (which the
        # 16 kHz copy cannot hold) still counts as sound.
        orig_start = math.floor(start_16k * sample_rate / CAPTIONER_RATE)
        orig_stop = math.ceil(stop_16k * sample_rate / CAPTIONER_RATE)
        if _peak_dbfs(mono[orig_start:orig_stop]) < silence_dbfs:
            num_silent += 1
            continue
        windows.append(
            ClipWindow(
                clip_id=clip_id,
                window_start=start_seconds,
                audio_16k=np.ascontiguousarray(audio_16k[start_16k:stop_16k]),
                audio_48k=np.ascontiguousarray(audio_48k[start_16k * _RATE_RATIO : stop_16k * _RATE_RATIO]),
            )
        )
    if not windows:
        raise ClipError(
            SILENT,
            f"{clip_id}: peak {_peak_dbfs(mono):.1f} dBFS < {silence_dbfs} dBFS in all {num_silent} window(s)",
        )
    return windows
