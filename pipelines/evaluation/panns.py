"""PANNs Cnn14 as `audioldm_eval` uses it for FD, IS and KL, in plain torch.

Tango (and AudioLDM) score generated audio with `audioldm_eval`; Tango's copy of it (`audioldm_eval/` in the Tango
repository) is the protocol followed here. Its `EvaluationHelper` (`audioldm_eval/eval.py`) builds PANNs' Cnn14
(Kong et al., 2020, `audioldm_eval/feature_extractors/panns/models.py`) with the 16 kHz settings of
[`CNN14_16K_CONFIG`] and the release checkpoint `Cnn14_16k_mAP=0.438.pth`, runs it in eval mode on one clip at a time
and keeps two of its outputs:

- `"2048"`, here `"embedding"`: `relu(fc1(...))`, the 2048-d clip embedding whose Frechet distance is FD (and KID);
- `"logits"`, here `"logits"`: `fc_audioset(relu(fc1(...)))`, the 527 AudioSet class scores *before* the sigmoid
  (the sigmoid of them is the model's `"clipwise_output"`, which no metric uses). IS applies a softmax to them
  (`metrics/isc.py`, 10 splits), KL compares `softmax` of paired clips' logits (`metrics/kl.py`, summed over
  classes, averaged over clips; a sigmoid variant is reported beside it).

[`Cnn14`] is that network with the same parameter names, so the original state dict maps onto it 1:1, except the
front end: torchlibrosa's fixed STFT kernels and mel matrix (`spectrogram_extractor.*`, `logmel_extractor.*`) are
replaced by `torch.stft` and a librosa-equivalent slaney mel filter bank computed from the config, and
[`convert_panns_checkpoint`] checks that the dropped tensors are what the config computes before dropping them.
Only inference is implemented: the original applies SpecAugment, mixup and dropout in training mode only.

How a clip reaches the model matters as much: [`cnn14_inputs`] does what Tango's `WaveDataset.read_from_file`
(`audioldm_eval/datasets/load_mel.py`) does to a loaded file before Cnn14 (first channel, mean removed, Tango's
resampling, zero-padded to 2 s), and the model is then run on that clip alone (batch size 1). Clips of the same
length may share a batch (eval-mode batch norm treats rows independently), but clips of different lengths must not be
padded to a common length: the time max/mean pooling would see the padding.

Usage:

```bash
python -m pipelines.evaluation.panns --checkpoint Cnn14_16k_mAP=0.438.pth --output_dir ./panns-cnn14-16k
```

```python
model = Cnn14.from_pretrained("./panns-cnn14-16k")
inputs = torch.from_numpy(cnn14_inputs(audio, sampling_rate))[None]  # (1, num_samples) at 16 kHz
features = model(inputs)  # {"embedding": (1, 2048), "logits": (1, 527)}
```
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers.audio_utils import mel_filter_bank

from ..checkpoints import KEYS_SHOWN, check_state_dict, load_weights_only
from ..cli import UserError, add_debug_argument, command_line, one_line
from .outputs import check_model_folder, write_atomically

logger = logging.getLogger(__name__)

# `audioldm_eval/eval.py` (Tango's copy), `EvaluationHelper.__init__`, `sampling_rate == 16000` branch; the names are
# the arguments of the original `Cnn14.__init__`. The matching release file is `Cnn14_16k_mAP=0.438.pth` (Zenodo
# record 3987831, as `models.py` downloads it).
CNN14_16K_CONFIG: dict[str, int] = {
    "sample_rate": 16000,
    "window_size": 512,
    "hop_size": 160,
    "mel_bins": 64,
    "fmin": 50,
    "fmax": 8000,
    "classes_num": 527,
}
# The same function's 32 kHz branch, for `Cnn14_mAP=0.431.pth` (Zenodo record 3576403). Tango evaluates at 16 kHz.
CNN14_32K_CONFIG: dict[str, int] = {
    "sample_rate": 32000,
    "window_size": 1024,
    "hop_size": 320,
    "mel_bins": 64,
    "fmin": 50,
    "fmax": 14000,
    "classes_num": 527,
}
KNOWN_CONFIGS = {"Cnn14_16k_mAP=0.438.pth": CNN14_16K_CONFIG, "Cnn14_mAP=0.431.pth": CNN14_32K_CONFIG}

# Fixed inside the original `Cnn14.__init__`: window "hann", center=True, pad_mode "reflect", and for the log-mel
# ref=1.0, amin=1e-10, top_db=None (torchlibrosa's `power_to_db`: 10 log10(max(x, amin)) - 10 log10(max(amin, ref))).
POWER_TO_DB_REF = 1.0
POWER_TO_DB_AMIN = 1e-10

EMBEDDING_SIZE = 2048
# Five 2x2 average poolings (conv blocks 1-5) halve the frame axis five times; fewer frames than this leave nothing
# for the time pooling after conv block 6.
MIN_FRAMES = 2**5

# `audioldm_eval/datasets/load_mel.py` (Tango's copy): `EvaluationHelper(16000, ...)` reads clips at 16 kHz and
# `pad_short_audio(audio, min_samples=32000)` zero-pads shorter ones at the end.
EVAL_SAMPLING_RATE = 16000
MIN_CLIP_SAMPLES = 32000
RESAMPLING_MODES = ("tango", "torchaudio")

# The original model's fixed front-end tensors (torchlibrosa `Spectrogram` / `LogmelFilterBank`), checked and dropped.
FRONT_END_KEYS = (
    "spectrogram_extractor.stft.conv_real.weight",
    "spectrogram_extractor.stft.conv_imag.weight",
    "logmel_extractor.melW",
)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_TYPE = "panns_cnn14"


def validate_cnn14_config(config: Mapping[str, Any]) -> dict[str, int]:
    """
    Checks a Cnn14 config: exactly the keys of [`CNN14_16K_CONFIG`], positive integers, `fmin < fmax <= sample_rate /
    2`.

    Raises:
        `ValueError`: naming the unknown or missing keys, or the bad value.
    """
    unknown = sorted(set(config) - set(CNN14_16K_CONFIG))
    missing = sorted(set(CNN14_16K_CONFIG) - set(config))
    if unknown or missing:
        raise ValueError(f"Cnn14 config: unknown keys {unknown}, missing keys {missing}.")
    for key, value in config.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"Cnn14 config: `{key}` must be a positive integer, got {value!r}.")
    if not config["fmin"] < config["fmax"] <= config["sample_rate"] / 2:
        raise ValueError(
            f"Cnn14 config: need fmin < fmax <= sample_rate / 2, got fmin={config['fmin']}, fmax={config['fmax']}, "
            f"sample_rate={config['sample_rate']}."
        )
    if config["hop_size"] > config["window_size"]:
        raise ValueError(f"Cnn14 config: hop_size {config['hop_size']} > window_size {config['window_size']}.")
    return {key: config[key] for key in CNN14_16K_CONFIG}


def cnn14_min_samples(config: Mapping[str, int] = CNN14_16K_CONFIG) -> int:
    """
    The shortest waveform (at `config["sample_rate"]`) that Cnn14 can embed, from its front end: the centred STFT
    gives `1 + num_samples // hop_size` frames, and the five 2x2 average poolings need at least `MIN_FRAMES` (32) of
    them, so `(32 - 1) * hop_size` samples: 4960 at 16 kHz (0.31 s). The reflect padding of the centred STFT also
    needs more than `window_size // 2` samples, which is fewer here.
    """
    return max((MIN_FRAMES - 1) * config["hop_size"], config["window_size"] // 2 + 1)


def slaney_mel_filters(config: Mapping[str, int]) -> np.ndarray:
    """
    The mel filter bank of the original front end: torchlibrosa's `LogmelFilterBank` uses `librosa.filters.mel(sr,
    n_fft, n_mels, fmin, fmax)` with librosa's defaults, i.e. the slaney mel scale and slaney (area) normalisation.

    Returns:
        `np.ndarray` of shape `(window_size // 2 + 1, mel_bins)`, float64 (librosa also computes in float64).
    """
    return mel_filter_bank(
        num_frequency_bins=config["window_size"] // 2 + 1,
        num_mel_filters=config["mel_bins"],
        min_frequency=float(config["fmin"]),
        max_frequency=float(config["fmax"]),
        sampling_rate=config["sample_rate"],
        norm="slaney",
        mel_scale="slaney",
    )


class Cnn14ConvBlock(nn.Module):
    """PANNs' `ConvBlock` as Cnn14 uses it: two bias-free 3x3 convolutions, each followed by batch norm and ReLU, then
    average pooling."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, hidden_states: torch.Tensor, pool_size: tuple[int, int]) -> torch.Tensor:
        hidden_states = F.relu(self.bn1(self.conv1(hidden_states)))
        hidden_states = F.relu(self.bn2(self.conv2(hidden_states)))
        if pool_size != (1, 1):  # the last block pools with (1, 1), which changes nothing
            hidden_states = F.avg_pool2d(hidden_states, kernel_size=pool_size)
        return hidden_states


class Cnn14(nn.Module):
    """
    PANNs Cnn14 for inference, as `audioldm_eval` runs it: log-mel front end, six conv blocks, time max + mean pooling,
    `fc1` (the 2048-d embedding) and `fc_audioset` (the AudioSet logits).

    It downloads nothing: weights come from [`Cnn14.from_pretrained`] (a folder written by
    [`convert_panns_checkpoint`] or [`Cnn14.save_pretrained`]). The module is built in eval mode and runs only in it.

    Args:
        config (`Mapping[str, int]`, *optional*, defaults to [`CNN14_16K_CONFIG`]):
            The original constructor's settings: `sample_rate` (of the waveforms), `window_size` (STFT size and
            periodic Hann window length), `hop_size`, `mel_bins`, `fmin` and `fmax` (mel band edges, Hz) and
            `classes_num`.
        **kwargs:
            Single settings over `config`, e.g. `Cnn14(fmax=7000)`.
    """

    def __init__(self, config: Mapping[str, int] | None = None, **kwargs: int) -> None:
        super().__init__()
        self.config = validate_cnn14_config({**(CNN14_16K_CONFIG if config is None else config), **kwargs})
        window_size, mel_bins = self.config["window_size"], self.config["mel_bins"]
        # Not saved with the weights: they follow from the config (`persistent=False`), but move with `.to()`.
        self.register_buffer(
            "window", torch.hann_window(window_size, periodic=True, dtype=torch.float64).float(), False
        )
        self.register_buffer("mel_filters", torch.from_numpy(slaney_mel_filters(self.config)).float(), False)

        self.bn0 = nn.BatchNorm2d(mel_bins)
        self.conv_block1 = Cnn14ConvBlock(1, 64)
        self.conv_block2 = Cnn14ConvBlock(64, 128)
        self.conv_block3 = Cnn14ConvBlock(128, 256)
        self.conv_block4 = Cnn14ConvBlock(256, 512)
        self.conv_block5 = Cnn14ConvBlock(512, 1024)
        self.conv_block6 = Cnn14ConvBlock(1024, EMBEDDING_SIZE)
        self.fc1 = nn.Linear(EMBEDDING_SIZE, EMBEDDING_SIZE, bias=True)
        self.fc_audioset = nn.Linear(EMBEDDING_SIZE, self.config["classes_num"], bias=True)
        self.eval()

    @property
    def min_samples(self) -> int:
        """The shortest waveform the network can embed (see [`cnn14_min_samples`])."""
        return cnn14_min_samples(self.config)

    def log_mel_spectrogram(self, waveforms: torch.Tensor) -> torch.Tensor:
        """
        The front end: power STFT (centered, reflect-padded, periodic Hann), slaney mel filter bank, then
        `10 * log10(max(mel, 1e-10))` with ref 1.0 and no top_db clipping, as torchlibrosa computes it.

        Args:
            waveforms (`torch.Tensor` of shape `(batch_size, num_samples)`): at `config["sample_rate"]`.

        Returns:
            `torch.Tensor` of shape `(batch_size, 1, num_frames, mel_bins)`, `num_frames = 1 + num_samples //
            hop_size`.
        """
        if waveforms.ndim != 2:
            raise ValueError(
                f"Cnn14 takes waveforms of shape (batch_size, num_samples), got {tuple(waveforms.shape)}."
            )
        if not waveforms.is_floating_point():
            raise ValueError(f"Cnn14 takes floating-point waveforms, got {waveforms.dtype}.")
        if waveforms.shape[-1] < self.min_samples:
            raise ValueError(
                f"Cnn14 needs at least {self.min_samples} samples per waveform, got {waveforms.shape[-1]}; "
                f"`cnn14_inputs` pads clips to {MIN_CLIP_SAMPLES} as audioldm_eval does."
            )
        stft = torch.stft(
            waveforms.to(self.window.dtype),
            n_fft=self.config["window_size"],
            hop_length=self.config["hop_size"],
            win_length=self.config["window_size"],
            window=self.window,
            center=True,
            pad_mode="reflect",
            onesided=True,
            return_complex=True,
        )
        power = stft.real.square() + stft.imag.square()  # (batch, freq, frames)
        mel = torch.matmul(power.transpose(1, 2), self.mel_filters)  # (batch, frames, mel)
        log_mel = 10.0 * torch.log10(torch.clamp(mel, min=POWER_TO_DB_AMIN))
        log_mel = log_mel - 10.0 * math.log10(max(POWER_TO_DB_AMIN, POWER_TO_DB_REF))
        return log_mel[:, None]

    def forward(self, waveforms: torch.Tensor) -> dict[str, torch.Tensor]:
        """
        Args:
            waveforms (`torch.Tensor` of shape `(batch_size, num_samples)`):
                Clips at `config["sample_rate"]`, e.g. from [`cnn14_inputs`]. audioldm_eval feeds one clip at a time;
                a batch gives the same result per clip only when the clips have the same length (no padding here).

        Returns:
            `dict[str, torch.Tensor]`:
                - `"embedding"` of shape `(batch_size, 2048)`: audioldm_eval's `"2048"` feature (after ReLU), for FD;
                - `"logits"` of shape `(batch_size, classes_num)`: audioldm_eval's `"logits"`, before the sigmoid,
                  for IS and KL (which apply a softmax to them).
        """
        if self.training:
            raise RuntimeError(
                "Cnn14 here is inference-only (no SpecAugment, mixup or dropout); call `.eval()` before running it."
            )
        hidden_states = self.log_mel_spectrogram(waveforms).to(self.bn0.weight.dtype)
        # bn0 normalises each mel band: move the mel axis to the channel position and back.
        hidden_states = self.bn0(hidden_states.transpose(1, 3)).transpose(1, 3)
        for block in (self.conv_block1, self.conv_block2, self.conv_block3, self.conv_block4, self.conv_block5):
            hidden_states = block(hidden_states, pool_size=(2, 2))
        hidden_states = self.conv_block6(hidden_states, pool_size=(1, 1))
        hidden_states = hidden_states.mean(dim=3)  # over the mel axis: (batch, 2048, frames)
        hidden_states = hidden_states.amax(dim=2) + hidden_states.mean(dim=2)
        embedding = F.relu(self.fc1(hidden_states))
        logits = self.fc_audioset(embedding)
        return {"embedding": embedding, "logits": logits}

    def load_checked_state_dict(self, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
        """
        Loads weights after checking their names and shapes against this module's, with errors that name them.

        Args:
            state_dict (`Mapping[str, torch.Tensor]`): this module's parameter names (no front-end tensors).
            source (`str`): where they came from, for the error messages.

        Raises:
            `ValueError`: naming unknown or missing tensors, or a tensor of the wrong shape.
        """
        expected = self.state_dict()
        unknown = sorted(set(state_dict) - set(expected))
        missing = sorted(set(expected) - set(state_dict))
        if unknown or missing:
            raise ValueError(
                f"{source!r} does not hold Cnn14's weights: {len(unknown)} unknown tensors {unknown[:KEYS_SHOWN]}, "
                f"{len(missing)} missing tensors {missing[:KEYS_SHOWN]}."
            )
        for key, value in state_dict.items():
            if tuple(value.shape) != tuple(expected[key].shape):
                raise ValueError(
                    f"{source!r}: `{key}` has shape {tuple(value.shape)}, Cnn14 with config {self.config} expects "
                    f"{tuple(expected[key].shape)}."
                )
        self.load_state_dict(dict(state_dict), strict=True)

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """
        Writes `config.json` (the config and `"model_type": "panns_cnn14"`) and `model.safetensors` (the weights,
        without the front end, which the config determines).

        Returns:
            `Path`: the folder.
        """
        from safetensors.torch import save_file

        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        weights = {key: value.detach().cpu().contiguous() for key, value in self.state_dict().items()}
        # Each file whole or not at all, the config last: a folder with a config always has its weights.
        write_atomically(folder / WEIGHTS_NAME, lambda path: save_file(weights, str(path), metadata={"format": "pt"}))
        config = json.dumps({"model_type": MODEL_TYPE, **self.config}, indent=2) + "\n"
        write_atomically(folder / CONFIG_NAME, lambda path: path.write_text(config, encoding="utf-8"))
        return folder

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> Cnn14:
        """
        Loads a converted Cnn14, in eval mode, on the CPU.

        Args:
            path (`str` or `os.PathLike`):
                A folder with `config.json` and `model.safetensors`, or such a `.safetensors` file (its folder must
                hold `config.json`). Nothing is downloaded.

        Raises:
            `FileNotFoundError`: when the folder lacks one of the files.
            `ValueError`: when the config or the weights are not a Cnn14's (naming the offending keys).
        """
        path = Path(path)
        if path.is_dir():
            folder, weights_file = path, path / WEIGHTS_NAME
        elif path.suffix == ".safetensors":
            folder, weights_file = path.parent, path
        else:
            raise ValueError(f"Cnn14.from_pretrained takes a folder or a .safetensors file, got {os.fspath(path)!r}.")
        for file in (folder / CONFIG_NAME, weights_file):
            if not file.is_file():
                raise FileNotFoundError(f"No {file.name} at {os.fspath(file)!r}.")
        config = json.loads((folder / CONFIG_NAME).read_text())
        model_type = config.pop("model_type", None)
        if model_type != MODEL_TYPE:
            raise ValueError(f"{os.fspath(folder / CONFIG_NAME)!r} has model_type {model_type!r}, not {MODEL_TYPE!r}.")
        model = cls(validate_cnn14_config(config))
        from safetensors.torch import load_file

        model.load_checked_state_dict(load_file(str(weights_file), device="cpu"), os.fspath(weights_file))
        return model.eval()


# What else the release pickles hold besides `"model"`: `{"iteration", "model", "sampler"}` (PANNs' training loop,
# `feature_extractors/panns/main.py`), the sampler's state being numpy arrays. `torch.load(weights_only=True)` refuses
# numpy objects unless allowed by name (autrainer/autrainer#66 and #67 load these very files with
# `_reconstruct`, `ndarray`, `dtype` and `Int64DType` allowed); allowing plain numpy arrays keeps the load free of code
# execution. Files saved with numpy < 2 name `numpy.core.multiarray`, numpy >= 2 `numpy._core.multiarray`.
def _numpy_array_globals() -> list[Any]:
    multiarray = np._core.multiarray
    dtype_classes = sorted({type(np.dtype(code)) for code in "?bhilqpBHILQPefdgFDG"}, key=lambda c: c.__name__)
    return [
        multiarray._reconstruct,
        (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
        multiarray.scalar,
        (multiarray.scalar, "numpy.core.multiarray.scalar"),
        np.ndarray,
        np.dtype,
        *dtype_classes,
    ]


def read_panns_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """
    Reads the model weights of an original PANNs checkpoint such as `Cnn14_16k_mAP=0.438.pth`.

    The release files hold `{"iteration", "model", "sampler"}`; a bare state dict (or a safetensors file) is accepted
    too. The file is read with `torch.load(weights_only=True)`, allowing numpy arrays besides tensors, never more.

    Returns:
        `dict[str, torch.Tensor]`: the original Cnn14's state dict, front end included.

    Raises:
        `ValueError`: when the pickle holds anything else (e.g. code), or no state dict of named tensors.
    """
    with torch.serialization.safe_globals(_numpy_array_globals()):
        checkpoint = load_weights_only(path)
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("model"), Mapping):
        checkpoint = checkpoint["model"]
    return check_state_dict(checkpoint, os.fspath(path))


def infer_cnn14_config(state_dict: Mapping[str, torch.Tensor], source: str = "the checkpoint") -> dict[str, int]:
    """
    Picks the known config whose STFT size matches the checkpoint's front end (512 for 16 kHz, 1024 for 32 kHz).

    Raises:
        `ValueError`: when the front end is missing or matches no known config.
    """
    kernel = state_dict.get(FRONT_END_KEYS[0])
    if kernel is None:
        raise ValueError(f"{source!r} has no `{FRONT_END_KEYS[0]}`; pass the config explicitly.")
    matches = [config for config in KNOWN_CONFIGS.values() if config["window_size"] == kernel.shape[-1]]
    if len(matches) != 1:
        raise ValueError(
            f"{source!r}: STFT size {kernel.shape[-1]} matches none of the known Cnn14 configs "
            f"{list(KNOWN_CONFIGS)}; pass the config explicitly."
        )
    return dict(matches[0])


def check_front_end(state_dict: Mapping[str, torch.Tensor], model: Cnn14, source: str = "the checkpoint") -> None:
    """
    Checks that the original front-end tensors are what `model`'s config computes, so dropping them loses nothing.

    torchlibrosa's STFT is a convolution with kernels `window[n] * cos(2 pi k n / N)` (real) and `-window[n] * sin(2
    pi k n / N)` (imaginary) for bins `k`; its mel matrix is librosa's, stored transposed `(freq, mel)`.

    Raises:
        `ValueError`: naming the tensor that is missing, misshapen or different (e.g. a 32 kHz checkpoint read with the
            16 kHz config).
    """
    missing = [key for key in FRONT_END_KEYS if key not in state_dict]
    if missing:
        raise ValueError(f"{source!r} lacks the original front-end tensors {missing}.")
    n_fft = model.config["window_size"]
    n = np.arange(n_fft)
    angle = 2 * np.pi * np.outer(np.arange(n_fft // 2 + 1), n) / n_fft
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)  # periodic Hann, librosa's get_window("hann", fftbins=True)
    expected = {
        FRONT_END_KEYS[0]: (window * np.cos(angle))[:, None, :],
        FRONT_END_KEYS[1]: (-window * np.sin(angle))[:, None, :],
        FRONT_END_KEYS[2]: slaney_mel_filters(model.config),
    }
    for key, value in expected.items():
        given = state_dict[key].detach().cpu().double().numpy()
        if given.shape != value.shape:
            raise ValueError(
                f"{source!r}: `{key}` has shape {given.shape}, config {model.config} computes {value.shape}."
            )
        # float32 storage of values <= 1: anything beyond rounding means other settings.
        difference = float(np.abs(given - value).max())
        if difference > 1e-5 * max(1.0, float(np.abs(value).max())):
            raise ValueError(
                f"{source!r}: `{key}` differs from what config {model.config} computes (max |difference| "
                f"{difference:.3g}); the checkpoint was made for other front-end settings."
            )


def panns_to_cnn14(
    state_dict: Mapping[str, torch.Tensor], config: Mapping[str, int] | None = None, source: str = "the checkpoint"
) -> Cnn14:
    """
    Builds a [`Cnn14`] from an original state dict: checks and drops the front end, loads the rest 1:1.

    Args:
        state_dict (`Mapping[str, torch.Tensor]`): the original Cnn14's (see [`read_panns_state_dict`]).
        config (`Mapping[str, int]`, *optional*): defaults to the known config matching the front end's STFT size.
        source (`str`, *optional*): for error messages.
    """
    config = validate_cnn14_config(config) if config is not None else infer_cnn14_config(state_dict, source)
    model = Cnn14(config)
    check_front_end(state_dict, model, source)
    weights = {key: value for key, value in state_dict.items() if key not in FRONT_END_KEYS}
    model.load_checked_state_dict(weights, source)
    return model


def convert_panns_checkpoint(
    checkpoint_path: str | os.PathLike, output_dir: str | os.PathLike, config: Mapping[str, int] | None = None
) -> Cnn14:
    """
    Converts an original PANNs Cnn14 checkpoint (e.g. `Cnn14_16k_mAP=0.438.pth`) into a [`Cnn14`] folder.

    Args:
        checkpoint_path (`str` or `os.PathLike`): the original `.pth`, read with `torch.load(weights_only=True)`.
        output_dir (`str` or `os.PathLike`): where to write `config.json` and `model.safetensors`.
        config (`Mapping[str, int]`, *optional*): defaults to the known config matching the checkpoint's front end
            ([`CNN14_16K_CONFIG`] for a 512-point STFT).

    Returns:
        [`Cnn14`]: the converted model, in eval mode.

    Raises:
        `ValueError`: for a pickle that is not plain tensors and numpy arrays, unknown or missing tensors (named), or a
            front end that differs from the config's.
    """
    source = os.fspath(checkpoint_path)
    model = panns_to_cnn14(read_panns_state_dict(checkpoint_path), config, source)
    model.save_pretrained(output_dir)
    logger.info(f"Converted {source} (config {model.config}) to {os.fspath(output_dir)}.")
    return model


def cnn14_inputs(audio: np.ndarray, sampling_rate: int, resampling: str = "tango") -> np.ndarray:
    """
    Prepares one clip the way audioldm_eval's loader does before Cnn14 (Tango's `audioldm_eval/datasets/load_mel.py`,
    `WaveDataset.read_from_file`, with `EvaluationHelper(16000, ...)`).

    In order: the first channel only; the clip's mean subtracted; brought to 16 kHz; zero-padded at the end to 32000
    samples (2 s) if shorter. Nothing else: no peak normalisation, clipping or cropping (the whole clip goes in).
    Tango's copy resamples unusually (`resampling="tango"`):

    - 48 kHz: every third sample (`audio[..., ::3]`), no low-pass filter;
    - 32 kHz: every second sample *and then* `torchaudio.functional.resample(32000 -> 16000)`, because the 48 kHz
      test is an `if`/`elif` after the 32 kHz `if`: the clip ends up a quarter as long, i.e. at an effective 8 kHz;
    - any other rate except 16 kHz: `torchaudio.functional.resample(audio, rate, 16000)` with torchaudio's defaults.

    `resampling="torchaudio"` resamples every rate with `torchaudio.functional.resample`, as the PyPI `audioldm_eval`
    (0.0.3) and the upstream repository do. Both are the same at 16 kHz, the rate Tango writes its clips at.

    Args:
        audio (`np.ndarray`):
            A mono clip `(num_samples,)`, or `(num_channels, num_samples)` as `torchaudio.load` returns it. Floats as
            `torchaudio.load` / `soundfile.read` give them (full scale 1.0); int16 / int32 PCM is scaled by 2**-15 /
            2**-31 the same way.
        sampling_rate (`int`): its rate.
        resampling (`str`, *optional*, defaults to `"tango"`): `"tango"` or `"torchaudio"`, see above.

    Returns:
        `np.ndarray` of shape `(num_samples,)`, float32, at 16 kHz. audioldm_eval feeds it to Cnn14 as a batch of one
        (`model(torch.from_numpy(inputs)[None])`); clips of the same prepared length may be batched together.
    """
    import torchaudio

    if resampling not in RESAMPLING_MODES:
        raise ValueError(f"resampling must be one of {RESAMPLING_MODES}, got {resampling!r}.")
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, int | np.integer) or sampling_rate <= 0:
        raise ValueError(f"sampling_rate must be a positive integer, got {sampling_rate!r}.")
    sampling_rate = int(sampling_rate)
    audio = np.asarray(audio)
    if audio.dtype == np.int16:
        audio = audio.astype(np.float32) / 2**15
    elif audio.dtype == np.int32:
        audio = (audio.astype(np.float64) / 2**31).astype(np.float32)
    elif not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"audio must be floating point, int16 or int32, got {audio.dtype}.")
    if audio.ndim == 1:
        audio = audio[None]
    elif audio.ndim != 2:
        raise ValueError(f"audio must be (num_samples,) or (num_channels, num_samples), got shape {audio.shape}.")
    elif audio.shape[0] > audio.shape[1]:
        raise ValueError(
            f"audio of shape {audio.shape} looks like (num_samples, num_channels); pass it channels first "
            "(`audio.T`), as torchaudio.load returns it."
        )
    if audio.shape[-1] == 0:
        raise ValueError("audio is empty (audioldm_eval skips empty files).")

    waveform = torch.from_numpy(np.ascontiguousarray(audio[0:1])).float()  # "Only use the first channel"
    waveform = waveform - waveform.mean()
    if sampling_rate != EVAL_SAMPLING_RATE:
        if resampling == "tango" and sampling_rate == 32000:
            waveform = waveform[..., ::2]
            waveform = torchaudio.functional.resample(waveform, orig_freq=sampling_rate, new_freq=EVAL_SAMPLING_RATE)
        elif resampling == "tango" and sampling_rate == 48000:
            waveform = waveform[..., ::3]
        else:
            waveform = torchaudio.functional.resample(waveform, orig_freq=sampling_rate, new_freq=EVAL_SAMPLING_RATE)
    if waveform.shape[-1] < MIN_CLIP_SAMPLES:
        waveform = F.pad(waveform, (0, MIN_CLIP_SAMPLES - waveform.shape[-1]))
    # Contiguous: a strided view (the `::3` above) would be misread by consumers that take the raw buffer.
    return waveform[0].contiguous().numpy()


def _resampled_length(num_samples: int, orig_freq: int, new_freq: int) -> int:
    # `torchaudio.functional.resample`'s output length, ceil(new * length / orig) with the rates reduced by their gcd
    # (`_apply_sinc_resample_kernel`), in exact integer arithmetic.
    divisor = math.gcd(orig_freq, new_freq)
    orig_freq, new_freq = orig_freq // divisor, new_freq // divisor
    return -(-new_freq * num_samples // orig_freq)


def cnn14_input_length(num_samples: int, sampling_rate: int, resampling: str = "tango") -> int:
    """
    How many 16 kHz samples of a clip of `num_samples` samples at `sampling_rate` [`cnn14_inputs`] keeps before it
    pads to 2 s: what decides whether the clip is long enough for Cnn14 (see [`cnn14_min_samples`]).

    Args:
        num_samples (`int`): the clip's length at its own rate.
        sampling_rate (`int`): its rate.
        resampling (`str`, *optional*, defaults to `"tango"`): as for [`cnn14_inputs`].
    """
    if resampling not in RESAMPLING_MODES:
        raise ValueError(f"resampling must be one of {RESAMPLING_MODES}, got {resampling!r}.")
    sampling_rate = int(sampling_rate)
    if sampling_rate == EVAL_SAMPLING_RATE:
        return num_samples
    if resampling == "tango" and sampling_rate == 32000:
        return _resampled_length(-(-num_samples // 2), 32000, EVAL_SAMPLING_RATE)  # `[::2]`, then resampled again
    if resampling == "tango" and sampling_rate == 48000:
        return -(-num_samples // 3)  # `[::3]`
    return _resampled_length(num_samples, sampling_rate, EVAL_SAMPLING_RATE)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipelines.evaluation.panns", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="The original PANNs file, e.g. Cnn14_16k_mAP=0.438.pth.")
    parser.add_argument("--output_dir", required=True, help="Where to write config.json and model.safetensors.")
    parser.add_argument(
        "--sample_rate",
        type=int,
        choices=(16000, 32000),
        help="Use the 16 or 32 kHz config of audioldm_eval/eval.py; by default the one matching the front end.",
    )
    add_debug_argument(parser)
    return parser.parse_args(argv)


@command_line
def main(argv: Sequence[str] | None = None) -> Path:
    """Converts a PANNs release file; the output folder is checked before the checkpoint is read."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    output_dir = check_model_folder(args.output_dir, "--output_dir", MODEL_TYPE, CONFIG_NAME)
    config = {16000: CNN14_16K_CONFIG, 32000: CNN14_32K_CONFIG}.get(args.sample_rate)
    try:
        model = panns_to_cnn14(read_panns_state_dict(args.checkpoint), config, args.checkpoint)
    except (OSError, ValueError) as error:
        raise UserError(f"--checkpoint {args.checkpoint!r}: {one_line(error)}") from error
    model.save_pretrained(output_dir)
    logger.info(f"Converted {args.checkpoint} (config {model.config}) to {os.fspath(output_dir)}.")
    print(os.fspath(output_dir))
    return output_dir


if __name__ == "__main__":
    sys.exit(main())
