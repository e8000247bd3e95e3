"""Quality against speed on a trained micro-reproduction model: Tango's DDPM at 200 steps vs DDIM and DPM-Solver++ at
10 to 50 steps, with FD, CLAP score and event accuracy against the world's test captions (the world's own backbones,
`training.micro.evaluation`) and the wall time of generating them all.

This is the measurement the full-size `bench_steps_to_quality.py` could only project: every sampler here runs a
trained model. The baseline of the ratios is DDPM-200. `training.micro.reproduce` runs the same sweep as resumable
stages and ships the cheapest setting within its tolerances of DDPM-200 (`choose_sampler`, 10% FD and 5 points of
event accuracy by default) with the embedded default model; this script renders that sweep as a table of ratios and
marks the setting the rule picks.

    python bench/bench_micro_schedulers.py --run runs/micro [--model af-tau0.123+captioned]
    python bench/bench_micro_schedulers.py --run runs/micro --quick     # DDPM-200, DPM-Solver++ 25 only

The settings are the reproduction's resumable stages (`runs/micro/samplers/<model>/<sampler>-<steps>/`): after
`python -m training.micro.reproduce` this script only reads them back and renders the table; settings missing from
the run are measured now. Delete a setting's folder to measure it again.
"""

from __future__ import annotations

import json
from pathlib import Path

import common  # noqa: F401  (sets HF_HUB_OFFLINE before diffusers is imported)
from common import base_parser, markdown_table, setup, write_results

SCRIPT = "bench_micro_schedulers"
QUICK_SETTINGS = [("ddpm", 200), ("dpmsolver++", 25)]


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--run", required=True, type=Path, help="A finished `training.micro.reproduce` folder.")
    parser.add_argument("--model", default=None, help="A model of the run (default: the study's best).")
    args = parser.parse_args()
    setup(args)

    from training.micro.reproduce import ReproductionConfig, best_model, choose_sampler, sampler_sweep, world_clips

    config = ReproductionConfig(**json.loads((args.run / "config.json").read_text()))
    if args.quick:
        config.sampler_settings = QUICK_SETTINGS
    report = json.loads((args.run / "report.json").read_text())
    name = args.model or best_model(report["results"])["name"]
    clips = world_clips(config, "test")
    # The reproduction's own stages: settings it measured already are read back (with the timings of that run),
    # the others are measured now.
    results = sampler_sweep(config, args.run, name)
    base = results[0]
    chosen = choose_sampler(results, config.fd_tolerance, config.accuracy_tolerance)
    rows = [
        [
            f"{r['scheduler']} {r['num_inference_steps']}" + (" (chosen)" if r is chosen else ""),
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
        {"model": name, "results": results, "chosen": {k: chosen[k] for k in ("scheduler", "num_inference_steps")}},
        notes=[
            f"model {name} of {args.run}; {len(clips)} test captions, one clip each, guidance {config.eval_guidance}",
            "baseline: Tango's DDPM at 200 steps; the same seeds for every sampler",
            (
                f"chosen: the cheapest setting within {config.fd_tolerance:.0%} of the baseline's FD and "
                f"{config.accuracy_tolerance:.0%} of its event accuracy"
            ),
        ],
    )


if __name__ == "__main__":
    main()
