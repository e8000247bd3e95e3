"""AF-AudioSet throughput: clips per second of captioning and of CLAP scoring, batched vs one clip at a time.

Baselines, measured in the same run on the same models:
- captioning one clip and one caption per `generate` call, as Audio Flamingo's own inference script and
  AudioSetCaps' pipeline sample (20 calls for a clip's 20 captions), vs `AudioCaptioner.caption` on a batch of
  clips x 20 captions in one call;
- scoring one (clip, caption) pair per CLAP call vs `ClapScorer.score` on a batch (each distinct text embedded once).

Models are random ("tiny": the debug models of the tests; "medium": wider and deeper), since speed does not depend
on the weights. The per-clip cost of the batched path is projected to the 2M clips of AudioSet. On a GPU machine,
`--device cuda --captioner nvidia/audio-flamingo-3-hf --clap laion/clap-htsat-fused` would measure the real models
(not run here: no GPU and no Hub).

    python bench/bench_af_audioset.py [--quick] [--sizes tiny medium] [--clips 8] [--num-captions 20]
"""

from __future__ import annotations

import numpy as np
import torch
from common import PeakMemory, base_parser, benchmark, markdown_table, setup, write_results

from datasets_scripts.captioner import AudioCaptioner
from datasets_scripts.debug_models import build_debug_audio_flamingo3
from datasets_scripts.scorer import ClapScorer
from pipelines.tango_clap.debug import build_debug_clap_scorer

AUDIOSET_CLIPS = 2_000_000
SIZES = {
    "tiny": {"captioner": {}, "clap_scale": 1},
    "medium": {
        "captioner": {"text_hidden_size": 256, "text_layers": 4, "audio_hidden_size": 128, "audio_layers": 2},
        "clap_scale": 4,
    },
}


def make_clips(count: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """`count` 10 s clips of tones in noise, at 16 kHz (captioner) and 48 kHz (CLAP)."""
    rng = np.random.default_rng(seed)
    clips_16k, clips_48k = [], []
    for i in range(count):
        for rate, out in ((16000, clips_16k), (48000, clips_48k)):
            t = np.arange(10 * rate) / rate
            tone = 0.3 * np.sin(2 * np.pi * (200 + 100 * i) * t) + 0.05 * rng.standard_normal(t.size)
            out.append(tone.astype(np.float32))
    return clips_16k, clips_48k


def build_models(size: str, num_captions: int, max_new_tokens: int, device: torch.device, seed: int):
    model, processor = build_debug_audio_flamingo3(seed=seed, **SIZES[size]["captioner"])
    # A random model stops at a random end-of-turn token; without one, every caption is `max_new_tokens` long in
    # both paths, so they do the same work.
    model.generation_config.eos_token_id = None
    captioner = AudioCaptioner(
        model.to(device), processor, f"debug-af3-{size}", num_captions=num_captions, max_new_tokens=max_new_tokens
    )
    single = AudioCaptioner(model, processor, f"debug-af3-{size}", num_captions=1, max_new_tokens=max_new_tokens)
    clap = build_debug_clap_scorer()
    if SIZES[size]["clap_scale"] > 1:
        # A wider CLAP: the debug config scaled up (text and audio towers), random weights.
        from transformers import ClapConfig, ClapModel

        scale = SIZES[size]["clap_scale"]
        config = clap["clap_model"].config.to_dict()
        config["text_config"].update(hidden_size=32 * scale, intermediate_size=64 * scale, num_hidden_layers=4)
        config["audio_config"].update(patch_embeds_hidden_size=16 * scale, hidden_size=32 * scale)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            clap["clap_model"] = ClapModel(ClapConfig.from_dict(config)).eval()
    scorer = ClapScorer(clap["clap_model"].to(device), clap["clap_tokenizer"], clap["clap_feature_extractor"], "debug-clap")
    return captioner, single, scorer


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], dtype_default=None)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--clips", type=int, default=4, help="clips per batched call")
    parser.add_argument("--num-captions", type=int, default=20)
    parser.add_argument("--max-new-tokens", type=int, default=24, help="caption length (real captions: ~20-40 tokens)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.clips, args.num_captions, args.max_new_tokens, args.repeats = ["tiny"], 2, 4, 6, 1
    device = setup(args)
    clips_16k, clips_48k = make_clips(args.clips, args.seed)
    keys = [f"clip{i}@0.00" for i in range(args.clips)]

    rows, raw = [], {}
    for size in args.sizes:
        captioner, single, scorer = build_models(size, args.num_captions, args.max_new_tokens, device, args.seed)
        captions = captioner.caption(keys, clips_16k)

        def caption_batched():
            return captioner.caption(keys, clips_16k)

        def caption_per_clip():
            return [captioner.caption([k], [a]) for k, a in zip(keys, clips_16k)]

        def caption_one_by_one():
            # One clip, one caption per call: a fresh key per sample keeps the samples distinct, as reseeding would.
            return [single.caption([f"{k}#{j}"], [a]) for k, a in zip(keys, clips_16k) for j in range(args.num_captions)]

        def score_batched():
            return scorer.score(clips_48k, captions)

        def score_one_by_one():
            return [scorer.score([a], [[c]]) for a, clip_captions in zip(clips_48k, captions) for c in clip_captions]

        results = {}
        for name, fn in (
            ("caption batched", caption_batched),
            ("caption per clip batched", caption_per_clip),
            ("caption one by one", caption_one_by_one),
            ("score batched", score_batched),
            ("score one by one", score_one_by_one),
        ):
            # The one-by-one paths make hundreds of calls per repetition, which already amortises the first call's
            # warm-up; only the batched calls (one call per repetition) get an untimed warm-up call.
            warmup = 1 if name.endswith("batched") else 0
            with PeakMemory(device) as memory:
                timing = benchmark(fn, device, repeats=args.repeats, warmup=warmup, desc=f"{size}: {name}")
            results[name] = {"seconds": timing.median, "clips_per_s": args.clips / timing.median, "peak": memory.to_dict()}
        per_clip = (results["caption batched"]["seconds"] + results["score batched"]["seconds"]) / args.clips
        raw[size] = {"results": results, "seconds_per_clip_batched": per_clip}
        for stage, label in (
            ("caption", f"caption, {args.clips} clips x {args.num_captions} per call"),
            ("caption per clip", f"caption, 1 clip x {args.num_captions} per call"),
            ("score", f"score, {args.clips} clips per call"),
        ):
            batched = results[f"{stage} batched"]
            baseline = results[f"{stage.split()[0]} one by one"]
            rows.append(
                [
                    f"{size}: {label}",
                    f"{baseline['clips_per_s']:.3g}",
                    f"{batched['clips_per_s']:.3g}",
                    f"{baseline['seconds'] / batched['seconds']:.2f}x",
                    f"{batched['peak']['peak_bytes'] / 2**20:.0f} MiB",
                ]
            )
        rows.append([f"{size}: projection", "", "", "", f"{per_clip * AUDIOSET_CLIPS / 3600:.0f} h for 2M clips"])

    table = markdown_table(
        ["models: stage", "one by one (clips/s)", "batched (clips/s)", "speed-up (target >= 4x)", "peak memory"], rows
    )
    notes = [
        f"{args.clips} clips of 10 s, {args.num_captions} captions each, {args.max_new_tokens} new tokens, "
        f"batched = all clips in one call; random weights, no end-of-caption token (every caption runs to the "
        f"token limit in both paths); device {device}.",
        "Projection: (caption + score seconds per clip, batched) x 2,000,000 clips / 3600, on this device, one worker.",
    ]
    write_results("bench_af_audioset", args, table, raw, notes, device)


if __name__ == "__main__":
    main()
