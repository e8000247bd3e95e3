"""Overhead of `TangoCLAPPipeline.__call__` over a bare, hand-written sampling loop on the same components.

Both generate the same clip from the same prompt, seed, scheduler and number of steps with classifier-free
guidance: the pipeline as a user calls it (`pipe(prompt, ...)`, NumPy output) and a minimal loop that encodes
`["", prompt]` once with the tokenizer and text encoder, then per timestep runs `scheduler.scale_model_input`,
the UNet on the guidance batch `[uncond, cond]` with `encoder_attention_mask`, the guidance combination and
`scheduler.step`, then the VAE decoder and the vocoder. Repetitions are interleaved (pipeline, bare, pipeline,
bare, ...) and summarised by medians. Target: pipeline / bare <= 1.05.

By default the components are debug-sized (a UNet a little larger than the debug one, so that it dominates as in
a real model, while a 10 s generation stays under a second per step on a 2-core CPU); `--full` uses Tango's
full-size UNet, VAE and vocoder (random weights) with a small text encoder of the CLAP text tower's width 768.

    python bench/bench_pipeline_overhead.py                       # debug-sized, CPU, fp32
    python bench/bench_pipeline_overhead.py --quick               # smoke run
    python bench/bench_pipeline_overhead.py --full --device cuda --dtype bfloat16 --steps 100
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import common  # noqa: F401  (sets HF_HUB_OFFLINE before diffusers is imported)
import numpy as np
import torch
from common import (
    DTYPES,
    ModuleTimer,
    PeakMemory,
    base_parser,
    build_full_size_components,
    fmt_bytes,
    fmt_ratio,
    fmt_seconds,
    interleaved,
    latent_shape,
    markdown_table,
    setup,
    timed,
    write_results,
)

from pipelines.tango_clap import TangoCLAPPipeline
from pipelines.tango_clap.debug import build_debug_components

SCRIPT = "bench_pipeline_overhead"
TARGET_RATIO = 1.05
PROMPT = "A dog barks twice, then a car passes by in the rain"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__)
    parser.add_argument(
        "--full",
        action="store_true",
        help="Tango's full-size UNet / VAE / vocoder instead of debug-sized ones (a GPU job: about 13 s per "
        "step on a 2-core CPU; with --quick, a reduced-width UNet)",
    )
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: 25; --quick: 4)")
    parser.add_argument("--seconds", type=float, default=None, help="audio length (default: 10; --quick: 2.56)")
    parser.add_argument("--repeats", type=int, default=None, help="timed generations of each (default: 5; --quick: 2)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed generations of each first (default: 1)")
    parser.add_argument(
        "--guidance-scale", type=float, default=3.0, help="classifier-free guidance scale, > 1 (default: 3)"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet (shared by both)")
    parser.add_argument(
        "--progress-bar",
        action="store_true",
        help="keep the pipeline's own per-step progress bar (off by default: it would interleave with this "
        "script's output; the bare loop has none)",
    )
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = 4 if args.quick else 25
    if args.seconds is None:
        args.seconds = 2.56 if args.quick else 10.0
    if args.repeats is None:
        args.repeats = 2 if args.quick else 5
    if args.guidance_scale <= 1.0:
        parser.error("--guidance-scale must be > 1: the bare loop always runs classifier-free guidance")
    return args


def build_components(args: argparse.Namespace) -> dict[str, Any]:
    """Debug-sized components with a wider UNet, or the full-size ones (`--full`; a reduced UNet with `--quick`)."""
    if args.full:
        return build_full_size_components(reduced_unet=args.quick, seed=args.seed)
    # The debug UNet (32, 64) is so small at 10 s that the VAE and vocoder would weigh as much as it; doubling
    # the width makes the denoising loop dominate, as it does in the real model.
    return build_debug_components(
        with_clap_scorer=False,  # the bare loop does not rank candidates
        seed=args.seed,
        unet_block_out_channels=(64, 128),
        unet_attention_heads=(2, 4),
    )


@torch.inference_mode()
def bare_generate(
    components: dict[str, Any],
    prompt: str,
    seconds: float,
    steps: int,
    guidance_scale: float,
    seed: int,
    device: torch.device,
) -> np.ndarray:
    """The sampling loop written by hand, as short as it can be while doing the same work as the pipeline."""
    tokenizer, text_encoder, unet = components["tokenizer"], components["text_encoder"], components["unet"]
    scheduler, vae, vocoder = components["scheduler"], components["vae"], components["vocoder"]
    dtype = unet.dtype
    shape = latent_shape(seconds, unet.config, vae.config, vocoder.config)
    num_samples = round(seconds * vocoder.config.sampling_rate)

    # Unconditional ("") and conditional prompts in one batch: the guidance batch order [uncond, cond].
    tokens = tokenizer(["", prompt], padding="longest", truncation=True, return_tensors="pt")
    mask = tokens.attention_mask.to(device)
    hidden = text_encoder(input_ids=tokens.input_ids.to(device), attention_mask=mask).last_hidden_state.to(dtype)

    scheduler.set_timesteps(steps, device=device)
    generator = torch.Generator(device).manual_seed(seed)
    latents = torch.randn(shape, generator=generator, device=device, dtype=dtype) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(torch.cat([latents, latents]), t)
        noise = unet(model_input, t, encoder_hidden_states=hidden, encoder_attention_mask=mask, return_dict=False)[0]
        uncond, cond = noise.chunk(2)
        noise = uncond + guidance_scale * (cond - uncond)
        latents = scheduler.step(noise, t, latents, generator=generator, return_dict=False)[0]

    mel = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample.squeeze(1)
    return vocoder(mel.to(vocoder.dtype)).float()[:, :num_samples].cpu().numpy()


def model_parts(components: dict[str, Any]) -> dict[str, torch.nn.Module]:
    """The non-nested modules whose time `ModuleTimer` attributes; the rest of a generation is pipeline code."""
    vae = components["vae"]
    parts = {"text encoder": components["text_encoder"], "UNet": components["unet"], "VAE decoder": vae.decoder}
    if vae.post_quant_conv is not None:
        parts["VAE post-quant conv"] = vae.post_quant_conv
    parts["vocoder"] = components["vocoder"]
    return parts


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = setup(args)
    dtype = DTYPES[args.dtype]

    components = build_components(args)
    pipe = TangoCLAPPipeline(**components).to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=not args.progress_bar)
    if args.compile:
        # As the README recommends. The pipeline and the bare loop then call the very same compiled module, and the
        # timing hooks of the instrumented runs sit on the wrapper, outside the compiled graph.
        pipe.unet = torch.compile(pipe.unet)
    components = pipe.components  # the modules as moved and cast by the pipeline
    unet_params = sum(p.numel() for p in pipe.unet.parameters())
    print(
        f"{'full-size' if args.full else 'debug-sized'}{' (reduced UNet, --quick)' if args.full and args.quick else ''} "
        f"components, UNet {unet_params / 1e6:.1f}M parameters, {args.steps} steps, {args.seconds} s, "
        f"{args.dtype}, {device}"
    )

    def run_pipeline() -> np.ndarray:
        generator = torch.Generator(device).manual_seed(args.seed)
        return pipe(
            PROMPT,
            audio_length_in_s=args.seconds,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance_scale,
            generator=generator,
        ).audios

    def run_bare() -> np.ndarray:
        return bare_generate(components, PROMPT, args.seconds, args.steps, args.guidance_scale, args.seed, device)

    # Same seed, same work: the outputs should agree up to float rounding (the pipeline encodes "" and the prompt
    # in two calls, the bare loop in one padded batch). Checked once, outside the timings.
    (pipe_audio, first_pipe_s), (bare_audio, first_bare_s) = timed(run_pipeline, device), timed(run_bare, device)
    max_abs_diff = float(np.abs(pipe_audio - bare_audio).max()) if pipe_audio.shape == bare_audio.shape else None
    peak_audio = float(np.abs(bare_audio).max())

    timings = interleaved(
        {"pipeline": run_pipeline, "bare": run_bare},
        device,
        repeats=args.repeats,
        warmup=max(0, args.warmup - 1),  # the output check above was already one warm-up call of each
        desc="pipeline / bare generations",
    )
    for name, first in (("pipeline", first_pipe_s), ("bare", first_bare_s)):
        timings[name].warmup.insert(0, first)

    # One more instrumented generation of each, outside the timed runs: peak memory (the CPU sampler thread costs
    # a little) and the time inside each model (the hooks synchronise CUDA). The time outside the UNet, VAE and
    # vocoder is the pipeline's own work: unlike the wall clock it hardly varies from run to run, so its
    # difference between the two is the most precise measure of the pipeline's overhead.
    memory: dict[str, PeakMemory] = {}
    parts: dict[str, ModuleTimer] = {}
    instrumented_s: dict[str, float] = {}
    for name, fn in (("bare", run_bare), ("pipeline", run_pipeline)):
        with PeakMemory(device) as mem, ModuleTimer(model_parts(components), device) as timer:
            instrumented_s[name] = timed(fn, device)[1]
        memory[name], parts[name] = mem, timer
    outside = {name: parts[name].outside(instrumented_s[name]) for name in parts}
    # The UNet, VAE and vocoder do the very same work in both; everything else (text encoding, tokenizing, the
    # Python around the models) is what the pipeline may add.
    shared = ("UNet", "VAE decoder", "VAE post-quant conv", "vocoder")
    own = {
        name: instrumented_s[name] - sum(s for part, s in parts[name].seconds.items() if part in shared)
        for name in parts
    }

    pipe_s, bare_s = timings["pipeline"].median, timings["bare"].median
    ratio = pipe_s / bare_s
    paired = [p / b for p, b in zip(timings["pipeline"].samples, timings["bare"].samples)]
    paired_ratio = statistics.median(paired)
    spread = (timings["bare"].maximum - timings["bare"].minimum) / bare_s
    extra_own_s = own["pipeline"] - own["bare"]
    own_ratio = (bare_s + extra_own_s) / bare_s
    rows = [
        [
            f"generation, median of {args.repeats}",
            fmt_seconds(bare_s),
            fmt_seconds(pipe_s),
            fmt_ratio(pipe_s, bare_s),
        ],
        [
            "generation, fastest",
            fmt_seconds(timings["bare"].minimum),
            fmt_seconds(timings["pipeline"].minimum),
            fmt_ratio(timings["pipeline"].minimum, timings["bare"].minimum),
        ],
        ["median of the per-round ratios", "", "", f"{paired_ratio:.2f}x"],
        [
            "all but UNet, VAE, vocoder (instrumented run)",
            fmt_seconds(own["bare"]),
            fmt_seconds(own["pipeline"]),
            f"{own_ratio:.3f}x (noise-free estimate)",
        ],
        [
            "peak memory",
            fmt_bytes(memory["bare"].peak_bytes),
            fmt_bytes(memory["pipeline"].peak_bytes),
            fmt_ratio(memory["pipeline"].peak_bytes, memory["bare"].peak_bytes),
        ],
        [
            "peak memory above start",
            fmt_bytes(memory["bare"].delta_bytes),
            fmt_bytes(memory["pipeline"].delta_bytes),
            fmt_ratio(memory["pipeline"].delta_bytes, memory["bare"].delta_bytes),
        ],
    ]
    table = markdown_table(["measurement", "bare loop (baseline)", "TangoCLAPPipeline", "pipeline / bare"], rows)
    part_rows = []
    for part in list(parts["bare"].seconds) + ["outside the models"]:
        cells = [part]
        for name in ("bare", "pipeline"):
            seconds = outside[name] if part == "outside the models" else parts[name].seconds[part]
            count = parts[name].calls.get(part, 0)
            calls = "" if part == "outside the models" else f", {count} call{'s' if count != 1 else ''}"
            cells.append(f"{fmt_seconds(seconds)} ({100 * seconds / instrumented_s[name]:.1f}%{calls})")
        part_rows.append(cells)
    part_rows.append(["total"] + [fmt_seconds(instrumented_s[name]) for name in ("bare", "pipeline")])
    part_table = markdown_table(["one instrumented generation, by part", "bare loop", "TangoCLAPPipeline"], part_rows)

    verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
    if spread > TARGET_RATIO - 1:
        verdict += " (inconclusive at this noise level)"
    own_verdict = "meets" if own_ratio <= TARGET_RATIO else "MISSES"
    size = "full-size (Tango UNet, AudioLDM VAE, HiFi-GAN)" if args.full else "debug-sized (UNet (64, 128))"
    if args.full and args.quick:
        size = "full-size VAE / vocoder with a reduced-width UNet (--quick)"
    notes = [
        (
            f"Wall clock: pipeline / bare = {ratio:.3f} (ratio of medians; median of the per-round ratios "
            f"{paired_ratio:.3f}): {verdict} the target <= {TARGET_RATIO}. The bare loop's own runs spread over "
            f"{100 * spread:.0f}% of its median, so differences below that are noise."
        ),
        (
            f"Besides the UNet, VAE and vocoder (the same calls in both) the pipeline spends "
            f"{1000 * abs(extra_own_s):.1f} ms {'more' if extra_own_s >= 0 else 'less'} per generation than the bare "
            f"loop ({1000 * extra_own_s / args.steps:+.2f} ms per step): pipeline / bare = {own_ratio:.4f} from its "
            "own work alone (text encoding in two calls, tokenizing twice for the truncation warning, input checks, "
            f"Python), an estimate free of the models' run-to-run noise: {own_verdict} the target."
        ),
        (
            f"{size} components, UNet {unet_params / 1e6:.1f}M parameters, random weights; {args.seconds} s of audio, "
            f"{args.steps} DDPM steps, guidance {args.guidance_scale}, {args.dtype} on {device}"
            f"{', UNet torch.compile-d' if args.compile else ''}; {args.repeats} rounds pipeline / bare interleaved "
            f"after {args.warmup} warm-up each."
        ),
        (
            f"The pipeline ran with its progress bar {'on' if args.progress_bar else 'off'} and without CLAP ranking "
            "(no scorer components); the bare loop runs under torch.inference_mode, the pipeline under its own no_grad."
        ),
        (
            f"Outputs of pipeline and bare loop from the same seed: max |difference| {max_abs_diff:.3g} "
            f"(audio peak {peak_audio:.3g})."
        ),
        f"Memory: {memory['pipeline'].method}.",
    ]
    write_results(
        SCRIPT,
        args,
        table + "\n\n" + part_table,
        {
            "ratio_pipeline_over_bare": ratio,
            "median_paired_ratio": paired_ratio,
            "ratio_from_pipeline_own_time": own_ratio,
            "target_ratio": TARGET_RATIO,
            "extra_own_time_s": extra_own_s,
            "own_time_s": own,
            "timings": timings,
            "instrumented_total_s": instrumented_s,
            "instrumented_parts_s": {name: timer.seconds for name, timer in parts.items()},
            "instrumented_parts_calls": {name: timer.calls for name, timer in parts.items()},
            "time_outside_models_s": outside,
            "memory": {name: mem.to_dict() for name, mem in memory.items()},
            "unet_parameters": unet_params,
            "max_abs_diff_pipeline_vs_bare": max_abs_diff,
            "audio_peak": peak_audio,
            "components": size,
        },
        notes,
        device,
    )


if __name__ == "__main__":
    main()
