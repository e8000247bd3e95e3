"""Command line: generate audio from a text prompt with any TangoCLAP pipeline folder or Hub id.

Example:
    tango-af-generate --model debug --prompt "a dog barks in the rain" --seconds 5 --steps 25 --out dog.wav

Everything that can be checked is checked before a model is loaded, and before anything is written: the numbers, the
device, the output files, the model reference, the number of steps its scheduler can serve (from the scheduler's
config alone) and the size of the run (`--max-seconds`, `--max-waveforms`, with a memory estimate in the message).
Mistakes are reported as one line naming the bad value (exit code 2; `--debug` shows the traceback).

Candidates are written all or nothing: each to a temporary file beside its destination, renamed into place once
all are written. `out.wav` holds the best candidate, `out_1.wav`, `out_2.wav`, ... the others, and `out.json` records
what this run wrote (files, their checksums, CLAP scores, prompt and settings). That record is how a later run with
the same `--out` recognises the files this tool wrote: it replaces them (and says so), removes the candidates it
no longer writes (and says so), and refuses to overwrite any other file unless given `--overwrite`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import secrets
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from .cli import (
    UserError,
    add_debug_argument,
    check_model_reference,
    check_output_file,
    command_line,
    resolve_device,
)
from .tango_clap import TangoCLAPPipeline
from .tango_clap.debug import DEBUG_MODEL_ID, build_debug_components, get_debug_pipeline
from .tango_clap.pipeline_tango_clap import check_num_inference_steps

logger = logging.getLogger(__name__)

MICRO_MODEL_ID = "micro"
# Where `python -m training.micro.reproduce --install-default` puts its best model (safetensors, a few MB).
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "tango_clap" / "default_model"
# The embedded default: the micro-reproduction model when it ships with the package, else the untrained debug model.
DEFAULT_MODEL = MICRO_MODEL_ID if (DEFAULT_MODEL_DIR / "model_index.json").is_file() else DEBUG_MODEL_ID

SCHEDULERS = {
    "default": None,
    "ddpm": (DDPMScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "dpmsolver++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
}

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Bounds on the size of a run, lifted with `--max-seconds`, `--max-waveforms` or `--no-limits`. 60 s is six times
# what Tango was trained on; 16 candidates is more than CLAP re-ranking needs (AudioLDM 2 suggests 3).
MAX_SECONDS = 60.0
MAX_WAVEFORMS = 16
# `torch.manual_seed` takes any integer in [-2**63, 2**64 - 1]; negative seeds alias positive ones, so only these.
MAX_SEED = 2**64 - 1

# What a run records beside its audio, and how a later run recognises it.
WRITTEN_BY = "tango-af-generate"
MANIFEST_VERSION = 1


# ---------------------------------------------------------------------------------------------- loading


def load_pipeline(
    model: str = DEFAULT_MODEL,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    scheduler: str = "default",
) -> TangoCLAPPipeline:
    """
    Loads a TangoCLAP pipeline.

    Args:
        model (`str`, *optional*, defaults to `DEFAULT_MODEL`):
            A pipeline folder, a Hub repo id, `"micro"` for the embedded micro-reproduction model, or `"debug"` for
            the tiny untrained model built in code.
        device (`str` or `torch.device`, *optional*):
            Where to run; defaults to CUDA when available, else the CPU.
        dtype (`torch.dtype`, *optional*, defaults to `torch.float32`):
            Weights' dtype.
        scheduler (`str`, *optional*, defaults to `"default"`):
            `"default"` keeps the checkpoint's scheduler; `"ddpm"`, `"ddim"` or `"dpmsolver++"` swap it, keeping
            the checkpoint's noise schedule and prediction type.

    Raises:
        [`~pipelines.cli.UserError`]: for an unknown scheduler, a model that is not there or cannot be read.
    """
    if scheduler not in SCHEDULERS:
        raise UserError(f"Unknown scheduler {scheduler!r}; choose one of {sorted(SCHEDULERS)}.")
    if model == DEBUG_MODEL_ID:
        pipe = get_debug_pipeline()
        if dtype != torch.float32:
            pipe.to(dtype=dtype)
    else:
        folder = _model_location(model)
        try:
            # `dtype`, not `torch_dtype`: diffusers 0.42 deprecates the latter (`_resolve_dtype`, pipeline_utils.py).
            # `use_safetensors=True`: where a component's safetensors file is missing, diffusers would otherwise fall
            # back to unpickling a `.bin` ("Defaulting to unsafe serialization").
            pipe = TangoCLAPPipeline.from_pretrained(folder, dtype=dtype, use_safetensors=True)
        except OSError as error:  # a missing or unreadable file of the checkpoint, or the Hub out of reach
            raise UserError(f"--model {model!r} could not be loaded: {_reason(error, folder)}") from error
    if SCHEDULERS[scheduler] is not None:
        scheduler_class, extra = SCHEDULERS[scheduler]
        pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config, **extra)
    return pipe.to(resolve_device(device))


def _model_location(model: str) -> str:
    """`model` as `from_pretrained` takes it: the embedded micro model's folder, or a checked folder or Hub id."""
    if model == MICRO_MODEL_ID:
        if not (DEFAULT_MODEL_DIR / "model_index.json").is_file():
            raise UserError(f"--model 'micro' is not installed at {os.fspath(DEFAULT_MODEL_DIR)!r}.")
        return os.fspath(DEFAULT_MODEL_DIR)
    return check_model_reference(model, "--model")


def _reason(error: BaseException, location: str) -> str:
    """An exception's message on one line, with a hint when `location` is a Hub id and the Hub is switched off."""
    reason = " ".join(str(error).split()) or type(error).__name__
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE and not os.path.isdir(location):
        reason += " (HF_HUB_OFFLINE is set: only models already in the local Hub cache can be used)"
    return reason


@dataclass
class ModelConfigs:
    """What the command reads of a checkpoint before loading its weights: its scheduler and the shapes it makes."""

    scheduler: dict
    unet: dict
    vae: dict
    vocoder: dict


GENERATION_DEFAULTS_NAME = "generation_defaults.json"
# `generation_defaults.json` key (the pipeline's argument) -> (argparse destination, flag, type); and what a model
# without the file gets: Tango's settings (10 s clips, 100 steps, guidance 3).
GENERATION_SETTINGS = {
    "audio_length_in_s": ("seconds", "--seconds", float),
    "num_inference_steps": ("steps", "--steps", int),
    "guidance_scale": ("guidance", "--guidance", float),
    "num_waveforms_per_prompt": ("num_waveforms", "--num-waveforms", int),
}
FALLBACK_SETTINGS = {"seconds": ("--seconds", 10.0), "steps": ("--steps", 100), "guidance": ("--guidance", 3.0),
                     "num_waveforms": ("--num-waveforms", 1)}  # fmt: skip


def read_generation_defaults(model: str) -> dict[str, Any]:
    """
    The settings a model folder asks to be generated with (`generation_defaults.json`: e.g. the micro model's 2.56 s
    clips and the steps it was evaluated with), as `argparse` destinations; `{}` for a model without the file.

    Args:
        model (`str`): as for [`load_pipeline`].

    Raises:
        [`~pipelines.cli.UserError`]: naming the file and the key, for a file that is not a JSON object of numbers.
    """
    if model == DEBUG_MODEL_ID:
        return {}
    location = _model_location(model)
    if os.path.isdir(location):
        path = os.path.join(location, GENERATION_DEFAULTS_NAME)
        if not os.path.isfile(path):
            return {}
    else:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

        try:
            path = hf_hub_download(location, GENERATION_DEFAULTS_NAME)
        except (EntryNotFoundError, LocalEntryNotFoundError):
            return {}  # no such file, or offline without it cached: the model's own settings are unknown
        except OSError as error:
            raise UserError(f"--model {model!r} could not be read: {_reason(error, location)}") from error
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except ValueError as error:
        raise UserError(f"{path!r} is not valid JSON: {error}.") from error
    if not isinstance(record, dict):
        raise UserError(f"{path!r} must hold a JSON object, got {type(record).__name__}.")
    settings = {}
    for key, (destination, _, kind) in GENERATION_SETTINGS.items():
        if key not in record:
            continue
        value = record[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
            raise UserError(f"{path!r}: {key} must be {'an integer' if kind is int else 'a number'}, got {value!r}.")
        settings[destination] = kind(value)
    return settings


def apply_generation_defaults(args: argparse.Namespace) -> dict[str, str]:
    """
    Fills each of `--seconds`, `--steps`, `--guidance` and `--num-waveforms` left out with the model's
    [`read_generation_defaults`], else Tango's settings; returns where each value came from, by destination.
    """
    from_model = read_generation_defaults(args.model)
    sources = {}
    for destination, (_, fallback) in FALLBACK_SETTINGS.items():
        if getattr(args, destination) is not None:
            sources[destination] = "command line"
        elif destination in from_model:
            setattr(args, destination, from_model[destination])
            sources[destination] = GENERATION_DEFAULTS_NAME
        else:
            setattr(args, destination, fallback)
            sources[destination] = "default"
    return sources


def read_model_configs(model: str) -> ModelConfigs:
    """
    Reads the configs of a pipeline's scheduler, UNet, VAE and vocoder, and nothing else (no weights).

    Args:
        model (`str`): as for [`load_pipeline`].

    Raises:
        [`~pipelines.cli.UserError`]: when `model` is not there, is not a TangoCLAP pipeline, or misses a config.
    """
    if model == DEBUG_MODEL_ID:  # built in code in a fraction of a second; no files
        components = build_debug_components()
        return ModelConfigs(
            scheduler=dict(components["scheduler"].config),
            unet=dict(components["unet"].config),
            vae=dict(components["vae"].config),
            vocoder=components["vocoder"].config.to_dict(),
        )
    from diffusers import AutoencoderKL, DiffusionPipeline, UNet2DConditionModel
    from transformers import SpeechT5HifiGanConfig

    location = _model_location(model)
    try:
        index = DiffusionPipeline.load_config(location)
    except OSError as error:
        if os.path.isdir(location):
            raise UserError(f"--model {model!r} is not a pipeline folder: it has no model_index.json.") from error
        raise UserError(f"--model {model!r} could not be read: {_reason(error, location)}") from error
    class_name = index.get("_class_name")
    class_name = class_name[-1] if isinstance(class_name, (list, tuple)) else class_name
    if class_name != TangoCLAPPipeline.__name__:
        raise UserError(f"--model {model!r} is a {class_name} pipeline, not a {TangoCLAPPipeline.__name__}.")
    configs = {}
    for name, load in (
        ("scheduler", lambda: DDPMScheduler.load_config(location, subfolder="scheduler")),
        ("unet", lambda: UNet2DConditionModel.load_config(location, subfolder="unet")),
        ("vae", lambda: AutoencoderKL.load_config(location, subfolder="vae")),
        ("vocoder", lambda: SpeechT5HifiGanConfig.from_pretrained(location, subfolder="vocoder").to_dict()),
    ):
        try:
            configs[name] = dict(load())
        except OSError as error:
            raise UserError(f"--model {model!r} has no readable {name} config: {_reason(error, location)}") from error
    return ModelConfigs(**configs)


def build_scheduler(configs: ModelConfigs, scheduler: str) -> Any:
    """The scheduler `load_pipeline(model, scheduler=scheduler)` would use, from the checkpoint's config alone."""
    import diffusers

    if SCHEDULERS.get(scheduler) is not None:
        scheduler_class, extra = SCHEDULERS[scheduler]
        return scheduler_class.from_config(configs.scheduler, **extra)
    name = configs.scheduler.get("_class_name", "DDPMScheduler")
    scheduler_class = getattr(diffusers, name, None)
    if scheduler_class is None:
        raise UserError(f"The model's scheduler {name!r} is not a diffusers scheduler.")
    return scheduler_class.from_config(configs.scheduler)


# ---------------------------------------------------------------------------------------------- size of a run


def latent_shape(configs: ModelConfigs, seconds: float, batch: int) -> tuple[int, int, int, int]:
    """
    The initial noise of a run, `(batch, channels, frames, mel_bins)` in latent units, as
    `TangoCLAPPipeline.num_frames` and `prepare_latents` compute it: mel frames for `seconds`, padded to whole UNet
    latent frames, divided by the VAE's downsampling.
    """
    hop = math.prod(configs.vocoder["upsample_rates"])
    vae_scale = 2 ** (len(configs.vae["block_out_channels"]) - 1)
    multiple = vae_scale * 2 ** (len(configs.unet["block_out_channels"]) - 1)
    frames = math.ceil(math.ceil(round(seconds * configs.vocoder["sampling_rate"]) / hop) / multiple) * multiple
    return batch, configs.unet["in_channels"], frames // vae_scale, configs.vocoder["model_in_dim"] // vae_scale


@dataclass
class MemoryEstimate:
    """A rough upper estimate of the memory a run needs besides the weights, by part, in bytes."""

    latents: tuple[int, int, int, int]
    unet_batch: int
    parts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        parts = ", ".join(f"{name} {_gigabytes(size)}" for name, size in self.parts.items())
        return (
            f"about {_gigabytes(self.total)} besides the weights ({parts}; UNet batch {self.unet_batch} of latents "
            f"{self.latents[1:]})"
        )


def estimate_memory(
    configs: ModelConfigs, seconds: float, num_waveforms: int, guidance_scale: float, dtype: torch.dtype
) -> MemoryEstimate:
    """
    Estimates, roughly and from above, the memory a run takes besides the weights. All of it grows linearly with
    `seconds * num_waveforms`, since every candidate is denoised, decoded and vocoded in one batch:

    - UNet: its batch (`2 * num_waveforms` with classifier-free guidance) times the latent positions times the widest
      level's channels (positions shrink 4x per level) times 12 activations alive at once (resnet, attention
      q/k/v/out, feed-forward), in `dtype`. Attention scores are not counted: PyTorch's `scaled_dot_product_attention`
      does not keep them.
    - VAE decoder: the mel spectrogram's frames times mel bins times its full-resolution width
      (`block_out_channels[0]`) times 4 activations, in `dtype`.
    - Vocoder and waveforms: samples times (the last upsampling stage's channels times 4 activations, plus 4 float32
      copies of the waveform: output, CLAP's 3x resampled copy at 48 kHz).
    """
    bytes_per_value = torch.finfo(dtype).bits // 8
    shape = latent_shape(configs, seconds, num_waveforms)
    _, channels, frames, bins = shape
    unet_batch = num_waveforms * (2 if guidance_scale > 1 else 1)
    widest = max(width * frames * bins // 4**level for level, width in enumerate(configs.unet["block_out_channels"]))
    mel_values = frames * bins * 2 ** (2 * (len(configs.vae["block_out_channels"]) - 1))
    samples = round(seconds * configs.vocoder["sampling_rate"])
    last_stage = configs.vocoder["upsample_initial_channel"] // 2 ** len(configs.vocoder["upsample_rates"])
    parts = {
        "UNet": unet_batch * widest * 12 * bytes_per_value,
        "VAE decoder": num_waveforms * mel_values * configs.vae["block_out_channels"][0] * 4 * bytes_per_value,
        "vocoder and waveforms": num_waveforms * samples * (last_stage * 4 + 4) * 4,
        "latents": num_waveforms * channels * frames * bins * 4 * 3,
    }
    return MemoryEstimate(latents=shape, unet_batch=unet_batch, parts=parts)


def _gigabytes(size: int) -> str:
    return f"{size / 1e9:.3g} GB" if size >= 1e7 else f"{size / 1e6:.2g} MB"


def device_memory(device: torch.device) -> int | None:
    """Total memory of `device` in bytes (the GPU's, or the machine's RAM for the CPU), `None` where unknown."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    if device.type == "cpu" and hasattr(os, "sysconf"):
        try:
            return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            return None
    return None


def check_run_size(args: argparse.Namespace, configs: ModelConfigs, device: torch.device) -> MemoryEstimate:
    """Refuses a run over `--max-seconds` or `--max-waveforms` (unless `--no-limits`), with its memory estimate."""
    estimate = estimate_memory(configs, args.seconds, args.num_waveforms, args.guidance, DTYPES[args.dtype])
    available = device_memory(device)
    on_device = f"; {device.type} memory here: {_gigabytes(available)}" if available else ""
    if not args.no_limits:
        for flag, value, limit_flag, limit, unit in (
            ("--seconds", args.seconds, "--max-seconds", args.max_seconds, " s"),
            ("--num-waveforms", args.num_waveforms, "--max-waveforms", args.max_waveforms, ""),
        ):
            if value > limit:
                raise UserError(
                    f"{flag} {value:g} is over the limit of {limit:g}{unit} ({limit_flag}): this run would need "
                    f"{estimate.describe()}{on_device}. Raise {limit_flag} or pass --no-limits to run it anyway."
                )
    if available and estimate.total > available:
        logger.warning(f"This run may not fit in memory: it needs {estimate.describe()}{on_device}.")
    return estimate


# ---------------------------------------------------------------------------------------------- output files


def output_paths(out: Path, count: int) -> list[Path]:
    """`out` for the best candidate, then `out` with `_1`, `_2`, ... before the suffix for the others."""
    return [out] + [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(1, count)]


def manifest_path(out: Path) -> Path:
    """The record of what a run wrote for `--out out.wav`: `out.json` beside it."""
    return out.with_suffix(".json")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class OutputPlan:
    """The files a run will write, and what it knows of the files already there."""

    paths: list[Path]
    manifest: Path
    # Files an earlier run of this tool wrote for the same `--out`, still unchanged: name -> sha256.
    ours: dict[str, str]

    def is_ours(self, path: Path) -> bool:
        return path.name in self.ours and path.is_file() and _sha256(path) == self.ours[path.name]


def read_manifest(path: Path) -> dict[str, str] | None:
    """The files (name -> sha256) an earlier run recorded in `path`; `None` when `path` is not such a record."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or record.get("written_by") != WRITTEN_BY:
        return None
    files = {}
    for entry in record.get("files", []):
        name, digest = (entry.get("name"), entry.get("sha256")) if isinstance(entry, dict) else (None, None)
        # Only plain names in the same folder: a record never points anywhere else.
        if (
            isinstance(name, str)
            and isinstance(digest, str)
            and name == Path(name).name
            and name not in ("", ".", "..")
        ):
            files[name] = digest
    return files


def plan_outputs(out: Path, count: int, overwrite: bool = False) -> OutputPlan:
    """
    Checks, before any work, that every file a run would write can be written and may be: a file already there is
    replaced only when an earlier run of this tool wrote it for the same `--out` (and it is unchanged), or with
    `overwrite`.

    Raises:
        [`~pipelines.cli.UserError`]: naming `--out` and the file.
    """
    if out.suffix.lower() != ".wav":
        raise UserError(f"--out must end in .wav, got {os.fspath(out)!r}.")
    paths = output_paths(out, count)
    manifest = manifest_path(out)
    for path in [*paths, manifest]:
        check_output_file(path, "--out")
    ours = read_manifest(manifest) if manifest.exists() else {}
    if ours is None and not overwrite:
        raise UserError(
            f"--out {os.fspath(out)!r}: {os.fspath(manifest)!r} exists and is not a record written by {WRITTEN_BY}; "
            "this run would replace it with its own. Move it, choose another --out, or pass --overwrite."
        )
    plan = OutputPlan(paths=paths, manifest=manifest, ours=ours or {})
    if not overwrite:
        for path in paths:
            if path.exists() and not plan.is_ours(path):
                which = f"--out {os.fspath(out)!r}" + ("" if path == out else f": {os.fspath(path)!r}")
                raise UserError(
                    f"{which} exists and was not written by an earlier run of {WRITTEN_BY} for this --out (or was "
                    "changed since). Move it, choose another --out, or pass --overwrite to replace it."
                )
    return plan


@dataclass
class WriteReport:
    """What [`write_outputs`] did besides writing `plan.paths` and the record."""

    replaced: list[Path]  # files of an earlier run (or, with --overwrite, any files) this run wrote over
    removed: list[Path]  # candidates an earlier run wrote for the same --out that this run does not rewrite
    kept: list[Path]  # such candidates, changed since that run: left alone


def write_outputs(plan: OutputPlan, audios: np.ndarray, sampling_rate: int, record: dict) -> WriteReport:
    """
    Writes every candidate, and the record, all or nothing: each goes to a temporary file in its destination's
    folder first; only when all are written are they renamed into place. Then the candidates an earlier run wrote
    for the same `--out` that this run does not rewrite (e.g. `out_2.wav` after a run with fewer candidates) are
    removed, if unchanged since.

    Args:
        plan ([`OutputPlan`]): from [`plan_outputs`].
        audios (`np.ndarray`): finite float waveforms `(len(plan.paths), samples)`, best first.
        sampling_rate (`int`): their rate.
        record (`dict`): what to record beside them (prompt, settings); `files` is added.

    Returns:
        [`WriteReport`]: what was replaced, removed or kept.
    """
    folder = plan.paths[0].parent
    folder.mkdir(parents=True, exist_ok=True)
    replaced = [path for path in [*plan.paths, plan.manifest] if path.exists()]
    earlier = [folder / name for name in plan.ours if name not in {path.name for path in plan.paths}]
    earlier = [path for path in earlier if path.is_file()]
    stale = [path for path in earlier if plan.is_ours(path)]
    temporary: list[tuple[Path, Path]] = []

    def temporary_for(path: Path) -> Path:
        # A hidden name in the same folder, so that the final rename is atomic; never an existing file.
        staging = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        temporary.append((staging, path))
        return staging

    try:
        files = []
        for rank, (path, audio) in enumerate(zip(plan.paths, audios)):
            staging = temporary_for(path)
            sf.write(staging, np.clip(audio, -1.0, 1.0), sampling_rate, subtype="PCM_16", format="WAV")
            files.append({"name": path.name, "rank": rank, "sha256": _sha256(staging)})
        for entry, score in zip(files, record.pop("clap_scores", None) or [None] * len(files)):
            entry["clap_score"] = score
        staging = temporary_for(plan.manifest)
        record = {"written_by": WRITTEN_BY, "version": MANIFEST_VERSION, **record, "files": files}
        staging.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    except BaseException:
        for staging, _ in temporary:
            staging.unlink(missing_ok=True)
        raise
    for staging, path in temporary:
        os.replace(staging, path)
    for path in stale:
        path.unlink()
    return WriteReport(replaced=replaced, removed=stale, kept=[path for path in earlier if path not in stale])


# ---------------------------------------------------------------------------------------------- command line


def save_default_model(folder: str | os.PathLike, model: str = DEFAULT_MODEL) -> Path:
    """
    Writes the embedded default model (the trained micro-reproduction model when installed, else the untrained
    `debug` pipeline) as an ordinary pipeline folder, with its `pipeline.py`, so that what needs a folder (the Space,
    publishing) loads it through `from_pretrained` like any checkpoint.

    Args:
        folder (`str` or `os.PathLike`): where to save it (created if needed).
        model (`str`, *optional*, defaults to `DEFAULT_MODEL`): `"micro"` or `"debug"`.

    Returns:
        `Path`: the folder.
    """
    folder = Path(folder)
    load_pipeline(model, device="cpu").save_pretrained(folder)
    if model == MICRO_MODEL_ID:
        # Records and example prompts travel with the weights (the Space offers the prompts).
        for name in ("example_prompts.json", "training_summary.json", "micro_reproduction.json", "README.md"):
            if (DEFAULT_MODEL_DIR / name).is_file():
                shutil.copyfile(DEFAULT_MODEL_DIR / name, folder / name)
    return folder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Generate audio from text with a TangoCLAP pipeline.")
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"Pipeline folder, Hub id, 'micro' (embedded, trained) or 'debug' (untrained); default {DEFAULT_MODEL!r}.",
    )
    parser.add_argument("--prompt", required=True, help="What the audio should contain.")
    parser.add_argument("--negative-prompt", default=None, help="What to steer away from (needs --guidance > 1).")
    fallback = ", ".join(f"{flag} {value}" for flag, value in FALLBACK_SETTINGS.values())
    parser.add_argument("--seconds", type=float, default=None, help="Length of the audio in seconds.")
    parser.add_argument("--steps", type=int, default=None, help="Denoising steps.")
    parser.add_argument("--guidance", type=float, default=None, help="Classifier-free guidance scale.")
    parser.add_argument(
        "--num-waveforms",
        type=int,
        default=None,
        help="Candidates (ranked by CLAP when possible). These four default to the model folder's "
        f"{GENERATION_DEFAULTS_NAME} (the micro model: 2.56 s, its evaluated steps), else to Tango's {fallback}.",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the noise, in [0, 2**64-1].")
    parser.add_argument("--scheduler", default="default", choices=sorted(SCHEDULERS), help="Sampler.")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available).")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="Weights' dtype.")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("outputs/generated.wav"),
        help="WAV file of the best candidate; the others go to OUT_1.wav, OUT_2.wav ..., and a record of the run to "
        "the same name with .json.",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace existing output files even if an earlier run of this tool did not write them.",
    )
    limits = parser.add_argument_group("limits", "Bounds on the size of a run (its memory grows with both).")
    limits.add_argument(
        "--max-seconds", type=float, default=MAX_SECONDS, help=f"Longest --seconds (default {MAX_SECONDS:g})."
    )
    limits.add_argument(
        "--max-waveforms", type=int, default=MAX_WAVEFORMS, help=f"Most --num-waveforms (default {MAX_WAVEFORMS})."
    )
    limits.add_argument("--no-limits", action="store_true", help="Lift both limits.")
    add_debug_argument(parser)
    return parser


def check_arguments(args: argparse.Namespace) -> None:
    """Refuses out-of-range numbers, naming the flag and the value (the pipeline checks them again)."""
    for flag, value, ok, expected in (
        ("--seconds", args.seconds, math.isfinite(args.seconds) and args.seconds > 0, "a positive number of seconds"),
        ("--steps", args.steps, args.steps >= 1, "a positive integer"),
        ("--guidance", args.guidance, math.isfinite(args.guidance) and args.guidance >= 0, "a number >= 0"),
        ("--num-waveforms", args.num_waveforms, args.num_waveforms >= 1, "a positive integer"),
        ("--seed", args.seed, 0 <= args.seed <= MAX_SEED, "an integer in [0, 2**64-1]"),
        (
            "--max-seconds",
            args.max_seconds,
            math.isfinite(args.max_seconds) and args.max_seconds > 0,
            "a positive number of seconds",
        ),
        ("--max-waveforms", args.max_waveforms, args.max_waveforms >= 1, "a positive integer"),
    ):
        if not ok:
            raise UserError(f"{flag} {value!r}: must be {expected}.")


@command_line
def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Raised inside diffusers' own Hub download call, not by anything a user passed.
    warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*", category=UserWarning)

    # 1. Everything that can be checked without the weights.
    sources = apply_generation_defaults(args)
    check_arguments(args)
    device = resolve_device(args.device)
    configs = read_model_configs(args.model)
    try:
        check_num_inference_steps(build_scheduler(configs, args.scheduler), args.steps)
    except ValueError as error:
        raise UserError(f"--steps {args.steps}: {error}") from error
    check_run_size(args, configs, device)
    plan = plan_outputs(args.out, args.num_waveforms, args.overwrite)

    # 2. Generate.
    pipe = load_pipeline(args.model, device, DTYPES[args.dtype], args.scheduler)
    if args.model == DEBUG_MODEL_ID:
        logger.warning(
            "Model 'debug' is a tiny UNTRAINED pipeline built in code: its audio is noise. "
            "Pass --model with a trained pipeline folder or Hub id for real audio."
        )
    elif args.model == MICRO_MODEL_ID:
        logger.info(
            "Model 'micro' was trained on the procedural micro world only (13 synthetic sound classes: tones, chirps, "
            "sirens, bells, drums, rain, engines, ...); see pipelines/tango_clap/default_model/README.md."
        )
    generator = torch.Generator(device="cpu").manual_seed(args.seed)
    started = time.perf_counter()
    output = pipe(
        args.prompt,
        negative_prompt=args.negative_prompt,
        audio_length_in_s=args.seconds,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        num_waveforms_per_prompt=args.num_waveforms,
        generator=generator,
    )
    elapsed = time.perf_counter() - started

    # 3. Write, unless a candidate is not audio.
    audios = np.asarray(output.audios)
    finite = np.isfinite(audios).all(axis=1)
    if not finite.all():
        bad = ", ".join(f"candidate {i} (for {os.fspath(plan.paths[i])!r})" for i in np.flatnonzero(~finite))
        hint = (
            " float16 overflowed: use --dtype bfloat16 or float32."
            if args.dtype == "float16"
            else " Try another --seed, --scheduler or --dtype float32."
        )
        raise UserError(
            f"{bad} came out non-finite (NaN or inf) with --model {args.model!r}; nothing was written.{hint}"
        )
    scores = None if output.clap_scores is None else [float(s) for s in output.clap_scores[0]]
    settings = {
        "model": args.model,
        "settings_from": sources,
        "prompt": args.prompt,
        "negative_prompt": args.negative_prompt,
        "seconds": args.seconds,
        "steps": args.steps,
        "guidance": args.guidance,
        "num_waveforms": args.num_waveforms,
        "seed": args.seed,
        "scheduler": type(pipe.scheduler).__name__,
        "dtype": args.dtype,
        "device": str(pipe.device),
        "sampling_rate": pipe.sampling_rate,
    }
    report = write_outputs(plan, audios, pipe.sampling_rate, {**settings, "clap_scores": scores})
    for i, (path, audio) in enumerate(zip(plan.paths, audios)):
        score = "" if scores is None else f", CLAP score {scores[i]:.3f}"
        replaced = ", replacing an earlier run's file" if path in report.replaced else ""
        print(f"wrote {path} ({len(audio) / pipe.sampling_rate:.2f} s at {pipe.sampling_rate} Hz{score}{replaced})")
    replaced = ", replacing an earlier run's record" if plan.manifest in report.replaced else ""
    print(f"wrote {plan.manifest} (what this run wrote, with its prompt and settings{replaced})")
    for path in report.removed:
        print(f"removed {path}: a candidate an earlier run wrote for this --out, not rewritten by this run")
    for path in report.kept:
        print(f"kept {path}: an earlier run wrote it for this --out, but it has changed since")
    print(
        f"model={args.model} prompt={args.prompt!r} seconds={args.seconds} steps={args.steps} "
        f"guidance={args.guidance} seed={args.seed} scheduler={type(pipe.scheduler).__name__} "
        f"device={pipe.device} dtype={args.dtype}: {elapsed:.1f} s"
    )
    return {**settings, "files": [os.fspath(path) for path in plan.paths], "seconds_taken": elapsed}


if __name__ == "__main__":
    sys.exit(main())
