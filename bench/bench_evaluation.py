"""Evaluation feature extraction: clips per second of PANNs Cnn14 and VGGish, batched vs one clip per forward pass.

Baseline, measured in the same run on the same models: one clip per forward pass (`batch_size=1`), the way
audioldm_eval embeds clips, vs `extract_features` with `batch_size=16` (clips of the same prepared length stacked
into one forward pass). Both go through the evaluation's own paths, `evaluate_audio._cnn14_features` and
`_vggish_features` (input preparation, the forward passes, per-clip numpy features), with no cache (the weights
fingerprint is computed only when a cache is used, once per evaluation; its cost is timed apart); one more row
times a second, warm run through a `FeatureCache` in a temporary folder.
Timed repetitions are interleaved (one at a time, batched, one at a time, ...); the first call of each mode is an
untimed warm-up, during which peak memory is measured. The features of the two modes are compared (max abs diff).

Models: `Cnn14(CNN14_16K_CONFIG)` (Tango's 16 kHz audioldm_eval protocol) and `VGGish()`, random weights (speed
does not depend on them), in eval mode. Clips: 10 s at 16 kHz, tones in noise, each different.

    python bench/bench_evaluation.py [--quick] [--clips 32] [--batch-size 16] [--repeats 2] [--backbones cnn14 vggish]
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import torch
from common import PeakMemory, base_parser, fmt_bytes, fmt_seconds, interleaved, markdown_table, setup, write_results

from pipelines.evaluation.evaluate_audio import _cnn14_features, _vggish_features
from pipelines.evaluation.features import ClipSet, EvalClip, FeatureCache, weights_fingerprint
from pipelines.evaluation.panns import CNN14_16K_CONFIG, Cnn14
from pipelines.evaluation.vggish import VGGish

SAMPLING_RATE = 16000
TARGET_SPEEDUP = 3.0
BACKBONES = {"cnn14": ("PANNs Cnn14 (16 kHz)", _cnn14_features), "vggish": ("VGGish", _vggish_features)}


def make_clips(count: int, seconds: float, seed: int) -> ClipSet:
    """`count` different clips of `seconds` at 16 kHz: a tone in noise each."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLING_RATE)) / SAMPLING_RATE
    clips = []
    for i in range(count):
        audio = 0.3 * np.sin(2 * np.pi * (150 + 37 * i) * t) + 0.05 * rng.standard_normal(t.size)
        clips.append(EvalClip(key=f"clip{i:04d}", audio=audio.astype(np.float32), sampling_rate=SAMPLING_RATE))
    return ClipSet(clips)


def build_backbone(name: str, device: torch.device, seed: int) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Cnn14(CNN14_16K_CONFIG) if name == "cnn14" else VGGish()
    return model.to(device).eval()


def max_abs_diff(a: dict[str, dict[str, np.ndarray]], b: dict[str, dict[str, np.ndarray]]) -> dict[str, float]:
    """Largest absolute difference of each feature over all clips (same keys in both)."""
    assert a.keys() == b.keys(), "the two modes returned different clips"
    names = next(iter(a.values())).keys()
    return {n: max(float(np.abs(a[k][n].astype(np.float64) - b[k][n]).max()) for k in a) for n in names}


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--clips", type=int, default=32, help="clips per extraction (default: 32)")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (default: 10)")
    parser.add_argument("--batch-size", type=int, default=16, help="clips per forward pass, batched mode")
    parser.add_argument("--repeats", type=int, default=2, help="timed extractions per mode, after a warm-up")
    parser.add_argument("--no-cache-row", action="store_true", help="skip the warm FeatureCache row")
    args = parser.parse_args()
    if args.quick:
        args.clips, args.repeats = 4, 1
    device = setup(args)
    clips = make_clips(args.clips, args.seconds, args.seed)

    rows, raw = [], {"clips": args.clips, "seconds": args.seconds, "batch_size": args.batch_size}
    verdicts = []
    for index, name in enumerate(args.backbones):
        label, features_fn = BACKBONES[name]
        model = build_backbone(name, device, args.seed + index)
        fingerprint_s = time.perf_counter()
        weights_fingerprint(model)
        fingerprint_s = time.perf_counter() - fingerprint_s
        modes = {
            "one at a time (batch 1)": lambda model=model, fn=features_fn: fn(model, clips, 1, None),
            f"batched (batch {args.batch_size})": lambda model=model, fn=features_fn: fn(
                model, clips, args.batch_size, None
            ),
        }
        # Warm-up call of each mode, untimed, with its peak memory; its outputs are the compared features.
        peaks, outputs = {}, {}
        for mode, fn in modes.items():
            with PeakMemory(device) as memory:
                start = time.perf_counter()
                outputs[mode] = fn()
                warmup_s = time.perf_counter() - start
            peaks[mode] = {**memory.to_dict(), "warmup_s": warmup_s}
        diff = max_abs_diff(*outputs.values())
        reference = outputs["one at a time (batch 1)"]
        scale = {n: max(float(np.abs(f[n]).max()) for f in reference.values()) for n in diff}
        del outputs, reference
        print(f"{label}: max abs diff batched vs one at a time: {diff} (max |feature|: {scale})")
        timings = interleaved(modes, device, repeats=args.repeats, warmup=0, desc=label)

        results = {}
        for mode, timing in timings.items():
            results[mode] = {
                "timing": timing,
                "seconds": timing.median,
                "clips_per_s": args.clips / timing.median,
                "peak": peaks[mode],
            }
        if not args.no_cache_row:
            with tempfile.TemporaryDirectory(prefix="bench-eval-cache-") as folder:
                cache = FeatureCache(folder)
                cold_start = time.perf_counter()
                features_fn(model, clips, args.batch_size, cache)
                cold_s = time.perf_counter() - cold_start
                cache.hits = cache.misses = 0
                warm_times = []
                with PeakMemory(device) as memory:
                    for _ in range(args.repeats):
                        start = time.perf_counter()
                        features_fn(model, clips, args.batch_size, cache)
                        warm_times.append(time.perf_counter() - start)
                warm_s = float(np.median(warm_times))
                results["warm FeatureCache"] = {
                    "seconds": warm_s,
                    "samples_s": warm_times,
                    "clips_per_s": args.clips / warm_s,
                    "cold_fill_s": cold_s,
                    "hits": cache.hits,
                    "misses": cache.misses,
                    "peak": memory.to_dict(),
                }
        raw[name] = {
            "results": results,
            "max_abs_diff": diff,
            "max_abs_feature": scale,
            "fingerprint_s": fingerprint_s,
        }

        baseline = results["one at a time (batch 1)"]
        for mode, result in results.items():
            ratio = baseline["seconds"] / result["seconds"]
            rows.append(
                [
                    label,
                    mode,
                    f"{result['clips_per_s']:.3g}",
                    f"{ratio:.2f}x",
                    fmt_seconds(result["seconds"]),
                    fmt_bytes(result["peak"]["delta_bytes"]),
                ]
            )
        batched = results[f"batched (batch {args.batch_size})"]
        speedup = baseline["seconds"] / batched["seconds"]
        met = "met" if speedup >= TARGET_SPEEDUP else "NOT met"
        verdicts.append(
            f"{label}: batched {speedup:.2f}x one at a time: target >= {TARGET_SPEEDUP:.0f}x {met} on {device}; "
            f"max abs diff of the features {', '.join(f'{k} {v:.2g}' for k, v in diff.items())}; weights "
            f"fingerprint {fmt_seconds(fingerprint_s)} per extraction call (included in every row)."
        )
        del model

    table = markdown_table(
        [
            "backbone",
            "mode",
            "clips/s",
            "x one at a time",
            f"{args.clips} clips (median of {args.repeats})",
            "peak memory above start",
        ],
        rows,
    )
    notes = [
        (
            f"{args.clips} clips of {args.seconds:g} s at 16 kHz, random weights, {device}, fp32; through "
            "evaluate_audio._cnn14_features / _vggish_features (prepare, fingerprint, forward, numpy features), "
            "no cache except the FeatureCache row (second run over a cache filled by a first one)."
        ),
        "VGGish one at a time already runs each clip's 10 examples (0.96 s each) in one forward pass.",
        *verdicts,
    ]
    write_results("bench_evaluation", args, table, raw, notes, device)


if __name__ == "__main__":
    main()
