"""Shared helpers of the benchmarks in `bench/`: arguments, timing, peak memory, machine info, results.

Every script imports this module; nothing here is copied into a script. Timings are wall-clock seconds of whole
calls, with `torch.cuda.synchronize()` around them on CUDA (kernels run asynchronously, so an unsynchronised
timer would measure only the launches). Summaries are medians: robust to the odd slow repetition of a shared
machine.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

# The benchmarks build every model in-process; nothing may reach the Hub. Set before diffusers / transformers
# (and so huggingface_hub) are imported, since huggingface_hub reads these at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch
from tqdm.auto import tqdm

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"


DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}
SHORT_DTYPE_NAMES: dict[str, str] = {"float32": "fp32", "bfloat16": "bf16"}

# Tango pads every clip to 10.24 s: 1024 mel frames of 160 samples at 16 kHz, i.e. latents (8, 256, 16).
TANGO_SECONDS = 10.24
# The CLAP text tower's width (laion/clap-htsat-*, larger_clap_*), the UNet's cross_attention_dim in Tango-CLAP.
CLAP_TEXT_WIDTH = 768


# ---------------------------------------------------------------------------------------------- arguments


def base_parser(
    description: str, dtype_default: str | None = "float32", dtype_help: str | None = None
) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark shares: device, dtype, quick, output, seed, threads."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run (default: cpu)")
    parser.add_argument(
        "--dtype",
        choices=tuple(DTYPES),
        default=dtype_default,
        help=dtype_help or f"dtype of the models (default: {dtype_default})",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small smoke run: checks the script, numbers not representative"
    )
    parser.add_argument(
        "--out-dir", type=Path, default=RESULTS_DIR, help="folder of the JSON results (default: bench/results)"
    )
    parser.add_argument("--name", default=None, help="stem of the JSON file (default: the script's name)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and noise (default: 0)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice, one per core)"
    )
    return parser


def setup(args: argparse.Namespace) -> torch.device:
    """Checks the device, applies `--threads` and seeds torch; returns the `torch.device` to run on."""
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for but torch.cuda.is_available() is False.")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    return torch.device(args.device)


# ---------------------------------------------------------------------------------------------- timing


def synchronize(device: torch.device | str) -> None:
    """Waits for queued CUDA work on `device`; a no-op on the CPU, where every op is synchronous."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device | str) -> tuple[Any, float]:
    """Runs `fn()` once and returns `(result, seconds)`, synchronising CUDA before and after."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return result, time.perf_counter() - start


@dataclass
class Timing:
    """Seconds of the timed repetitions of one measurement (warm-up excluded) and of the warm-up calls."""

    samples: list[float] = field(default_factory=list)
    warmup: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def minimum(self) -> float:
        return min(self.samples) if self.samples else float("nan")

    @property
    def maximum(self) -> float:
        return max(self.samples) if self.samples else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "median_s": self.median,
            "min_s": self.minimum,
            "max_s": self.maximum,
            "samples_s": list(self.samples),
            "warmup_s": list(self.warmup),
        }


def benchmark(
    fn: Callable[[], Any],
    device: torch.device | str,
    repeats: int,
    warmup: int = 1,
    desc: str | None = None,
) -> Timing:
    """
    Times `repeats` calls of `fn` after `warmup` untimed ones (first calls pay for allocator growth, oneDNN /
    cuDNN algorithm selection and, with torch.compile, compilation; their times are kept in `Timing.warmup`).
    """
    timing = Timing()
    bar = tqdm(total=warmup + repeats, desc=desc, leave=False, disable=desc is None)
    for _ in range(warmup):
        timing.warmup.append(timed(fn, device)[1])
        bar.update()
    for _ in range(repeats):
        timing.samples.append(timed(fn, device)[1])
        bar.update()
    bar.close()
    return timing


def interleaved(
    fns: dict[str, Callable[[], Any]],
    device: torch.device | str,
    repeats: int,
    warmup: int = 1,
    desc: str | None = None,
) -> dict[str, Timing]:
    """
    Times several functions in rounds A B A B ...: slow drift of the machine (clock boost, heat, other tenants)
    then hits all of them alike instead of whichever ran last. Each function also gets `warmup` untimed calls,
    interleaved the same way.
    """
    timings = {name: Timing() for name in fns}
    bar = tqdm(total=(warmup + repeats) * len(fns), desc=desc, leave=False, disable=desc is None)
    for round_index in range(warmup + repeats):
        for name, fn in fns.items():
            seconds = timed(fn, device)[1]
            target = timings[name].warmup if round_index < warmup else timings[name].samples
            target.append(seconds)
            bar.update()
    bar.close()
    return timings


class ModuleTimer:
    """
    Seconds spent inside given modules, by forward pre-hooks and hooks, while `with ModuleTimer(...)` is open.

    The modules must not be nested in one another. On CUDA each hook synchronises (so the time lands on the
    module that queued the work), which changes how the caller overlaps with the GPU: use it in separate,
    instrumented runs, not in the timed ones. `outside(total)` is the rest of a call's time: Python, tokenizer,
    scheduler and the small tensor ops between the models.
    """

    def __init__(self, modules: dict[str, torch.nn.Module], device: torch.device | str):
        self.modules = modules
        self.device = torch.device(device)
        self.seconds: dict[str, float] = {name: 0.0 for name in modules}
        self.calls: dict[str, int] = {name: 0 for name in modules}
        self._handles: list[Any] = []
        self._starts: dict[str, float] = {}

    def __enter__(self) -> Self:
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_pre_hook(self._pre(name)))
            self._handles.append(module.register_forward_hook(self._post(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _pre(self, name: str) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: Any) -> None:
            synchronize(self.device)
            self._starts[name] = time.perf_counter()

        return hook

    def _post(self, name: str) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            synchronize(self.device)
            self.seconds[name] += time.perf_counter() - self._starts.pop(name)
            self.calls[name] += 1

        return hook

    def outside(self, total_s: float) -> float:
        """Seconds of `total_s` spent outside the timed modules."""
        return total_s - sum(self.seconds.values())


# ---------------------------------------------------------------------------------------------- memory


def _read_status_kib(key: str) -> int | None:
    """A `kB` field of /proc/self/status (VmRSS, VmHWM, ...) in KiB, or None where /proc is missing."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss_bytes() -> int | None:
    """Resident set size of this process now, from /proc/self/status."""
    kib = _read_status_kib("VmRSS")
    return None if kib is None else kib * 1024


def release_cpu_memory() -> None:
    """
    Frees what Python and glibc hold on to, so that the RSS at the start of a measurement reflects live data:
    `gc.collect()` drops unreachable tensors and `malloc_trim(0)` returns freed heap pages to the kernel
    (otherwise the RSS of a previous phase's freed activations would count towards the next phase's peak).
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """
    Peak memory of the code run inside `with PeakMemory(device) as mem:`.

    CUDA: `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats` (tensors only, not the caching
    allocator's reserve or the CUDA context). CPU: the process's peak resident set size, taken as the larger of
    (a) a sampler thread reading VmRSS from /proc/self/status every `interval_s` and (b) VmHWM, the kernel's own
    high-water mark, reset at entry by writing 5 to /proc/self/clear_refs (Linux >= 4.0; when that is refused,
    only the sampler counts, since VmHWM would then hold the peak of the whole process). Without /proc, falls
    back on `resource.getrusage(RUSAGE_SELF).ru_maxrss` (lifetime peak). No tracemalloc: it would slow the
    measured code and misses memory allocated by torch's C++ allocator anyway.

    After the block: `start_bytes` (in use at entry: weights and whatever else is live), `peak_bytes` and
    `delta_bytes = peak_bytes - start_bytes` (what the measured code added: activations, workspaces, caches).
    """

    def __init__(self, device: torch.device | str, interval_s: float = 0.005):
        self.device = torch.device(device)
        self.interval_s = interval_s
        self.start_bytes: int = 0
        self.peak_bytes: int = 0
        self.method = ""
        self._sampled_peak = 0
        self._hwm_reset = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def delta_bytes(self) -> int:
        return max(0, self.peak_bytes - self.start_bytes)

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = current_rss_bytes()
            if rss is not None and rss > self._sampled_peak:
                self._sampled_peak = rss
            self._stop.wait(self.interval_s)

    def __enter__(self) -> Self:
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_bytes = torch.cuda.memory_allocated(self.device)
            self.method = "torch.cuda.max_memory_allocated"
            return self
        release_cpu_memory()
        rss = current_rss_bytes()
        if rss is None:
            import resource

            self.start_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            self.method = "ru_maxrss (process lifetime peak)"
            return self
        self.start_bytes = self._sampled_peak = rss
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
                clear_refs.write("5")
            self._hwm_reset = True
            self.method = "peak RSS (VmHWM reset at start, and a VmRSS sampler thread)"
        except OSError:
            self.method = f"peak RSS (VmRSS sampled every {self.interval_s * 1000:.0f} ms)"
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
            return
        if self._thread is None:
            import resource

            self.peak_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            return
        self._stop.set()
        self._thread.join()
        peak = self._sampled_peak
        rss = current_rss_bytes()
        if rss is not None:
            peak = max(peak, rss)
        if self._hwm_reset:
            hwm = _read_status_kib("VmHWM")
            if hwm is not None:
                peak = max(peak, hwm * 1024)
        self.peak_bytes = peak

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "start_bytes": self.start_bytes,
            "peak_bytes": self.peak_bytes,
            "delta_bytes": self.delta_bytes,
        }


def module_bytes(*modules: torch.nn.Module) -> int:
    """Bytes of the parameters and buffers of `modules`."""
    total = 0
    for module in modules:
        for tensor in list(module.parameters()) + list(module.buffers()):
            total += tensor.numel() * tensor.element_size()
    return total


def parameter_count(module: torch.nn.Module) -> int:
    """Number of parameters of `module`."""
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------------------- components


def latent_shape(seconds: float, unet_config: Any, vae_config: Any, vocoder_config: Any) -> tuple[int, int, int, int]:
    """
    Latents of one clip, as TangoCLAPPipeline makes them: mel frames of `hop` samples, padded to whole latent
    frames at every UNet level, divided by the VAE's downsampling on both axes. Full size: 10 s -> 1000 mel
    frames -> 1024 -> latents (1, 8, 256, 16). The configs are the models' `.config` or the plain dicts of
    `pipelines.tango_clap.architectures`.
    """

    def get(config: Any, key: str) -> Any:
        return config[key] if isinstance(config, dict) else getattr(config, key)

    vae_scale = 2 ** (len(get(vae_config, "block_out_channels")) - 1)
    multiple = vae_scale * 2 ** (len(get(unet_config, "block_out_channels")) - 1)
    hop = 1
    for rate in get(vocoder_config, "upsample_rates"):
        hop *= rate
    frames = -(-round(seconds * get(vocoder_config, "sampling_rate")) // hop)
    frames = -(-frames // multiple) * multiple
    return (1, get(unet_config, "in_channels"), frames // vae_scale, get(vocoder_config, "model_in_dim") // vae_scale)


def reduced_unet_overrides() -> dict[str, Any]:
    """
    Tango's UNet layout (4 levels, 2 layers per block, same block types) at 1/10 of the width, for `--quick`
    smoke runs of the full-size scripts: 32 channels is the least that GroupNorm(32) allows, heads of width 32.
    """
    return {"block_out_channels": [32, 64, 128, 128], "attention_head_dim": [1, 2, 4, 4]}


def build_full_size_components(
    reduced_unet: bool = False, text_width: int = CLAP_TEXT_WIDTH, seed: int = 0
) -> dict[str, Any]:
    """
    The components of a full-size Tango-CLAP pipeline, randomly initialised from `seed` (fp32, on the CPU, the
    global RNG untouched): Tango's UNet for a `text_width`-wide text encoder, AudioLDM's VAE, the 16 kHz
    HiFi-GAN and Tango's DDPM scheduler. The text encoder is a small debug CLAP text tower of width `text_width`
    (the real CLAP text tower is RoBERTa-base: it runs once per generation, so its size barely matters to the
    timings here). `reduced_unet` narrows the UNet for smoke runs (see `reduced_unet_overrides`).
    """
    from pipelines.tango_clap.architectures import build_scheduler, build_unet, build_vae, build_vocoder
    from pipelines.tango_clap.debug import build_debug_text_encoder, build_debug_tokenizer

    overrides = reduced_unet_overrides() if reduced_unet else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tokenizer = build_debug_tokenizer("clap")
        # Heads of width 64 as in RoBERTa-base; 2 layers keep it cheap.
        text_encoder = build_debug_text_encoder("clap", tokenizer, hidden_size=text_width, num_heads=text_width // 64)
        unet = build_unet(text_width, **overrides).eval()
        vae = build_vae().eval()
        vocoder = build_vocoder()
    return {
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "unet": unet,
        "scheduler": build_scheduler(),
        "vocoder": vocoder,
        "clap_model": None,
        "clap_tokenizer": None,
        "clap_feature_extractor": None,
    }


# ---------------------------------------------------------------------------------------------- contention


def _proc_stat_jiffies() -> list[int] | None:
    """The machine-wide CPU counters of /proc/stat (user nice system idle iowait irq softirq steal), in ticks."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    return [int(v) for v in fields[1:9]] if fields and fields[0] == "cpu" else None


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


# Taken when the first script imports this module, so that `cpu_contention()` covers the whole run.
_RUN_START = (_proc_stat_jiffies(), _own_cpu_seconds())


def cpu_contention() -> dict[str, float] | None:
    """
    How much of the machine's CPU time since this process started benchmarking went to other processes and to
    the hypervisor ("steal"): on a shared or virtual machine both slow the measured code down at random, so the
    timings of a run with high values are noisy. Shares are of all cores' time; None without /proc/stat.
    """
    start, own_start = _RUN_START
    end = _proc_stat_jiffies()
    if start is None or end is None:
        return None
    delta = [b - a for a, b in zip(start, end)]
    total = sum(delta)
    if total <= 0:
        return None
    idle = delta[3] + delta[4]
    steal = delta[7]
    own = (_own_cpu_seconds() - own_start) * os.sysconf("SC_CLK_TCK")
    others = max(0.0, total - idle - steal - own)
    return {
        "own_share": own / total,
        "others_share": others / total,
        "steal_share": steal / total,
        "idle_share": idle / total,
    }


# ---------------------------------------------------------------------------------------------- reporting


def machine_info(device: torch.device | str) -> dict[str, Any]:
    """CPU model, cores, memory, library versions and accelerator of this machine."""
    device = torch.device(device)
    cpu_model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    total_memory = None
    try:
        total_memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu_model": cpu_model,
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_bytes": total_memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "load_average_1_5_15_min": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "cpu_contention": cpu_contention(),
        "device": str(device),
    }
    for package in ("diffusers", "transformers"):
        try:
            info[package] = __import__(package).__version__
        except ImportError:
            info[package] = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["device_name"] = torch.cuda.get_device_name(device)
        info["device_memory_bytes"] = props.total_memory
        info["cuda"] = torch.version.cuda
    else:
        info["device_name"] = f"CPU: {cpu_model}"
    try:
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; the first column is left-aligned, the others right-aligned."""
    align = [":---"] + ["---:"] * (len(headers) - 1)
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_seconds(seconds: float | None) -> str:
    """Seconds with 3 significant digits, in ms below one second, with minutes or hours added above 100 s."""
    if seconds is None or math.isnan(seconds):
        return "n/a"
    if seconds < 0.9995:  # below this, 3 significant digits of ms would round to "1e+03 ms"
        return f"{seconds * 1000:.3g} ms"
    if seconds < 100.0:
        return f"{seconds:.3g} s"
    if seconds < 7200.0:
        return f"{seconds:,.0f} s ({seconds / 60:.1f} min)"
    return f"{seconds:,.0f} s ({seconds / 3600:.1f} h)"


def fmt_bytes(num_bytes: float | None) -> str:
    """Bytes in MiB or GiB."""
    if num_bytes is None:
        return "n/a"
    if abs(num_bytes) >= 1024**3:
        return f"{num_bytes / 1024**3:.2f} GiB"
    return f"{num_bytes / 1024**2:.0f} MiB"


def fmt_ratio(value: float, baseline: float) -> str:
    """`value / baseline` as `0.64x`."""
    if not baseline or math.isnan(value) or math.isnan(baseline):
        return "n/a"
    return f"{value / baseline:.2f}x"


def machine_line(info: dict[str, Any]) -> str:
    """One line naming the machine of a run, printed under each table."""
    return (
        f"{info['date']} | {info['device_name']} | {info['cpu_cores_usable']} cores, {info['torch_threads']} torch "
        f"threads | torch {info['torch']}, diffusers {info['diffusers']}, transformers {info['transformers']}"
    )


def _jsonable(value: Any) -> Any:
    """Makes dataclasses, paths, dtypes and devices JSON-serialisable."""
    if isinstance(value, Timing):
        return value.to_dict()
    if hasattr(value, "__dataclass_fields__"):
        return _jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (Path, torch.dtype, torch.device)):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def write_results(
    script: str,
    args: argparse.Namespace,
    table: str,
    raw: dict[str, Any],
    notes: Sequence[str] = (),
    device: torch.device | str = "cpu",
) -> Path:
    """
    Prints the table, the notes and the machine line, and writes them with the raw numbers, the arguments and
    the machine info to `<args.out_dir>/<args.name or script>.json`. Returns the path written.
    """
    info = machine_info(device)
    print()
    print(table)
    print()
    for note in notes:
        print(f"- {note}")
    print(f"- machine: {machine_line(info)}")
    contention = info["cpu_contention"]
    if contention is not None:
        print(
            f"- CPU time of the whole machine during this run: this process {100 * contention['own_share']:.0f}%, "
            f"other processes {100 * contention['others_share']:.0f}%, hypervisor steal "
            f"{100 * contention['steal_share']:.0f}%, idle {100 * contention['idle_share']:.0f}% "
            "(other processes or steal above a few % make the timings noisy)"
        )
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{args.name or script}.json"
    payload = {
        "script": script,
        "args": _jsonable(vars(args)),
        "machine": info,
        "table_markdown": table,
        "notes": list(notes),
        "raw": _jsonable(raw),
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")
    print(f"- results written to {path}")
    return path
