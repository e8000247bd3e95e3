"""Importer for NVIDIA's released AF-AudioSet (`labeling_machine/AF-AudioSet.json`, JSON Lines of
`{"ytid": ..., "caption": ...}` on the `legacy_audio_flamingo_1` branch of NVIDIA/audio-flamingo).

The release keeps up to 3 captions per clip and no scores, and repeats some rows. The importer writes the same
table as a build (one row per distinct caption of a clip), scoring and ranking the captions with CLAP when the
clips' audio is supplied. Without audio, `clap_similarity` is null and `rank` is the caption's order in the file,
so only the `all` configuration is meaningful.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm
from transformers.utils import logging

from .audio import ClipError, make_windows
from .captioner import CAPTION_PROMPT
from .schema import (
    DATA_DIR,
    DEFAULT_TOP_K,
    rank_scores,
    rows_to_table,
    unit_file_name,
    write_table_atomically,
)
from .scorer import ClapScorer
from .sources import ClipSource

logger = logging.get_logger(__name__)

RELEASED_CAPTIONER = "NVIDIA/audio-flamingo@legacy_audio_flamingo_1:labeling_machine/AF-AudioSet.json"


def read_released_captions(path: str | os.PathLike) -> dict[str, list[str]]:
    """
    Captions per ytid, de-duplicated in file order.

    Args:
        path (`str` or `os.PathLike`): `AF-AudioSet.json`, JSON Lines (or one JSON list) of `{"ytid", "caption"}`.

    Returns:
        `dict[str, list[str]]`: ytid -> its distinct captions (whitespace-trimmed), sorted by ytid.
    """
    text = Path(path).read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        records = json.loads(stripped)
    else:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}: not JSON ({error.msg}): {line[:80]!r}") from error
    captions: dict[str, list[str]] = {}
    for record in records:
        if not isinstance(record, dict) or "ytid" not in record or "caption" not in record:
            raise ValueError(f"{path}: every record needs 'ytid' and 'caption', got {str(record)[:80]!r}")
        caption = str(record["caption"]).strip()
        clip = captions.setdefault(str(record["ytid"]), [])
        if caption not in clip:
            clip.append(caption)
    return dict(sorted(captions.items()))


def import_released(
    json_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    audio_sources: Sequence[ClipSource] | None = None,
    scorer: ClapScorer | None = None,
    unit_size: int = 10_000,
    window_seconds: float = 10.0,
) -> dict[str, int]:
    """
    Writes the released captions as an AF-AudioSet folder (same columns, shards and card as a build).

    Args:
        json_path (`str` or `os.PathLike`): the released `AF-AudioSet.json`.
        output_dir (`str` or `os.PathLike`): the dataset folder to write.
        audio_sources (`Sequence[ClipSource]`, *optional*): clips by ytid; with `scorer`, their captions are scored.
        scorer (`ClapScorer`, *optional*): the CLAP scorer.
        unit_size (`int`, *optional*, defaults to 10000): ytids per parquet shard.
        window_seconds (`float`, *optional*, defaults to 10.0): the scored window (the clip's first).

    Returns:
        `dict[str, int]`: counts of ytids, captions, scored clips, clips without audio and audio failures.
    """
    from model_cards.dataset_card import write_dataset_card

    if (audio_sources is None) != (scorer is None):
        raise ValueError("Scoring needs both `audio_sources` and `scorer`; pass both or neither.")
    output_dir = Path(output_dir)
    captions = read_released_captions(json_path)
    sources = {s.clip_id: s for s in audio_sources or ()}
    ytids = list(captions)
    num_units = max(1, -(-len(ytids) // unit_size))
    counts = {"ytids": len(ytids), "captions": 0, "scored_clips": 0, "audio_failures": 0, "no_audio": 0}
    failures = []
    for unit in tqdm(range(num_units), desc="AF-AudioSet import", unit="unit"):
        rows = []
        for ytid in ytids[unit * unit_size : (unit + 1) * unit_size]:
            clip_captions = captions[ytid]
            scores = None
            if scorer is not None:
                source = sources.get(ytid)
                if source is None:
                    counts["no_audio"] += 1
                else:
                    try:
                        window = make_windows(ytid, *source.load(), window_seconds=window_seconds)[0]
                        scores = scorer.score([window.audio_48k], [clip_captions])[0]
                        counts["scored_clips"] += 1
                    except ClipError as error:
                        counts["audio_failures"] += 1
                        failures.append({"clip_id": ytid, "origin": source.origin, "reason": error.reason, "detail": error.detail})
            ranks = rank_scores(scores) if scores is not None else list(range(len(clip_captions)))
            for index, caption in enumerate(clip_captions):
                rows.append(
                    {
                        "clip_id": ytid,
                        "window_start": 0.0,
                        "caption_index": index,
                        "caption": caption,
                        "clap_similarity": None if scores is None else scores[index],
                        "rank": ranks[index],
                        "captioner": RELEASED_CAPTIONER,
                        "clap": scorer.model_id if scorer is not None else "",
                        "prompt": CAPTION_PROMPT,
                    }
                )
        counts["captions"] += len(rows)
        write_table_atomically(rows_to_table(rows), output_dir / DATA_DIR / unit_file_name(unit, num_units))

    with open(output_dir / "failures.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(failure) + "\n" for failure in failures)
    build = {
        "captioner": RELEASED_CAPTIONER,
        "clap": scorer.model_id if scorer is not None else "(not scored)",
        "prompt": CAPTION_PROMPT,
        "num_captions": 3,
        "top_k": DEFAULT_TOP_K,
        "window_seconds": window_seconds,
        "source": str(json_path),
    }
    (output_dir / "build_config.json").write_text(json.dumps(build, indent=2) + "\n")
    write_dataset_card(output_dir)
    logger.warning(f"Imported {json_path}: {counts}")
    return counts
