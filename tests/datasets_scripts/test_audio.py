"""Tests of datasets_scripts.audio: decoding with torchcodec, down-mix, resampling and 10 s windows.

All audio is generated here with numpy and written with soundfile into tmp_path.
"""

import os
import pickle

import numpy as np
import pytest
import soundfile as sf

from datasets_scripts.audio import (
    CAPTIONER_RATE,
    CLAP_RATE,
    EMPTY,
    SILENT,
    TOO_SHORT,
    UNREADABLE,
    WINDOW_SECONDS,
    ClipError,
    ClipWindow,
    decode_audio,
    make_windows,
    resample,
    to_mono,
)


def tone(seconds, sample_rate=16000, frequency=1000.0, amplitude=0.5):
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def write(path, samples, sample_rate, **kwargs):
    # soundfile wants [samples, channels]; the project's convention is [channels, samples].
    samples = np.asarray(samples)
    sf.write(path, samples.T if samples.ndim == 2 else samples, sample_rate, **kwargs)
    return str(path)


def peak_frequency(samples, sample_rate):
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return np.fft.rfftfreq(len(samples), 1 / sample_rate)[np.argmax(spectrum)]


def test_constants():
    assert (CAPTIONER_RATE, CLAP_RATE, WINDOW_SECONDS) == (16000, 48000, 10.0)
    assert (UNREADABLE, EMPTY, SILENT, TOO_SHORT) == (
        "unreadable",
        "empty",
        "silent",
        "too_short",
    )


def test_decode_wav_tone(tmp_path):
    path = write(tmp_path / "tone.wav", tone(2.0), 16000, subtype="PCM_16")
    waveform, sample_rate = decode_audio(path)
    assert sample_rate == 16000
    assert waveform.dtype == np.float32 and waveform.shape == (1, 32000)
    np.testing.assert_allclose(waveform[0], tone(2.0), atol=1e-4)  # 16-bit quantisation


def test_decode_bytes_equals_path(tmp_path):
    path = write(tmp_path / "tone.wav", tone(1.0), 16000)
    from_path = decode_audio(path)
    with open(path, "rb") as handle:
        from_bytes = decode_audio(handle.read())
    assert from_path[1] == from_bytes[1]
    np.testing.assert_array_equal(from_path[0], from_bytes[0])


@pytest.mark.parametrize("extension", [".flac", ".mp3"])
def test_decode_compressed(tmp_path, extension):
    # FLAC is lossless; MP3 is lossy and delayed by the codec, so only the pitch and rough length are checked.
    path = write(tmp_path / f"tone{extension}", tone(2.0, 44100, 1000.0), 44100)
    waveform, sample_rate = decode_audio(path)
    assert sample_rate == 44100 and waveform.shape[0] == 1
    assert abs(waveform.shape[1] - 88200) < 2 * 1152  # within two MP3 frames
    assert abs(peak_frequency(waveform[0], sample_rate) - 1000.0) < 5.0
    if extension == ".flac":
        np.testing.assert_allclose(waveform[0], tone(2.0, 44100, 1000.0), atol=1e-4)


def test_decode_stereo_keeps_channels(tmp_path):
    stereo = np.stack([tone(1.0, frequency=440.0), tone(1.0, frequency=880.0, amplitude=0.25)])
    waveform, _ = decode_audio(write(tmp_path / "stereo.wav", stereo, 16000, subtype="FLOAT"))
    assert waveform.shape == (2, 16000)
    np.testing.assert_allclose(waveform, stereo, atol=1e-6)


def test_decode_corrupt_file_is_unreadable(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ClipError) as info:
        decode_audio(path)
    assert info.value.reason == UNREADABLE and "corrupt.wav" in info.value.detail


def test_decode_non_finite_samples_is_its_own_failure(tmp_path):
    """A float WAV holding NaN or infinity decodes fine: it is counted as "non_finite", apart from files that cannot
    be read, naming the file."""
    for value in (np.nan, np.inf):
        samples = tone(0.5)
        samples[100] = value
        path = write(tmp_path / f"bad_{value}.wav", samples, 16000, subtype="FLOAT")
        with pytest.raises(ClipError) as info:
            decode_audio(path)
        assert info.value.reason == "non_finite" and f"bad_{value}.wav" in info.value.detail


def test_decode_missing_file_is_unreadable(tmp_path):
    with pytest.raises(ClipError) as info:
        decode_audio(tmp_path / "nope.wav")
    assert info.value.reason == UNREADABLE


def test_decode_empty_inputs_are_empty(tmp_path):
    # Decision: a zero-byte file, zero bytes, and a valid header with zero frames are all "empty" (not
    # "unreadable"): they are truncated or failed downloads, worth counting apart from corrupt files.
    zero_byte = tmp_path / "zero.wav"
    zero_byte.touch()
    header_only = write(tmp_path / "header.wav", np.zeros(0, np.float32), 16000)
    assert os.path.getsize(header_only) > 0
    for source in (zero_byte, b"", header_only):
        with pytest.raises(ClipError) as info:
            decode_audio(source)
        assert info.value.reason == EMPTY, source


def test_clip_error_is_picklable_and_checked():
    error = pickle.loads(pickle.dumps(ClipError(SILENT, "x: -90 dBFS")))
    assert (error.reason, error.detail, str(error)) == (
        SILENT,
        "x: -90 dBFS",
        "silent: x: -90 dBFS",
    )
    with pytest.raises(ValueError, match="reason"):
        ClipError("bogus")


def test_to_mono_is_mean_of_channels():
    rng = np.random.default_rng(0)
    stereo = rng.standard_normal((2, 1000)).astype(np.float32)
    mono = to_mono(stereo)
    assert mono.shape == (1000,) and mono.dtype == np.float32
    np.testing.assert_allclose(mono, stereo.mean(axis=0), atol=1e-7)
    assert to_mono(stereo[0]).shape == (1000,)


def test_stereo_file_windows_are_down_mixed(tmp_path):
    rng = np.random.default_rng(1)
    stereo = (0.1 * rng.standard_normal((2, 32000))).astype(np.float32)
    waveform, sample_rate = decode_audio(write(tmp_path / "noise.wav", stereo, 16000, subtype="FLOAT"))
    (window,) = make_windows("noise", waveform, sample_rate)
    # 16 kHz in, 16 kHz out: the window is exactly the mean of the channels.
    np.testing.assert_allclose(window.audio_16k, stereo.mean(axis=0), atol=1e-6)


def test_resample_lengths_and_pitch():
    audio = tone(10.0, 44100, 1000.0)
    audio_16k = resample(audio, 44100, 16000)
    audio_48k = resample(audio, 44100, 48000)
    assert audio_16k.dtype == audio_48k.dtype == np.float32
    assert (len(audio_16k), len(audio_48k)) == (160000, 480000)
    assert abs(peak_frequency(audio_16k, 16000) - 1000.0) < 1.0
    assert abs(peak_frequency(audio_48k, 48000) - 1000.0) < 1.0
    np.testing.assert_array_equal(resample(audio, 44100, 44100), audio)


def test_44k_clip_windows_have_exact_lengths(tmp_path):
    path = write(tmp_path / "a.wav", tone(10.0, 44100, 1000.0), 44100, subtype="FLOAT")
    (window,) = make_windows("a", *decode_audio(path))
    assert (len(window.audio_16k), len(window.audio_48k)) == (160000, 480000)
    assert abs(peak_frequency(window.audio_16k, 16000) - 1000.0) < 1.0
    assert abs(peak_frequency(window.audio_48k, 48000) - 1000.0) < 1.0
    # The two rates carry the same signal: 48 kHz decimated by 3 is close to 16 kHz away from the edges.
    np.testing.assert_allclose(window.audio_48k[::3][100:-100], window.audio_16k[100:-100], atol=0.02)


def test_three_second_clip_is_one_window():
    (window,) = make_windows("short", tone(3.0), 16000)
    assert window.window_start == 0.0
    assert (len(window.audio_16k), len(window.audio_48k)) == (48000, 144000)
    assert window.duration == 3.0


def test_twenty_five_second_clip_windows():
    windows = make_windows("long", tone(25.0, 22050, 440.0), 22050)
    assert [w.window_start for w in windows] == [0.0, 10.0, 20.0]
    assert [len(w.audio_16k) for w in windows] == [160000, 160000, 80000]
    assert [len(w.audio_48k) for w in windows] == [480000, 480000, 240000]
    assert [w.window_key for w in windows] == ["long@0.00", "long@10.00", "long@20.00"]


def test_windows_are_cut_on_corresponding_boundaries():
    # A click at 12.5 s lands at the same relative place in the second window at both rates.
    audio = np.zeros(20 * 16000, np.float32)
    audio[int(12.5 * 16000)] = 1.0
    # The first window is all zeros and skipped as silent; the second holds the click.
    (second,) = make_windows("click", audio, 16000)
    assert second.window_start == 10.0
    assert np.argmax(np.abs(second.audio_16k)) == int(2.5 * 16000)
    assert np.argmax(np.abs(second.audio_48k)) == int(2.5 * 48000)


def test_short_final_window_is_dropped():
    windows = make_windows("c", tone(10.5), 16000)
    assert [(w.window_start, len(w.audio_16k)) for w in windows] == [(0.0, 160000)]
    windows = make_windows("c", tone(11.0), 16000)
    assert [(w.window_start, len(w.audio_16k)) for w in windows] == [
        (0.0, 160000),
        (10.0, 16000),
    ]


def test_half_second_clip_is_too_short():
    with pytest.raises(ClipError) as info:
        make_windows("tiny", tone(0.5), 16000)
    assert info.value.reason == TOO_SHORT
    # Exactly the minimum is enough.
    assert len(make_windows("one", tone(1.0, 44100), 44100)[0].audio_16k) == 16000


def test_zero_samples_is_empty():
    with pytest.raises(ClipError) as info:
        make_windows("none", np.zeros((2, 0), np.float32), 16000)
    assert info.value.reason == EMPTY


def test_silence_is_silent(tmp_path):
    path = write(tmp_path / "silence.wav", np.zeros(5 * 16000, np.float32), 16000)
    with pytest.raises(ClipError) as info:
        make_windows("silence", *decode_audio(path))
    assert info.value.reason == SILENT
    # -70 dBFS noise is still silent at the default -60 dBFS threshold, audible at -80.
    quiet = (10 ** (-70 / 20) * np.sign(np.random.default_rng(0).standard_normal(16000))).astype(np.float32)
    with pytest.raises(ClipError, match="silent"):
        make_windows("quiet", quiet, 16000)
    assert len(make_windows("quiet", quiet, 16000, silence_dbfs=-80.0)) == 1


def test_silent_windows_are_skipped():
    audio = np.concatenate([tone(10.0), np.zeros(10 * 16000, np.float32), tone(5.0)])
    windows = make_windows("gap", audio, 16000)
    assert [w.window_start for w in windows] == [0.0, 20.0]


def test_noise_and_high_frequency_content_is_not_silent():
    rng = np.random.default_rng(2)
    noise = (0.1 * rng.standard_normal(48000 * 2)).astype(np.float32)
    assert len(make_windows("noise", noise, 48000)) == 1
    # A 12 kHz tone vanishes at 16 kHz, but the silence check runs at the original rate: it is sound, not silence.
    (window,) = make_windows("high", tone(2.0, 48000, 12000.0), 48000)
    # (away from the edges, where the abrupt start of the tone leaks into the 16 kHz band)
    assert np.max(np.abs(window.audio_16k[1000:-1000])) < 1e-2 < np.max(np.abs(window.audio_48k))


def test_window_key_is_stable():
    first = [w.window_key for w in make_windows("--PJHxphWEs", tone(25.0), 16000)]
    second = [w.window_key for w in make_windows("--PJHxphWEs", tone(25.0, 44100), 44100)]
    assert first == second == ["--PJHxphWEs@0.00", "--PJHxphWEs@10.00", "--PJHxphWEs@20.00"]
    window = ClipWindow("x", 1 / 3, np.zeros(1, np.float32), np.zeros(3, np.float32))
    assert window.window_key == "x@0.33"


def test_invalid_arguments():
    with pytest.raises(ValueError):
        make_windows("x", tone(3.0), 16000, min_seconds=20.0)
    with pytest.raises(ValueError):
        resample(tone(1.0), 0, 16000)


def test_probe_audio_tells_audio_from_the_rest_whatever_the_name(tmp_path):
    from datasets_scripts.audio import probe_audio

    wav_named_oddly = write(tmp_path / "clip.bin", tone(1.0), 16000, format="WAV")
    (tmp_path / "notes.txt").write_text("not audio\n")
    (tmp_path / "zero.dat").touch()
    assert probe_audio(wav_named_oddly) is None
    assert "no audio stream" in probe_audio(tmp_path / "notes.txt")
    assert "zero-byte" in probe_audio(tmp_path / "zero.dat")
    assert "not a file" in probe_audio(tmp_path / "absent.wav")
