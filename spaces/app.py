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
import atexit
import dataclasses
import json
import logging
import math
import os
import random
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import gradio as gr
import matplotlib
import numpy as np
import soundfile as sf
import torch
from diffusers import DiffusionPipeline

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
    """Initial values of the controls; each lies within `LIMITS`."""

    duration_s: float = 5.0
    steps: int = 100
    guidance_scale: float = 3.0
    seed: int = 0
    random_seed: bool = True
    candidates: int = 1


DEFAULTS = Defaults()

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


def example_prompts(model: str) -> list[str]:
    """
    The example prompts to offer: the model folder's `example_prompts.json` (a JSON list of prompts) when it has
    one, else `EXAMPLE_PROMPTS`.

    Args:
        model (`str`): a Hub id or a pipeline folder.

    Returns:
        `list[str]`

    Raises:
        `ValueError`: when the folder's file is not a non-empty JSON list of non-empty strings.
    """
    path = Path(model) / EXAMPLE_PROMPTS_NAME
    if not path.is_file():
        return list(EXAMPLE_PROMPTS)
    try:
        prompts = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise ValueError(f"{path} must hold a non-empty JSON list of non-empty strings, got {prompts!r:.200}.")
    return [p.strip() for p in prompts]


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


def _check_number(name: str, value: Any, low: float, high: float, unit: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _invalid(f"{name} must be a number from {low:g} to {high:g}{unit}, got {value!r}.")
    if not low <= value <= high:
        raise _invalid(f"{name} {value!r}{unit} is out of range: allowed from {low:g} to {high:g}{unit}.")
    return float(value)


def _check_integer(name: str, value: Any, low: int, high: int) -> int:
    # JSON clients (and the browser) may send a whole number as 25.0.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"{name} must be a whole number from {low} to {high}, got {value!r}.")
    if not low <= value <= high:
        raise _invalid(f"{name} {value!r} is out of range: allowed from {low} to {high}.")
    return value


def _check_text(name: str, value: Any, max_chars: int, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise _invalid(f"{name} must be text, got {type(value).__name__} {value!r}.")
    text = value.strip()
    if not text:
        if required:
            raise _invalid(f"{name} is empty: describe the sound to generate.")
        return None
    if len(text) > max_chars:
        raise _invalid(f"{name} is {len(text)} characters long: allowed up to {max_chars} characters.")
    return text


def validate_request(
    prompt: Any,
    negative_prompt: Any,
    duration_s: Any,
    steps: Any,
    guidance_scale: Any,
    seed: Any,
    random_seed: Any,
    candidates: Any,
    limits: Limits | None = None,
) -> GenerationRequest:
    """
    Checks raw inputs against `limits` and draws the seed when asked to. The inputs arrive unprocessed (sliders do
    not bound what the API sends), so types are checked too.

    Args:
        prompt (`Any`): must be a non-empty string of at most `limits.max_prompt_chars` characters.
        negative_prompt (`Any`): `None` or a string; empty means the pipeline's default.
        duration_s (`Any`): seconds, within `[limits.min_duration_s, limits.max_duration_s]`.
        steps (`Any`): whole number within `[limits.min_steps, limits.max_steps]`.
        guidance_scale (`Any`): number within `[limits.min_guidance, limits.max_guidance]`.
        seed (`Any`): whole number within `[limits.min_seed, limits.max_seed]`; ignored when `random_seed`.
        random_seed (`Any`): `True` to draw a seed.
        candidates (`Any`): whole number within `[limits.min_candidates, limits.max_candidates]`.
        limits (`Limits`, *optional*, defaults to `LIMITS`): the limits to enforce.

    Returns:
        `GenerationRequest`: the normalised request.

    Raises:
        `gr.Error`: naming the bad value and the allowed range.
    """
    limits = limits or LIMITS
    prompt = _check_text("Prompt", prompt, limits.max_prompt_chars, required=True)
    negative_prompt = _check_text("Negative prompt", negative_prompt, limits.max_prompt_chars, required=False)
    duration_s = _check_number("Duration", duration_s, limits.min_duration_s, limits.max_duration_s, " s")
    steps = _check_integer("Steps", steps, limits.min_steps, limits.max_steps)
    guidance_scale = _check_number("Guidance scale", guidance_scale, limits.min_guidance, limits.max_guidance)
    candidates = _check_integer("Candidates", candidates, limits.min_candidates, limits.max_candidates)
    if random_seed is None:
        random_seed = False
    if not isinstance(random_seed, bool):
        raise _invalid(f"Random seed must be true or false, got {random_seed!r}.")
    if random_seed:
        seed = random.SystemRandom().randint(limits.min_seed, limits.max_seed)
    else:
        seed = _check_integer("Seed", seed, limits.min_seed, limits.max_seed)
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


class OutputFolders:
    """
    Per-request folders for the WAV files, under one temporary root owned by this app. File names are made by the
    app only. Gradio copies returned files into its own cache, so folders older than `ttl_s` are deleted whenever a
    new one is made, and the root when the process exits.

    Args:
        ttl_s (`float`): age in seconds after which a request folder is deleted.
    """

    def __init__(self, ttl_s: float):
        self.ttl_s = ttl_s
        self.root = Path(tempfile.mkdtemp(prefix="tango-af-space-"))
        self._lock = threading.Lock()
        atexit.register(shutil.rmtree, self.root, ignore_errors=True)

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


# ---------------------------------------------------------------------------------------------------- the app


def build_demo(
    pipe: DiffusionPipeline, model_name: str, limits: Limits | None = None, examples: list[str] | None = None
) -> gr.Blocks:
    """
    Builds the Space around an already loaded pipeline; the event is exposed to the API as `/generate`.

    Args:
        pipe (`DiffusionPipeline`):
            A loaded text-to-audio pipeline with `sampling_rate`, returning `audios` (and, when it has them,
            `clap_scores` and `mel_spectrograms`, ranked best first).
        model_name (`str`):
            What the settings report as the model.
        limits (`Limits`, *optional*, defaults to `LIMITS`):
            Input ranges and queue sizes.
        examples (`list[str]`, *optional*, defaults to `EXAMPLE_PROMPTS`):
            Example prompts shown under the prompt box.

    Returns:
        `gr.Blocks`: the app with its queue configured; call `launch()` on it (theme and CSS: `THEME`, `CSS`).
    """
    limits = limits or LIMITS
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
    # cross a process boundary there, so they are plain data (the pipeline itself is captured, not passed).
    @GPU(duration=gpu_seconds)
    def synthesize(
        request: GenerationRequest, request_id: str, progress: Any = None
    ) -> tuple[np.ndarray, list[float] | None, np.ndarray | None]:
        def on_step_end(pipeline: Any, step: int, timestep: Any, callback_kwargs: dict) -> dict:
            if progress is not None:
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

    def generate(
        prompt: Any,
        negative_prompt: Any,
        duration_s: Any,
        steps: Any,
        guidance_scale: Any,
        seed: Any,
        random_seed: Any,
        candidates: Any,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (how Gradio recognises a progress tracker)
    ) -> list[Any]:
        request = validate_request(
            prompt, negative_prompt, duration_s, steps, guidance_scale, seed, random_seed, candidates, limits
        )
        request_id = uuid.uuid4().hex[:8]
        try:
            progress(0, desc="Encoding the prompt")
            audios, scores, mels = synthesize(request, request_id, progress)
            folder = folders.new(request_id)
            num_samples = round(request.duration_s * sampling_rate)
            num_frames = math.ceil(num_samples / hop_length) if hop_length else None
            audio_updates, image_updates = [], []
            for slot in range(limits.max_candidates):
                if slot >= len(audios):
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
        except gr.Error:
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
        }
        logger.info("Request %s done: %s", request_id, json.dumps(settings))
        return [*audio_updates, *image_updates, settings]

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
                negative_box = gr.Textbox(
                    label="Negative prompt (optional)",
                    placeholder="low quality, noise",
                    max_length=limits.max_prompt_chars,
                )
                duration_slider = gr.Slider(
                    limits.min_duration_s,
                    limits.max_duration_s,
                    value=DEFAULTS.duration_s,
                    step=0.5,
                    label="Duration (s)",
                )
                steps_slider = gr.Slider(
                    limits.min_steps, limits.max_steps, value=DEFAULTS.steps, step=1, label="Denoising steps"
                )
                guidance_slider = gr.Slider(
                    limits.min_guidance,
                    limits.max_guidance,
                    value=DEFAULTS.guidance_scale,
                    step=0.1,
                    label="Guidance scale",
                )
                candidates_slider = gr.Slider(
                    limits.min_candidates,
                    limits.max_candidates,
                    value=DEFAULTS.candidates,
                    step=1,
                    label="Candidates (ranked by CLAP)",
                )
                with gr.Row():
                    seed_number = gr.Number(
                        value=DEFAULTS.seed,
                        label="Seed",
                        minimum=limits.min_seed,
                        maximum=limits.max_seed,
                        precision=0,
                        step=1,
                    )
                    random_seed_box = gr.Checkbox(value=DEFAULTS.random_seed, label="Random seed")
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

    demo.queue(default_concurrency_limit=limits.concurrency_limit, max_size=limits.queue_max_size)
    return demo


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
    Resolves the model, loads it and serves the app until interrupted.

    Args:
        argv (`list[str]`, *optional*):
            Command-line arguments; `sys.argv[1:]` when `None`.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        model = resolve_model(args.model)
    except ModelNotFoundError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    logger.info("Loading model %s", model)
    pipe = load_pipeline(model)
    demo = build_demo(pipe, display_name(model), examples=example_prompts(model))
    demo.launch(server_name=args.host, server_port=args.port, theme=THEME, css=CSS)


if __name__ == "__main__":
    main()
