"""The AF-AudioSet table: its columns, the tau presets, ranking, and how shards are named and written.

Every caption is kept with its CLAP similarity and its rank within its window; the published configurations are
parquet filters (`rank < top_k` and `clap_similarity >= tau`), so any tau is chosen when loading, never rebuilt.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from .ownership import temporary_path
from .validation import check_integer, check_number

# The paper studies these thresholds; 0.45 was best for AudioCaps and 0.35 for MusicCaps (FACTS.md).
TAU_PRESETS: tuple[float, ...] = (0.35, 0.40, 0.45, 0.50)
DEFAULT_TOP_K = 3
DATA_DIR = "data"
FAILURES_DIR = "failures"
SPLIT = "train"

FEATURES = datasets.Features(
    {
        "clip_id": datasets.Value("string"),
        "window_start": datasets.Value("float32"),
        "caption_index": datasets.Value("int32"),
        "caption": datasets.Value("string"),
        "clap_similarity": datasets.Value("float32"),
        "rank": datasets.Value("int32"),
        "captioner": datasets.Value("string"),
        "clap": datasets.Value("string"),
        "prompt": datasets.Value("string"),
    }
)
AUDIO_SAMPLING_RATE = 16000
FEATURES_WITH_AUDIO = datasets.Features({**FEATURES, "audio": datasets.Audio(sampling_rate=AUDIO_SAMPLING_RATE)})


def config_name(tau: float) -> str:
    """`tau0.45`-style name of a threshold's configuration."""
    return f"tau{tau:.2f}"


def filters(tau: float | None, top_k: int | None = DEFAULT_TOP_K) -> list[tuple[str, str, float | int]]:
    """
    The parquet filters selecting the captions kept at `tau` among the `top_k` best of each window.

    Args:
        tau (`float`, *optional*): least CLAP similarity kept, a cosine in [-1, 1]; `None` keeps every score.
        top_k (`int`, *optional*, defaults to 3): best captions per window kept, at least 1; `None` keeps all ranks.

    Raises:
        [`~datasets_scripts.validation.ArgumentError`] (a `ValueError`): naming a `tau` that is not a finite number
        in [-1, 1] (a string, NaN, infinity) or a `top_k` that is not a whole number of at least 1.
    """
    rules: list[tuple[str, str, float | int]] = []
    if top_k is not None:
        rules.append(("rank", "<", check_integer("top_k", top_k, minimum=1)))
    if tau is not None:
        rules.append(("clap_similarity", ">=", check_number("tau", tau, -1.0, 1.0)))
    return rules


def rank_scores(scores: Sequence[float]) -> list[int]:
    """Rank of each score within its window, 0 for the best; ties go to the earlier caption, so ranks are stable."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    ranks = [0] * len(scores)
    for rank, index in enumerate(order):
        ranks[index] = rank
    return ranks


def unit_file_name(unit: int, num_units: int) -> str:
    """Shard file of one unit of work, named as `push_to_hub` names shards."""
    return f"{SPLIT}-{unit:05d}-of-{num_units:05d}.parquet"


def write_table_atomically(table: pa.Table, path: str | os.PathLike) -> None:
    """Writes a parquet file through a temporary name, so a killed job never leaves a half-written shard."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def rows_to_table(rows: Iterable[dict], with_audio: bool = False) -> pa.Table:
    """Rows (dicts of the table's columns) as an Arrow table with the dataset's features in its schema."""
    features = FEATURES_WITH_AUDIO if with_audio else FEATURES
    rows = list(rows)
    encoded = [features.encode_example(row) for row in rows]
    columns = {name: [row[name] for row in encoded] for name in features}
    table = pa.table(columns, schema=features.arrow_schema)
    return table
