"""Training throughput and peak memory of one optimisation step of `training/train_tango_clap.py` (random weights).

One step is what the training script does per batch:

- on-the-fly: `TangoMelSpectrogram` on the batch's 16 kHz waveforms (10.24 s = 163,840 samples -> 1024 frames),
  the frozen VAE's encode (no grad), the frozen text encoder on the captions (`pipe.encode_text`, no grad),
  `sample_latents`, condition dropout to `""` (`drop_conditions`), `diffusion_loss` (v-prediction, Min-SNR
  gamma 5), backward, gradient clipping at 1.0 and an AdamW step;
- pre-computed: the same from stored posterior mean / log-variance and text hidden states (what
  `training/precompute_latents.py` writes): no mel, VAE or text encoder in the step.

Each of the four configurations (on-the-fly / pre-computed x gradient checkpointing off / on) of each UNet size
runs in its own subprocess (this script re-invoked with `--_one`): peak CPU memory is a per-process high-water
mark, and the allocator keeps what a previous configuration freed. In every configuration the VAE and the text
encoder are loaded (the training script loads the whole pipeline either way), so their weights count alike.

Components: the UNet of a `TANGO_UNET_SIZES` size for the CLAP text width 768 ("tango" = the paper's UNet,
859.5M parameters at this width), AudioLDM's VAE (`build_vae()`), a random `ClapTextModelWithProjection` of
RoBERTa-base's sizes (768 wide, 12 layers, 12 heads) with the byte-level debug tokenizer (vocabulary size does not
matter for speed), Tango's v-prediction DDPM scheduler. fp32 by default; `--dtype bfloat16` does what
`--mixed_precision bf16` does (frozen models in bf16, the UNet's forward under autocast).

    python bench/bench_training.py                         # tango-tiny at batch 4 and tango at batch 1
    python bench/bench_training.py --repeats 2             # the same, 2 timed steps each (25 min here, under load)
    python bench/bench_training.py --sizes tango-tiny:4    # one size
    python bench/bench_training.py --quick                 # debug UNet, 1.28 s clips: a smoke run (~1 min)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
from typing import Any, Self

import common  # first: sets HF_HUB_OFFLINE before diffusers is imported
import torch
from common import (
    CLAP_TEXT_WIDTH,
    DTYPES,
    SHORT_DTYPE_NAMES,
    TANGO_SECONDS,
    PeakMemory,
    Timing,
    base_parser,
    current_rss_bytes,
    fmt_bytes,
    fmt_ratio,
    fmt_seconds,
    markdown_table,
    module_bytes,
    parameter_count,
    release_cpu_memory,
    setup,
    synchronize,
    write_results,
)

SCRIPT = "bench_training"
RESULT_MARKER = "@@BENCH_TRAINING_RESULT@@ "
SAMPLING_RATE = 16000
HOP_LENGTH = 160
# The training script's defaults (Tango's recipe): Min-SNR gamma 5 as the issue asks, condition dropout 0.1,
# AdamW lr 3e-5, betas (0.9, 0.999), weight decay 1e-2, eps 1e-8, gradient clipping at 1.0.
SNR_GAMMA = 5.0
CONDITION_DROPOUT = 0.1
ADAMW = {"lr": 3e-5, "betas": (0.9, 0.999), "weight_decay": 1e-2, "eps": 1e-8}
MAX_GRAD_NORM = 1.0
# AudioCaps-like captions; the byte-level debug tokenizer makes one token per character.
CAPTIONS = [
    "A dog barks in the rain",
    "Birds chirp as wind blows",
    "A man speaks over music",
    "A car engine idles nearby",
]
# Per process, beyond this resident size the measured child stops itself (the machine has 24 GiB in all).
DEFAULT_MEMORY_LIMIT_GIB = 20.0
# (data path, gradient checkpointing) by name; on-the-fly without checkpointing is the baseline of the speed ratios.
CONFIGS: dict[str, tuple[str, bool]] = {
    "otf": ("on-the-fly", False),
    "pre": ("pre-computed", False),
    "otf-ckpt": ("on-the-fly", True),
    "pre-ckpt": ("pre-computed", True),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = base_parser(
        __doc__,
        dtype_default="float32",
        dtype_help="float32 (default) or bfloat16 = the training script's --mixed_precision bf16",
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=None,
        metavar="SIZE:BATCH",
        help="UNet sizes (keys of TANGO_UNET_SIZES) and batch sizes (default: tango-tiny:4 tango:1; --quick: debug:2)",
    )
    parser.add_argument(
        "--seconds", type=float, default=None, help=f"clip length (default: {TANGO_SECONDS}; --quick: 1.28)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed steps per configuration (default: 2 for the full-size UNet, 5 for the others; --quick: 2)",
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before the timed ones (default: 1)")
    parser.add_argument(
        "--text-layers", type=int, default=None, help="text encoder layers (default: 12, RoBERTa-base; --quick: 2)"
    )
    parser.add_argument(
        "--memory-limit-gib",
        type=float,
        default=DEFAULT_MEMORY_LIMIT_GIB,
        help="a configuration whose process would exceed this resident size is skipped or stopped "
        f"(default: {DEFAULT_MEMORY_LIMIT_GIB})",
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        choices=tuple(CONFIGS),
        default=list(CONFIGS),
        help="configurations measured for each size: on-the-fly / pre-computed, without / with gradient "
        "checkpointing (default: all four)",
    )
    parser.add_argument("--_one", default=None, help=argparse.SUPPRESS)  # internal: SIZE:BATCH:DATA:CKPT
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = ["debug:2"] if args.quick else ["tango-tiny:4", "tango:1"]
    if args.seconds is None:
        args.seconds = 1.28 if args.quick else TANGO_SECONDS
    if args.text_layers is None:
        args.text_layers = 2 if args.quick else 12
    if args.warmup < 1:
        parser.error("--warmup must be >= 1: the first step allocates the AdamW states and gradients")
    from pipelines.tango_clap.architectures import TANGO_UNET_SIZES

    for spec in args.sizes:
        size, _, batch = spec.partition(":")
        if size not in TANGO_UNET_SIZES or not batch.isdigit() or int(batch) < 1:
            parser.error(f"--sizes takes SIZE:BATCH with SIZE in {sorted(TANGO_UNET_SIZES)}, got {spec!r}")
    return args


def repeats_for(size: str, args: argparse.Namespace) -> int:
    if args.repeats is not None:
        return args.repeats
    if args.quick:
        return 2
    return 2 if size == "tango" else 5


def clip_shape(seconds: float) -> tuple[int, int]:
    """Samples at 16 kHz and mel frames of a clip, as `training/components.py::frames_for` computes them."""
    num_samples = round(seconds * SAMPLING_RATE)
    frames = num_samples // HOP_LENGTH
    if frames == 0 or frames % 32:
        raise SystemExit(f"--seconds {seconds} gives {frames} mel frames; the UNet needs a multiple of 32.")
    return num_samples, frames


# ---------------------------------------------------------------------------------------------- one configuration


class MemoryGuard:
    """Stops this process (exit code 3) as soon as its resident size passes `limit_bytes`; polled every 20 ms."""

    EXIT_CODE = 3

    def __init__(self, limit_bytes: int):
        self.limit_bytes = limit_bytes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-guard", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            rss = current_rss_bytes()
            if rss is not None and rss > self.limit_bytes:
                print(
                    f"memory guard: resident size {fmt_bytes(rss)} passed the limit {fmt_bytes(self.limit_bytes)}; "
                    "stopping this configuration",
                    file=sys.stderr,
                    flush=True,
                )
                os._exit(self.EXIT_CODE)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()


def build_text_encoder(tokenizer: Any, layers: int) -> torch.nn.Module:
    """A random CLAP text tower (`ClapTextModelWithProjection`) of RoBERTa-base's sizes, `layers` deep."""
    from transformers import ClapTextConfig, ClapTextModelWithProjection

    config = ClapTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=CLAP_TEXT_WIDTH,
        num_hidden_layers=layers,
        num_attention_heads=CLAP_TEXT_WIDTH // 64,
        intermediate_size=4 * CLAP_TEXT_WIDTH,
        max_position_embeddings=tokenizer.model_max_length + 2,  # RoBERTa positions start after the padding index
        projection_dim=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return ClapTextModelWithProjection(config).eval()


def run_one(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Builds the models of one configuration, runs warm-up and timed optimisation steps, returns the numbers."""
    from pipelines.tango_clap.architectures import TANGO_UNET_SIZES, build_scheduler, build_unet, build_vae
    from pipelines.tango_clap.debug import build_debug_tokenizer
    from pipelines.tango_clap.pipeline_tango_clap import TangoCLAPPipeline
    from training.front_end import TangoMelSpectrogram
    from training.objective import diffusion_loss, drop_conditions, encode_audio, sample_latents, step_generator

    size, batch, data, ckpt = args._one.split(":")
    batch, ckpt = int(batch), ckpt == "ckpt"
    precomputed = data == "pre-computed"
    weight_dtype = DTYPES[args.dtype]
    num_samples, frames = clip_shape(args.seconds)

    build_start = time.perf_counter()
    torch.manual_seed(args.seed)
    tokenizer = build_debug_tokenizer("clap", model_max_length=77)
    text_encoder = build_text_encoder(tokenizer, args.text_layers)
    vae = build_vae().eval()
    unet = build_unet(CLAP_TEXT_WIDTH, **TANGO_UNET_SIZES[size])
    # TangoCLAPPipeline only for its encode_text (tokenisation + the text tower); the vocoder is not needed.
    pipe = TangoCLAPPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=build_scheduler(), vocoder=None
    )
    for frozen in (vae, text_encoder):
        frozen.requires_grad_(False)
        frozen.to(device, dtype=weight_dtype)
    unet.to(device)
    unet.train()
    if ckpt:
        unet.enable_gradient_checkpointing()
    front_end = TangoMelSpectrogram().to(device)
    scheduler = pipe.scheduler
    trainable = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, **ADAMW)
    scaling_factor = float(vae.config.scaling_factor)
    build_s = time.perf_counter() - build_start

    # The batch: random noise waveforms at the front end's level (peak 0.5), AudioCaps-like captions.
    generator = torch.Generator().manual_seed(args.seed)
    waveforms = (torch.rand((batch, num_samples), generator=generator) - 0.5).to(device)
    captions = [CAPTIONS[i % len(CAPTIONS)] for i in range(batch)]
    with torch.no_grad():
        empty_hidden, empty_mask = pipe.encode_text([""], device=device)
        stored = None
        if precomputed:
            # What precompute_latents.py stores: the posterior's mean / log-variance and the text encodings.
            mean, logvar = encode_audio(pipe, front_end, waveforms, frames)
            hidden, mask = pipe.encode_text(captions, device=device)
            stored = {"mean": mean, "logvar": logvar, "hidden": hidden, "mask": mask}
            del waveforms
    state = {"step": 0, "encode_s": [], "loss": []}

    def optimisation_step() -> None:
        step_gen = step_generator(args.seed, state["step"], 0)
        state["step"] += 1
        if precomputed:
            mean, logvar = stored["mean"].to(weight_dtype), stored["logvar"].to(weight_dtype)
            hidden, mask = stored["hidden"].to(weight_dtype), stored["mask"]
        else:
            synchronize(device)
            encode_start = time.perf_counter()
            mean, logvar = encode_audio(pipe, front_end, waveforms, frames)
            with torch.no_grad():
                hidden, mask = pipe.encode_text(captions, device=device)
            synchronize(device)
            state["encode_s"].append(time.perf_counter() - encode_start)
        latents = sample_latents(mean.float(), logvar.float(), scaling_factor, step_gen).to(weight_dtype)
        drop = torch.rand(len(captions), generator=step_gen) < CONDITION_DROPOUT
        hidden, mask = drop_conditions(hidden, mask, empty_hidden, empty_mask, drop)
        with torch.autocast(device.type, dtype=weight_dtype, enabled=weight_dtype != torch.float32):
            loss = diffusion_loss(
                unet, scheduler, latents, hidden.to(weight_dtype), mask, step_gen, SNR_GAMMA, noise_offset=0.0
            )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, MAX_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad()
        state["loss"].append(float(loss.detach()))

    repeats = repeats_for(size, args)
    label = f"{size} b{batch} {data} ckpt {'on' if ckpt else 'off'}"
    warmup, timing = Timing(), Timing()
    with PeakMemory(device) as warm_memory:
        for _ in range(args.warmup):
            synchronize(device)
            start = time.perf_counter()
            optimisation_step()
            synchronize(device)
            warmup.warmup.append(time.perf_counter() - start)
            print(f"{label}: warm-up step {fmt_seconds(warmup.warmup[-1])}", file=sys.stderr, flush=True)
    with PeakMemory(device) as step_memory:
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            optimisation_step()
            synchronize(device)
            timing.samples.append(time.perf_counter() - start)
            print(f"{label}: step {fmt_seconds(timing.samples[-1])}", file=sys.stderr, flush=True)
    timing.warmup = warmup.warmup
    peak = max(warm_memory.peak_bytes, step_memory.peak_bytes)
    encode_steady = state["encode_s"][args.warmup :]
    adam_state_bytes = sum(
        t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)
    )
    return {
        "size": size,
        "batch": batch,
        "data": data,
        "gradient_checkpointing": ckpt,
        "label": label,
        "step": timing,
        "samples_per_s": batch / timing.median,
        "encode_s": encode_steady,
        "encode_median_s": sorted(encode_steady)[len(encode_steady) // 2] if encode_steady else None,
        "memory_warmup": warm_memory.to_dict(),
        "memory_steps": step_memory.to_dict(),
        "start_bytes": warm_memory.start_bytes,
        "peak_bytes": peak,
        "peak_above_start_bytes": max(0, peak - warm_memory.start_bytes),
        # Above the RSS at the start of the timed steps, which already holds the AdamW states (the gradients are
        # freed by zero_grad): the gradients, activations and temporaries of one step.
        "step_transient_bytes": step_memory.delta_bytes,
        "unet_parameters": parameter_count(unet),
        "unet_bytes": module_bytes(unet),
        "vae_bytes": module_bytes(vae),
        "text_encoder_bytes": module_bytes(text_encoder),
        "adam_state_bytes": adam_state_bytes,
        "text_tokens": int(pipe._tokenize(captions)[0].shape[1]),
        "build_s": build_s,
        "losses": state["loss"],
        "loss_finite": all(math.isfinite(v) for v in state["loss"]),
        # Shares of the machine's CPU time during this configuration's process (build + steps): other processes
        # on a 2-core machine slow a 2-thread torch step down far more than their share.
        "cpu_contention": common.cpu_contention(),
    }


# ---------------------------------------------------------------------------------------------- orchestration


def available_memory_bytes() -> int | None:
    """MemAvailable of /proc/meminfo."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def estimated_bytes(size: str) -> int:
    """
    A floor on a configuration's resident size, for the check before it starts: the UNet's weights, gradients
    and two AdamW states (16 bytes a parameter in fp32) plus ~2 GiB for the VAE, the text encoder, the libraries
    and activations.
    """
    from diffusers import UNet2DConditionModel

    from pipelines.tango_clap.architectures import TANGO_UNET_SIZES, tango_unet_config

    with torch.device("meta"):
        params = parameter_count(UNet2DConditionModel(**tango_unet_config(CLAP_TEXT_WIDTH, **TANGO_UNET_SIZES[size])))
    return params * 16 + 2 * 1024**3


def child_argv(args: argparse.Namespace, one: str) -> list[str]:
    argv = [sys.executable, os.path.abspath(__file__), "--_one", one, "--device", args.device]
    argv += ["--dtype", args.dtype, "--seconds", str(args.seconds), "--warmup", str(args.warmup)]
    argv += ["--seed", str(args.seed), "--text-layers", str(args.text_layers)]
    argv += ["--memory-limit-gib", str(args.memory_limit_gib)]
    if args.repeats is not None:
        argv += ["--repeats", str(args.repeats)]
    if args.threads is not None:
        argv += ["--threads", str(args.threads)]
    if args.quick:
        argv.append("--quick")
    return argv


def run_configuration(args: argparse.Namespace, size: str, batch: int, data: str, ckpt: bool) -> dict[str, Any]:
    """Runs one configuration in a fresh process; its stderr (progress) passes through, its stdout holds the JSON."""
    one = f"{size}:{batch}:{data}:{'ckpt' if ckpt else 'nockpt'}"
    label = f"{size} b{batch} {data} ckpt {'on' if ckpt else 'off'}"
    limit = int(args.memory_limit_gib * 1024**3)
    need = estimated_bytes(size)
    available = available_memory_bytes()
    if need > limit or (available is not None and need > available - 1024**3):
        reason = (
            f"skipped: needs at least {fmt_bytes(need)}, limit {fmt_bytes(limit)}, available {fmt_bytes(available)}"
        )
        print(f"{label}: {reason}", flush=True)
        return {
            "label": label,
            "size": size,
            "batch": batch,
            "data": data,
            "gradient_checkpointing": ckpt,
            "error": reason,
        }
    print(f"{label}: running (available memory {fmt_bytes(available)}) ...", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(child_argv(args, one), stdout=subprocess.PIPE, text=True, cwd=common.REPO_ROOT, check=False)
    wall = time.perf_counter() - start
    results = [line[len(RESULT_MARKER) :] for line in proc.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if proc.returncode != 0 or not results:
        reason = (
            f"stopped by the memory guard above {fmt_bytes(limit)}"
            if proc.returncode == MemoryGuard.EXIT_CODE
            else f"stopped by signal {-proc.returncode}"
            if proc.returncode < 0
            else f"failed with exit code {proc.returncode}"
        )
        print(f"{label}: {reason}", flush=True)
        return {
            "label": label,
            "size": size,
            "batch": batch,
            "data": data,
            "gradient_checkpointing": ckpt,
            "error": reason,
            "process_s": wall,
        }
    result = json.loads(results[-1])
    result["process_s"] = wall
    print(
        f"{label}: {fmt_seconds(result['step']['median_s'])} per step, {result['samples_per_s']:.3g} samples/s, "
        f"peak {fmt_bytes(result['peak_bytes'])} ({fmt_bytes(result['peak_above_start_bytes'])} above start), "
        f"process {fmt_seconds(wall)}",
        flush=True,
    )
    return result


def build_table(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    headers = [
        "UNet, batch: data, grad checkpointing",
        "s / step",
        "samples/s (x on-the-fly)",
        "mel + VAE + text in step",
        "peak memory",
        "peak above start (x ckpt off)",
        "step transient (x ckpt off)",
        "CPU taken by other processes",
    ]
    index = {(r["size"], r["batch"], r["data"], r["gradient_checkpointing"]): r for r in results}
    rows = []
    for r in results:
        name = f"{r['size']}, {r['batch']}: {r['data']}, ckpt {'on' if r['gradient_checkpointing'] else 'off'}"
        if "error" in r:
            rows.append([name, r["error"], "", "", "", "", "", ""])
            continue
        steps = len(r["step"]["samples_s"])
        speed_base = index.get((r["size"], r["batch"], "on-the-fly", r["gradient_checkpointing"]))
        mem_base = index.get((r["size"], r["batch"], r["data"], False))
        speed = f"{r['samples_per_s']:.3g}"
        if speed_base is not None and "error" not in speed_base and speed_base is not r:
            speed += f" ({fmt_ratio(r['samples_per_s'], speed_base['samples_per_s'])})"
        above = fmt_bytes(r["peak_above_start_bytes"])
        transient = fmt_bytes(r["step_transient_bytes"])
        if mem_base is not None and "error" not in mem_base and mem_base is not r:
            above += f" ({fmt_ratio(r['peak_above_start_bytes'], mem_base['peak_above_start_bytes'])})"
            transient += f" ({fmt_ratio(r['step_transient_bytes'], mem_base['step_transient_bytes'])})"
        encode = "-"
        if r["encode_median_s"] is not None:
            encode = f"{fmt_seconds(r['encode_median_s'])} ({100 * r['encode_median_s'] / r['step']['median_s']:.0f}%)"
        contention = r.get("cpu_contention")
        others = "n/a" if not contention else f"{100 * contention['others_share']:.0f}%"
        rows.append(
            [
                name,
                f"{fmt_seconds(r['step']['median_s'])} (median of {steps})",
                speed,
                encode,
                fmt_bytes(r["peak_bytes"]),
                above,
                transient,
                others,
            ]
        )
    return markdown_table(headers, rows)


def _own_and_children_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = setup(args)
    if args._one is not None:
        with MemoryGuard(int(args.memory_limit_gib * 1024**3)):
            result = run_one(args, device)
        release_cpu_memory()
        print(RESULT_MARKER + json.dumps(common._jsonable(result)), flush=True)
        return

    # The measurements run in child processes: count their CPU time as this run's, not as "other processes", in
    # the contention line of write_results (common's counter takes this process's own time only; it was zero for
    # the children when common was imported, so the baseline it took stays right).
    common._own_cpu_seconds = _own_and_children_cpu_seconds
    run_start = time.perf_counter()
    results = []
    for spec in args.sizes:
        size, _, batch = spec.partition(":")
        for config in args.configs:
            data, ckpt = CONFIGS[config]
            results.append(run_configuration(args, size, int(batch), data, ckpt))
    total_s = time.perf_counter() - run_start

    table = build_table(results, args)
    num_samples, frames = clip_shape(args.seconds)
    done = [r for r in results if "error" not in r]
    dtype_name = SHORT_DTYPE_NAMES[args.dtype]
    sizes = {}
    for r in done:
        sizes.setdefault(r["size"], r)
    notes = [
        "One step = mel + VAE encode + text encoder (on-the-fly only) + sample_latents + condition dropout + "
        f"v-prediction diffusion_loss (Min-SNR gamma {SNR_GAMMA:g}) + backward + clip_grad_norm_ + AdamW step; "
        f"{dtype_name}"
        + (" (frozen models bf16, UNet under autocast)" if args.dtype == "bfloat16" else "")
        + f", {device}, random weights and noise waveforms.",
        f"Clips of {args.seconds} s = {num_samples} samples -> {frames} mel frames -> latents (8, {frames // 4}, 16); "
        + (
            f"captions of {done[0]['text_tokens']} tokens; text encoder: CLAP text tower 768 wide, "
            f"{args.text_layers} layers."
            if done
            else ""
        ),
        "UNets: "
        + "; ".join(
            f"{s} {r['unet_parameters'] / 1e6:.1f}M parameters ({fmt_bytes(r['unet_bytes'])}, AdamW states "
            f"{fmt_bytes(r['adam_state_bytes'])})"
            for s, r in sizes.items()
        )
        + (
            f"; VAE {fmt_bytes(done[0]['vae_bytes'])}, text encoder {fmt_bytes(done[0]['text_encoder_bytes'])} "
            "(loaded in every configuration, as the training script does)."
            if done
            else ""
        ),
        (
            "Each configuration in its own process; 'start' = resident size with the models built, before the "
            "first "
            "step; 'peak above start' includes the gradients and AdamW states the first step allocates; 'step "
            "transient' = peak of the timed steps above their start (AdamW states already resident): gradients, "
            "activations, temporaries. Ratios: samples/s vs on-the-fly with the same checkpointing; memory vs "
            "checkpointing off with the same data path."
        ),
        f"Memory: {done[0]['memory_steps']['method']}." if done else "Memory: no configuration completed.",
        (
            "CPU taken by other processes: their share of all cores' time while that configuration's process ran "
            "(50% = one of 2 cores); a 2-thread torch step slows down by much more than that share."
        ),
        f"Whole run: {fmt_seconds(total_s)}.",
    ]
    if args.quick:
        notes.insert(0, "--quick: debug-size UNet, short clips and a 2-layer text encoder: NOT representative.")
    if any(not r["loss_finite"] for r in done):
        notes.append("Some losses were not finite (random weights): timings are still valid.")
    write_results(
        SCRIPT,
        args,
        table,
        {"total_s": total_s, "seconds": args.seconds, "quick": args.quick, "configurations": results},
        notes,
        device,
    )


if __name__ == "__main__":
    main()
