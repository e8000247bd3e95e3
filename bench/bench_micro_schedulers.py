"""Quality against speed on a trained micro-reproduction model: Tango's DDPM at 200 steps vs DDIM and DPM-Solver++ at
10 to 50 steps, with FD, CLAP score and event accuracy against the world's test captions (the world's own backbones,
`training.micro.evaluation`) and the wall time of generating them all.

This is the measurement the full-size `bench_steps_to_quality.py` could only project: every sampler here runs a
trained model. The baseline of the ratios is DDPM-200; the default step count of the micro model is the cheapest
setting whose FD and event accuracy stay within the run-to-run spread of DDPM-200's.

    python bench/bench_micro_schedulers.py --run runs/micro [--model af-tau0.123+captioned]
    python bench/bench_micro_schedulers.py --run runs/micro --quick     # DDPM-200, DPM-Solver++ 25 only
"""

from __future__ import annotations

import json
from pathlib import Path

import common  # noqa: F401  (sets HF_HUB_OFFLINE before diffusers is imported)
from common import base_parser, markdown_table, setup, write_results
from tqdm.auto import tqdm

SCRIPT = "bench_micro_schedulers"
SETTINGS = [("ddpm", 200)] + [(s, n) for s in ("ddim", "dpmsolver++") for n in (10, 25, 50)]
QUICK_SETTINGS = [("ddpm", 200), ("dpmsolver++", 25)]


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--run", required=True, type=Path, help="A finished `training.micro.reproduce` folder.")
    parser.add_argument("--model", default=None, help="A model of the run (default: the embedded default's).")
    parser.add_argument("--guidance", type=float, default=3.0)
    args = parser.parse_args()
    setup(args)

    from training.micro.evaluation import evaluate_micro_pipeline
    from training.micro.reproduce import ReproductionConfig, world_clips

    config = ReproductionConfig(**json.loads((args.run / "config.json").read_text()))
    report = json.loads((args.run / "report.json").read_text())
    name = args.model or max(report["results"], key=lambda r: (r["event_accuracy"], r["CLAP"]))["name"]
    clips = world_clips(config, "test")
    results = []
    for scheduler, steps in tqdm(QUICK_SETTINGS if args.quick else SETTINGS, desc="samplers"):
        out = args.run / "bench_schedulers" / name / f"{scheduler}-{steps}"
        for stale in (out / "generated").glob("*.wav"):  # time the whole generation, not a resumed one
            stale.unlink()
        metrics = evaluate_micro_pipeline(
            args.run / "models" / name,
            clips,
            classifier=args.run / "classifier",
            clap=args.run / "clap",
            output_dir=out,
            num_inference_steps=steps,
            guidance_scale=args.guidance,
            seed=config.seed,
            scheduler=scheduler,
        )
        results.append({"scheduler": scheduler, "steps": steps, **metrics})

    base = results[0]
    rows = [
        [
            f"{r['scheduler']} {r['steps']}",
            f"{r['FD']:.2f}",
            f"{r['CLAP']:.3f}",
            f"{r['event_accuracy']:.1%}",
            f"{r['generate_seconds']:.1f} s",
            f"{base['generate_seconds'] / r['generate_seconds']:.1f}x",
        ]
        for r in results
    ]
    table = markdown_table(
        ["sampler", "FD (classifier)", "CLAP score", "events right", f"time ({len(clips)} clips)", "speed-up"], rows
    )
    write_results(
        SCRIPT,
        args,
        table,
        {"model": name, "results": results},
        notes=[
            f"model {name} of {args.run}; {len(clips)} test captions, one clip each, guidance {args.guidance}",
            "baseline: Tango's DDPM at 200 steps; the same seeds for every sampler",
        ],
    )


if __name__ == "__main__":
    main()
