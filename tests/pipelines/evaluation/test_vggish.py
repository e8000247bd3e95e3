"""VGGish for FAD: the log-mel examples against an independent numpy computation, the converter, the folder round
trip, and parity with torchvggish's own code holding the same (random) weights.

torchvggish runs in its own environment (`ensure_torchvggish_env`, built from PyPI on first use and cached); its
weights are random, saved by `vggish_reference.py` in the layout of the release file, so nothing else is fetched.
"""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from pipelines.evaluation import vggish_reference
from pipelines.evaluation.vggish import (
    VGGish,
    convert_vggish_checkpoint,
    ensure_torchvggish_env,
    log_mel_spectrogram,
    main,
    num_examples,
    read_vggish_state_dict,
    vggish_config,
    waveform_to_examples,
)

SR = 16000
# torchvggish's `make_layers` and `VGG.embeddings`: the names and shapes of `vggish-10086976.pth`.
EXPECTED_SHAPES = {
    "features.0.weight": (64, 1, 3, 3),
    "features.0.bias": (64,),
    "features.3.weight": (128, 64, 3, 3),
    "features.3.bias": (128,),
    "features.6.weight": (256, 128, 3, 3),
    "features.6.bias": (256,),
    "features.8.weight": (256, 256, 3, 3),
    "features.8.bias": (256,),
    "features.11.weight": (512, 256, 3, 3),
    "features.11.bias": (512,),
    "features.13.weight": (512, 512, 3, 3),
    "features.13.bias": (512,),
    "embeddings.0.weight": (4096, 12288),
    "embeddings.0.bias": (4096,),
    "embeddings.2.weight": (4096, 4096),
    "embeddings.2.bias": (4096,),
    "embeddings.4.weight": (128, 4096),
    "embeddings.4.bias": (128,),
}


def _chirp(sampling_rate: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(sampling_rate * seconds)) / sampling_rate
    sweep = 0.4 * np.sin(2 * np.pi * (100 * t + 3800 * t**2 / seconds))  # 100 Hz up to ~7.7 kHz
    return sweep + 0.05 * rng.standard_normal(t.size)


def parity_clips() -> list[tuple[np.ndarray, int]]:
    """16 kHz clips of 10, 3, 2, 1 and 0 examples (the last two at the boundary and below it), then clips at other
    rates, which both sides resample."""
    rng = np.random.default_rng(0)
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(int(2.2 * SR)) / SR)
    tone[SR // 2 : SR] = 0.0  # digital silence: log(0 + 0.01) in every band
    tone = np.round(tone * 32767) / 32768.0  # as audioldm_eval reads wav files: int16 / 32768
    return [
        (0.1 * rng.standard_normal(10 * SR), SR),
        (_chirp(SR, 3.5, rng), SR),
        (tone, SR),
        (0.1 * rng.standard_normal(15600), SR),  # exactly one example: 96 frames of 400 samples, hop 160
        (0.1 * rng.standard_normal(SR // 2), SR),
        (_chirp(44100, 3.0, rng), 44100),
        (_chirp(48000, 2.2, rng), 48000),
        (_chirp(32000, 2.0, rng), 32000),
    ]


RESAMPLED = [5, 6, 7]
NATIVE = [i for i in range(len(parity_clips())) if i not in RESAMPLED]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[dict[str, np.ndarray], Path]:
    """torchvggish's examples and embeddings of the parity clips, and the random state dict it used."""
    python = ensure_torchvggish_env()
    workdir = tmp_path_factory.mktemp("torchvggish")
    inputs = {}
    for index, (audio, sampling_rate) in enumerate(parity_clips()):
        inputs[f"audio_{index}"] = audio.astype(np.float64)
        inputs[f"sampling_rate_{index}"] = np.array([sampling_rate], dtype=np.int64)
    save_file(inputs, workdir / "inputs.safetensors")
    checkpoint, output = workdir / "vggish-random.pth", workdir / "reference.safetensors"
    command = [
        str(python),
        vggish_reference.__file__,
        "--inputs", str(workdir / "inputs.safetensors"),
        "--output", str(output),
        "--random", "--seed", "0", "--checkpoint_out", str(checkpoint),
    ]  # fmt: skip
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONNOUSERSITE": "1",
        "TORCH_HOME": str(workdir / "torch_home"),
        "OMP_NUM_THREADS": str(torch.get_num_threads()),  # as many as this process uses (conftest.py)
    }
    result = subprocess.run(command, check=False, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return load_file(output), checkpoint


@pytest.fixture(scope="module")
def converted(reference, tmp_path_factory) -> VGGish:
    return convert_vggish_checkpoint(reference[1], tmp_path_factory.mktemp("converted"))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


# ---------------------------------------------------------------------------------------------- parity


def test_converted_vggish_matches_torchvggish(reference, converted, float32_close):
    outputs, _ = reference
    clips = parity_clips()
    for index in NATIVE:
        audio, sampling_rate = clips[index]
        examples = waveform_to_examples(audio, sampling_rate)
        ours = converted.embed(audio, sampling_rate).numpy()
        theirs = outputs[f"embeddings_{index}"]
        assert examples.shape[0] == outputs[f"examples_{index}"].shape[0] == num_examples(audio.size)
        assert ours.shape == theirs.shape == (num_examples(audio.size), 128)
        if not theirs.size:
            continue
        # Both log-mel computations run in float64 (ours in torch, torchvggish's in numpy) and are cast to float32:
        # equal to within an ulp or two of each value.
        np.testing.assert_allclose(examples[:, 0].numpy(), outputs[f"examples_{index}"], rtol=2**-22, atol=1e-12)
        # The same float32 network on the same float32 examples: agreement up to float32 reordering.
        float32_close(ours, theirs)
        assert _cosines(ours, theirs).min() > 0.9999
        # No final ReLU (audioldm_eval's `use_activation=False`): the reference's outputs have negative entries.
        assert (theirs < 0).any()

    # The clips are told apart, so agreeing is not trivial.
    means = np.stack([outputs[f"embeddings_{index}"].mean(0) for index in (0, 1, 2)])
    assert _cosines(means[:, None], means[None])[~np.eye(3, dtype=bool)].max() < 0.99

    # Negative control: the same weights with two output rows of one tensor swapped break parity.
    broken = VGGish()
    broken.load_state_dict(converted.state_dict())
    with torch.no_grad():
        broken.embeddings[2].weight[[0, 1]] = broken.embeddings[2].weight[[1, 0]]
    audio, sampling_rate = clips[1]
    difference = np.abs(broken.embed(audio, sampling_rate).numpy() - outputs["embeddings_1"]).max()
    assert difference > 1e-3 * np.abs(outputs["embeddings_1"]).max()

    # ... and so does flattening channels-first, the classic porting mistake the TF-order permute avoids.
    examples = waveform_to_examples(audio, sampling_rate)
    with torch.no_grad():
        wrong_order = converted.embeddings(converted.features(examples).flatten(1)).numpy()
    assert _cosines(wrong_order, outputs["embeddings_1"]).min() < 0.99


def test_resampled_input_close_to_resampy(reference, converted):
    """Clips at 44.1, 48 and 32 kHz: torchaudio with resampy's `kaiser_best` parameters against resampy itself.
    Measured: log-mel mean |difference| about 4e-4 and at most about 0.026 (top two mel bands), embedding cosines
    above 0.99999."""
    outputs, _ = reference
    clips = parity_clips()
    for index in RESAMPLED:
        audio, sampling_rate = clips[index]
        examples = waveform_to_examples(audio, sampling_rate)[:, 0].numpy()
        theirs = outputs[f"examples_{index}"]
        assert examples.shape == theirs.shape
        difference = np.abs(examples - theirs)
        assert difference.mean() < 2e-3, difference.mean()
        assert difference.max() < 0.06, difference.max()
        # Below the top mel bands, where the two filters are both flat, they agree much more closely.
        assert difference[..., :56].max() < 5e-3, difference[..., :56].max()
        ours = converted.embed(audio, sampling_rate).numpy()
        assert _cosines(ours, outputs[f"embeddings_{index}"]).min() > 0.9999


# ---------------------------------------------------------------------------------------------- log-mel examples


def numpy_log_mel(waveform: np.ndarray) -> np.ndarray:
    """VGGish's log-mel spectrogram written out from its definition, one frame and one band at a time."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)  # periodic Hann
    bin_hz = np.arange(257) * (SR / 2) / 256

    def mel(hz):
        return 1127.0 * np.log(1.0 + hz / 700.0)

    edges = np.linspace(mel(125.0), mel(7500.0), 64 + 2)
    weights = np.zeros((257, 64))
    for band in range(64):
        lower, center, upper = edges[band : band + 3]
        for k in range(1, 257):  # never the DC bin
            m = mel(bin_hz[k])
            if lower < m <= center:
                weights[k, band] = (m - lower) / (center - lower)
            elif center < m < upper:
                weights[k, band] = (upper - m) / (upper - center)
    frames = 1 + (waveform.size - 400) // 160
    out = np.empty((frames, 64))
    for t in range(frames):
        spectrum = np.abs(np.fft.rfft(waveform[t * 160 : t * 160 + 400] * window, 512))
        out[t] = np.log(spectrum @ weights + 0.01)
    return out


def test_log_mel_matches_numpy_definition():
    rng = np.random.default_rng(1)
    waveform = _chirp(SR, 2.0, rng)
    expected = numpy_log_mel(waveform)
    ours = log_mel_spectrogram(waveform).numpy()
    assert ours.shape == expected.shape == (1 + (2 * SR - 400) // 160, 64)
    # Both float64: FFTs and mel sums of 400-sample frames agree to ~1e-14 of the largest value.
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12 * np.abs(expected).max())

    examples = waveform_to_examples(waveform, SR)
    assert examples.shape == (2, 1, 96, 64) and examples.dtype == torch.float32
    # Consecutive, non-overlapping 96-frame blocks, frames along the third axis; the leftover frames are dropped.
    # The examples are the float64 values cast to float32: within half an ulp (2**-24) of each.
    np.testing.assert_allclose(examples[1, 0].numpy(), expected[96:192], rtol=2**-23, atol=1e-12)


@pytest.mark.parametrize(
    "samples, expected",
    [(10 * SR, 10), (0, 0), (399, 0), (15599, 0), (15600, 1), (SR, 1), (30959, 1), (30960, 2), (int(9.5 * SR), 9)],
)
def test_example_count(samples, expected):
    assert num_examples(samples) == expected
    assert waveform_to_examples(np.zeros(samples), SR).shape == (expected, 1, 96, 64)


def test_example_count_after_resampling():
    # resampy's output length, floor(samples * 16000 / rate): 10 s at 44.1 kHz is 160,000 samples, 10 examples.
    assert waveform_to_examples(np.zeros(441000), 44100).shape[0] == 10


def test_waveform_to_examples_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(2, 16000\)"):
        waveform_to_examples(np.zeros((2, SR)), SR)
    with pytest.raises(ValueError, match="got 0"):
        waveform_to_examples(np.zeros(SR), 0)
    with pytest.raises(ValueError, match="16000.5"):
        waveform_to_examples(np.zeros(SR), 16000.5)


# ---------------------------------------------------------------------------------------------- the network


def test_architecture_is_torchvggish_layout():
    with torch.device("meta"):
        model = VGGish()
    assert {name: tuple(t.shape) for name, t in model.state_dict().items()} == EXPECTED_SHAPES
    assert len(model.embeddings) == 5 and isinstance(model.embeddings[-1], torch.nn.Linear)  # final ReLU removed


def test_forward_shapes_and_batching(converted, float32_close):
    with torch.no_grad():
        assert converted(torch.zeros(0, 1, 96, 64)).shape == (0, 128)
    with pytest.raises(ValueError, match=r"\(3, 1, 64, 96\)"):
        converted(torch.zeros(3, 1, 64, 96))
    audio, sampling_rate = parity_clips()[0]
    # Batched and one-by-one convolutions sum in different orders: equal up to float32 reordering, not bit for bit.
    float32_close(converted.embed(audio, sampling_rate, batch_size=3), converted.embed(audio, SR))
    assert converted.embed(np.zeros(100), SR).shape == (0, 128)
    with pytest.raises(ValueError, match="got 0"):
        converted.embed(audio, SR, batch_size=0)


def test_save_and_load_round_trip(converted, tmp_path, float32_close):
    converted.save_pretrained(tmp_path / "vggish")
    assert sorted(os.listdir(tmp_path / "vggish")) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "vggish" / "config.json").read_text())
    assert config == vggish_config() and config["final_relu"] is False and config["pca"] is False
    loaded = VGGish.from_pretrained(tmp_path / "vggish")
    assert not loaded.training
    for name, tensor in converted.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    audio, sampling_rate = parity_clips()[1]
    # Equal weights (checked above) in other memory: kernels may sum in another order (MKL's results depend on
    # alignment), so up to float32 reordering.
    float32_close(loaded.embed(audio, sampling_rate), converted.embed(audio, sampling_rate))

    config["num_mel_bins"] = 128
    (tmp_path / "vggish" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="num_mel_bins"):
        VGGish.from_pretrained(tmp_path / "vggish")
    with pytest.raises(FileNotFoundError, match="config.json"):
        VGGish.from_pretrained(tmp_path / "missing")


# ---------------------------------------------------------------------------------------------- the converter


class _Unsafe:
    """Pickles as a call to `print`: what `torch.load(weights_only=True)` must refuse to run."""

    def __reduce__(self):
        return (print, ("this must not run",))


def test_converter_names_bad_keys_and_refuses_unsafe_pickles(tmp_path):
    partial = {"features.0.weight": torch.zeros(64, 1, 3, 3), "classifier.weight": torch.zeros(2)}
    torch.save(partial, tmp_path / "unknown.pth")
    with pytest.raises(ValueError, match=r"unknown keys \['classifier.weight'\].*missing keys \['embeddings"):
        convert_vggish_checkpoint(tmp_path / "unknown.pth", tmp_path / "out")

    torch.save({"features.0.weight": torch.zeros(64, 1, 5, 5)}, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match=r"features.0.weight: \(64, 1, 5, 5\) instead of \(64, 1, 3, 3\)"):
        read_vggish_state_dict(tmp_path / "shape.pth")

    torch.save({"features.0.weight": torch.zeros(64, 1, 3, 3), "hook": _Unsafe()}, tmp_path / "unsafe.pth")
    with pytest.raises(ValueError, match="Refusing"):
        convert_vggish_checkpoint(tmp_path / "unsafe.pth", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_converts_and_drops_pca(reference, converted, tmp_path):
    # A state dict of torchvggish's `VGGish(postprocess=True)`: the network plus the PCA postprocessor.
    state_dict = torch.load(reference[1], weights_only=True)
    state_dict["pproc.pca_eigen_vectors"] = torch.eye(128)
    state_dict["pproc.pca_means"] = torch.zeros(128, 1)
    torch.save(state_dict, tmp_path / "with-pca.pth")

    main(["--checkpoint", str(tmp_path / "with-pca.pth"), "--output_dir", str(tmp_path / "cli")])
    loaded = VGGish.from_pretrained(tmp_path / "cli")
    assert set(loaded.state_dict()) == set(EXPECTED_SHAPES)
    for name, tensor in converted.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
