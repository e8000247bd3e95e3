"""VGGish as audioldm_eval uses it for the Frechet Audio Distance (FAD), in plain torch.

audioldm_eval (Tango's copy, `audioldm_eval/metrics/fad.py`, `FrechetAudioDistance(use_pca=False,
use_activation=False)` as `audioldm_eval/eval.py` builds it) loads `torch.hub.load("harritaylor/torchvggish",
"vggish")`, sets `model.postprocess = False` (no PCA / whitening / 8-bit quantisation) and drops the last module of
`model.embeddings` (the final ReLU). Each clip goes through `model.forward(audio, sr)`, whose preprocessing is
`vggish_input.waveform_to_examples(audio, sr)`: one 128-d embedding per 0.96 s example. The per-example embeddings of
all clips are concatenated (no pooling per clip) and the Frechet distance is taken between the Gaussians fitted to
the two sets of examples.

This module reimplements exactly that: [`waveform_to_examples`] (the log-mel examples), [`VGGish`] (torchvggish's
`VGG`: the same parameter names, so the released `vggish-10086976.pth` maps 1:1, without the final ReLU and without
the PCA postprocessor) and [`convert_vggish_checkpoint`] (release file -> `config.json` + `model.safetensors`).
Nothing is downloaded: the weights come from a folder written by the converter.

The one deliberate difference from torchvggish: audio not at 16 kHz is resampled with
`torchaudio.functional.resample` rather than `resampy.resample` (which needs numba). It is given the parameters of
resampy's default `kaiser_best` filter (Kaiser window, beta 12.9846, 50 zero crossings, roll-off 0.917347) and
resampy's output length, so the two agree closely but not exactly (resampy interpolates a tabulated filter, 2**13
points per zero crossing): on 2-3 s chirps plus noise at 32, 44.1 and 48 kHz, the log-mel examples differ by 4e-4
on average and at most 0.03 (in the top two mel bands, next to the filter's roll-off), against 0.008 and 0.55 with
torchaudio's default filter. For 16 kHz input (Tango generates 16 kHz audio) nothing is resampled, and the
features and embeddings are torchvggish's bit for bit (same float32 values in the parity test).

Not reproduced here because it is not part of VGGish: audioldm_eval's own file loader (`load_audio_task`) reads
wav files as int16, divides by 32768, averages channels, and turns 32 kHz into 16 kHz by dropping every other
sample (`wav[::2]`, no low-pass filter) instead of calling resampy.

Usage:

```bash
python -m pipelines.evaluation.vggish --checkpoint vggish-10086976.pth --output_dir ./vggish
```

```python
from pipelines.evaluation.vggish import VGGish

model = VGGish.from_pretrained("./vggish")
embeddings = model.embed(audio_16khz, 16000)  # (n_examples, 128)
```
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torchaudio
from torch import nn

from ..checkpoints import KEYS_SHOWN, check_state_dict, load_weights_only
from ..cli import UserError, add_debug_argument, command_line, one_line
from ..reference_env import default_env_dir, ensure_reference_env
from .outputs import check_model_folder, write_atomically

logger = logging.getLogger(__name__)

# torchvggish's `vggish_params.py`, itself tensorflow/models `research/audioset/vggish/vggish_params.py`. The same
# file in torchvggish 0.2 on PyPI and on harritaylor/torchvggish's master (f3f9096, 2021-11-03, the branch
# `torch.hub.load("harritaylor/torchvggish", "vggish")` fetches); so are `vggish_input.py` and `mel_features.py`.
VGGISH_PARAMS = {
    "sample_rate": 16000,
    "stft_window_length_seconds": 0.025,  # 400 samples at 16 kHz
    "stft_hop_length_seconds": 0.010,  # 160 samples: 100 frames per second
    "num_mel_bins": 64,
    "mel_min_hz": 125.0,
    "mel_max_hz": 7500.0,
    "log_offset": 0.01,  # log(mel + 0.01): mel_features.log_mel_spectrogram's offset as vggish_input passes it
    "example_window_seconds": 0.96,  # 96 frames per example
    "example_hop_seconds": 0.96,  # no overlap between examples
    "num_frames": 96,
    "num_bands": 64,
    "embedding_size": 128,
}

# Derived the way `mel_features.log_mel_spectrogram` and `vggish_input.waveform_to_examples` derive them.
STFT_WINDOW = round(VGGISH_PARAMS["sample_rate"] * VGGISH_PARAMS["stft_window_length_seconds"])  # 400
STFT_HOP = round(VGGISH_PARAMS["sample_rate"] * VGGISH_PARAMS["stft_hop_length_seconds"])  # 160
FFT_LENGTH = 2 ** int(np.ceil(np.log2(STFT_WINDOW)))  # next power of two: 512
EXAMPLE_WINDOW = round(VGGISH_PARAMS["example_window_seconds"] / VGGISH_PARAMS["stft_hop_length_seconds"])  # 96
EXAMPLE_HOP = round(VGGISH_PARAMS["example_hop_seconds"] / VGGISH_PARAMS["stft_hop_length_seconds"])  # 96
# The shortest 16 kHz waveform with one example: 96 frames of 400 samples every 160, 400 + 95 * 160 = 15600 samples
# (0.975 s). `mel_features.frame` drops incomplete frames and examples; on fewer samples torchvggish's forward fails
# on an empty batch and audioldm_eval's FAD skips the file.
MIN_SAMPLES = STFT_WINDOW + (EXAMPLE_WINDOW - 1) * STFT_HOP

# torchvggish's `make_layers`: VGG's configuration A without its last block of convolutions (Hershey et al., "CNN
# Architectures for Large-Scale Audio Classification", 2017): 3x3 convolutions (padding 1, each followed by a ReLU)
# and 2x2 max pools ("M"). Expanded into modules, the positions are the `features.<i>` indices of the state dict.
_FEATURE_PLAN = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")
# After four 2x2 pools a 96 x 64 example is 6 x 4 with 512 channels.
_FEATURE_SIZE = 512 * (VGGISH_PARAMS["num_frames"] // 16) * (VGGISH_PARAMS["num_bands"] // 16)  # 12288
_HIDDEN_SIZE = 4096

# The PCA postprocessor's parameters: as `pproc.*` in a `VGGish(postprocess=True)` state dict, bare in
# torchvggish's separate `vggish_pca_params-970ea276.pth`. FAD in audioldm_eval uses no PCA, so they are dropped.
PCA_KEYS = ("pca_eigen_vectors", "pca_means")

# resampy 0.4.3's `kaiser_best` filter (the default of `resampy.resample`, which `vggish_input` calls), as its
# `filters.py` documents it, in the terms of `torchaudio.functional.resample`.
RESAMPY_KAISER_BEST = {
    "resampling_method": "sinc_interp_kaiser",
    "lowpass_filter_width": 50,
    "rolloff": 0.917347,
    "beta": 12.9846,
}

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_TYPE = "vggish"

# The original code, for parity checks only: torchvggish 0.2 imports resampy (and through it numba) and soundfile
# at import time. Installed without their declared dependencies into a separate environment (see
# `pipelines/reference_env.py`); numba / llvmlite are the versions already seen working with numpy 2.4 here.
TORCHVGGISH_REFERENCE_PACKAGES = (
    "torchvggish==0.2",
    "resampy==0.4.3",
    "numba==0.68.1",
    "llvmlite==0.50.0",
)
REFERENCE_ENV_VARIABLE = "TANGO_AF_TORCHVGGISH_ENV"


def ensure_torchvggish_env(env_dir: str | os.PathLike | None = None) -> Path:
    """
    Builds the environment that runs the original torchvggish code (`vggish_reference.py`) if it is not there yet.

    Args:
        env_dir (`str` or `os.PathLike`, *optional*):
            Where; defaults to `$TANGO_AF_TORCHVGGISH_ENV`, else a folder under `~/.cache/tango-af/` named after the
            pins.

    Returns:
        `Path`: its python executable.
    """
    env_dir = env_dir or default_env_dir("torchvggish", TORCHVGGISH_REFERENCE_PACKAGES, REFERENCE_ENV_VARIABLE)
    return ensure_reference_env("torchvggish", TORCHVGGISH_REFERENCE_PACKAGES, "torchvggish", env_dir)


# ---------------------------------------------------------------------------------------------- log-mel examples


def hertz_to_mel(frequencies: np.ndarray | float) -> np.ndarray:
    """The HTK mel scale, `1127 ln(1 + f / 700)`, as `mel_features.hertz_to_mel` uses it."""
    return 1127.0 * np.log(1.0 + np.asarray(frequencies, dtype=np.float64) / 700.0)


def vggish_mel_matrix(
    num_spectrogram_bins: int = FFT_LENGTH // 2 + 1,
    sample_rate: int = VGGISH_PARAMS["sample_rate"],
    num_mel_bins: int = VGGISH_PARAMS["num_mel_bins"],
    lower_edge_hertz: float = VGGISH_PARAMS["mel_min_hz"],
    upper_edge_hertz: float = VGGISH_PARAMS["mel_max_hz"],
) -> np.ndarray:
    """
    The mel filterbank of `mel_features.spectrogram_to_mel_matrix`: triangles that are linear on the HTK mel scale
    (not in Hz, unlike `torchaudio.functional.melscale_fbanks`), unnormalised (peak 1), with `num_mel_bins + 2`
    equally spaced mel edges from `lower_edge_hertz` to `upper_edge_hertz` and the DC bin excluded.

    Args:
        num_spectrogram_bins (`int`, *optional*, defaults to 257):
            `fft_length // 2 + 1`; the bins sit at `linspace(0, sample_rate / 2, num_spectrogram_bins)`.
        sample_rate (`int`, *optional*, defaults to 16000):
            The audio's sample rate.
        num_mel_bins (`int`, *optional*, defaults to 64):
            Number of bands.
        lower_edge_hertz (`float`, *optional*, defaults to 125.0):
            Lower edge of the lowest band.
        upper_edge_hertz (`float`, *optional*, defaults to 7500.0):
            Upper edge of the highest band; at most the Nyquist frequency.

    Returns:
        `np.ndarray`: float64 of shape `(num_spectrogram_bins, num_mel_bins)`, to post-multiply magnitude spectra.
    """
    nyquist = sample_rate / 2.0
    if not 0.0 <= lower_edge_hertz < upper_edge_hertz <= nyquist:
        raise ValueError(
            f"Need 0 <= lower_edge_hertz < upper_edge_hertz <= Nyquist ({nyquist}), got {lower_edge_hertz} and "
            f"{upper_edge_hertz}."
        )
    bins_mel = hertz_to_mel(np.linspace(0.0, nyquist, num_spectrogram_bins))[:, None]
    edges = np.linspace(hertz_to_mel(lower_edge_hertz), hertz_to_mel(upper_edge_hertz), num_mel_bins + 2)
    lower, center, upper = edges[:-2][None], edges[1:-1][None], edges[2:][None]
    rising = (bins_mel - lower) / (center - lower)
    falling = (upper - bins_mel) / (upper - center)
    weights = np.clip(np.minimum(rising, falling), 0.0, None)
    # HTK leaves the DC bin out of every band; with a 125 Hz lower edge it would get zero weight anyway.
    weights[0, :] = 0.0
    return weights


def _periodic_hann(length: int) -> torch.Tensor:
    # `mel_features.periodic_hann`: one full cosine period over `length` points (torch.hann_window's default).
    return torch.hann_window(length, periodic=True, dtype=torch.float64)


def log_mel_spectrogram(waveform: np.ndarray | torch.Tensor) -> torch.Tensor:
    """
    VGGish's log-mel spectrogram of 16 kHz mono audio, as `mel_features.log_mel_spectrogram` computes it with
    `vggish_input`'s settings: frames of 400 samples every 160 (no padding, so only whole frames), a periodic Hann
    window, the magnitude of a 512-point real FFT (the frame zero-padded at its end), the 64-band HTK mel matrix of
    [`vggish_mel_matrix`], then `log(mel + 0.01)`. Computed in float64, as numpy computes the original.

    Args:
        waveform (`np.ndarray` or `torch.Tensor`):
            `(samples,)` at 16 kHz.

    Returns:
        `torch.Tensor`: float64 `(frames, 64)` with `frames = 1 + (samples - 400) // 160`, or `(0, 64)` when the
        clip is shorter than one frame.
    """
    waveform = torch.as_tensor(np.asarray(waveform) if not torch.is_tensor(waveform) else waveform)
    waveform = waveform.detach().to("cpu", torch.float64)
    if waveform.ndim != 1:
        raise ValueError(f"Expected a 1-D waveform, got shape {tuple(waveform.shape)}.")
    num_bins = FFT_LENGTH // 2 + 1
    if waveform.shape[0] < STFT_WINDOW:
        return torch.zeros(0, VGGISH_PARAMS["num_mel_bins"], dtype=torch.float64)
    frames = waveform.unfold(0, STFT_WINDOW, STFT_HOP)  # (frames, 400)
    magnitudes = torch.fft.rfft(frames * _periodic_hann(STFT_WINDOW), n=FFT_LENGTH).abs()  # (frames, 257)
    mel = magnitudes @ torch.from_numpy(vggish_mel_matrix(num_spectrogram_bins=num_bins))
    return torch.log(mel + VGGISH_PARAMS["log_offset"])


def resample_to_16khz(waveform: torch.Tensor, sampling_rate: int) -> torch.Tensor:
    """
    Resamples a 1-D waveform to VGGish's 16 kHz the way `resampy.resample(x, sr, 16000)` does, as closely as
    `torchaudio.functional.resample` allows: the same Kaiser-windowed sinc filter ([`RESAMPY_KAISER_BEST`]) and the
    same output length, `floor(samples * 16000 / sampling_rate)` (torchaudio would round up).

    Args:
        waveform (`torch.Tensor`):
            `(samples,)`.
        sampling_rate (`int`):
            Its sample rate in Hz.

    Returns:
        `torch.Tensor`: `(floor(samples * 16000 / sampling_rate),)`, same dtype; `waveform` itself at 16 kHz.
    """
    target = VGGISH_PARAMS["sample_rate"]
    if int(sampling_rate) == target:
        return waveform
    length = vggish_input_length(waveform.shape[-1], sampling_rate)
    resampled = torchaudio.functional.resample(waveform, int(sampling_rate), target, **RESAMPY_KAISER_BEST)
    return resampled[..., :length]


def vggish_input_length(num_samples: int, sampling_rate: int) -> int:
    """The length at 16 kHz of a clip of `num_samples` samples at `sampling_rate`: resampy's
    `floor(num_samples * 16000 / sampling_rate)` (see [`resample_to_16khz`])."""
    return num_samples * VGGISH_PARAMS["sample_rate"] // int(sampling_rate)


def num_examples(num_samples: int) -> int:
    """How many 0.96 s examples [`waveform_to_examples`] makes of `num_samples` samples at 16 kHz (incomplete ones
    at the end are dropped, as `mel_features.frame` drops them)."""
    if num_samples < STFT_WINDOW:
        return 0
    frames = 1 + (num_samples - STFT_WINDOW) // STFT_HOP
    return 0 if frames < EXAMPLE_WINDOW else 1 + (frames - EXAMPLE_WINDOW) // EXAMPLE_HOP


def waveform_to_examples(audio: np.ndarray | torch.Tensor, sampling_rate: int) -> torch.Tensor:
    """
    VGGish's input examples of a mono clip: `vggish_input.waveform_to_examples` of torchvggish.

    The clip is resampled to 16 kHz when it is not there already ([`resample_to_16khz`]: torchaudio with resampy's
    filter, where torchvggish calls resampy; see the module docstring), turned into [`log_mel_spectrogram`] and
    cut into non-overlapping examples of 96 frames (0.96 s); an incomplete example at the end is dropped. A 10 s
    clip at 16 kHz gives 10 examples; a clip of fewer than 15,600 samples at 16 kHz (0.975 s) gives none
    (torchvggish then raises, and audioldm_eval skips the file, so such a clip contributes nothing either way).

    Args:
        audio (`np.ndarray` or `torch.Tensor`):
            `(samples,)` mono waveform, nominally in [-1, 1]. Down-mix first: audioldm_eval averages the channels
            (`np.mean(wav, axis=1)` of soundfile's `(samples, channels)`), and a 2-D input is refused rather than
            guessing which axis holds the channels.
        sampling_rate (`int`):
            The clip's sample rate in Hz.

    Returns:
        `torch.Tensor`: float32 `(n_examples, 1, 96, 64)` (examples, channel, frames, mel bands).
    """
    if int(sampling_rate) != sampling_rate or sampling_rate <= 0:
        raise ValueError(f"`sampling_rate` must be a positive integer, got {sampling_rate!r}.")
    waveform = torch.as_tensor(np.asarray(audio) if not torch.is_tensor(audio) else audio)
    waveform = waveform.detach().to("cpu", torch.float64)
    if waveform.ndim != 1:
        raise ValueError(
            f"`audio` must be a 1-D mono waveform, got shape {tuple(waveform.shape)}; average the channels first."
        )
    log_mel = log_mel_spectrogram(resample_to_16khz(waveform, int(sampling_rate)))
    if log_mel.shape[0] < EXAMPLE_WINDOW:
        return torch.zeros(0, 1, EXAMPLE_WINDOW, VGGISH_PARAMS["num_mel_bins"])
    # unfold puts the window last: (examples, bands, frames) -> (examples, frames, bands).
    examples = log_mel.unfold(0, EXAMPLE_WINDOW, EXAMPLE_HOP).transpose(1, 2)
    return examples[:, None].to(torch.float32).contiguous()


# ---------------------------------------------------------------------------------------------- the network


def vggish_config() -> dict:
    """What a VGGish folder's `config.json` holds: the one architecture and front end [`VGGish`] implements, and
    that the output is taken before the final ReLU and without PCA. Stored so that a folder says what it is."""
    return {"model_type": MODEL_TYPE, "final_relu": False, "pca": False, **VGGISH_PARAMS}


class VGGish(nn.Module):
    """
    torchvggish's `VGG` network as audioldm_eval's FAD runs it: the convolutional `features` and the `embeddings`
    MLP (12288 -> 4096 -> 4096 -> 128), with the ReLU after the last linear layer removed and no PCA postprocessing.
    Parameter names are torchvggish's (`features.{0,3,6,8,11,13}.*`, `embeddings.{0,2,4}.*`), so its state dict
    loads as it is.

    Constructing it allocates randomly initialised weights and downloads nothing; use
    [`VGGish.from_pretrained`] on a folder written by [`convert_vggish_checkpoint`] for the real ones.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for entry in _FEATURE_PLAN:
            if entry == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, entry, kernel_size=3, padding=1), nn.ReLU()]
                channels = entry
        self.features = nn.Sequential(*layers)
        # torchvggish ends with a fourth module, a ReLU, which audioldm_eval removes (`use_activation=False`).
        self.embeddings = nn.Sequential(
            nn.Linear(_FEATURE_SIZE, _HIDDEN_SIZE),
            nn.ReLU(),
            nn.Linear(_HIDDEN_SIZE, _HIDDEN_SIZE),
            nn.ReLU(),
            nn.Linear(_HIDDEN_SIZE, VGGISH_PARAMS["embedding_size"]),
        )

    @property
    def config(self) -> dict:
        """What `config.json` holds (see [`vggish_config`])."""
        return vggish_config()

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        """
        Args:
            examples (`torch.Tensor`):
                `(n, 1, 96, 64)` log-mel examples from [`waveform_to_examples`].

        Returns:
            `torch.Tensor`: `(n, 128)` embeddings (pre-ReLU, no PCA).
        """
        expected = (1, VGGISH_PARAMS["num_frames"], VGGISH_PARAMS["num_bands"])
        if examples.ndim != 4 or tuple(examples.shape[1:]) != expected:
            raise ValueError(
                f"Expected examples of shape (n, {', '.join(map(str, expected))}), got {tuple(examples.shape)}."
            )
        hidden = self.features(examples)  # (n, 512, 6, 4)
        # The weights were ported from TensorFlow, which flattens channels-last: (frames, bands, channels).
        # `flatten` rather than `view(n, -1)` so that an empty batch works too.
        hidden = hidden.permute(0, 2, 3, 1).flatten(1)
        return self.embeddings(hidden)

    @torch.no_grad()
    def embed(self, audio: np.ndarray | torch.Tensor, sampling_rate: int, batch_size: int = 256) -> torch.Tensor:
        """
        One embedding per 0.96 s example of a mono clip: what audioldm_eval's `model.forward(audio, sr)` returns
        with `postprocess=False` and the final ReLU removed.

        Args:
            audio (`np.ndarray` or `torch.Tensor`):
                `(samples,)` mono waveform.
            sampling_rate (`int`):
                Its sample rate in Hz; resampled to 16 kHz if different.
            batch_size (`int`, *optional*, defaults to 256):
                Examples per forward pass.

        Returns:
            `torch.Tensor`: float32 `(n_examples, 128)` on the model's device; `(0, 128)` for clips shorter than one
            example.
        """
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be positive, got {batch_size}.")
        parameter = next(self.parameters())
        examples = waveform_to_examples(audio, sampling_rate).to(parameter.device, parameter.dtype)
        if examples.shape[0] == 0:
            return torch.zeros(0, VGGISH_PARAMS["embedding_size"], device=parameter.device)
        outputs = [self(examples[i : i + batch_size]) for i in range(0, examples.shape[0], batch_size)]
        return torch.cat(outputs).float()

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """
        Writes `config.json` and `model.safetensors` into `save_directory` (created if needed).

        Args:
            save_directory (`str` or `os.PathLike`):
                The folder.
        """
        from safetensors.torch import save_file

        os.makedirs(save_directory, exist_ok=True)
        state_dict = {name: tensor.detach().cpu().contiguous() for name, tensor in self.state_dict().items()}
        # Each file whole or not at all, the config last: a folder with a config always has its weights.
        write_atomically(
            os.path.join(save_directory, WEIGHTS_NAME),
            lambda path: save_file(state_dict, str(path), metadata={"format": "pt"}),
        )
        config = json.dumps(self.config, indent=2, sort_keys=True) + "\n"
        write_atomically(
            os.path.join(save_directory, CONFIG_NAME), lambda path: path.write_text(config, encoding="utf-8")
        )

    @classmethod
    def from_pretrained(cls, pretrained_model_path: str | os.PathLike, device: str | torch.device = "cpu") -> VGGish:
        """
        Loads a folder written by [`VGGish.save_pretrained`] or [`convert_vggish_checkpoint`]. Local folders only:
        nothing is downloaded.

        Args:
            pretrained_model_path (`str` or `os.PathLike`):
                The folder holding `config.json` and `model.safetensors`.
            device (`str` or `torch.device`, *optional*, defaults to `"cpu"`):
                Where to put the weights.

        Returns:
            [`VGGish`]: in eval mode.

        Raises:
            `ValueError`: when `config.json` describes another model or other front-end settings (this class
                implements exactly one), naming the differing entries.
        """
        from safetensors.torch import load_file

        folder = os.fspath(pretrained_model_path)
        config_path, weights_path = os.path.join(folder, CONFIG_NAME), os.path.join(folder, WEIGHTS_NAME)
        for path in (config_path, weights_path):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"No {os.path.basename(path)} in {folder!r}; is it a VGGish folder?")
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
        expected = vggish_config()
        differing = {key: config.get(key) for key, value in expected.items() if config.get(key) != value}
        if differing:
            wanted = {key: expected[key] for key in differing}
            raise ValueError(
                f"{config_path!r} does not describe the VGGish this class implements; differing entries: "
                f"{differing} (expected {wanted})."
            )
        state_dict = load_file(weights_path, device=str(device))
        # Built on the meta device and then given the loaded tensors: no time spent on a random initialisation.
        with torch.device("meta"):
            model = cls()
        _check_keys(state_dict, model, weights_path)
        model.load_state_dict(state_dict, strict=True, assign=True)
        return model.eval()


# ---------------------------------------------------------------------------------------------- conversion


def _shown(names: list[str]) -> str:
    more = f" and {len(names) - KEYS_SHOWN} more" if len(names) > KEYS_SHOWN else ""
    return f"{names[:KEYS_SHOWN]}{more}"


def _check_keys(state_dict: dict[str, torch.Tensor], model: VGGish, source: str) -> None:
    """Raises a `ValueError` naming unknown keys, missing keys and shape mismatches, all at once."""
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    unknown = sorted(set(state_dict) - set(expected))
    missing = sorted(set(expected) - set(state_dict))
    mismatched = [
        f"{name}: {tuple(state_dict[name].shape)} instead of {shape}"
        for name, shape in expected.items()
        if name in state_dict and tuple(state_dict[name].shape) != shape
    ]
    problems = []
    if unknown:
        problems.append(f"unknown keys {_shown(unknown)}")
    if missing:
        problems.append(f"missing keys {_shown(missing)}")
    if mismatched:
        problems.append(f"wrong shapes {_shown(mismatched)}")
    if problems:
        raise ValueError(f"{source!r} is not a torchvggish VGGish state dict: {'; '.join(problems)}.")


def read_vggish_state_dict(checkpoint_path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """
    Reads torchvggish's release file (`vggish-10086976.pth`, a bare state dict of `features.*` and `embeddings.*`)
    or a state dict of a torchvggish `VGGish` model, with `torch.load(weights_only=True)` only, and drops the PCA
    postprocessor's parameters (`pproc.pca_eigen_vectors`, `pproc.pca_means`, or the same names bare): audioldm_eval
    computes FAD without PCA.

    Args:
        checkpoint_path (`str` or `os.PathLike`):
            The `.pth` file (or a `.safetensors` file of the same tensors).

    Returns:
        `dict[str, torch.Tensor]`: the network's tensors, named as in [`VGGish`].

    Raises:
        `ValueError`: when the pickle holds anything but plain tensors (it is never loaded otherwise), or when keys
            are unknown or missing or shapes differ, naming them.
    """
    source = os.fspath(checkpoint_path)
    state_dict = check_state_dict(load_weights_only(source), source)
    dropped = [name for name in state_dict if name.removeprefix("pproc.") in PCA_KEYS]
    if dropped:
        logger.info(f"Dropping the PCA postprocessor's {dropped}: audioldm_eval's FAD uses no PCA.")
    state_dict = {name: tensor for name, tensor in state_dict.items() if name not in dropped}
    with torch.device("meta"):
        _check_keys(state_dict, VGGish(), source)
    return state_dict


def convert_vggish_checkpoint(checkpoint_path: str | os.PathLike, output_dir: str | os.PathLike) -> VGGish:
    """
    Converts torchvggish's released weights into a [`VGGish`] folder (`config.json` + `model.safetensors`).

    Args:
        checkpoint_path (`str` or `os.PathLike`):
            `vggish-10086976.pth` from https://github.com/harritaylor/torchvggish/releases/tag/v0.1 (the file
            `torch.hub.load("harritaylor/torchvggish", "vggish")` downloads), or any state dict of the same layout.
        output_dir (`str` or `os.PathLike`):
            The folder to write.

    Returns:
        [`VGGish`]: the converted model, in eval mode.
    """
    return _save_converted(read_vggish_state_dict(checkpoint_path), output_dir)


def _save_converted(state_dict: dict[str, torch.Tensor], output_dir: str | os.PathLike) -> VGGish:
    with torch.device("meta"):
        model = VGGish()
    # float32 like the release, whatever the file holds.
    model.load_state_dict({name: tensor.float() for name, tensor in state_dict.items()}, strict=True, assign=True)
    model.eval()
    model.save_pretrained(output_dir)
    logger.info(f"Wrote VGGish ({len(state_dict)} tensors) to {os.fspath(output_dir)!r}.")
    return model


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.evaluation.vggish",
        description=convert_vggish_checkpoint.__doc__.strip().split("\n")[0],
    )
    parser.add_argument("--checkpoint", required=True, help="torchvggish's vggish-10086976.pth (a bare state dict).")
    parser.add_argument("--output_dir", required=True, help="Folder to write config.json and model.safetensors to.")
    add_debug_argument(parser)
    return parser.parse_args(argv)


@command_line
def main(argv: Sequence[str] | None = None) -> str:
    """Converts torchvggish's release file; the output folder is checked before the checkpoint is read."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    output_dir = check_model_folder(args.output_dir, "--output_dir", MODEL_TYPE, CONFIG_NAME)
    try:
        state_dict = read_vggish_state_dict(args.checkpoint)
    except (OSError, ValueError) as error:
        raise UserError(f"--checkpoint {args.checkpoint!r}: {one_line(error)}") from error
    _save_converted(state_dict, output_dir)
    print(os.fspath(output_dir))
    return os.fspath(output_dir)


if __name__ == "__main__":
    sys.exit(main())
