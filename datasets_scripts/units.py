"""Units of work of an AF-AudioSet build, and the record that says one is done.

A unit is a fixed set of clips (see `datasets_scripts.build`). Its outputs are a parquet shard (absent when every
clip failed), a failures list, and last a record, `units/NNNNN.json`, holding the size and SHA-256 of the two
files, the build settings and clips they were made from, their counts and the measured time. A unit is done only
when its record exists, matches the build, and both files are there with exactly the recorded content; anything
else (a deleted, truncated or corrupt shard, a shard that does not belong with its failures list, a stray temporary
file, a unit written with other settings) makes the builder redo the unit. The counts and timings of a folder are
the sum of its records, so resuming or merging never loses a measurement.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .ownership import (
    file_sha256,
    remove_stray_temporaries,
    temporary_path,
    write_atomically,
    write_json_atomically,
)
from .schema import DATA_DIR, FAILURES_DIR, rows_to_table, unit_file_name, write_table_atomically

UNITS_DIR = "units"


def shard_relative(unit: int, num_units: int) -> str:
    return f"{DATA_DIR}/{unit_file_name(unit, num_units)}"


def failures_relative(unit: int) -> str:
    return f"{FAILURES_DIR}/{unit:05d}.jsonl"


def record_relative(unit: int) -> str:
    return f"{UNITS_DIR}/{unit:05d}.json"


def unit_relatives(unit: int, num_units: int) -> tuple[str, str, str]:
    """The three files of a unit, relative to the dataset folder: shard, failures list, record."""
    return shard_relative(unit, num_units), failures_relative(unit), record_relative(unit)


def ids_sha256(ids: Sequence[str]) -> str:
    """A hash of a sequence of clip ids, in order (the builder sorts them)."""
    digest = hashlib.sha256()
    for clip_id in ids:
        digest.update(clip_id.encode("utf-8") + b"\n")
    return digest.hexdigest()


@dataclasses.dataclass
class UnitRecord:
    """What one finished unit holds and how long it took; written as `units/NNNNN.json` after its files."""

    unit: int
    num_units: int
    config_sha256: str
    clips_sha256: str
    # relative path -> {"sha256": ..., "bytes": ...}; the shard is absent when every clip of the unit failed.
    files: dict[str, dict[str, Any]]
    clips: int
    captioned_clips: int
    windows: int
    captions: int
    failed_clips: int
    failures_by_reason: dict[str, int]
    # Wall time of the unit, and the worker processes and device that shared it (device time = seconds * workers).
    seconds: float
    workers: int
    device: str

    @classmethod
    def read(cls, path: Path) -> UnitRecord:
        record = json.loads(path.read_text(encoding="utf-8"))
        return cls(**{field.name: record[field.name] for field in dataclasses.fields(cls)})


def _file_entry(path: Path) -> dict[str, Any]:
    return {"sha256": file_sha256(path), "bytes": path.stat().st_size}


def unit_status(
    folder: Path, unit: int, num_units: int, config_sha256: str, clip_ids: Sequence[str] | None = None
) -> tuple[UnitRecord | None, str | None]:
    """
    Whether a unit is done in `folder`.

    Args:
        folder (`Path`): the dataset folder.
        unit (`int`): the unit.
        num_units (`int`): the build's number of units.
        config_sha256 (`str`): `BuildConfig.sha256()` of the build.
        clip_ids (`Sequence[str]`, *optional*): the unit's clips, when the source is at hand (building); without
            them (merging, finishing a folder) the clips are those the record names, checked through their hash.

    Returns:
        `tuple[UnitRecord | None, str | None]`: `(record, None)` when done; `(None, None)` when it was never
        finished (no record); `(None, why)` when its outputs are there but cannot be trusted.
    """
    shard, _, record_path = (folder / relative for relative in unit_relatives(unit, num_units))
    if not record_path.is_file():
        return None, None
    try:
        record = UnitRecord.read(record_path)
    except (ValueError, KeyError, TypeError) as error:
        return None, f"its record {record_relative(unit)} is unreadable ({error})"
    if record.config_sha256 != config_sha256 or record.unit != unit or record.num_units != num_units:
        return None, "it was written with other build settings"
    if clip_ids is not None and (record.clips_sha256 != ids_sha256(clip_ids) or record.clips != len(clip_ids)):
        return None, "it was written for other clips"
    expected = {shard_relative(unit, num_units), failures_relative(unit)} & set(record.files)
    if failures_relative(unit) not in expected or set(record.files) - expected:
        return None, f"its record {record_relative(unit)} does not list its files"
    if shard_relative(unit, num_units) not in record.files and shard.exists():
        return None, f"{shard_relative(unit, num_units)} exists but the unit has no captions"
    for relative, entry in record.files.items():
        path = folder / relative
        if not path.is_file():
            return None, f"{relative} is missing"
        if path.stat().st_size != entry["bytes"] or file_sha256(path) != entry["sha256"]:
            return None, f"{relative} is not the file the unit wrote (truncated, corrupt or replaced)"
    return record, None


def write_unit(
    folder: Path,
    unit: int,
    num_units: int,
    config_sha256: str,
    clip_ids: Sequence[str],
    rows: list[dict],
    failures: list[dict],
    with_audio: bool,
    seconds: float,
    workers: int,
    device: str,
) -> UnitRecord:
    """
    Writes a unit's shard and failures list, then its record (which marks it done).

    Raises:
        `RuntimeError`: when the rows and failures do not account for every clip of the unit exactly once, which
        would be a bug of the builder: a clip is never dropped silently.
    """
    captioned = {row["clip_id"] for row in rows}
    failed = [failure["clip_id"] for failure in failures]
    both = captioned & set(failed)
    unaccounted = set(clip_ids) - captioned - set(failed)
    foreign = (captioned | set(failed)) - set(clip_ids)
    if both or unaccounted or foreign or len(failed) != len(set(failed)):
        raise RuntimeError(
            f"Unit {unit}: the captions and failures do not account for its clips exactly once (captioned and failed: "
            f"{sorted(both)[:5]}, neither: {sorted(unaccounted)[:5]}, not of this unit: {sorted(foreign)[:5]})."
        )
    shard, failures_path, record_path = (folder / relative for relative in unit_relatives(unit, num_units))
    # The record goes first, so that a unit being rewritten is never taken as done.
    record_path.unlink(missing_ok=True)
    for path in (shard, failures_path, record_path):
        remove_stray_temporaries(path)
    files = {}
    if rows:
        write_table_atomically(rows_to_table(rows, with_audio=with_audio), shard)
        files[shard_relative(unit, num_units)] = _file_entry(shard)
    else:
        # An empty parquet file breaks the datasets reader; a stale shard of an earlier attempt would be read as data.
        shard.unlink(missing_ok=True)
    write_atomically(
        failures_path, "".join(json.dumps(f, ensure_ascii=False) + "\n" for f in failures).encode("utf-8")
    )
    files[failures_relative(unit)] = _file_entry(failures_path)
    record = UnitRecord(
        unit=unit,
        num_units=num_units,
        config_sha256=config_sha256,
        clips_sha256=ids_sha256(clip_ids),
        files=files,
        clips=len(clip_ids),
        captioned_clips=len(captioned),
        windows=len({(row["clip_id"], row["window_start"]) for row in rows}),
        captions=len(rows),
        failed_clips=len(failures),
        failures_by_reason=dict(sorted(Counter(f["reason"] for f in failures).items())),
        seconds=seconds,
        workers=workers,
        device=device,
    )
    write_json_atomically(record_path, dataclasses.asdict(record))
    return record


def copy_unit(source: Path, target: Path, record: UnitRecord) -> None:
    """Copies a finished unit between dataset folders (a hard link where the file system allows: files are only ever
    replaced by renaming, never rewritten in place, so the two folders cannot change each other), record last."""
    (target / record_relative(record.unit)).unlink(missing_ok=True)
    for relative in record.files:
        path = target / relative
        remove_stray_temporaries(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = temporary_path(path)
        try:
            os.link(source / relative, staged)
        except OSError:
            shutil.copyfile(source / relative, staged)
        os.replace(staged, path)
    shard = target / shard_relative(record.unit, record.num_units)
    if shard_relative(record.unit, record.num_units) not in record.files:
        shard.unlink(missing_ok=True)
    write_json_atomically(target / record_relative(record.unit), dataclasses.asdict(record))
