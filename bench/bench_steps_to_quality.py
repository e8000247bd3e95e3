"""UNet evaluations per 10 s clip: Tango's DDPM at 200 and 100 steps vs DDIM and DPM-Solver++ at 25 steps.

Every scheduler is built `from_config` of Tango's (`build_scheduler()`: SD-2.1's betas, v-prediction, "leading"
spacing); DPM-Solver++ is `DPMSolverMultistepScheduler(algorithm_type="dpmsolver++")`. The real
`TangoCLAPPipeline` generates one clip with each, with classifier-free guidance, and a forward pre-hook on the
UNet counts what it actually ran: calls (one per step, the guidance batch [uncond, cond] in one call) and sample
evaluations (calls x batch). The counts do not depend on the UNet's size, so a debug UNet is used unless
`--full`. The projected time per clip at full size is calls x (seconds per denoising step) + VAE decode +
vocoder, with the times measured by `bench_full_size.py` (read from its JSON when present).

Only the cost side is measured here: whether 25 DPM-Solver++ steps match 200 DDPM steps in quality (FAD, CLAP
score) needs a trained model and is left to a later issue.

    python bench/bench_steps_to_quality.py
    python bench/bench_steps_to_quality.py --full --device cuda --dtype bfloat16   # also measures real wall times
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import common  # noqa: F401  (sets HF_HUB_OFFLINE before diffusers is imported)
import torch
from common import (
    DTYPES,
    base_parser,
    build_full_size_components,
    fmt_seconds,
    latent_shape,
    markdown_table,
    setup,
    timed,
    write_results,
)
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from tqdm.auto import tqdm

from pipelines.tango_clap import TangoCLAPPipeline
from pipelines.tango_clap.architectures import (
    AUDIOLDM_VAE_CONFIG,
    HIFIGAN_16K_64_CONFIG,
    TANGO_UNET_CONFIG,
    build_scheduler,
)
from pipelines.tango_clap.debug import build_debug_components

SCRIPT = "bench_steps_to_quality"
PROMPT = "A dog barks twice, then a car passes by in the rain"
# (label, scheduler class, extra config, steps); the first is the baseline of the ratios.
SAMPLERS: list[tuple[str, type, dict[str, Any], int]] = [
    ("DDPM (Tango)", DDPMScheduler, {}, 200),
    ("DDPM", DDPMScheduler, {}, 100),
    ("DDIM", DDIMScheduler, {}, 25),
    ("DPM-Solver++", DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}, 25),
]
QUALITY_NOTE = (
    "Quality is NOT compared here: whether DPM-Solver++ or DDIM at 25 steps match DDPM at 200 (FAD, CLAP score) "
    "needs a trained model and is a later issue; this script measures the cost side only."
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__, dtype_help="dtype of the pipeline run (the counts do not depend on it)")
    parser.add_argument("--seconds", type=float, default=None, help="clip length (default: 10; --quick: 2.56)")
    parser.add_argument(
        "--guidance-scale", type=float, default=3.0, help="classifier-free guidance scale (default: 3)"
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="run the full-size UNet / VAE / vocoder (random weights) and report its measured wall time per clip "
        "(a GPU job: hours on a CPU; with --quick, a reduced-width UNet)",
    )
    parser.add_argument(
        "--full-size-json",
        type=Path,
        default=None,
        help="bench_full_size.py results used for the projection (default: <out-dir>/bench_full_size.json)",
    )
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 2.56 if args.quick else 10.0
    if args.full_size_json is None:
        args.full_size_json = Path(args.out_dir) / "bench_full_size.json"
    return args


class UNetCounter:
    """Counts the UNet's calls and sample evaluations (the batch size of each call) with a forward pre-hook."""

    def __init__(self, unet: torch.nn.Module):
        self.calls = 0
        self.samples = 0
        self.handle = unet.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        sample = args[0] if args else kwargs["sample"]
        self.calls += 1
        self.samples += int(sample.shape[0])

    def reset(self) -> None:
        self.calls = self.samples = 0


def load_full_size(path: Path, latent_frames: int) -> tuple[list[dict[str, Any]], str]:
    """
    The variants measured by `bench_full_size.py` as (label, step, VAE, vocoder seconds), and a sentence on where
    they come from; no variants (and the reason) when the file is missing or measured another clip length.
    """
    if not path.is_file():
        return [], f"No projection: {path} does not exist; run `python bench/bench_full_size.py` first."
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    raw, machine = data["raw"], data["machine"]
    variants = []
    for variant in raw["variants"]:
        variants.append(
            {
                "label": variant["label"],
                "step_s": variant["step"]["median_s"],
                "vae_s": variant["vae_decode"]["median_s"],
                "vocoder_s": variant["vocoder"]["median_s"],
                "latent_frames": variant["latent_shape"][2],
            }
        )
    source = (
        f"Projections use the full-size times of {path.name} ({machine['device_name']}, {machine['date']}): "
        "UNet calls x median denoising step (UNet at batch 2 + DDPM step) + VAE decode + vocoder; text encoding "
        "(once per clip) is left out, and a DPM-Solver++ / DDIM step costs the same UNet call as a DDPM step."
    )
    if raw.get("quick"):
        source += " WARNING: that file is from a --quick run (reduced UNet): the projections are not full-size."
    if variants and variants[0]["latent_frames"] != latent_frames:
        source += (
            f" WARNING: it measured {variants[0]['latent_frames']} latent frames, a full-size {latent_frames}-frame "
            "clip is asked for here: the projection is for the length measured there."
        )
    return variants, source


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = setup(args)
    dtype = DTYPES[args.dtype]

    if args.full:
        components = build_full_size_components(reduced_unet=args.quick, seed=args.seed)
    else:
        components = build_debug_components(with_clap_scorer=False, seed=args.seed)
    pipe = TangoCLAPPipeline(**components).to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    counter = UNetCounter(pipe.unet)
    base_config = build_scheduler().config
    latent_frames = pipe.num_frames(args.seconds) // pipe.vae_scale_factor
    # The full-size UNet has 4 levels, so it pads more than a 2-level debug UNet (10 s: 256 latent frames, not 250):
    # the projection must come from a measurement of the full-size length.
    full_size_frames = latent_shape(args.seconds, TANGO_UNET_CONFIG, AUDIOLDM_VAE_CONFIG, HIFIGAN_16K_64_CONFIG)[2]

    def generate(steps: int) -> None:
        pipe(
            PROMPT,
            audio_length_in_s=args.seconds,
            num_inference_steps=steps,
            guidance_scale=args.guidance_scale,
            generator=torch.Generator(device).manual_seed(args.seed),
        )

    # One short generation first, so that the first sampler's wall time does not include allocator / kernel set-up.
    pipe.scheduler = DDPMScheduler.from_config(base_config)
    generate(2)

    results = []
    for label, scheduler_class, extra, steps in tqdm(SAMPLERS, desc="samplers", leave=False):
        pipe.scheduler = scheduler_class.from_config(base_config, **extra)
        counter.reset()
        _, seconds = timed(lambda steps=steps: generate(steps), device)
        results.append(
            {
                "sampler": label,
                "scheduler_class": scheduler_class.__name__,
                "scheduler_extra": extra,
                "steps": steps,
                "timesteps": len(pipe.scheduler.timesteps),
                "unet_calls": counter.calls,
                "sample_evaluations": counter.samples,
                "measured_wall_s": seconds,
            }
        )
        print(
            f"{label} {steps} steps: {counter.calls} UNet calls, {counter.samples} sample evaluations, {fmt_seconds(seconds)}"
        )

    projections, source = load_full_size(args.full_size_json, full_size_frames)
    base = results[0]
    size = "full-size" if args.full and not args.quick else ("reduced full-size" if args.full else "debug")
    headers = [
        "sampler",
        "steps",
        "UNet calls",
        "sample evaluations",
        f"calls vs {base['sampler']} {base['steps']}",
        f"measured s/clip ({size} model, {args.dtype}, {device})",
    ] + [f"projected s/clip, full size {p['label']}" for p in projections]
    rows = []
    for r in results:
        row = [
            r["sampler"],
            r["steps"],
            r["unet_calls"],
            r["sample_evaluations"],
            f"{r['unet_calls'] / base['unet_calls']:.3g}x",
            fmt_seconds(r["measured_wall_s"]),
        ]
        r["projected_s"] = {}
        for p in projections:
            projected = r["unet_calls"] * p["step_s"] + p["vae_s"] + p["vocoder_s"]
            r["projected_s"][p["label"]] = projected
            row.append(fmt_seconds(projected))
        rows.append(row)
    table = markdown_table(headers, rows)
    notes = [
        QUALITY_NOTE,
        (
            f"Counts measured by a forward pre-hook on the UNet while the real TangoCLAPPipeline generated {args.seconds} s "
            f"({latent_frames} latent frames; the full-size UNet pads to {full_size_frames}) with classifier-free guidance (scale {args.guidance_scale}): one UNet call "
            "per step on the batch [uncond, cond], i.e. 2 sample evaluations per call."
        ),
        "All schedulers from_config of Tango's DDPM config (v-prediction, 'leading' spacing, 1000 training steps).",
        f"Measured wall times are of the {size} model"
        + (" (tiny: they show the pipeline's per-step cost, not a real model's)." if size == "debug" else "."),
        source,
    ]
    write_results(
        SCRIPT,
        args,
        table,
        {
            "results": results,
            "projection_source": str(args.full_size_json) if projections else None,
            "projection_inputs": projections,
            "latent_frames": latent_frames,
            "full_size_latent_frames": full_size_frames,
            "model": size,
        },
        notes,
        device,
    )


if __name__ == "__main__":
    main()
