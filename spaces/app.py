"""
Gradio Space for TangoCLAP text-to-audio: type a description, get ranked candidate clips, their mel spectrograms and
the settings that made them.

This folder (`app.py`, `requirements.txt`, `README.md`) is a complete Space repository. On the Hub only this folder
exists, so the app imports nothing from the tango-af project: the pipeline's code travels with the model
(`model_index.json` names `pipeline.py`, loaded with `trust_remote_code=True`).

Run it locally:

    python spaces/app.py --model path/to/pipeline-folder-or-hub-id [--host 127.0.0.1] [--port 7860]

The model is, in this order: `--model`, the environment variable `TANGO_AF_MODEL`, the key "model" of
`space_config.json` beside this file, or the folder `model/` beside this file.

What the model brings besides its weights (files of the model folder or Hub repo, all optional):

- `scheduler/`: the sampler, used as it is (the UI has no sampler choice).
- `generation_defaults.json`: the controls' initial values, which are also what an API call leaves out. A JSON object
  with any subset of the pipeline's own argument names:

      {"audio_length_in_s": 10.24, "num_inference_steps": 200, "guidance_scale": 3.0, "num_waveforms_per_prompt": 1}

  Values outside `LIMITS` are clamped to them (with a warning in the log); other keys are ignored with a warning.
  Without the file, or for a key it leaves out, `DEFAULTS` applies.
- `example_prompts.json`: a JSON list of prompts in the model's own vocabulary, offered as examples.

Every request takes its turn on the one pipeline (a process-wide lock, whatever the queue does) and stops at the next
denoising step when its client cancels it (`/cancel`, `job.cancel()` in gradio_client) or goes away (a closed tab).
"""

# HF's `spaces` has to be imported before torch: on ZeroGPU it patches CUDA initialisation, and importing it after
# CUDA is initialised is an error there.
try:
    import spaces

    GPU = spaces.GPU
except (ImportError, AttributeError):
    # Off Hugging Face the package may be missing; inside the tango-af project the project's own top-level package
    # `spaces` (this folder) shadows HF's and has no `GPU`. Off ZeroGPU, HF's `spaces.GPU` returns the function
    # unchanged, so this no-op behaves exactly like it there.
    def GPU(task=None, *, duration=None, **kwargs):
        """No-op stand-in for `spaces.GPU`, accepting both `@GPU` and `@GPU(duration=...)`."""
        if callable(task):
            return task
        return lambda function: function


import argparse
import asyncio
import atexit
import contextvars
import dataclasses
import functools
import json
import logging
import math
import os
import random
import reprlib
import shutil
import signal
import sys
import tempfile
import threading
import time
import unicodedata
import uuid
from pathlib import Path
from typing import Any

import gradio as gr
import matplotlib
import numpy as np
import soundfile as sf
import torch
from diffusers import DiffusionPipeline
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HFValidationError

logger = logging.getLogger(__name__)

APP_DIR = Path(__file__).resolve().parent
MODEL_ENV_VAR = "TANGO_AF_MODEL"
SPACE_CONFIG_NAME = "space_config.json"
DEFAULT_MODEL_FOLDER = "model"


@dataclasses.dataclass(frozen=True)
class Limits:
    """
    Everything that protects a shared Space, in one place: the UI shows these ranges, the server enforces them (the
    API can send any value), and the queue and the ZeroGPU reservation are sized from them.

    Args:
        max_prompt_chars (`int`, *optional*, defaults to 300):
            Longest prompt (and negative prompt), in characters.
        min_duration_s (`float`, *optional*, defaults to 1.0):
            Shortest clip, in seconds.
        max_duration_s (`float`, *optional*, defaults to 10.0):
            Longest clip, in seconds (Tango was trained on 10 s clips).
        min_steps (`int`, *optional*, defaults to 1):
            Fewest denoising steps.
        max_steps (`int`, *optional*, defaults to 200):
            Most denoising steps (Tango's DDPM setting).
        min_guidance (`float`, *optional*, defaults to 1.0):
            Lowest classifier-free guidance scale (1.0 turns guidance off).
        max_guidance (`float`, *optional*, defaults to 10.0):
            Highest classifier-free guidance scale.
        min_candidates (`int`, *optional*, defaults to 1):
            Fewest candidates per request.
        max_candidates (`int`, *optional*, defaults to 4):
            Most candidates per request; also the number of output slots in the UI.
        min_seed (`int`, *optional*, defaults to 0):
            Lowest seed.
        max_seed (`int`, *optional*, defaults to 2**31 - 1):
            Highest seed.
        concurrency_limit (`int`, *optional*, defaults to 1):
            Requests generating at the same time (one model, one GPU).
        queue_max_size (`int`, *optional*, defaults to 16):
            Requests allowed to wait; further ones are refused with "Queue is full".
        gpu_base_s (`float`, *optional*, defaults to 15.0):
            Fixed part of the ZeroGPU reservation (text encoding, decoding, CLAP ranking, transfers).
        gpu_s_per_unit (`float`, *optional*, defaults to 0.01):
            Reservation per denoising step, per candidate, per second of audio.
        max_gpu_s (`int`, *optional*, defaults to 120):
            Cap on the ZeroGPU reservation.
        output_ttl_s (`int`, *optional*, defaults to 3600):
            Age after which this app deletes the WAV files it wrote (Gradio serves its own copies).
        max_upload_bytes (`int`, *optional*, defaults to 1024):
            Largest file Gradio's upload routes accept. The app takes no files, so nothing legitimate comes near it;
            without a limit Gradio stores uploads of any size.
    """

    max_prompt_chars: int = 300
    min_duration_s: float = 1.0
    max_duration_s: float = 10.0
    min_steps: int = 1
    max_steps: int = 200
    min_guidance: float = 1.0
    max_guidance: float = 10.0
    min_candidates: int = 1
    max_candidates: int = 4
    min_seed: int = 0
    max_seed: int = 2**31 - 1
    concurrency_limit: int = 1
    queue_max_size: int = 16
    gpu_base_s: float = 15.0
    gpu_s_per_unit: float = 0.01
    max_gpu_s: int = 120
    output_ttl_s: int = 3600
    max_upload_bytes: int = 1024

    def describe(self) -> str:
        """One Markdown line stating the limits, shown in the UI."""
        return (
            f"**Limits on this shared Space:** prompt up to {self.max_prompt_chars} characters · "
            f"duration {self.min_duration_s:g}-{self.max_duration_s:g} s · "
            f"{self.min_steps}-{self.max_steps} steps · guidance {self.min_guidance:g}-{self.max_guidance:g} · "
            f"{self.min_candidates}-{self.max_candidates} candidates · seed {self.min_seed}-{self.max_seed} · "
            f"{self.concurrency_limit} request at a time, at most {self.queue_max_size} waiting."
        )


LIMITS = Limits()


@dataclasses.dataclass(frozen=True)
class Defaults:
    """
    Initial values of the controls, and the values of the inputs an API call leaves out (or sends as `null`); each
    lies within `LIMITS`. A model overrides the generation settings with its `generation_defaults.json`.
    """

    duration_s: float = 5.0
    steps: int = 100
    guidance_scale: float = 3.0
    seed: int = 0
    random_seed: bool = True
    candidates: int = 1
    negative_prompt: str = ""


DEFAULTS = Defaults()

GENERATION_DEFAULTS_NAME = "generation_defaults.json"
# Keys of `generation_defaults.json` (the pipeline's own argument names) -> (field of `Defaults`, whole number?).
GENERATION_DEFAULT_KEYS = {
    "audio_length_in_s": ("duration_s", False),
    "num_inference_steps": ("steps", True),
    "guidance_scale": ("guidance_scale", False),
    "num_waveforms_per_prompt": ("candidates", True),
}

# Written in the style of AudioCaps captions (what the model was fine-tuned on): sound events, in order.
EXAMPLE_PROMPTS = [
    "A dog barks repeatedly as a car drives past on a wet road",
    "Rain falls steadily on a tin roof while thunder rumbles in the distance",
    "A man speaks while birds chirp in the background",
    "Water runs from a faucet and splashes into a sink",
    "A crowd cheers and applauds loudly",
    "An engine idles, then revs up and accelerates away",
    "A baby cries and a woman speaks softly",
    "Wind blows hard as waves crash onto the shore",
]

# A model folder may carry prompts in its own vocabulary (the embedded micro model knows only its world's sounds).
EXAMPLE_PROMPTS_NAME = "example_prompts.json"

MEL_COLORMAP = "magma"
MEL_IMAGE_MIN_HEIGHT = 256
MEL_IMAGE_MIN_WIDTH = 512

THEME = gr.themes.Soft()
CSS = ".candidate-slot {min-width: 280px;}"


class ModelNotFoundError(FileNotFoundError):
    """No model was named anywhere the app looks."""


@dataclasses.dataclass(frozen=True)
class GenerationRequest:
    """
    A validated request.

    Args:
        prompt (`str`): what the audio should contain, stripped.
        negative_prompt (`str`, *optional*): what to steer away from; `None` uses the pipeline's default.
        duration_s (`float`): length of each clip in seconds.
        steps (`int`): denoising steps.
        guidance_scale (`float`): classifier-free guidance scale.
        seed (`int`): seed of the noise (already drawn when the user asked for a random one).
        random_seed (`bool`): whether `seed` was drawn by the app.
        candidates (`int`): number of clips, ranked by CLAP when the pipeline can.
    """

    prompt: str
    negative_prompt: str | None
    duration_s: float
    steps: int
    guidance_scale: float
    seed: int
    random_seed: bool
    candidates: int


# ---------------------------------------------------------------------------------------------------- model choice


def resolve_model(arg: str | None) -> str:
    """
    Names the model to load: `--model` > `$TANGO_AF_MODEL` > "model" in `space_config.json` beside this file >
    the folder `model/` beside this file.

    Args:
        arg (`str`, *optional*):
            The `--model` argument: a Hub id or a folder.

    Returns:
        `str`: a Hub id or a folder path. A relative path in `space_config.json` is taken relative to this file's
        folder, so the Space works whatever its working directory.

    Raises:
        `ModelNotFoundError`: when none of the four names a model, or `space_config.json` is unreadable.
    """
    if arg and arg.strip():
        return arg.strip()
    from_env = os.environ.get(MODEL_ENV_VAR, "").strip()
    if from_env:
        return from_env
    config_path = APP_DIR / SPACE_CONFIG_NAME
    if config_path.is_file():
        try:
            model = json.loads(config_path.read_text(encoding="utf-8")).get("model")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
            raise ModelNotFoundError(f"{config_path} is not a JSON object with a key 'model': {error}") from error
        if not isinstance(model, str) or not model.strip():
            raise ModelNotFoundError(f"{config_path} has no non-empty string under the key 'model' (got {model!r}).")
        model = model.strip()
        beside_app = APP_DIR / model
        return str(beside_app) if not Path(model).is_absolute() and beside_app.is_dir() else model
    default_folder = APP_DIR / DEFAULT_MODEL_FOLDER
    if default_folder.is_dir():
        return str(default_folder)
    raise ModelNotFoundError(
        "No model to serve. Name one with (first found wins): the --model argument (Hub id or folder), the "
        f'environment variable {MODEL_ENV_VAR}, the key "model" in {config_path}, or a pipeline folder at '
        f"{default_folder}{os.sep} (the '{DEFAULT_MODEL_FOLDER}/' folder beside app.py)."
    )


def display_name(model: str) -> str:
    """What the settings show as the model: a Hub id as is, a local folder by its name (no server paths)."""
    path = Path(model)
    return path.resolve().name if path.is_dir() else model


def model_file(model: str, filename: str) -> Path | None:
    """
    A file that a model carries besides its pipeline: from the folder, or downloaded from the Hub repo
    (`from_pretrained` fetches only the pipeline's own files).

    Args:
        model (`str`): a Hub id or a pipeline folder.
        filename (`str`): the file's name in the folder or repo.

    Returns:
        `Path` or `None`: the local file, or `None` when the model has no such file (or, offline, none is cached).

    Raises:
        `ValueError`: when `model` is neither an existing folder nor a valid Hub id (a mistyped path, say).
    """
    folder = Path(model)
    if folder.is_dir():
        path = folder / filename
        return path if path.is_file() else None
    try:
        return Path(hf_hub_download(model, filename))
    except HFValidationError as error:
        raise ValueError(f"Model {model!r} is neither a folder nor a Hub model id ('owner/name').") from error
    except EntryNotFoundError:
        logger.info("Model %s has no %s (or, offline, none is cached).", model, filename)
        return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


def example_prompts(model: str) -> list[str]:
    """
    The example prompts to offer: the model's `example_prompts.json` (a JSON list of prompts) when it has one, else
    `EXAMPLE_PROMPTS`.

    Args:
        model (`str`): a Hub id or a pipeline folder.

    Returns:
        `list[str]`

    Raises:
        `ValueError`: when the model's file is not a non-empty JSON list of non-empty strings.
    """
    path = model_file(model, EXAMPLE_PROMPTS_NAME)
    if path is None:
        return list(EXAMPLE_PROMPTS)
    prompts = _read_json(path)
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise ValueError(f"{path} must hold a non-empty JSON list of non-empty strings, got {prompts!r:.200}.")
    return [p.strip() for p in prompts]


def generation_defaults(model: str, limits: Limits | None = None, base: Defaults | None = None) -> Defaults:
    """
    The controls' initial values for `model`: its `generation_defaults.json` (see the module's docstring) over
    `base`, each value clamped to `limits`.

    Args:
        model (`str`): a Hub id or a pipeline folder.
        limits (`Limits`, *optional*, defaults to `LIMITS`): the ranges the values are clamped to.
        base (`Defaults`, *optional*, defaults to `DEFAULTS`): the values of the keys the file leaves out.

    Returns:
        `Defaults`

    Raises:
        `ValueError`: naming the file and the key when the file is not a JSON object of numbers (whole numbers for
        the steps and the number of waveforms).
    """
    limits, base = limits or LIMITS, base or DEFAULTS
    path = model_file(model, GENERATION_DEFAULTS_NAME)
    if path is None:
        return base
    values = _read_json(path)
    if not isinstance(values, dict):
        raise ValueError(
            f'{path} must hold a JSON object such as {{"num_inference_steps": 100}}, got {values!r:.200}.'
        )
    unknown = sorted(set(values) - set(GENERATION_DEFAULT_KEYS))
    if unknown:
        logger.warning("%s: ignoring %s (this app reads only %s).", path, unknown, sorted(GENERATION_DEFAULT_KEYS))
    bounds = {
        "duration_s": (limits.min_duration_s, limits.max_duration_s),
        "steps": (limits.min_steps, limits.max_steps),
        "guidance_scale": (limits.min_guidance, limits.max_guidance),
        "candidates": (limits.min_candidates, limits.max_candidates),
    }
    changes = {}
    for key, (field, whole) in GENERATION_DEFAULT_KEYS.items():
        if key not in values:
            continue
        value = values[key]
        number = not isinstance(value, bool) and isinstance(value, (int, float))
        if isinstance(value, float):
            number = math.isfinite(value) and (value.is_integer() or not whole)
        if not number:
            kind = "a whole number" if whole else "a finite number"
            raise ValueError(f"{path}: {key!r} must be {kind}, got {_show(value)}.")
        low, high = bounds[field]
        clamped = min(max(value, low), high)
        if clamped != value:
            logger.warning(
                "%s: %s %s is outside this Space's range [%g, %g]; the UI starts at %g.",
                path, key, _show(value), low, high, clamped,
            )  # fmt: skip
        changes[field] = int(clamped) if whole else float(clamped)
    return dataclasses.replace(base, **changes)


def load_pipeline(model: str) -> DiffusionPipeline:
    """
    Loads the pipeline with its own code (`trust_remote_code=True`) and moves it to the GPU when there is one.

    Args:
        model (`str`): a Hub id or a pipeline folder.

    Returns:
        `DiffusionPipeline`: the loaded pipeline (a `TangoCLAPPipeline` for tango-af models).
    """
    pipe = DiffusionPipeline.from_pretrained(model, trust_remote_code=True)
    # On ZeroGPU, CUDA reports available at start-up and this move is deferred until a @GPU function runs.
    if torch.cuda.is_available():
        pipe = pipe.to("cuda")
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ---------------------------------------------------------------------------------------------------- validation


def _invalid(message: str) -> gr.Error:
    # A bad input is the user's to fix, not a server fault: no stack trace in the server log either.
    return gr.Error(message, title="Invalid input", print_exception=False)


# Short, bounded reprs for error messages: an API client can send a megabyte of text or a 4,000-digit integer.
# (Python 3.11's `reprlib.Repr` takes no arguments: the Space runs 3.11.)
_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxlong, _REPR.maxother = 60, 40, 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = 4
_REPR.maxlevel = 2


def _show(value: Any) -> str:
    """The value as an error message shows it: JSON's name for its type when that helps, its repr cut short."""
    try:
        shown = _REPR.repr(value)
    except ValueError:
        # `repr` refuses integers longer than `sys.get_int_max_str_digits()` digits.
        shown = f"<an integer of over {sys.get_int_max_str_digits()} digits>"
    if isinstance(value, str):
        return f"the text {shown}"
    if isinstance(value, bool):
        return f"the boolean {value}"
    if isinstance(value, (list, tuple)):
        return f"a list {shown}"
    if isinstance(value, dict):
        return f"an object {shown}"
    return shown


def _check_number(name: str, value: Any, low: float, high: float, default: float, unit: str = "") -> float:
    if value is None:
        return float(default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid(f"{name} must be a number from {low:g} to {high:g}{unit}, got {_show(value)}.")
    # Comparing an int with the float bounds is exact at any size; `float(value)` or `math.isfinite(value)` would
    # raise OverflowError for an integer past 1e308.
    if isinstance(value, float) and not math.isfinite(value):
        raise _invalid(f"{name} must be a finite number from {low:g} to {high:g}{unit}, got {_show(value)}.")
    if not low <= value <= high:
        raise _invalid(f"{name} {_show(value)}{unit} is out of range: allowed from {low:g} to {high:g}{unit}.")
    return float(value)


def _check_integer(name: str, value: Any, low: int, high: int, default: int) -> int:
    if value is None:
        return default
    # JSON clients (and the browser) may send a whole number as 25.0; NaN and infinities are not whole numbers.
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not whole:
        raise _invalid(f"{name} must be a whole number from {low} to {high}, got {_show(value)}.")
    if not low <= value <= high:
        raise _invalid(f"{name} {_show(value)} is out of range: allowed from {low} to {high}.")
    return int(value)


def _check_boolean(name: str, value: Any, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _invalid(f"{name} must be true or false, got {_show(value)}.")
    return value


# Line breaks and tabs are whitespace a prompt box can hold; every other control character is not text, and a lone
# surrogate (half of a UTF-16 pair, which JSON's "\ud800" escape produces) is not even valid Unicode.
_ALLOWED_CONTROLS = frozenset("\t\n\r")


def _check_text(name: str, value: Any, max_chars: int, required: bool) -> str | None:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise _invalid(f"{name} must be text, got {_show(value)}.")
    text = value.strip()
    if not text:
        if required:
            raise _invalid(f"{name} is empty: describe the sound to generate.")
        return None
    if len(text) > max_chars:
        raise _invalid(f"{name} is {len(text)} characters long: allowed up to {max_chars} characters.")
    for position, char in enumerate(text, start=1):
        category = unicodedata.category(char)
        if category == "Cs":
            raise _invalid(
                f"{name} holds a lone surrogate {char!r} at character {position}, which is not valid Unicode text."
            )
        if category == "Cc" and char not in _ALLOWED_CONTROLS:
            raise _invalid(
                f"{name} holds the control character {char!r} at character {position}; only line breaks and tabs "
                "are allowed."
            )
    return text


def validate_request(
    prompt: Any,
    negative_prompt: Any = None,
    duration_s: Any = None,
    steps: Any = None,
    guidance_scale: Any = None,
    seed: Any = None,
    random_seed: Any = None,
    candidates: Any = None,
    limits: Limits | None = None,
    defaults: Defaults | None = None,
) -> GenerationRequest:
    """
    Checks raw inputs against `limits` and draws the seed when asked to. The inputs arrive unprocessed (sliders do
    not bound what the API sends), so types are checked too. `None` (JSON's `null`) for an optional input means its
    default.

    Args:
        prompt (`Any`): must be a non-empty string of at most `limits.max_prompt_chars` characters, valid Unicode
            with no control characters other than line breaks and tabs.
        negative_prompt (`Any`, *optional*): `None` or a string like `prompt`; empty means the pipeline's default.
        duration_s (`Any`, *optional*): seconds, within `[limits.min_duration_s, limits.max_duration_s]`.
        steps (`Any`, *optional*): whole number within `[limits.min_steps, limits.max_steps]`.
        guidance_scale (`Any`, *optional*): number within `[limits.min_guidance, limits.max_guidance]`.
        seed (`Any`, *optional*): whole number within `[limits.min_seed, limits.max_seed]`; replaced by a drawn one
            when `random_seed`.
        random_seed (`Any`, *optional*): `True` to draw a seed.
        candidates (`Any`, *optional*): whole number within `[limits.min_candidates, limits.max_candidates]`.
        limits (`Limits`, *optional*, defaults to `LIMITS`): the limits to enforce.
        defaults (`Defaults`, *optional*, defaults to `DEFAULTS`): the values of the inputs given as `None`.

    Returns:
        `GenerationRequest`: the normalised request.

    Raises:
        `gr.Error`: naming the input, the bad value and the allowed range.
    """
    limits, defaults = limits or LIMITS, defaults or DEFAULTS
    prompt = _check_text("Prompt", prompt, limits.max_prompt_chars, required=True)
    negative_prompt = _check_text("Negative prompt", negative_prompt, limits.max_prompt_chars, required=False)
    duration_s = _check_number(
        "Duration", duration_s, limits.min_duration_s, limits.max_duration_s, defaults.duration_s, " s"
    )
    steps = _check_integer("Steps", steps, limits.min_steps, limits.max_steps, defaults.steps)
    guidance_scale = _check_number(
        "Guidance scale", guidance_scale, limits.min_guidance, limits.max_guidance, defaults.guidance_scale
    )
    candidates = _check_integer(
        "Candidates", candidates, limits.min_candidates, limits.max_candidates, defaults.candidates
    )
    random_seed = _check_boolean("Random seed", random_seed, defaults.random_seed)
    # Checked even when a seed is drawn: a bad value is the client's mistake either way.
    seed = _check_integer("Seed", seed, limits.min_seed, limits.max_seed, defaults.seed)
    if random_seed:
        seed = random.SystemRandom().randint(limits.min_seed, limits.max_seed)
    return GenerationRequest(
        prompt=prompt,
        negative_prompt=negative_prompt,
        duration_s=duration_s,
        steps=steps,
        guidance_scale=guidance_scale,
        seed=seed,
        random_seed=random_seed,
        candidates=candidates,
    )


def estimate_gpu_seconds(request: GenerationRequest, limits: Limits | None = None) -> int:
    """
    Seconds of GPU to reserve on ZeroGPU for `request`: a fixed part plus a part growing with steps x candidates x
    seconds of audio, capped at `limits.max_gpu_s`. Asking for less than needed aborts the request; asking for much
    more costs the user's quota and queue priority.

    Args:
        request (`GenerationRequest`): the validated request.
        limits (`Limits`, *optional*, defaults to `LIMITS`): where the coefficients come from.

    Returns:
        `int`: whole seconds.
    """
    limits = limits or LIMITS
    work = request.steps * request.candidates * request.duration_s
    return int(min(limits.max_gpu_s, math.ceil(limits.gpu_base_s + limits.gpu_s_per_unit * work)))


# ---------------------------------------------------------------------------------------------------- outputs


def render_mel(mel: np.ndarray, num_frames: int | None = None, colormap: str = MEL_COLORMAP) -> np.ndarray:
    """
    Renders a log-mel spectrogram as an RGB image: time (frames) left to right, low frequencies at the bottom.

    Args:
        mel (`np.ndarray`):
            `(frames, mel_bins)` log-mel values (a leading axis of size 1 is dropped).
        num_frames (`int`, *optional*):
            Frames to keep from the start; the pipeline pads the latent to whole frames past the audio's end.
        colormap (`str`, *optional*, defaults to `"magma"`):
            A matplotlib colormap name.

    Returns:
        `np.ndarray`: `uint8` `(height, width, 3)`, each cell repeated so that small spectrograms stay readable
        (height at least `MEL_IMAGE_MIN_HEIGHT`, width at least `MEL_IMAGE_MIN_WIDTH`).
    """
    mel = np.asarray(mel, dtype=np.float32)
    if mel.ndim == 3 and mel.shape[0] == 1:
        mel = mel[0]
    if mel.ndim != 2 or 0 in mel.shape:
        raise ValueError(f"Expected a (frames, mel_bins) spectrogram, got shape {mel.shape}.")
    if num_frames is not None:
        mel = mel[: max(1, num_frames)]
    mel = np.nan_to_num(mel)
    low, high = float(mel.min()), float(mel.max())
    scaled = (mel - low) / (high - low) if high > low else np.zeros_like(mel)
    # Rows of an image run top to bottom, so the highest mel bin goes first.
    cells = scaled.T[::-1]
    rgb = (matplotlib.colormaps[colormap](cells)[..., :3] * 255).round().astype(np.uint8)
    repeat_y = max(1, math.ceil(MEL_IMAGE_MIN_HEIGHT / rgb.shape[0]))
    repeat_x = max(1, math.ceil(MEL_IMAGE_MIN_WIDTH / rgb.shape[1]))
    return np.repeat(np.repeat(rgb, repeat_y, axis=0), repeat_x, axis=1)


def candidate_label(rank: int, score: float | None) -> str:
    """`"#1 · CLAP 0.312"`, or `"#1"` for a pipeline without CLAP scoring parts."""
    return f"#{rank}" if score is None else f"#{rank} · CLAP {score:.3f}"


def unexpected_failure(request_id: str) -> gr.Error:
    """
    The short error a user sees when generation fails for a reason of the server's: no internals (they go to the
    log, with the stack trace), only a reference to find the log entry.

    Args:
        request_id (`str`): the request's reference, in the log and in the message.

    Returns:
        `gr.Error`: to raise.
    """
    return gr.Error(
        f"Generation failed unexpectedly (reference {request_id}). Please try again, or with other settings.",
        print_exception=False,
    )


# Every output root of this process: removed at exit, and on the signals that `main` handles.
_TEMP_ROOTS: list[Path] = []


def remove_temp_folders() -> None:
    """Deletes the output folders of every app of this process."""
    while _TEMP_ROOTS:
        shutil.rmtree(_TEMP_ROOTS.pop(), ignore_errors=True)


atexit.register(remove_temp_folders)


class OutputFolders:
    """
    Per-request folders for the WAV files, under one temporary root owned by this app. File names are made by the
    app only. Gradio copies returned files into its own cache, so folders older than `ttl_s` are deleted whenever a
    new one is made, and the root when the process exits (`remove_temp_folders`).

    Args:
        ttl_s (`float`): age in seconds after which a request folder is deleted.
    """

    def __init__(self, ttl_s: float):
        self.ttl_s = ttl_s
        self.root = Path(tempfile.mkdtemp(prefix="tango-af-space-"))
        self._lock = threading.Lock()
        _TEMP_ROOTS.append(self.root)

    def new(self, request_id: str) -> Path:
        """A fresh, empty folder for one request."""
        with self._lock:
            now = time.time()
            for folder in self.root.iterdir():
                try:
                    if now - folder.stat().st_mtime > self.ttl_s:
                        shutil.rmtree(folder, ignore_errors=True)
                except FileNotFoundError:
                    continue
            return Path(tempfile.mkdtemp(prefix=f"{request_id}-", dir=self.root))


# ---------------------------------------------------------------------------------------------------- turns


class RunCancelled(Exception):
    """A request stopped before its end: its client cancelled it or went away, or the server is shutting down."""


class ActiveRuns:
    """
    The requests of this process that wait for the pipeline or run it, by request id, each with the flag that stops
    it at its next denoising step, and the Gradio session it belongs to (so that a closed tab can stop its own).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._runs: dict[str, tuple[str | None, threading.Event]] = {}

    def start(self, request_id: str, session_hash: str | None) -> None:
        with self._lock:
            self._runs[request_id] = (session_hash, threading.Event())

    def finish(self, request_id: str) -> None:
        with self._lock:
            self._runs.pop(request_id, None)

    def should_stop(self, request_id: str) -> bool:
        """Whether the request was stopped (`False` for one never started here, e.g. inside a ZeroGPU worker)."""
        run = self._runs.get(request_id)
        return run is not None and run[1].is_set()

    def stop(self, request_id: str | None = None, session_hash: str | None = None) -> int:
        """
        Stops one request, the requests of one session, or, with neither argument, every request.

        Returns:
            `int`: how many requests were running (or waiting to run) and are now told to stop.
        """
        with self._lock:
            runs = [
                stop
                for rid, (session, stop) in self._runs.items()
                if (request_id is None or rid == request_id) and (session_hash is None or session == session_hash)
            ]
        for stop in runs:
            stop.set()
        return len(runs)


ACTIVE_RUNS = ActiveRuns()

# One pipeline, one accelerator: requests take turns on it whatever the queue does. The queue's concurrency limit
# alone does not ensure it: `/cancel` cancels the request's asyncio task, which frees its queue slot at once, while a
# thread that runs a synchronous function goes on (gradio/utils.py `cancel_tasks`, gradio/queueing.py
# `process_events`).
PIPELINE_LOCK = threading.Lock()
# How often a waiting request looks whether it was stopped, and a running one whether its client is still there.
POLL_S = 0.1


def _wait_for_pipeline(request_id: str) -> None:
    """Takes `PIPELINE_LOCK`, unless the request is stopped while it waits."""
    while not PIPELINE_LOCK.acquire(timeout=POLL_S):
        if ACTIVE_RUNS.should_stop(request_id):
            raise RunCancelled(request_id)


def _client_gone(demo: gr.Blocks, session_hash: str | None) -> bool:
    """
    Whether Gradio saw the client of `session_hash` go away (a closed tab or a dropped connection) while its request
    runs. Gradio notices when the event stream (`/queue/data`) disconnects and then marks the session's jobs as no
    longer alive (gradio/routes.py `sse_stream`, gradio/queueing.py `Queue.clean_events`), but it checks that mark
    only between the chunks of a generator, never inside one call. No public API exposes it; should a Gradio
    release change these internals, this says "still there" and the `unload` event (the heartbeat stream closing,
    up to `GRADIO_HEARTBEAT_INTERVAL` seconds later) stops the request instead.
    """
    if session_hash is None:
        return False
    for job in getattr(getattr(demo, "_queue", None), "active_jobs", None) or ():
        for event in job or ():
            if getattr(event, "session_hash", None) == session_hash and getattr(event, "alive", True) is False:
                return True
    return False


# ---------------------------------------------------------------------------------------------------- the app


def build_demo(
    pipe: DiffusionPipeline,
    model_name: str,
    limits: Limits | None = None,
    examples: list[str] | None = None,
    defaults: Defaults | None = None,
) -> gr.Blocks:
    """
    Builds the Space around an already loaded pipeline; the event is exposed to the API as `/generate`, where every
    input but the prompt is optional.

    Args:
        pipe (`DiffusionPipeline`):
            A loaded text-to-audio pipeline with `sampling_rate`, returning `audios` (and, when it has them,
            `clap_scores` and `mel_spectrograms`, ranked best first), that honours `callback_on_step_end` and
            `_interrupt` as diffusers pipelines do.
        model_name (`str`):
            What the settings report as the model.
        limits (`Limits`, *optional*, defaults to `LIMITS`):
            Input ranges and queue sizes.
        examples (`list[str]`, *optional*, defaults to `EXAMPLE_PROMPTS`):
            Example prompts shown under the prompt box.
        defaults (`Defaults`, *optional*, defaults to `DEFAULTS`):
            Initial values of the controls (see `generation_defaults`), also those of the inputs an API call leaves
            out.

    Returns:
        `gr.Blocks`: the app with its queue configured; launch it with `launch_options(limits)`.
    """
    limits, defaults = limits or LIMITS, defaults or DEFAULTS
    sampling_rate = int(pipe.sampling_rate)
    hop_length = getattr(pipe, "hop_length", None)
    folders = OutputFolders(limits.output_ttl_s)

    def gpu_seconds(request: GenerationRequest, request_id: str, progress: Any = None) -> int:
        return estimate_gpu_seconds(request, limits)

    def run_pipeline(
        request: GenerationRequest, on_step_end: Any
    ) -> tuple[np.ndarray, list[float] | None, np.ndarray | None]:
        # A CPU generator gives the same noise for a seed on any device.
        generator = torch.Generator(device="cpu").manual_seed(request.seed)
        output = pipe(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            audio_length_in_s=request.duration_s,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance_scale,
            num_waveforms_per_prompt=request.candidates,
            generator=generator,
            callback_on_step_end=on_step_end,
        )
        audios = output.audios
        audios = audios.float().cpu().numpy() if isinstance(audios, torch.Tensor) else np.asarray(audios)
        scores = getattr(output, "clap_scores", None)
        scores = None if scores is None else [float(s) for s in torch.as_tensor(scores).reshape(-1).tolist()]
        mels = getattr(output, "mel_spectrograms", None)
        if isinstance(mels, torch.Tensor):
            mels = mels.float().cpu().numpy()
        return audios, scores, mels

    # Only the pipeline call holds a ZeroGPU slot; validation and file writing run outside it. Arguments and results
    # cross a process boundary there, so they are plain data (the pipeline itself is captured, not passed). For the
    # same reason the stop flag is looked up by request id rather than passed: inside a ZeroGPU worker it is not
    # found, and a stopped request runs to its end there (it still holds `PIPELINE_LOCK`, taken outside).
    @GPU(duration=gpu_seconds)
    def synthesize(
        request: GenerationRequest, request_id: str, progress: Any = None
    ) -> tuple[np.ndarray, list[float] | None, np.ndarray | None]:
        def on_step_end(pipeline: Any, step: int, timestep: Any, callback_kwargs: dict) -> dict:
            if ACTIVE_RUNS.should_stop(request_id):
                # diffusers' interruption: the pipeline skips its remaining steps (`if self.interrupt: continue`).
                pipeline._interrupt = True
            elif progress is not None:
                total = getattr(pipeline, "num_timesteps", None) or request.steps
                progress((min(step + 1, total), total), desc="Denoising", unit="steps")
            return callback_kwargs

        # Caught here as well as in the caller: on ZeroGPU this runs in a worker process, which would otherwise hand
        # back only the exception's class name, logged nowhere but its stderr.
        try:
            return run_pipeline(request, on_step_end)
        except Exception:
            logger.exception("Request %s failed: %s", request_id, request)
            raise unexpected_failure(request_id) from None

    def produce(request: GenerationRequest, request_id: str, progress: Any) -> list[Any]:
        """Runs the pipeline when its turn comes and writes the outputs; in a worker thread."""
        try:
            progress(0, desc="Waiting for the model")
            _wait_for_pipeline(request_id)
            try:
                progress(0, desc="Encoding the prompt")
                audios, scores, mels = synthesize(request, request_id, progress)
            finally:
                PIPELINE_LOCK.release()
            if ACTIVE_RUNS.should_stop(request_id):
                raise RunCancelled(request_id)
            # A candidate with a NaN or inf sample (e.g. a float16 overflow) is not audio: it is never written or
            # played. The pipeline ranks such candidates last; if every one is, the request fails with a message.
            finite = [bool(np.isfinite(audio).all()) for audio in audios]
            if not any(finite):
                logger.error("Request %s: every candidate came out non-finite (NaN or inf): %s", request_id, request)
                raise gr.Error(
                    "The model produced no usable audio for this request: every candidate came out non-finite (NaN "
                    "or inf). Try another seed or fewer steps."
                )
            if not all(finite):
                logger.warning(
                    "Request %s: candidates %s came out non-finite (NaN or inf) and are not shown.",
                    request_id,
                    [rank for rank, ok in enumerate(finite, start=1) if not ok],
                )
            folder = folders.new(request_id)
            num_samples = round(request.duration_s * sampling_rate)
            num_frames = math.ceil(num_samples / hop_length) if hop_length else None
            audio_updates, image_updates = [], []
            for slot in range(limits.max_candidates):
                if slot >= len(audios) or not finite[slot]:
                    audio_updates.append(gr.update(value=None, visible=False))
                    image_updates.append(gr.update(value=None, visible=False))
                    continue
                rank = slot + 1
                score = scores[slot] if scores is not None else None
                path = folder / f"tango-af_seed{request.seed}_{rank}.wav"
                sf.write(path, np.clip(audios[slot], -1.0, 1.0), sampling_rate, subtype="PCM_16")
                audio_updates.append(gr.update(value=str(path), label=candidate_label(rank, score), visible=True))
                if mels is None:
                    image_updates.append(gr.update(value=None, visible=False))
                else:
                    image_updates.append(
                        gr.update(
                            value=render_mel(mels[slot], num_frames),
                            label=f"#{rank} · mel spectrogram (time →, low frequencies at the bottom)",
                            visible=True,
                        )
                    )
        except (gr.Error, RunCancelled):
            # Already meant for the user: ours from `synthesize`, or ZeroGPU's (quota, aborted task).
            raise
        except Exception:
            logger.exception("Request %s failed: %s", request_id, request)
            raise unexpected_failure(request_id) from None
        settings = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "duration_s": request.duration_s,
            "steps": request.steps,
            "guidance_scale": request.guidance_scale,
            "seed": request.seed,
            "random_seed": request.random_seed,
            "candidates": request.candidates,
            "model": model_name,
            "sampling_rate": sampling_rate,
            "clap_scores": scores,
            "non_finite_candidates": [rank for rank, ok in enumerate(finite, start=1) if not ok],
        }
        logger.info("Request %s done: %s", request_id, json.dumps(settings))
        return [*audio_updates, *image_updates, settings]

    async def generate(
        prompt: Any,
        negative_prompt: Any = None,
        duration_s: Any = None,
        steps: Any = None,
        guidance_scale: Any = None,
        seed: Any = None,
        random_seed: Any = None,
        candidates: Any = None,
        request: gr.Request | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (how Gradio recognises a progress tracker)
    ) -> list[Any]:
        # Asynchronous so that it learns of a cancellation: `/cancel` cancels this coroutine's task (a synchronous
        # function would run on in its thread with nothing to tell it). The work runs in a thread, with Gradio's
        # context copied so that `progress` reaches this request's client.
        generation = validate_request(
            prompt, negative_prompt, duration_s, steps, guidance_scale, seed, random_seed, candidates, limits, defaults
        )
        request_id = uuid.uuid4().hex[:8]
        session_hash = getattr(request, "session_hash", None)
        ACTIVE_RUNS.start(request_id, session_hash)
        worker = asyncio.get_running_loop().run_in_executor(
            None, functools.partial(contextvars.copy_context().run, produce, generation, request_id, progress)
        )
        # The stop flag lives as long as the work does (a cancelled task ends before it), and the outcome of a
        # stopped request is retrieved here, so that asyncio does not log it as never retrieved.
        worker.add_done_callback(lambda done: (ACTIVE_RUNS.finish(request_id), done.cancelled() or done.exception()))
        try:
            while not worker.done():
                await asyncio.wait({worker}, timeout=POLL_S)
                if not ACTIVE_RUNS.should_stop(request_id) and _client_gone(demo, session_hash):
                    logger.info("Request %s: its client went away; stopping it.", request_id)
                    ACTIVE_RUNS.stop(request_id)
        except asyncio.CancelledError:
            # Gradio frees the queue slot as this task ends; the pipeline stops at its next step, and the request
            # the queue starts next waits for it on PIPELINE_LOCK. Waiting here instead would hold up the `/cancel`
            # call (it awaits this task) past clients' timeouts.
            logger.info("Request %s: cancelled; stopping it.", request_id)
            ACTIVE_RUNS.stop(request_id)
            raise
        try:
            return worker.result()
        except RunCancelled:
            raise gr.Error("The request was cancelled.", print_exception=False) from None

    def stop_session(request: gr.Request) -> None:
        # The tab closed (its heartbeat stream ended): stop what it still runs.
        if ACTIVE_RUNS.stop(session_hash=request.session_hash):
            logger.info("Session %s closed; stopping its requests.", request.session_hash)

    with gr.Blocks(title="Tango-AF text-to-audio", delete_cache=(limits.output_ttl_s, limits.output_ttl_s)) as demo:
        gr.Markdown(
            "# Tango-AF: text-to-audio\n"
            "Describe a sound; the model generates candidates, ranked best first by CLAP text-audio similarity "
            f"when the model has CLAP scoring parts. Model: `{model_name}`."
        )
        gr.Markdown(limits.describe())
        with gr.Row():
            with gr.Column(scale=1):
                prompt_box = gr.Textbox(
                    label="Prompt",
                    placeholder="A dog barks twice, then a car passes by in the rain",
                    lines=2,
                    max_lines=4,
                    max_length=limits.max_prompt_chars,
                )
                # Every input but the prompt has a value, which is what makes it optional for API clients.
                negative_box = gr.Textbox(
                    value=defaults.negative_prompt,
                    label="Negative prompt (optional)",
                    placeholder="low quality, noise",
                    max_length=limits.max_prompt_chars,
                )
                duration_slider = gr.Slider(
                    limits.min_duration_s,
                    limits.max_duration_s,
                    value=defaults.duration_s,
                    step=0.5,
                    label="Duration (s)",
                )
                steps_slider = gr.Slider(
                    limits.min_steps, limits.max_steps, value=defaults.steps, step=1, label="Denoising steps"
                )
                guidance_slider = gr.Slider(
                    limits.min_guidance,
                    limits.max_guidance,
                    value=defaults.guidance_scale,
                    step=0.1,
                    label="Guidance scale",
                )
                candidates_slider = gr.Slider(
                    limits.min_candidates,
                    limits.max_candidates,
                    value=defaults.candidates,
                    step=1,
                    label="Candidates (ranked by CLAP)",
                )
                with gr.Row():
                    seed_number = gr.Number(
                        value=defaults.seed,
                        label="Seed",
                        minimum=limits.min_seed,
                        maximum=limits.max_seed,
                        precision=0,
                        step=1,
                    )
                    random_seed_box = gr.Checkbox(value=defaults.random_seed, label="Random seed")
                generate_button = gr.Button("Generate", variant="primary")
                gr.Examples(
                    examples=[[p] for p in (examples or EXAMPLE_PROMPTS)],
                    inputs=[prompt_box],
                    label="Example prompts",
                    cache_examples=False,
                )
            with gr.Column(scale=2):
                audio_outputs, image_outputs = [], []
                for slot in range(limits.max_candidates):
                    with gr.Group(elem_classes="candidate-slot"):
                        audio_outputs.append(
                            gr.Audio(
                                label=f"#{slot + 1}",
                                type="filepath",
                                format="wav",
                                interactive=False,
                                buttons=["download"],
                                visible=slot == 0,
                                elem_id=f"candidate-audio-{slot + 1}",
                            )
                        )
                        image_outputs.append(
                            gr.Image(
                                label=f"#{slot + 1} · mel spectrogram",
                                type="numpy",
                                format="png",
                                interactive=False,
                                visible=slot == 0,
                                elem_id=f"candidate-mel-{slot + 1}",
                            )
                        )
                settings_json = gr.JSON(label="Settings used", elem_id="settings-used")

        gr.on(
            triggers=[generate_button.click, prompt_box.submit],
            fn=generate,
            inputs=[
                prompt_box,
                negative_box,
                duration_slider,
                steps_slider,
                guidance_slider,
                seed_number,
                random_seed_box,
                candidates_slider,
            ],
            outputs=[*audio_outputs, *image_outputs, settings_json],
            api_name="generate",
            # The raw values reach `validate_request`, which checks types and ranges itself with messages naming
            # the input; Gradio's own preprocessing would round or reject them with less helpful messages.
            preprocess=False,
        )
        demo.unload(stop_session)

    demo.queue(default_concurrency_limit=limits.concurrency_limit, max_size=limits.queue_max_size)
    return demo


def launch_options(limits: Limits | None = None) -> dict[str, Any]:
    """
    The keyword arguments of `demo.launch()` that belong to the app rather than to where it runs.

    Args:
        limits (`Limits`, *optional*, defaults to `LIMITS`): where the upload limit comes from.

    Returns:
        `dict`: `theme` and `css` (Gradio 6 takes them at launch) and `max_file_size`, which bounds what Gradio's
        upload routes (`/gradio_api/upload`) store: they are open whether or not the app has a file input.
    """
    limits = limits or LIMITS
    return {"theme": THEME, "css": CSS, "max_file_size": limits.max_upload_bytes}


def install_termination_handler(demo: gr.Blocks) -> None:
    """
    On SIGTERM (how the Hub and container runtimes stop a Space) and SIGHUP: stops the running requests, closes the
    server (Gradio deletes its cached copies of the outputs on shutdown), deletes this app's output folders and exits
    with status 128 + the signal's number. Without it the process dies at once and `atexit` cleanup never runs.
    Must be called from the main thread.

    Args:
        demo (`gr.Blocks`): the app to close.
    """

    def terminate(signum: int, frame: Any) -> None:
        logger.info("%s: stopping the running requests, removing temporary files.", signal.strsignal(signum))
        ACTIVE_RUNS.stop()
        try:
            demo.close(verbose=False)
        finally:
            remove_temp_folders()
        raise SystemExit(128 + signum)

    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):  # SIGHUP does not exist on Windows
            signal.signal(getattr(signal, name), terminate)


def build_parser() -> argparse.ArgumentParser:
    """The command line of `main`."""
    parser = argparse.ArgumentParser(description="Serve a TangoCLAP text-to-audio pipeline as a Gradio app.")
    parser.add_argument(
        "--model",
        default=None,
        help=f"Hub id or pipeline folder (else ${MODEL_ENV_VAR}, else {SPACE_CONFIG_NAME}, else ./model/).",
    )
    parser.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
        help="Address to listen on (default: $GRADIO_SERVER_NAME or 0.0.0.0, as Spaces expect).",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        help="Port (default: $GRADIO_SERVER_PORT or 7860).",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """
    Resolves the model, reads its example prompts and generation defaults, loads it and serves the app until
    interrupted or terminated.

    Args:
        argv (`list[str]`, *optional*):
            Command-line arguments; `sys.argv[1:]` when `None`.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        model = resolve_model(args.model)
        # Read before the (long) load, so that a broken file is reported at once.
        examples, defaults = example_prompts(model), generation_defaults(model)
    except (ModelNotFoundError, ValueError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    logger.info("Loading model %s", model)
    pipe = load_pipeline(model)
    demo = build_demo(pipe, display_name(model), examples=examples, defaults=defaults)
    install_termination_handler(demo)
    demo.launch(server_name=args.host, server_port=args.port, **launch_options())


if __name__ == "__main__":
    main()
