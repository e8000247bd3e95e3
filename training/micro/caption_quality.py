"""How good AF-AudioSet's captions are at each tau, against the micro world's ground truth: the paper's quality-size
trade-off (a higher CLAP threshold keeps fewer captions, and better ones), measured instead of assumed.

A caption is *correct* when the classes it names (`datasets_scripts.micro_world.classes_mentioned`) are exactly the
classes in its clip; *partly correct* when it names at least one of them and nothing absent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.dataset as pa_dataset

from datasets_scripts.micro_world import classes_mentioned


def caption_table(af_folder: str | os.PathLike, truth: Mapping[str, Sequence[str]]):
    """
    Every caption of an AF-AudioSet folder with its rank, similarity and correctness.

    Args:
        af_folder (`str` or `os.PathLike`): the dataset folder written by `build_af_audioset`.
        truth (`Mapping[str, Sequence[str]]`): the classes present in each clip, by clip id.

    Returns:
        `dict[str, np.ndarray]`: `clip_id`, `rank`, `similarity`, `correct`, `partly_correct`.
    """
    table = pa_dataset.dataset(Path(af_folder) / "data", format="parquet").to_table(
        columns=["clip_id", "caption", "clap_similarity", "rank"]
    )
    clip_ids = table["clip_id"].to_pylist()
    missing = sorted({c for c in clip_ids if c not in truth})
    if missing:
        raise ValueError(f"No ground truth for clips {missing[:5]} of {os.fspath(af_folder)!r}.")
    named = [classes_mentioned(caption) for caption in table["caption"].to_pylist()]
    present = [set(truth[c]) for c in clip_ids]
    return {
        "clip_id": np.asarray(clip_ids),
        "rank": table["rank"].to_numpy(),
        "similarity": table["clap_similarity"].to_numpy(zero_copy_only=False).astype(np.float64),
        "correct": np.asarray([n == p for n, p in zip(named, present)]),
        "partly_correct": np.asarray([bool(n) and n <= p for n, p in zip(named, present)]),
    }


def tau_grid(similarity: np.ndarray, rank: np.ndarray, top_k: int, quantiles: Sequence[float]) -> list[float]:
    """Thresholds at the given quantiles of the top-k captions' similarities (this CLAP's own scale), rounded."""
    top = similarity[rank < top_k]
    return sorted({round(float(np.quantile(top, q)), 3) for q in quantiles})


def quality_vs_tau(captions: Mapping[str, np.ndarray], taus: Sequence[float], top_k: int = 3) -> list[dict[str, Any]]:
    """
    The kept set at each tau: the paper's filter (the best `top_k` captions of a clip with similarity >= tau).

    Args:
        captions (`Mapping[str, np.ndarray]`): what [`caption_table`] returns.
        taus (`Sequence[float]`): thresholds; `-1` keeps every top-k caption.
        top_k (`int`, *optional*, defaults to 3): captions per clip considered.

    Returns:
        `list[dict]`: per tau, `tau`, `captions`, `clips`, `correct` and `partly_correct` (fractions of kept
        captions), plus the same two for all sampled captions as `baseline_*`.
    """
    rows = []
    baseline = {k: float(captions[k].mean()) for k in ("correct", "partly_correct")}
    for tau in taus:
        kept = (captions["rank"] < top_k) & (captions["similarity"] >= tau)
        count = int(kept.sum())
        rows.append(
            {
                "tau": float(tau),
                "captions": count,
                "clips": len(set(captions["clip_id"][kept])),
                "correct": float(captions["correct"][kept].mean()) if count else float("nan"),
                "partly_correct": float(captions["partly_correct"][kept].mean()) if count else float("nan"),
                "baseline_correct": baseline["correct"],
                "baseline_partly_correct": baseline["partly_correct"],
            }
        )
    return rows


def selection_diagnostics(captions: Mapping[str, np.ndarray]) -> dict[str, float]:
    """
    Whether CLAP's ranking tells right captions from wrong ones within a clip, where the paper's filter uses it.

    Args:
        captions (`Mapping[str, np.ndarray]`): what [`caption_table`] returns.

    Returns:
        `dict[str, float]`: `sampled_correct` (all sampled captions), `rank0_correct` (each clip's best-scored
        caption), `within_clip_gap` (mean over clips with both kinds of the mean similarity of right captions minus
        that of wrong ones), `within_clip_gap_positive` (share of those clips where it is positive) and
        `mixed_clips` (how many clips have both).
    """
    gaps = []
    for clip in np.unique(captions["clip_id"]):
        rows = captions["clip_id"] == clip
        right, similarity = captions["correct"][rows], captions["similarity"][rows]
        if right.any() and (~right).any():
            gaps.append(similarity[right].mean() - similarity[~right].mean())
    gaps = np.asarray(gaps)
    return {
        "sampled_correct": float(captions["correct"].mean()),
        "rank0_correct": float(captions["correct"][captions["rank"] == 0].mean()),
        "within_clip_gap": float(gaps.mean()) if gaps.size else float("nan"),
        "within_clip_gap_positive": float((gaps > 0).mean()) if gaps.size else float("nan"),
        "mixed_clips": int(gaps.size),
    }


def write_quality_report(rows: Sequence[Mapping[str, Any]], folder: str | os.PathLike, total_clips: int) -> str:
    """Writes `caption_quality.json`, `caption_quality.md` (a table) and `caption_quality.png`; returns the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "caption_quality.json").write_text(json.dumps(list(rows), indent=2) + "\n")
    lines = [
        "| tau | captions kept | clips kept | exactly right classes | right, possibly incomplete |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        tau = "top-k only" if row["tau"] <= -1 else f"{row['tau']:.3f}"
        lines.append(
            f"| {tau} | {row['captions']} | {row['clips']} / {total_clips} | {row['correct']:.1%} | "
            f"{row['partly_correct']:.1%} |"
        )
    lines.append(
        f"| (all sampled captions) | | | {rows[0]['baseline_correct']:.1%} | {rows[0]['baseline_partly_correct']:.1%} |"
    )
    table = "\n".join(lines) + "\n"
    (folder / "caption_quality.md").write_text(table)

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    taus = [r["tau"] for r in rows if r["tau"] > -1]
    ax.plot(taus, [r["correct"] for r in rows if r["tau"] > -1], marker="o", label="captions exactly right")
    ax.set_xlabel("tau (this CLAP's similarity)")
    ax.set_ylabel("fraction of kept captions")
    twin = ax.twinx()
    twin.plot(taus, [r["captions"] for r in rows if r["tau"] > -1], marker="s", color="tab:orange", label="kept")
    twin.set_ylabel("captions kept")
    fig.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(folder / "caption_quality.png")
    plt.close(fig)
    return table
