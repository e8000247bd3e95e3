"""Statistics of an AF-AudioSet folder for its card (`model_cards.dataset_card`): sizes of the full table and of
each tau preset, the similarity histogram and the size-vs-tau curve (PNG)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as pa_dataset

from .schema import DATA_DIR, DEFAULT_TOP_K, TAU_PRESETS, config_name, filters

ASSETS_DIR = "assets"
HISTOGRAM_NAME = "clap_similarity_histogram.png"
SIZE_CURVE_NAME = "size_vs_tau.png"
STATS_NAME = "stats.json"


def _kept_counts(table, tau: float | None, top_k: int | None) -> dict[str, int]:
    mask = None
    for column, op, value in filters(tau, top_k):
        expr = pc.less(table[column], value) if op == "<" else pc.greater_equal(table[column], value)
        mask = expr if mask is None else pc.and_(mask, expr)
    kept = table if mask is None else table.filter(mask)
    windows = {(c, w) for c, w in zip(kept["clip_id"].to_pylist(), kept["window_start"].to_pylist())}
    return {"captions": kept.num_rows, "windows": len(windows), "clips": len({c for c, _ in windows})}


def dataset_statistics(folder: str | os.PathLike, top_k: int = DEFAULT_TOP_K) -> dict[str, Any]:
    """Sizes of the full table and of each tau preset, and the similarity histogram, from the folder's shards."""
    table = pa_dataset.dataset(Path(folder) / DATA_DIR, format="parquet").to_table(
        columns=["clip_id", "window_start", "clap_similarity", "rank"]
    )
    # Unscored captions (an import without audio) have no similarity to plot.
    similarities = table["clap_similarity"].drop_null().to_numpy(zero_copy_only=False)
    top = table.filter(pc.less(table["rank"], top_k))["clap_similarity"].drop_null().to_numpy(zero_copy_only=False)
    taus = [round(t, 2) for t in np.arange(0.0, 0.71, 0.05)]
    return {
        "top_k": top_k,
        "all": _kept_counts(table, None, None),
        "presets": {config_name(t): {"tau": t, **_kept_counts(table, t, top_k)} for t in TAU_PRESETS},
        "curve": {"tau": taus, "captions": [_kept_counts(table, t, top_k)["captions"] for t in taus]},
        "similarity_all": similarities.tolist(),
        "similarity_top_k": top.tolist(),
    }


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def plot_statistics(stats: dict[str, Any]) -> dict[str, bytes]:
    """The similarity histogram and the size-vs-tau curve, as PNG bytes keyed by their path in the folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    values = np.asarray(stats["similarity_all"], dtype=np.float64)
    # The usual range of LAION-CLAP similarities, widened to whatever this table holds.
    low = min(-0.2, float(values.min())) if values.size else -0.2
    high = max(0.9, float(values.max())) if values.size else 0.9
    bins = np.linspace(low, high, 45)
    ax.hist(stats["similarity_all"], bins=bins, alpha=0.6, label="all captions")
    ax.hist(stats["similarity_top_k"], bins=bins, alpha=0.8, label=f"top {stats['top_k']} per window")
    for tau in TAU_PRESETS:
        ax.axvline(tau, color="k", lw=0.6, ls="--")
    ax.set_xlabel("CLAP similarity (caption, audio)")
    ax.set_ylabel("captions")
    ax.legend()
    fig.tight_layout()
    histogram = _png(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.plot(stats["curve"]["tau"], stats["curve"]["captions"], marker="o")
    for tau in TAU_PRESETS:
        ax.axvline(tau, color="k", lw=0.6, ls="--")
    ax.set_xlabel("tau (CLAP similarity threshold)")
    ax.set_ylabel(f"captions kept (top {stats['top_k']} per window)")
    fig.tight_layout()
    return {f"{ASSETS_DIR}/{HISTOGRAM_NAME}": histogram, f"{ASSETS_DIR}/{SIZE_CURVE_NAME}": _png(fig)}


def statistics_files(folder: str | os.PathLike, top_k: int = DEFAULT_TOP_K) -> tuple[dict[str, Any], dict[str, bytes]]:
    """
    The statistics of a finished AF-AudioSet folder, and the files its card shows: `stats.json` and the two plots
    under `assets/`, as bytes keyed by their path in the folder (the caller writes them, see
    `datasets_scripts.ownership`).

    Args:
        folder (`str` or `os.PathLike`): the dataset folder (its `data/*.parquet`).
        top_k (`int`, *optional*, defaults to 3): captions per window in the tau configurations.

    Returns:
        `tuple[dict[str, Any], dict[str, bytes]]`: what `dataset_statistics` returns, and the files.
    """
    stats = dataset_statistics(folder, top_k)
    summary = {k: v for k, v in stats.items() if not k.startswith("similarity")}
    files = {STATS_NAME: (json.dumps(summary, indent=2) + "\n").encode("utf-8"), **plot_statistics(stats)}
    return stats, files


def write_statistics(folder: str | os.PathLike, top_k: int = DEFAULT_TOP_K) -> dict[str, Any]:
    """
    Computes the statistics of a finished AF-AudioSet folder, and writes `stats.json` and the two plots under
    `assets/` that its card shows (see `statistics_files`).

    Returns:
        `dict[str, Any]`: what `dataset_statistics` returns.
    """
    folder = Path(folder)
    stats, files = statistics_files(folder, top_k)
    for relative, data in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(data)
    return stats
