"""Command line: generate audio from a text prompt with any TangoCLAP pipeline folder or Hub id.

Example:
    tango-af-generate --model debug --prompt "a dog barks in the rain" --seconds 5 --steps 25 --out dog.wav
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from .tango_clap import TangoCLAPPipeline
from .tango_clap.debug import DEBUG_MODEL_ID, get_debug_pipeline

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


def load_pipeline(
    model: str = DEFAULT_MODEL,
    device: str | None = None,
    dtype: torch.dtype = torch.float32,
    scheduler: str = "default",
) -> TangoCLAPPipeline:
    """
    Loads a TangoCLAP pipeline.

    Args:
        model (`str`, *optional*, defaults to `"debug"`):
            A pipeline folder, a Hub repo id, `"micro"` for the embedded micro-reproduction model, or `"debug"` for
            the tiny untrained model built in code.
        device (`str`, *optional*):
            Where to run; defaults to CUDA when available, else the CPU.
        dtype (`torch.dtype`, *optional*, defaults to `torch.float32`):
            Weights' dtype.
        scheduler (`str`, *optional*, defaults to `"default"`):
            `"default"` keeps the checkpoint's scheduler; `"ddpm"`, `"ddim"` or `"dpmsolver++"` swap it, keeping
            the checkpoint's noise schedule and prediction type.
    """
    if scheduler not in SCHEDULERS:
        raise ValueError(f"Unknown scheduler {scheduler!r}; choose one of {sorted(SCHEDULERS)}.")
    if model == DEBUG_MODEL_ID:
        pipe = get_debug_pipeline()
        if dtype != torch.float32:
            pipe.to(dtype=dtype)
    elif model == MICRO_MODEL_ID:
        if not (DEFAULT_MODEL_DIR / "model_index.json").is_file():
            raise ValueError(f"Model 'micro' is not installed at {os.fspath(DEFAULT_MODEL_DIR)!r}.")
        pipe = TangoCLAPPipeline.from_pretrained(DEFAULT_MODEL_DIR, torch_dtype=dtype)
    else:
        if not os.path.isdir(model) and os.path.exists(model):
            raise ValueError(f"--model {model!r} is a file; give a pipeline folder or a Hub repo id.")
        pipe = TangoCLAPPipeline.from_pretrained(model, torch_dtype=dtype)
    if SCHEDULERS[scheduler] is not None:
        scheduler_class, extra = SCHEDULERS[scheduler]
        pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config, **extra)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return pipe.to(device)


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


def output_paths(out: Path, count: int) -> list[Path]:
    """`out` for the best candidate, then `out` with `_1`, `_2`, ... before the suffix for the others."""
    return [out] + [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(1, count)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Generate audio from text with a TangoCLAP pipeline.")
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"Pipeline folder, Hub id, 'micro' (embedded, trained) or 'debug' (untrained); default {DEFAULT_MODEL!r}.",
    )
    parser.add_argument("--prompt", required=True, help="What the audio should contain.")
    parser.add_argument("--negative-prompt", default=None, help="What to steer away from.")
    parser.add_argument("--seconds", type=float, default=10.0, help="Length of the audio in seconds.")
    parser.add_argument("--steps", type=int, default=100, help="Denoising steps.")
    parser.add_argument("--guidance", type=float, default=3.0, help="Classifier-free guidance scale.")
    parser.add_argument("--num-waveforms", type=int, default=1, help="Candidates (ranked by CLAP when possible).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the noise.")
    parser.add_argument("--scheduler", default="default", choices=sorted(SCHEDULERS), help="Sampler.")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available).")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="Weights' dtype.")
    parser.add_argument("--out", type=Path, default=Path("outputs/generated.wav"), help="WAV file to write.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.out.suffix.lower() != ".wav":
        raise SystemExit(f"--out must end in .wav, got {str(args.out)!r}.")

    pipe = load_pipeline(args.model, args.device, DTYPES[args.dtype], args.scheduler)
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
    try:
        output = pipe(
            args.prompt,
            negative_prompt=args.negative_prompt,
            audio_length_in_s=args.seconds,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            num_waveforms_per_prompt=args.num_waveforms,
            generator=generator,
        )
    except ValueError as error:
        raise SystemExit(f"error: {error}") from error
    elapsed = time.perf_counter() - started

    args.out.parent.mkdir(parents=True, exist_ok=True)
    paths = output_paths(args.out, len(output.audios))
    for i, (path, audio) in enumerate(zip(paths, output.audios)):
        sf.write(path, np.clip(audio, -1.0, 1.0), pipe.sampling_rate, subtype="PCM_16")
        score = "" if output.clap_scores is None else f", CLAP score {float(output.clap_scores[0, i]):.3f}"
        print(f"wrote {path} ({len(audio) / pipe.sampling_rate:.2f} s at {pipe.sampling_rate} Hz{score})")
    print(
        f"model={args.model} prompt={args.prompt!r} seconds={args.seconds} steps={args.steps} "
        f"guidance={args.guidance} seed={args.seed} scheduler={type(pipe.scheduler).__name__} "
        f"device={pipe.device} dtype={args.dtype}: {elapsed:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
