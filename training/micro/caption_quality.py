# Copyright 2026 The tango-af authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""How good AF-AudioSet's captions are as tau rises, against the micro world's ground truth: the paper's quality-size
trade-off (a higher CLAP threshold keeps fewer captions, and better ones), measured instead of assumed.

A caption is *exact* when the classes it names (`datasets_scripts.micro_world.classes_mentioned`) are exactly the
classes in its clip. Every number is read through the dataset's own loader, `load_af_audioset(folder, tau, top_k)`,
i.e. the filter a user of AF-AudioSet applies, on folders written by `build_af_audioset`, one per scorer (the CLAPs
and the controls of `training.micro.scorers`) over the very same captions. Scorers have different scales (a tiny
CLAP's cosines are not LAION-CLAP's, the oracle's are agreements), so curves are compared at equal *kept fraction*:
each scorer's taus are quantiles of its own top-k scores.

```python
from training.micro.caption_quality import scorer_quality_report

report = scorer_quality_report({"random": "af/random", "strong": "af/strong", "oracle": "af/oracle"}, truth, "out")
report["curves"]["oracle"]  # [{"tau": ..., "kept_fraction": 1.0, "exact": ...}, ...]
```
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datasets_scripts.loading import load_af_audioset
from datasets_scripts.micro_world import classes_mentioned

__all__ = [
    "BOOTSTRAP_SAMPLES",
    "INTERVAL",
    "KEPT_FRACTIONS",
    "caption_table",
    "quality_curve",
    "scorer_quality_report",
    "selection_diagnostics",
    "tau_for_kept_fraction",
    "tau_grid",
    "write_quality_report",
]

# Fractions of the top-k captions kept, 1.0 being the top-k alone (no tau).
KEPT_FRACTIONS = (1.0, 0.8, 0.6, 0.4, 0.25, 0.15, 0.1, 0.05)
BOOTSTRAP_SAMPLES = 2000
# The kept captions of a clip are not independent (a clip the captioner gets wrong tends to have several wrong
# captions), so the interval resamples clips, not captions.
INTERVAL = "95% percentile bootstrap over clips"


def caption_table(
    af_folder: str | os.PathLike,
    truth: Mapping[str, Sequence[str]],
    tau: float | None = None,
    top_k: int | None = None,
) -> dict[str, np.ndarray]:
    """
    The captions of an AF-AudioSet folder kept at (`tau`, `top_k`) by `load_af_audioset`, with their exactness.

    Args:
        af_folder (`str` or `os.PathLike`): a dataset folder written by `build_af_audioset`.
        truth (`Mapping[str, Sequence[str]]`): the classes present in each clip, by clip id.
        tau (`float`, *optional*): least similarity kept; `None` keeps every score.
        top_k (`int`, *optional*): best captions per window considered; `None` keeps every rank.

    Returns:
        `dict[str, np.ndarray]`: `clip_id`, `rank`, `similarity` (float64), `exact` and `partly_exact` (names
        at least one of the clip's classes and none other), one entry per kept caption.
    """
    dataset = load_af_audioset(af_folder, tau=tau, top_k=top_k)
    columns = dataset.select_columns(["clip_id", "caption", "clap_similarity", "rank"]).to_dict()
    clip_ids = columns["clip_id"]
    missing = sorted({clip for clip in clip_ids if clip not in truth})
    if missing:
        raise ValueError(f"No ground truth for clips {missing[:5]} of {os.fspath(af_folder)!r}.")
    named = [classes_mentioned(caption) for caption in columns["caption"]]
    present = [set(truth[clip]) for clip in clip_ids]
    return {
        "clip_id": np.asarray(clip_ids, dtype=object),
        "rank": np.asarray(columns["rank"], dtype=np.int64),
        "similarity": np.asarray(columns["clap_similarity"], dtype=np.float64),
        "exact": np.asarray([n == p for n, p in zip(named, present)], dtype=bool),
        "partly_exact": np.asarray([bool(n) and n <= p for n, p in zip(named, present)], dtype=bool),
    }


def tau_for_kept_fraction(similarity: np.ndarray, rank: np.ndarray, top_k: int, fraction: float) -> float | None:
    """
    The tau that keeps about `fraction` of the top-k captions: their `1 - fraction` quantile (a value of the data,
    so the loader's `>=` keeps it), or `None` (no threshold) for a fraction of 1.

    Args:
        similarity (`np.ndarray`): every caption's score.
        rank (`np.ndarray`): every caption's rank within its window.
        top_k (`int`): captions per window considered.
        fraction (`float`): in (0, 1].
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"A kept fraction must be in (0, 1], got {fraction}.")
    if fraction == 1:
        return None
    top = similarity[rank < top_k]
    if not top.size:
        raise ValueError("No top-k captions to choose a tau from.")
    return float(np.quantile(top, 1 - fraction, method="inverted_cdf"))


def tau_grid(similarity: np.ndarray, rank: np.ndarray, top_k: int, quantiles: Sequence[float]) -> list[float]:
    """Thresholds at the given quantiles of the top-k captions' similarities (this scorer's own scale), rounded to 3
    decimals (they name training sets)."""
    top = similarity[rank < top_k]
    return sorted({round(float(np.quantile(top, q)), 3) for q in quantiles})


def _bootstrap_ratio(clip_ids: np.ndarray, exact: np.ndarray, rng: np.random.Generator, samples: int) -> list[float]:
    """95% percentile interval of sum(exact) / count over clips resampled with replacement."""
    _, owner = np.unique(clip_ids, return_inverse=True)
    kept = np.bincount(owner)
    right = np.bincount(owner, weights=exact.astype(np.float64))
    draws = rng.integers(len(kept), size=(samples, len(kept)))
    ratios = right[draws].sum(axis=1) / kept[draws].sum(axis=1)
    low, high = np.quantile(ratios, [0.025, 0.975])
    return [float(low), float(high)]


def quality_curve(
    af_folder: str | os.PathLike,
    truth: Mapping[str, Sequence[str]],
    top_k: int = 3,
    kept_fractions: Sequence[float] = KEPT_FRACTIONS,
    seed: int = 0,
    bootstrap_samples: int = BOOTSTRAP_SAMPLES,
) -> list[dict[str, Any]]:
    """
    Caption exactness against the kept fraction for one scorer's AF-AudioSet: at each fraction, the tau that keeps
    it (`tau_for_kept_fraction`), the captions `load_af_audioset(af_folder, tau, top_k)` returns, and their
    exactness with a bootstrap interval over clips.

    Args:
        af_folder (`str` or `os.PathLike`): the scorer's dataset folder.
        truth (`Mapping[str, Sequence[str]]`): the classes of each clip, by clip id.
        top_k (`int`, *optional*, defaults to 3): captions per window considered (the paper: 3).
        kept_fractions (`Sequence[float]`, *optional*): target fractions of the top-k captions, in (0, 1].
        seed (`int`, *optional*, defaults to 0): seed of the bootstrap.
        bootstrap_samples (`int`, *optional*, defaults to 2000): bootstrap resamples per point.

    Returns:
        `list[dict]`: per fraction, `tau` (`None` for the top-k alone), `kept_fraction` (measured: kept / top-k
        captions), `exact`, `exact_ci95`, `captions` and `clips` kept.
    """
    everything = caption_table(af_folder, truth, tau=None, top_k=top_k)
    total = len(everything["rank"])
    if not total:
        raise ValueError(f"{os.fspath(af_folder)!r} holds no captions.")
    rng = np.random.default_rng(seed)
    rows = []
    for fraction in kept_fractions:
        tau = tau_for_kept_fraction(everything["similarity"], everything["rank"], top_k, fraction)
        kept = caption_table(af_folder, truth, tau=tau, top_k=top_k)
        count = len(kept["rank"])
        rows.append(
            {
                "tau": tau,
                "kept_fraction": count / total,
                "exact": float(kept["exact"].mean()) if count else float("nan"),
                "exact_ci95": _bootstrap_ratio(kept["clip_id"], kept["exact"], rng, bootstrap_samples)
                if count
                else [float("nan"), float("nan")],
                "captions": count,
                "clips": len(set(kept["clip_id"])),
            }
        )
    return rows


def selection_diagnostics(captions: Mapping[str, np.ndarray], top_k: int = 3) -> dict[str, float]:
    """
    Whether a scorer's ranking tells exact captions from wrong ones within a clip, where the paper's filter uses it.

    Args:
        captions (`Mapping[str, np.ndarray]`): [`caption_table`] of every caption (`tau=None, top_k=None`).
        top_k (`int`, *optional*, defaults to 3): captions per window the filter considers.

    Returns:
        `dict[str, float]`: `sampled_exact` (all sampled captions), `best_of_n_exact` (each clip's best-scored
        caption), `top_k_exact` (its `top_k` best-scored captions), `oracle_best_of_n_exact` (clips with at least one exact
        caption: what a perfect scorer's best-scored caption reaches), `within_clip_gap` (mean over clips with both
        kinds of the mean score of exact captions minus that of the others), `within_clip_gap_positive` (share of
        those clips where it is positive) and `mixed_clips` (how many clips have both).
    """
    clips, owner = np.unique(captions["clip_id"], return_inverse=True)
    exact, similarity = captions["exact"], captions["similarity"]
    gaps = []
    for index in range(len(clips)):
        rows = owner == index
        right = exact[rows]
        if right.any() and (~right).any():
            gaps.append(similarity[rows][right].mean() - similarity[rows][~right].mean())
    gaps = np.asarray(gaps)
    return {
        "sampled_exact": float(exact.mean()),
        "best_of_n_exact": float(exact[captions["rank"] == 0].mean()),
        "top_k_exact": float(exact[captions["rank"] < top_k].mean()),
        "oracle_best_of_n_exact": float((np.bincount(owner, weights=exact.astype(float)) > 0).mean()),
        "within_clip_gap": float(gaps.mean()) if gaps.size else float("nan"),
        "within_clip_gap_positive": float((gaps > 0).mean()) if gaps.size else float("nan"),
        "mixed_clips": int(gaps.size),
    }


def scorer_quality_report(
    folders: Mapping[str, str | os.PathLike],
    truth: Mapping[str, Sequence[str]],
    output_dir: str | os.PathLike,
    top_k: int = 3,
    kept_fractions: Sequence[float] = KEPT_FRACTIONS,
    seed: int = 0,
) -> dict[str, Any]:
    """
    Caption exactness against the kept fraction, one curve per scorer, written as `caption_quality.json`,
    `caption_quality.md` and `caption_quality.png` in `output_dir`.

    Args:
        folders (`Mapping[str, str | os.PathLike]`): each scorer's AF-AudioSet folder, by scorer name, in the order
            of the table and the plot (e.g. random, the CLAPs weakest first, oracle). They should hold the same
            captions (`ReplayCaptioner`): the sampled exactness of each is checked to be the same.
        truth (`Mapping[str, Sequence[str]]`): the classes of each clip, by clip id.
        output_dir (`str` or `os.PathLike`): where the three files go (created).
        top_k (`int`, *optional*, defaults to 3): captions per window considered.
        kept_fractions (`Sequence[float]`, *optional*): the points of each curve.
        seed (`int`, *optional*, defaults to 0): seed of the bootstrap intervals.

    Returns:
        `dict`: `curves` (scorer -> rows of `tau`, `kept_fraction`, `exact`, `exact_ci95`, `captions`, `clips`),
        `selection` (scorer -> [`selection_diagnostics`]), `best_of_n_exact` (scorer -> exactness of its best-scored
        caption), `sampled_exact`, `interval` and `table` (the Markdown).
    """
    if not folders:
        raise ValueError("No AF-AudioSet folders to measure.")
    curves, selection = {}, {}
    for name, folder in folders.items():
        curves[name] = quality_curve(folder, truth, top_k=top_k, kept_fractions=kept_fractions, seed=seed)
        selection[name] = selection_diagnostics(caption_table(folder, truth), top_k=top_k)
    sampled = {name: record["sampled_exact"] for name, record in selection.items()}
    if max(sampled.values()) - min(sampled.values()) > 1e-12:
        raise ValueError(f"The folders hold different captions (sampled exactness {sampled}); replay one build.")
    report = {
        "curves": curves,
        "selection": selection,
        "best_of_n_exact": {name: record["best_of_n_exact"] for name, record in selection.items()},
        "sampled_exact": next(iter(sampled.values())),
        "interval": INTERVAL,
        "top_k": top_k,
    }
    report["table"] = write_quality_report(report, output_dir)
    return report


def _percent(value: float) -> str:
    return "n/a" if value != value else f"{value:.1%}"


def write_quality_report(report: Mapping[str, Any], output_dir: str | os.PathLike) -> str:
    """Writes `caption_quality.json` (the whole report), `caption_quality.md` (the table) and `caption_quality.png`
    (exactness against the kept fraction, a curve per scorer with its intervals); returns the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    curves, selection = report["curves"], report["selection"]
    (output_dir / "caption_quality.json").write_text(
        json.dumps({k: v for k, v in report.items() if k != "table"}, indent=2) + "\n"
    )

    names = list(curves)
    header = " | ".join(names)
    lines = [
        f"Exact captions (naming exactly the clip's classes) among those kept, with {report['interval']} intervals;"
        f" of all sampled captions {_percent(report['sampled_exact'])} are exact.",
        "",
        f"| kept fraction of the top {report['top_k']} | {header} |",
        "| ---: |" + " ---: |" * len(names),
    ]
    for point in range(len(next(iter(curves.values())))):
        cells = []
        for name in names:
            row = curves[name][point]
            low, high = row["exact_ci95"]
            cells.append(f"{_percent(row['exact'])} [{_percent(low)}, {_percent(high)}]")
        fraction = curves[names[0]][point]["kept_fraction"]
        lines.append(f"| {fraction:.0%} | " + " | ".join(cells) + " |")
    lines.append("| best-scored caption of each clip | " + " | ".join(
        _percent(selection[name]["best_of_n_exact"]) for name in names) + " |")  # fmt: skip
    lines.append(
        "\nKept fractions are each scorer's own (ties can move them slightly): "
        + "; ".join(f"{name} " + ", ".join(f"{row['kept_fraction']:.2f}" for row in curves[name]) for name in names)
        + "."
    )
    table = "\n".join(lines) + "\n"
    (output_dir / "caption_quality.md").write_text(table)

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for name in names:
        rows = curves[name]
        x = np.array([row["kept_fraction"] for row in rows])
        y = np.array([row["exact"] for row in rows])
        low = np.array([row["exact_ci95"][0] for row in rows])
        high = np.array([row["exact_ci95"][1] for row in rows])
        line = ax.plot(x, y, marker="o", markersize=3, label=name)[0]
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    ax.axhline(report["sampled_exact"], color="k", linestyle=":", linewidth=1, label="all sampled captions")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel(f"fraction of the top-{report['top_k']} captions kept (tau rises to the right)")
    ax.set_ylabel("kept captions exactly right")
    ax.set_ylim(0, 1)
    ax.set_title(f"Caption exactness against tau ({report['interval']})", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(output_dir / "caption_quality.png")
    plt.close(fig)
    return table
