"""PANNs Cnn14 (`pipelines/evaluation/panns.py`): front end against an independent numpy computation, the clip
preparation of audioldm_eval's loader, the converter and the folder format, and parity with audioldm_eval's own Cnn14
class holding the same (random) weights.

The reference runs in its own environment (`PANNS_REFERENCE_PACKAGES`, built with `pipelines/reference_env.py` on
first use and cached); building it is the only network access (PyPI).
"""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio
from safetensors.numpy import load_file, save_file
from safetensors.torch import load_file as load_torch_file
from safetensors.torch import save_file as save_torch_file

from pipelines.evaluation import panns_reference
from pipelines.evaluation.panns import (
    CNN14_16K_CONFIG,
    CNN14_32K_CONFIG,
    FRONT_END_KEYS,
    Cnn14,
    cnn14_inputs,
    convert_panns_checkpoint,
    infer_cnn14_config,
    main,
    validate_cnn14_config,
)
from pipelines.reference_env import default_env_dir, ensure_reference_env

SR = 16000


# ---------------------------------------------------------------------------------------------------------------------
# An independent numpy front end: librosa's documented algorithms, written out in float64.


def hz_to_mel_slaney(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, `htk=False`): linear below 1 kHz (200/3 Hz per mel), logarithmic above
    (27 mels per factor 6.4)."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    return np.where(
        hz >= min_log_hz, min_log_hz / f_sp + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep, hz / f_sp
    )


def mel_to_hz_slaney(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


def numpy_mel_filters(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangles between consecutive slaney-mel-spaced edges, each scaled to unit area (`norm="slaney"`), as
    (freq, mel)."""
    fft_freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    edges = mel_to_hz_slaney(np.linspace(hz_to_mel_slaney(fmin), hz_to_mel_slaney(fmax), n_mels + 2))
    rising = (fft_freqs[None] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    falling = (edges[2:, None] - fft_freqs[None]) / (edges[2:] - edges[1:-1])[:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.T


def numpy_log_mel(audio: np.ndarray, config: dict) -> np.ndarray:
    n_fft, hop = config["window_size"], config["hop_size"]
    padded = np.pad(audio.astype(np.float64), n_fft // 2, mode="reflect")
    num_frames = 1 + (len(padded) - n_fft) // hop
    frames = padded[np.arange(n_fft)[None] + hop * np.arange(num_frames)[:, None]]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2
    mel = power @ numpy_mel_filters(config["sample_rate"], n_fft, config["mel_bins"], config["fmin"], config["fmax"])
    return 10 * np.log10(np.maximum(mel, 1e-10))


def original_front_end(config: dict) -> dict[str, torch.Tensor]:
    """The fixed tensors of the original model's torchlibrosa front end, as that code lays them out: STFT kernels
    `window * exp(-2 pi i k n / N)` split into real and imaginary (bins, 1, N), and the mel matrix as (freq, mel)."""
    n_fft = config["window_size"]
    n = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)
    kernels = np.exp(-2j * np.pi * np.outer(np.arange(n_fft // 2 + 1), n) / n_fft) * window
    mel = numpy_mel_filters(config["sample_rate"], n_fft, config["mel_bins"], config["fmin"], config["fmax"])
    return {
        FRONT_END_KEYS[0]: torch.tensor(kernels.real[:, None, :], dtype=torch.float32),
        FRONT_END_KEYS[1]: torch.tensor(kernels.imag[:, None, :], dtype=torch.float32),
        FRONT_END_KEYS[2]: torch.tensor(mel, dtype=torch.float32),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def model() -> Cnn14:
    """A Cnn14 with random weights and batch-norm statistics."""
    torch.manual_seed(0)
    model = Cnn14()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0.0, 0.1, generator=generator)
                module.running_mean.normal_(0.0, 0.3, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
        model.bn0.running_mean.fill_(-20.0)
        model.bn0.running_var.fill_(100.0)
    return model


@pytest.fixture(scope="module")
def original_checkpoint(model, tmp_path_factory) -> Path:
    """`model`'s weights in the release files' layout: `{"iteration", "model", "sampler"}`, front end included, the
    sampler state as numpy arrays."""
    state_dict = {**model.state_dict(), **original_front_end(CNN14_16K_CONFIG)}
    path = tmp_path_factory.mktemp("original") / "Cnn14_16k_mAP=0.438.pth"
    sampler = {"indexes_per_class": [np.arange(4, dtype=np.int64)], "queue": np.arange(3), "pointer": np.float64(0.5)}
    torch.save({"iteration": 100, "model": state_dict, "sampler": sampler}, path)
    return path


def assert_same_outputs(first: dict, second: dict) -> None:
    for key in ("embedding", "logits"):
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------------------
# Front end and forward


def test_mel_filters_match_independent_numpy(model):
    expected = numpy_mel_filters(SR, 512, 64, 50, 8000)
    assert model.mel_filters.shape == (257, 64)
    # float64 filters stored in float32: a rounding of at most half an ulp (2**-24) of each value; 2**-23 relative,
    # and that much of the largest value where a triangle's edge rounds to 0 on one side only.
    np.testing.assert_allclose(model.mel_filters.numpy(), expected, rtol=2**-23, atol=2**-23 * expected.max())
    # Every band catches some energy: the 50-8000 Hz range over 257 bins leaves no empty filter.
    assert (expected.max(axis=0) > 0).all()


def test_log_mel_matches_independent_numpy(model):
    rng = np.random.default_rng(0)
    t = np.arange(36017) / SR  # not a whole number of hops
    audio = 0.2 * rng.standard_normal(t.size) + 0.5 * np.sin(2 * np.pi * 1000 * t)
    ours = model.log_mel_spectrogram(torch.tensor(audio, dtype=torch.float32)[None])
    expected = numpy_log_mel(audio, CNN14_16K_CONFIG)
    assert ours.shape == (1, 1, 1 + 36017 // 160, 64) == (1, 1, *expected.shape)
    # Compared as powers: a float32 STFT and mel sum err by a few hundred float32 ulps (1e-4) of the frame's
    # largest band, however weak the band itself (in dB a weak band's error would look large).
    power, expected_power = 10 ** (ours[0, 0].double().numpy() / 10), 10 ** (expected / 10)
    frame_peak = expected_power.max(axis=1, keepdims=True)
    assert (np.abs(power - expected_power) <= 1e-4 * (expected_power + frame_peak)).all()
    # Silence sits at the floor: 10 * log10(amin) with amin 1e-10 and ref 1.0, no top_db clipping.
    silent = model.log_mel_spectrogram(torch.zeros(1, 8000))
    assert torch.all(silent == -100.0)


def test_forward_outputs(model, float32_close):
    torch.manual_seed(0)
    waveforms = 0.3 * torch.randn(2, 24000)
    with torch.no_grad():
        batch = model(waveforms)
        single = model(waveforms[1:])
    assert set(batch) == {"embedding", "logits"}
    assert batch["embedding"].shape == (2, 2048) and batch["logits"].shape == (2, 527)
    assert (batch["embedding"] >= 0).all()  # after fc1's ReLU, as audioldm_eval's "2048"
    # Logits are fc_audioset's raw output, before any sigmoid: unbounded, and not probabilities.
    with torch.no_grad():  # the same layer on the same tensor: the same numbers
        torch.testing.assert_close(batch["logits"], model.fc_audioset(batch["embedding"]), rtol=0, atol=0)
    assert batch["logits"].min() < 0
    # Clips of one length batch without changing each clip's features, up to float32 reordering.
    float32_close(batch["embedding"][1:], single["embedding"])
    float32_close(batch["logits"][1:], single["logits"])


def test_forward_rejects_bad_inputs(model):
    with torch.no_grad():
        assert model(torch.randn(1, 4960))["embedding"].shape == (1, 2048)  # 32 frames: the shortest clip
        with pytest.raises(ValueError, match="4960 samples.*got 4959"):
            model(torch.randn(1, 4959))
        with pytest.raises(ValueError, match=r"\(16000,\)"):
            model(torch.randn(16000))
        with pytest.raises(ValueError, match="torch.int16"):
            model(torch.zeros(1, 16000, dtype=torch.int16))
    model.train()
    try:
        with pytest.raises(RuntimeError, match="eval"):
            model(torch.randn(1, 16000))
    finally:
        model.eval()


def test_config_validation():
    assert validate_cnn14_config(CNN14_32K_CONFIG) == CNN14_32K_CONFIG
    with pytest.raises(ValueError, match=r"unknown keys \['n_fft'\], missing keys \['window_size'\]"):
        validate_cnn14_config({**{k: v for k, v in CNN14_16K_CONFIG.items() if k != "window_size"}, "n_fft": 512})
    with pytest.raises(ValueError, match="fmax=9000"):
        Cnn14(fmax=9000)
    with pytest.raises(ValueError, match=r"`hop_size` must be a positive integer, got 0"):
        Cnn14(hop_size=0)


# ---------------------------------------------------------------------------------------------------------------------
# Clip preparation (Tango's audioldm_eval/datasets/load_mel.py, WaveDataset.read_from_file)


def test_cnn14_inputs_at_16k():
    rng = np.random.default_rng(0)
    clip = (0.1 + 0.2 * rng.standard_normal(20000)).astype(np.float32)
    inputs = cnn14_inputs(clip, SR)
    assert inputs.shape == (32000,) and inputs.dtype == np.float32
    # Mean removed first, then zero-padded at the end to 2 s; no scaling. (Two float32 means of the same clip may
    # differ by a few ulps of the largest sample.)
    np.testing.assert_allclose(inputs[:20000], clip - clip.mean(), rtol=0, atol=2**-20 * np.abs(clip).max())
    assert np.all(inputs[20000:] == 0)
    # Longer clips are neither cropped nor padded.
    assert cnn14_inputs(rng.standard_normal(170000), SR).shape == (170000,)
    # int16 PCM is scaled as torchaudio.load does; of several channels (channels first) the first is used.
    pcm = (clip * 2**15).astype(np.int16)
    np.testing.assert_array_equal(cnn14_inputs(pcm, SR), cnn14_inputs(pcm.astype(np.float32) / 2**15, SR))
    np.testing.assert_array_equal(cnn14_inputs(np.stack([clip, -clip]), SR), inputs)


def test_cnn14_inputs_resampling():
    rng = np.random.default_rng(1)
    clip = rng.standard_normal(96000).astype(np.float32)
    centered = torch.from_numpy(clip - clip.mean())[None]

    def prepared(rate: int, resampling: str = "tango") -> torch.Tensor:
        return torch.from_numpy(cnn14_inputs(clip, rate, resampling))[None]

    # The same float32 operations up to the mean's summation order: a few ulps (16 at most) of the largest sample.
    atol = 2**-20 * float(centered.abs().max())

    # Tango's copy: 48 kHz by taking every third sample.
    torch.testing.assert_close(prepared(48000), centered[:, ::3].contiguous(), atol=atol, rtol=0)
    # ... returned as its own contiguous array: safetensors' numpy `save_file` (0.8) writes a strided view's
    # underlying buffer, not its elements.
    assert cnn14_inputs(clip, 48000).flags["C_CONTIGUOUS"]
    # 32 kHz: every second sample, then resampled 32 -> 16 kHz again (the `if` / `if ... elif` of load_mel.py).
    tango_32k = prepared(32000)
    assert tango_32k.shape == (1, 32000)  # 96000 / 4 = 24000 samples, padded to 2 s
    expected = torchaudio.functional.resample(centered[:, ::2], orig_freq=32000, new_freq=16000)
    torch.testing.assert_close(tango_32k[:, :24000], expected, atol=atol, rtol=0)
    # Other rates, and every rate with resampling="torchaudio" (PyPI audioldm_eval), use torchaudio's defaults.
    for rate in (22050, 44100):
        expected = torchaudio.functional.resample(centered, orig_freq=rate, new_freq=16000)
        torch.testing.assert_close(prepared(rate)[:, : expected.shape[-1]], expected, atol=atol, rtol=0)
    for rate in (32000, 48000):
        expected = torchaudio.functional.resample(centered, orig_freq=rate, new_freq=16000)
        torch.testing.assert_close(prepared(rate, "torchaudio"), expected, atol=atol, rtol=0)


def test_cnn14_inputs_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"\(48000, 2\) looks like \(num_samples, num_channels\)"):
        cnn14_inputs(np.zeros((48000, 2), dtype=np.float32), SR)
    with pytest.raises(ValueError, match="empty"):
        cnn14_inputs(np.zeros(0, dtype=np.float32), SR)
    with pytest.raises(ValueError, match="uint8"):
        cnn14_inputs(np.zeros(100, dtype=np.uint8), SR)
    with pytest.raises(ValueError, match="'sinc'"):
        cnn14_inputs(np.zeros(100, dtype=np.float32), SR, resampling="sinc")
    with pytest.raises(ValueError, match="16000.0"):
        cnn14_inputs(np.zeros(100, dtype=np.float32), 16000.0)


# ---------------------------------------------------------------------------------------------------------------------
# Folder format and converter


def test_save_and_from_pretrained_round_trip(model, tmp_path):
    folder = model.save_pretrained(tmp_path / "cnn14")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    weights = load_torch_file(folder / "model.safetensors")
    assert not any(
        key.startswith(("spectrogram_extractor", "logmel_extractor", "window", "mel_filters")) for key in weights
    )
    waveforms = 0.3 * torch.randn(1, 20000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(waveforms)
        for path in (folder, folder / "model.safetensors"):
            loaded = Cnn14.from_pretrained(path)
            assert not loaded.training and loaded.config == CNN14_16K_CONFIG
            assert_same_outputs(loaded(waveforms), expected)

    weights["fc2.weight"] = torch.zeros(1)
    save_torch_file(weights, tmp_path / "cnn14" / "extra.safetensors")
    with pytest.raises(ValueError, match=r"1 unknown tensors \['fc2.weight'\]"):
        Cnn14.from_pretrained(tmp_path / "cnn14" / "extra.safetensors")
    del weights["fc2.weight"]
    weights["fc1.bias"] = torch.zeros(3)
    save_torch_file(weights, tmp_path / "cnn14" / "shape.safetensors")
    with pytest.raises(ValueError, match=r"`fc1.bias` has shape \(3,\)"):
        Cnn14.from_pretrained(tmp_path / "cnn14" / "shape.safetensors")
    with pytest.raises(FileNotFoundError, match="config.json"):
        Cnn14.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "vggish"}')
    save_torch_file({}, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="model_type 'vggish'"):
        Cnn14.from_pretrained(tmp_path)


def test_convert_original_checkpoint(model, original_checkpoint, tmp_path):
    converted = convert_panns_checkpoint(original_checkpoint, tmp_path / "converted")
    assert converted.config == CNN14_16K_CONFIG
    waveforms = 0.3 * torch.randn(1, 20000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(waveforms)
        assert_same_outputs(converted(waveforms), expected)
        assert_same_outputs(Cnn14.from_pretrained(tmp_path / "converted")(waveforms), expected)

    # A bare state dict converts too, and so does the command line.
    bare = tmp_path / "bare.pth"
    torch.save(torch.load(original_checkpoint, weights_only=False)["model"], bare)
    main(["--checkpoint", str(bare), "--output_dir", str(tmp_path / "cli"), "--sample_rate", "16000"])
    with torch.no_grad():
        assert_same_outputs(Cnn14.from_pretrained(tmp_path / "cli")(waveforms), expected)


def test_converter_errors(original_checkpoint, tmp_path):
    state_dict = torch.load(original_checkpoint, weights_only=False)["model"]

    def convert(weights: dict, name: str) -> None:
        torch.save({"model": weights}, tmp_path / name)
        convert_panns_checkpoint(tmp_path / name, tmp_path / f"out-{name}")

    with pytest.raises(ValueError, match=r"unknown tensors \['fc2.weight'\]"):
        convert({**state_dict, "fc2.weight": torch.zeros(2, 2)}, "unknown.pth")
    with pytest.raises(ValueError, match=r"missing tensors \['fc1.bias'\]"):
        convert({k: v for k, v in state_dict.items() if k != "fc1.bias"}, "missing.pth")
    with pytest.raises(ValueError, match=r"`logmel_extractor.melW` differs"):
        convert({**state_dict, "logmel_extractor.melW": state_dict["logmel_extractor.melW"].flip(1)}, "mel.pth")
    with pytest.raises(ValueError, match=r"lacks the original front-end tensors \['logmel_extractor.melW'\]"):
        convert({k: v for k, v in state_dict.items() if k != "logmel_extractor.melW"}, "nomel.pth")
    with pytest.raises(ValueError, match="`spectrogram_extractor.stft.conv_real.weight` has shape"):
        torch.save({"model": state_dict}, tmp_path / "shape.pth")
        convert_panns_checkpoint(tmp_path / "shape.pth", tmp_path / "out", config=CNN14_32K_CONFIG)
    assert not (tmp_path / "out").exists()


class _MakesADirectory:
    """Unpickling this would run code: it creates a folder."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (str(self.path),))


def test_converter_refuses_unsafe_pickle(model, tmp_path):
    marker = tmp_path / "code-ran"
    torch.save({"model": model.state_dict(), "extra": _MakesADirectory(marker)}, tmp_path / "unsafe.pth")
    with pytest.raises(ValueError, match="Refusing to load"):
        convert_panns_checkpoint(tmp_path / "unsafe.pth", tmp_path / "out")
    assert not marker.exists()


def test_infer_config_from_front_end():
    for config in (CNN14_16K_CONFIG, CNN14_32K_CONFIG):
        kernel = torch.zeros(config["window_size"] // 2 + 1, 1, config["window_size"])
        assert infer_cnn14_config({FRONT_END_KEYS[0]: kernel}) == config
    with pytest.raises(ValueError, match="STFT size 2048"):
        infer_cnn14_config({FRONT_END_KEYS[0]: torch.zeros(1025, 1, 2048)})


# ---------------------------------------------------------------------------------------------------------------------
# Parity with audioldm_eval's own Cnn14


def parity_clips() -> list[np.ndarray]:
    """16 kHz clips as `cnn14_inputs` prepares them: noise, a tone padded with silence to 2 s, a 10 s chirp with
    noise, a length that is no whole number of hops, and 48 kHz and 22.05 kHz clips brought to 16 kHz."""
    rng = np.random.default_rng(0)
    t10 = np.arange(10 * SR) / SR
    raw = [
        (0.3 * rng.standard_normal(3 * SR), SR),
        (0.5 * np.sin(2 * np.pi * 440 * np.arange(20000) / SR), SR),
        (0.4 * np.sin(2 * np.pi * (100 + 300 * t10) * t10) + 0.05 * rng.standard_normal(t10.size), SR),
        (0.1 * rng.standard_normal(36017) + 0.2, SR),
        (0.2 * rng.standard_normal(4 * 48000), 48000),
        (0.3 * np.sin(2 * np.pi * 3000 * np.arange(55125) / 22050) * rng.uniform(0.5, 1, 55125), 22050),
    ]
    return [cnn14_inputs(audio.astype(np.float32), rate) for audio, rate in raw]


def reference_env_dir() -> Path:
    return default_env_dir("panns-audioldm-eval", panns_reference.PANNS_REFERENCE_PACKAGES, "TANGO_AF_PANNS_ENV")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[dict[str, np.ndarray], Path, list[np.ndarray]]:
    python = ensure_reference_env(
        "panns-audioldm-eval", panns_reference.PANNS_REFERENCE_PACKAGES, "torchlibrosa.stft", reference_env_dir()
    )
    workdir = tmp_path_factory.mktemp("panns_reference")
    clips = parity_clips()
    save_file(
        {f"audio_{i}": np.ascontiguousarray(clip) for i, clip in enumerate(clips)}, workdir / "inputs.safetensors"
    )
    command = [
        str(python),
        panns_reference.__file__,
        "--workdir", str(workdir),
        "--inputs", str(workdir / "inputs.safetensors"),
        "--output", str(workdir / "reference.safetensors"),
        "--random",
        "--seed", "3",
    ]  # fmt: skip
    # As many threads as this process uses (see conftest.py: one per core pair).
    threads = str(torch.get_num_threads())
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONNOUSERSITE": "1", "OMP_NUM_THREADS": threads}
    result = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return load_file(workdir / "reference.safetensors"), workdir / "ckpt" / "Cnn14_16k_mAP=0.438.pth", clips


def run_clips(model: Cnn14, clips: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One clip at a time, as audioldm_eval does."""
    embeddings, logits = [], []
    with torch.no_grad():
        for clip in clips:
            features = model(torch.from_numpy(clip)[None])
            embeddings.append(features["embedding"][0].numpy())
            logits.append(features["logits"][0].numpy())
    return np.stack(embeddings), np.stack(logits)


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    """Max |difference| per clip over that clip's largest |value|, worst clip."""
    return float((np.abs(ours - reference).max(axis=1) / np.abs(reference).max(axis=1)).max())


def test_cnn14_matches_audioldm_eval(reference, tmp_path):
    outputs, checkpoint, clips = reference
    model = convert_panns_checkpoint(checkpoint, tmp_path / "converted")

    # The front end alone: torch.stft + the slaney filters against torchlibrosa's conv STFT + librosa's filters, both
    # float32. Compared as powers: two ways of summing a frame err by a few hundred float32 ulps (1e-4) of the frame's
    # largest band, however weak the band itself (a pure tone's far bands sit near float32's noise floor, where the
    # same error is large in dB).
    for index, clip in enumerate(clips):
        ours = model.log_mel_spectrogram(torch.from_numpy(clip)[None])[0, 0].double().numpy()
        theirs = outputs[f"log_mel_{index}"].astype(np.float64)
        assert ours.shape == theirs.shape
        power, reference_power = 10 ** (ours / 10), 10 ** (theirs / 10)
        frame_peak = reference_power.max(axis=1, keepdims=True)
        assert (np.abs(power - reference_power) <= 1e-4 * (reference_power + frame_peak)).all(), index

    embeddings, logits = run_clips(model, clips)
    assert relative_error(embeddings, outputs["embedding"]) < 1e-4
    assert relative_error(logits, outputs["logits"]) < 1e-4
    cosine = (embeddings * outputs["embedding"]).sum(1)
    cosine /= np.linalg.norm(embeddings, axis=1) * np.linalg.norm(outputs["embedding"], axis=1)
    assert cosine.min() > 0.9999, cosine
    # The clips are told apart, so agreeing is not trivial.
    reference_embeddings = outputs["embedding"] / np.linalg.norm(outputs["embedding"], axis=1, keepdims=True)
    between = reference_embeddings @ reference_embeddings.T
    assert between[~np.eye(len(clips), dtype=bool)].max() < 0.999

    # Negative controls: mel bands in reverse order for bn0's statistics, or fc1's square matrix transposed, break
    # parity by far more than the tolerance.
    with torch.no_grad():
        model.bn0.running_mean.copy_(model.bn0.running_mean.flip(0))
        broken_embeddings, _ = run_clips(model, clips)
        model.bn0.running_mean.copy_(model.bn0.running_mean.flip(0))
        model.fc1.weight.copy_(model.fc1.weight.T.clone())
        _, broken_logits = run_clips(model, clips)
    assert relative_error(broken_embeddings, outputs["embedding"]) > 1e-2
    assert relative_error(broken_logits, outputs["logits"]) > 1e-2
