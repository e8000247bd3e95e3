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
from .ownership import Manifest
from .schema import (
    DATA_DIR,
    DEFAULT_TOP_K,
    rank_scores,
    rows_to_table,
    unit_file_name,
)
from .scorer import ClapScorer
from .sources import ClipSource
from .validation import NOT_SHOWN, ArgumentError, braces, check_integer, check_number

logger = logging.get_logger(__name__)

RELEASED_CAPTIONER = "NVIDIA/audio-flamingo@legacy_audio_flamingo_1:labeling_machine/AF-AudioSet.json"
IMPORT_CONFIG_NAME = "build_config.json"
IMPORT_FAILURES_NAME = "failures.jsonl"


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


def _check_import_output(output_dir: Path, manifest: Manifest | None) -> None:
    """Refuses, writing nothing, an output folder holding files that no import wrote (a build, the user's)."""
    from model_cards.dataset_card import CARD_FILES

    shown = os.fspath(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ArgumentError("output_dir", shown, "is a file, not a folder.")
    if manifest is None:
        return
    candidates = [IMPORT_CONFIG_NAME, IMPORT_FAILURES_NAME, *CARD_FILES]
    data = output_dir / DATA_DIR
    if data.is_dir():
        candidates += [f"{DATA_DIR}/{p.relative_to(data).as_posix()}" for p in sorted(data.rglob("*")) if p.is_file()]
    refused = [relative for relative in manifest.not_owned(candidates) if not Path(relative).name.startswith(".")]
    if refused:
        raise ArgumentError(
            "output_dir",
            shown,
            f"holds {braces(refused[0])}, which no import of the released captions wrote (or which was changed since); "
            "give an empty or new folder, or move it away.",
        )


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

    Nothing is written before the arguments, the JSON and the output folder are checked: the folder must be new,
    empty, hold none of the files an import writes, or hold an earlier import (whose files are then replaced, and
    its shards that this import does not write again deleted, so that no stale shard is read as data).

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
    from model_cards.dataset_card import dataset_card_files

    if (audio_sources is None) != (scorer is None):
        raise ArgumentError("scorer", NOT_SHOWN, "and `audio_sources` go together: pass both or neither.")
    unit_size = check_integer("unit_size", unit_size, minimum=1)
    window_seconds = check_number("window_seconds", window_seconds, minimum=0.0)
    if window_seconds == 0:
        raise ArgumentError("window_seconds", window_seconds, "must be more than 0.")
    if not Path(json_path).is_file():
        problem = "is a folder; give the released AF-AudioSet.json." if Path(json_path).exists() else "does not exist."
        raise ArgumentError("json_path", os.fspath(json_path), problem)
    output_dir = Path(output_dir)
    manifest = Manifest(output_dir) if output_dir.is_dir() else None
    _check_import_output(output_dir, manifest)
    captions = read_released_captions(json_path)
    if not captions:
        raise ArgumentError("json_path", os.fspath(json_path), "holds no captions.")

    sources = {s.clip_id: s for s in audio_sources or ()}
    ytids = list(captions)
    num_units = max(1, -(-len(ytids) // unit_size))
    counts = {"ytids": len(ytids), "captions": 0, "scored_clips": 0, "audio_failures": 0, "no_audio": 0}
    failures = []
    manifest = manifest or Manifest(output_dir)
    written: set[str] = set()
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
                        failures.append(
                            {"clip_id": ytid, "origin": source.origin, "reason": error.reason, "detail": error.detail}
                        )
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
        shard = f"{DATA_DIR}/{unit_file_name(unit, num_units)}"
        manifest.write_files({shard: _parquet_bytes(rows_to_table(rows))})
        written.add(shard)

    build = {
        "captioner": RELEASED_CAPTIONER,
        "clap": scorer.model_id if scorer is not None else "(not scored)",
        "prompt": CAPTION_PROMPT,
        "num_captions": 3,
        "top_k": DEFAULT_TOP_K,
        "window_seconds": window_seconds,
        "source": str(json_path),
    }
    failures_bytes = "".join(json.dumps(failure) + "\n" for failure in failures).encode("utf-8")
    manifest.write_files(
        {
            IMPORT_FAILURES_NAME: failures_bytes,
            IMPORT_CONFIG_NAME: (json.dumps(build, indent=2) + "\n").encode("utf-8"),
        }
    )
    # Shards an earlier import wrote (with another unit size, or a longer file) would be read as data.
    for relative in sorted(manifest.files):
        if relative.startswith(f"{DATA_DIR}/") and relative not in written:
            manifest.remove(relative)
    _, card_files = dataset_card_files(output_dir, build=build, summary={})
    manifest.write_files(card_files)
    logger.warning(f"Imported {json_path}: {counts}")
    return counts


def _parquet_bytes(table) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()
