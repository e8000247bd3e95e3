"""Speed and memory of the full-size Tango-CLAP architecture (random weights), in fp32 and bf16.

Components: Tango's latent UNet for the CLAP text tower's width 768 (`build_unet(768)`), AudioLDM's VAE
(`build_vae()`), the 16 kHz HiFi-GAN (`build_vocoder()`) and Tango's DDPM v-prediction scheduler, for a 10 s
clip, which Tango pads to 10.24 s: latents (1, 8, 256, 16), mel (1, 1024, 64). Measured per variant:

- one denoising step: the UNet on the classifier-free-guidance batch of 2 (random text states (2, 32, 768) with a
  mask) + the guidance combination + `DDPMScheduler.step`;
- the VAE decode of one clip's latents and the vocoder on its mel spectrogram;
- peak memory over all of it (CUDA: `max_memory_allocated`; CPU: peak RSS), and the weights' size.

fp32 is the baseline of the ratios. `--compile` adds torch.compile-d UNet variants and reports their compile
time (first call minus a steady call) separately.

    python bench/bench_full_size.py                        # fp32 and bf16 on the CPU (a few minutes)
    python bench/bench_full_size.py --dtype bfloat16       # one dtype
    python bench/bench_full_size.py --device cuda --compile
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import common  # noqa: F401  (sets HF_HUB_OFFLINE before diffusers is imported)
import torch
from common import (
    CLAP_TEXT_WIDTH,
    DTYPES,
    SHORT_DTYPE_NAMES,
    TANGO_SECONDS,
    PeakMemory,
    Timing,
    base_parser,
    benchmark,
    build_full_size_components,
    fmt_bytes,
    fmt_ratio,
    fmt_seconds,
    latent_shape,
    markdown_table,
    module_bytes,
    parameter_count,
    release_cpu_memory,
    setup,
    write_results,
)
from diffusers import UNet2DConditionModel

from pipelines.tango_clap.architectures import build_scheduler, tango_unet_config

SCRIPT = "bench_full_size"
# Tango's own sampling setting: DDPM at 200 steps (the timesteps visited by the timed steps come from it).
SCHEDULER_STEPS = 200
TEXT_TOKENS = 32


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__, dtype_default=None, dtype_help="one dtype only (default: float32 and bfloat16)")
    parser.add_argument(
        "--seconds", type=float, default=None, help=f"clip length (default: {TANGO_SECONDS}; --quick: 2.56)"
    )
    parser.add_argument("--steps", type=int, default=None, help="timed denoising steps (default: 3; --quick: 1)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before each measurement (default: 1)")
    parser.add_argument(
        "--decode-repeats", type=int, default=None, help="timed VAE / vocoder calls (default: 2; --quick: 1)"
    )
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile-d UNet variants")
    parser.add_argument(
        "--compile-mode", default="default", help="torch.compile mode, e.g. max-autotune (default: default)"
    )
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 2.56 if args.quick else TANGO_SECONDS
    if args.steps is None:
        args.steps = 1 if args.quick else 3
    if args.decode_repeats is None:
        args.decode_repeats = 1 if args.quick else 2
    if args.warmup < 1 and args.compile:
        parser.error("--compile needs --warmup >= 1: the compile time is taken from the first call")
    return args


def run_variant(
    components: dict[str, Any],
    dtype: torch.dtype,
    compiled: bool,
    args: argparse.Namespace,
    device: torch.device,
) -> dict[str, Any]:
    """Times one (dtype, eager / compiled) variant; the modules are cast in place, so variants run dtype by dtype."""
    unet, vae, vocoder = components["unet"], components["vae"], components["vocoder"]
    for module in (unet, vae, vocoder):
        module.to(device=device, dtype=dtype)
    release_cpu_memory()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    unet_fn = torch.compile(unet, mode=args.compile_mode) if compiled else unet

    shape = latent_shape(args.seconds, unet.config, vae.config, vocoder.config)
    generator = torch.Generator(device).manual_seed(args.seed)
    scheduler = build_scheduler()
    scheduler.set_timesteps(SCHEDULER_STEPS, device=device)
    # Guidance batch [uncond, cond]: the empty prompt is 2 tokens (<s></s>), the prompt 20, the rest padding.
    text = torch.randn(
        (2, TEXT_TOKENS, unet.config.cross_attention_dim), generator=generator, device=device, dtype=dtype
    )
    mask = torch.zeros((2, TEXT_TOKENS), dtype=torch.long, device=device)
    mask[0, :2] = 1
    mask[1, :20] = 1
    state = {"latents": torch.randn(shape, generator=generator, device=device, dtype=dtype), "index": 0}

    def denoising_step() -> None:
        t = scheduler.timesteps[state["index"] % len(scheduler.timesteps)]
        state["index"] += 1
        latents = state["latents"]
        model_input = scheduler.scale_model_input(torch.cat([latents, latents]), t)
        noise = unet_fn(model_input, t, encoder_hidden_states=text, encoder_attention_mask=mask, return_dict=False)[0]
        uncond, cond = noise.chunk(2)
        noise = uncond + 3.0 * (cond - uncond)
        state["latents"] = scheduler.step(noise, t, latents, generator=generator, return_dict=False)[0]

    decode_input = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    mel = vae.decode(decode_input).sample.squeeze(1)  # the vocoder's input, computed once outside its timing

    label = f"{SHORT_DTYPE_NAMES[str(dtype).removeprefix('torch.')]}{' compiled' if compiled else ''}"
    with PeakMemory(device) as memory:
        step = benchmark(denoising_step, device, args.steps, args.warmup, desc=f"{label}: denoising steps")
        vae_timing = benchmark(
            lambda: vae.decode(decode_input).sample,
            device,
            args.decode_repeats,
            args.warmup,
            desc=f"{label}: VAE decode",
        )
        vocoder_timing = benchmark(
            lambda: vocoder(mel), device, args.decode_repeats, args.warmup, desc=f"{label}: vocoder"
        )
    finite = bool(torch.isfinite(state["latents"]).all())
    result = {
        "label": label,
        "dtype": str(dtype),
        "compiled": compiled,
        "latent_shape": list(shape),
        "unet_batch": 2,
        "step": step,
        "vae_decode": vae_timing,
        "vocoder": vocoder_timing,
        "memory": memory.to_dict(),
        "weights_bytes": module_bytes(unet, vae, vocoder),
        "compile_s": (step.warmup[0] - step.median) if compiled else None,
        "latents_finite": finite,
    }
    print(
        f"{label}: step {fmt_seconds(step.median)}, VAE {fmt_seconds(vae_timing.median)}, vocoder "
        f"{fmt_seconds(vocoder_timing.median)}, peak {fmt_bytes(memory.peak_bytes)}"
    )
    if compiled:
        torch._dynamo.reset()  # drops the compiled graphs (and their memory) before the next variant
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = setup(args)
    dtypes = [args.dtype] if args.dtype else ["float32", "bfloat16"]

    print(
        "building the full-size components (random weights) ..." if not args.quick else "building (reduced UNet) ..."
    )
    components = build_full_size_components(reduced_unet=args.quick, seed=args.seed)
    unet_params = parameter_count(components["unet"])
    # Tango's paper counts 866M for its FLAN-T5-large text width 1024: count that config too, on the meta device.
    with torch.device("meta"):
        t5_params = parameter_count(UNet2DConditionModel(**tango_unet_config(1024)))
    print(
        f"UNet parameters: {unet_params / 1e6:.1f}M (cross_attention_dim {CLAP_TEXT_WIDTH}); "
        f"{t5_params / 1e6:.1f}M with Tango's FLAN-T5 width 1024"
    )

    variants = []
    with torch.inference_mode():
        for dtype_name in dtypes:
            for compiled in (False, True) if args.compile else (False,):
                variants.append(run_variant(components, DTYPES[dtype_name], compiled, args, device))

    base = variants[0]
    headers = ["measurement"] + [
        f"{v['label']} (baseline)" if i == 0 else f"{v['label']} (x {base['label']})" for i, v in enumerate(variants)
    ]

    def timing_row(name: str, key: str) -> list[str]:
        cells = [name]
        for i, v in enumerate(variants):
            value: Timing = v[key]
            cell = fmt_seconds(value.median)
            cells.append(cell if i == 0 else f"{cell} ({fmt_ratio(value.median, base[key].median)})")
        return cells

    def bytes_row(name: str, get: Any) -> list[str]:
        cells = [name]
        for i, v in enumerate(variants):
            cell = fmt_bytes(get(v))
            cells.append(cell if i == 0 else f"{cell} ({fmt_ratio(get(v), get(base))})")
        return cells

    shape = tuple(base["latent_shape"])
    rows = [
        timing_row(f"denoising step: UNet at batch 2 + DDPM step (median of {args.steps})", "step"),
        timing_row(f"VAE decode, latents {shape} (median of {args.decode_repeats})", "vae_decode"),
        timing_row(f"vocoder, {shape[2] * 4} mel frames (median of {args.decode_repeats})", "vocoder"),
        bytes_row("peak memory", lambda v: v["memory"]["peak_bytes"]),
        bytes_row("peak memory above start (weights loaded)", lambda v: v["memory"]["delta_bytes"]),
        bytes_row("weights (UNet + VAE + vocoder)", lambda v: v["weights_bytes"]),
        ["first denoising step (warm-up)"] + [fmt_seconds(v["step"].warmup[0]) for v in variants],
    ]
    if args.compile:
        rows.append(
            ["compile time (first step - median step)"]
            + [fmt_seconds(v["compile_s"]) if v["compiled"] else "-" for v in variants]
        )
    table = markdown_table(headers, rows)
    vocoder_config = components["vocoder"].config
    mel_frames = shape[2] * 2 ** (len(components["vae"].config.block_out_channels) - 1)
    seconds_audio = mel_frames * math.prod(vocoder_config.upsample_rates) / vocoder_config.sampling_rate
    notes = [
        f"UNet {unet_params / 1e6:.1f}M parameters at cross_attention_dim {CLAP_TEXT_WIDTH} "
        f"({t5_params / 1e6:.1f}M at FLAN-T5-large's 1024, Tango's '866M')"
        + ("; --quick: a reduced-width UNet and a short clip, NOT the full-size numbers." if args.quick else "."),
        (
            f"Clip of {args.seconds} s -> latents {shape} ({seconds_audio:.2f} s of mel frames), UNet batch 2 "
            f"(classifier-free guidance), random weights and inputs, torch.inference_mode(), {device}."
        ),
        f"Memory: {base['memory']['method']}; peak over the denoising steps, VAE decode and vocoder of each variant.",
    ]
    if not all(v["latents_finite"] for v in variants):
        notes.append("Some latents became non-finite (random weights): timings are still valid, values are not.")
    write_results(
        SCRIPT,
        args,
        table,
        {
            "unet_parameters": unet_params,
            "unet_parameters_flan_t5_width": t5_params,
            "seconds": args.seconds,
            "quick": args.quick,
            "variants": variants,
        },
        notes,
        device,
    )


if __name__ == "__main__":
    main()
