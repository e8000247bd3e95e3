"""The dataset folder of an AF-AudioSet build: its settings (`build_config.json`), the checks that decide whether a
build may write into it, its summary, and the merge of the folders that several shards wrote.

A folder's counts and measured cost are always the sum of its units' records (`datasets_scripts.units`), so a
resumed, re-run or merged build never loses a measurement; its card and summary are written through the folder's
record of what the build owns (`datasets_scripts.ownership`), so a file of the user's is never replaced.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from transformers.utils import logging

from .ownership import (
    MANIFEST_NAME,
    Manifest,
    folder_lock,
    remove_stray_temporaries,
    write_atomically,
)
from .schema import DATA_DIR, FAILURES_DIR, unit_file_name
from .units import (
    UNITS_DIR,
    UnitRecord,
    copy_unit,
    ids_sha256,
    unit_status,
)
from .validation import (
    NOT_SHOWN,
    ArgumentError,
    braces,
)

logger = logging.get_logger(__name__)

BUILD_CONFIG_NAME = "build_config.json"
SUMMARY_NAME = "build_summary.json"
EXCLUDED_NAME = "excluded_ids.txt"
# The seed is hashed with each window's key (`captioner.row_seed`); it is kept to what a signed 64-bit integer holds


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """Everything that decides the content of the dataset; a resumed or merged build must match it exactly."""

    captioner: str
    clap: str
    num_captions: int
    top_k: int
    seed: int
    prompt: str
    max_new_tokens: int
    window_seconds: float
    min_seconds: float
    unit_size: int
    num_units: int
    num_clips: int
    source_fingerprint: str
    embed_audio: bool

    def sha256(self) -> str:
        """A hash of the settings, stored in every unit's record: a unit made with other settings is redone."""
        return ids_sha256([json.dumps(dataclasses.asdict(self), sort_keys=True)])

    def check_matches(self, other: BuildConfig, where: str, argument: str = "output_dir") -> None:
        """Raises an [`ArgumentError`] naming every field where `other` (read from `where`) differs."""
        mine, theirs = dataclasses.asdict(self), dataclasses.asdict(other)
        diff = {k: (theirs[k], mine[k]) for k in mine if mine[k] != theirs[k]}
        if diff:
            details = ", ".join(f"{k}: {old!r} there vs {new!r} now" for k, (old, new) in diff.items())
            raise ArgumentError(
                argument, where, f"was built with other settings ({braces(details)}); use another output folder."
            )


@dataclasses.dataclass
class BuildSummary:
    """Counts of a build: every entry of the source is captioned, failed (with a reason) or excluded."""

    clips: int = 0
    excluded: int = 0
    captioned_clips: int = 0
    failed_clips: int = 0
    windows: int = 0
    captions: int = 0
    units_done: int = 0
    units_skipped: int = 0
    failures_by_reason: dict[str, int] = dataclasses.field(default_factory=dict)
    # The measured cost, summed over the records of every unit counted here (those done now and those resumed or
    # merged: a measurement is never lost): wall seconds, device seconds (wall seconds times the worker processes
    # that shared the unit), the clips they covered, the most workers of a unit and the devices used. The dataset
    # card projects the device seconds per clip to the whole of AudioSet.
    seconds: float = 0.0
    device_seconds: float = 0.0
    timed_clips: int = 0
    workers: int = 1
    device: str = ""

    @property
    def seconds_per_clip(self) -> float | None:
        return self.seconds / self.timed_clips if self.timed_clips else None

    @property
    def device_seconds_per_clip(self) -> float | None:
        return self.device_seconds / self.timed_clips if self.timed_clips else None

    def add_record(self, record: UnitRecord) -> None:
        """Adds one unit's counts and measured time."""
        self.clips += record.clips
        self.captioned_clips += record.captioned_clips
        self.windows += record.windows
        self.captions += record.captions
        self.failed_clips += record.failed_clips
        reasons = Counter(self.failures_by_reason)
        reasons.update(record.failures_by_reason)
        self.failures_by_reason = dict(sorted(reasons.items()))
        self.seconds += record.seconds
        self.device_seconds += record.seconds * record.workers
        self.timed_clips += record.clips
        self.workers = max(self.workers, record.workers)
        devices = {d for d in self.device.split(", ") if d} | {record.device}
        self.device = ", ".join(sorted(devices))

    def to_json(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "seconds_per_clip": self.seconds_per_clip,
            "device_seconds_per_clip": self.device_seconds_per_clip,
        }

    def __str__(self) -> str:
        reasons = ", ".join(f"{k} {v}" for k, v in self.failures_by_reason.items()) or "none"
        return (
            f"{self.clips} clips: {self.captioned_clips} captioned ({self.windows} windows, {self.captions} captions), "
            f"{self.failed_clips} failed ({reasons}), {self.excluded} excluded; "
            f"{self.units_done} units written, {self.units_skipped} already done"
        )


def source_fingerprint(clip_ids: Sequence[str], excluded_ids: Sequence[str] = ()) -> str:
    """A hash of the sorted clip ids kept and excluded, so a resumed build can tell it is reading the same source."""
    return ids_sha256(list(clip_ids) + ["\x00excluded"] + list(excluded_ids))


def read_build_config(folder: str | os.PathLike, argument: str = "output_dir") -> BuildConfig:
    """
    The `BuildConfig` a dataset folder was built with.

    Raises:
        [`ArgumentError`]: naming `argument` and the folder when it holds no build settings, or other ones (an
        import of the released captions, another tool's `build_config.json`).
    """
    path = Path(folder) / BUILD_CONFIG_NAME
    if not path.is_file():
        raise ArgumentError(
            argument, os.fspath(folder), f"is not an AF-AudioSet build folder: it has no {BUILD_CONFIG_NAME}."
        )
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ArgumentError(
            argument, os.fspath(folder), f"has a damaged {BUILD_CONFIG_NAME} ({braces(error)})."
        ) from error
    names = {field.name for field in dataclasses.fields(BuildConfig)}
    if not isinstance(record, dict) or set(record) != names:
        from .released import RELEASED_CAPTIONER

        if isinstance(record, dict) and record.get("captioner") == RELEASED_CAPTIONER:
            raise ArgumentError(
                argument,
                os.fspath(folder),
                "holds an import of NVIDIA's released captions (import-released), not a build.",
            )
        raise ArgumentError(
            argument, os.fspath(folder), f"has a {BUILD_CONFIG_NAME} that is not an AF-AudioSet build's settings."
        )
    return BuildConfig(**record)


def _config_bytes(config: BuildConfig) -> bytes:
    return (json.dumps(dataclasses.asdict(config), indent=2) + "\n").encode("utf-8")


def _final_files() -> tuple[str, ...]:
    from model_cards.dataset_card import CARD_FILES

    return (SUMMARY_NAME, *CARD_FILES)


def _is_hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def check_output_dir(
    output_dir: str | os.PathLike,
    config: BuildConfig,
    excluded_text: str,
    finalize: bool,
    argument: str = "output_dir",
) -> bool:
    """
    Checks, writing nothing, that a build with `config` may write into `output_dir`: a new folder; a folder that an
    earlier build with the same settings wrote (resumed), whose card and summary are still what it wrote; a folder
    where an earlier build with other settings finished no unit yet (nothing is lost by starting again); or another
    folder holding none of the files a build writes.

    Returns:
        `bool`: whether the folder's settings (`build_config.json`, `excluded_ids.txt`) are replaced.

    Raises:
        [`ArgumentError`]: naming `argument`, the folder and the file in the way.
    """
    folder = Path(output_dir)
    shown = os.fspath(output_dir)
    if folder.exists() and not folder.is_dir():
        raise ArgumentError(argument, shown, "is a file, not a folder.")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ArgumentError(argument, shown, f"cannot be created: {braces(os.fspath(existing))!r} is a file.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ArgumentError(argument, shown, f"cannot be written: {braces(os.fspath(existing))!r} is not writable.")
    if not folder.is_dir():
        return False
    in_the_way: list[str] = []
    if (folder / BUILD_CONFIG_NAME).exists():
        earlier = read_build_config(folder, argument)
        replace = earlier != config and not _has_unit_files(folder)
        if not replace:
            config.check_matches(earlier, shown, argument)
        excluded_path = folder / EXCLUDED_NAME
        if not replace and excluded_path.exists() and excluded_path.read_bytes() != excluded_text.encode("utf-8"):
            in_the_way.append(EXCLUDED_NAME)
        if finalize:
            in_the_way += Manifest(folder).not_owned(_final_files())
        shards = {unit_file_name(unit, config.num_units) for unit in range(config.num_units)}
        data = folder / DATA_DIR
        if data.is_dir():
            for path in sorted(data.rglob("*")):
                relative = path.relative_to(data)
                if path.is_file() and not _is_hidden(relative) and relative.as_posix() not in shards:
                    in_the_way.append(f"{DATA_DIR}/{relative.as_posix()}")
        if in_the_way:
            raise ArgumentError(
                argument,
                shown,
                f"holds {braces(in_the_way[0])}, which this build did not write (or which was changed since): the build "
                "would replace it or read it as part of the dataset; move it out of the folder.",
            )
        return replace
    for relative in (*_final_files(), EXCLUDED_NAME, MANIFEST_NAME):
        if (folder / relative).exists():
            in_the_way.append(relative)
    for directory in (DATA_DIR, FAILURES_DIR, UNITS_DIR):
        if (folder / directory).is_dir():
            in_the_way += [
                f"{directory}/{p.relative_to(folder / directory).as_posix()}"
                for p in sorted((folder / directory).rglob("*"))
                if p.is_file()
            ]
    if in_the_way:
        raise ArgumentError(
            argument,
            shown,
            f"holds {braces(in_the_way[0])}, which this builder did not write (the folder has no {BUILD_CONFIG_NAME}); "
            "give an empty or new folder, or move it away.",
        )
    return False


def _has_unit_files(folder: Path) -> bool:
    """Whether any unit of a build folder has started to be written."""
    for directory in (DATA_DIR, FAILURES_DIR, UNITS_DIR):
        if (folder / directory).is_dir():
            for path in (folder / directory).rglob("*"):
                if path.is_file() and not _is_hidden(path.relative_to(folder)):
                    return True
    return False


def write_setup(folder: Path, config: BuildConfig, excluded_text: str, replace: bool = False) -> None:
    """Writes the settings and the excluded ids, once: later runs (and other shards) find them identical."""
    if replace or not (folder / BUILD_CONFIG_NAME).exists():
        write_atomically(folder / BUILD_CONFIG_NAME, _config_bytes(config))
    if replace or not (folder / EXCLUDED_NAME).exists():
        write_atomically(folder / EXCLUDED_NAME, excluded_text.encode("utf-8"))


def _finished_units(folder: Path, config: BuildConfig) -> tuple[dict[int, UnitRecord], dict[int, str]]:
    """The verified records of a folder's units, and why each other unit is not done."""
    config_sha = config.sha256()
    done, not_done = {}, {}
    for unit in range(config.num_units):
        record, why_not = unit_status(folder, unit, config.num_units, config_sha)
        if record is None:
            not_done[unit] = why_not or "not built"
        else:
            done[unit] = record
    return done, not_done


def unfinished_units(folder: str | os.PathLike) -> dict[int, str]:
    """
    The units of an AF-AudioSet build folder that are not done (no record, or outputs that do not match it), with
    the reason; empty for a finished folder.
    """
    folder = Path(folder)
    return _finished_units(folder, read_build_config(folder, "folder"))[1]


def finalize_folder(folder: str | os.PathLike, config: BuildConfig | None = None) -> BuildSummary:
    """
    Writes `build_summary.json` (the counts and measured time of every unit, from their records) and the dataset
    card of a folder whose units are all done.

    Raises:
        [`ArgumentError`]: naming the units that are missing or damaged, or a card file the build did not write.
    """
    folder = Path(folder)
    config = config or read_build_config(folder, "folder")
    done, not_done = _finished_units(folder, config)
    if not_done:
        listed = ", ".join(f"{unit} ({why})" for unit, why in list(not_done.items())[:10])
        raise ArgumentError(
            "folder",
            os.fspath(folder),
            f"is unfinished: {len(not_done)} of {config.num_units} units are not done: {braces(listed)}.",
        )
    summary = BuildSummary(units_skipped=len(done))
    summary.excluded = (
        len((folder / EXCLUDED_NAME).read_text(encoding="utf-8").split()) if (folder / EXCLUDED_NAME).exists() else 0
    )
    summary.clips = summary.excluded
    for record in done.values():
        summary.add_record(record)
    from model_cards.dataset_card import dataset_card_files

    manifest = Manifest(folder)
    files = {SUMMARY_NAME: (json.dumps(summary.to_json(), indent=2) + "\n").encode("utf-8")}
    if summary.captions:
        files.update(dataset_card_files(folder, build=dataclasses.asdict(config), summary=summary.to_json())[1])
    else:
        # No shard, so no dataset to describe: a card would point `load_dataset` at files that do not exist.
        logger.warning(
            f"No clip of {os.fspath(folder)} was captioned ({summary}); no dataset card is written, see failures/."
        )
    with folder_lock(folder, "finalize"):
        manifest.write_files(files)
    return summary


def merge_shards(inputs: Sequence[str | os.PathLike], output_dir: str | os.PathLike) -> BuildSummary:
    """
    Gathers the units that several machines or processes wrote into one dataset folder, and writes its summary and
    card. With one folder that every shard wrote into, `merge_shards([folder], folder)` only checks and finishes it.

    Every input must have been built with the same settings, and every unit must be present, finished and intact,
    exactly once across them (a unit already finished in `output_dir` counts as present); otherwise an
    [`ArgumentError`] names the missing, damaged or repeated units, and nothing is written.

    Args:
        inputs (`Sequence[str | os.PathLike]`): the shards' output folders.
        output_dir (`str` or `os.PathLike`): the merged dataset folder (may be one of the inputs).

    Returns:
        `BuildSummary`: the counts over all units, with the measured time of every unit.
    """
    if isinstance(inputs, (str, os.PathLike)) or not isinstance(inputs, Iterable):
        raise ArgumentError("inputs", inputs, "must be a list of folders.")
    inputs = [Path(folder) for folder in inputs]
    if not inputs:
        raise ArgumentError("inputs", NOT_SHOWN, "are empty: nothing to merge.")
    for folder in inputs:
        if not folder.exists():
            raise ArgumentError("inputs", os.fspath(folder), "does not exist.")
        if not folder.is_dir():
            raise ArgumentError("inputs", os.fspath(folder), "is a file, not a build folder.")
    configs = [read_build_config(folder, "inputs") for folder in inputs]
    config = configs[0]
    for folder, other in zip(inputs[1:], configs[1:]):
        config.check_matches(other, os.fspath(folder), "inputs")
    excluded_texts = {
        (folder / EXCLUDED_NAME).read_text(encoding="utf-8") for folder in inputs if (folder / EXCLUDED_NAME).exists()
    }
    if len(excluded_texts) > 1:
        raise ArgumentError("inputs", NOT_SHOWN, f"disagree on the excluded clips ({EXCLUDED_NAME}).")
    excluded_text = excluded_texts.pop() if excluded_texts else ""
    output = Path(output_dir)
    replace_setup = check_output_dir(output, config, excluded_text, finalize=True)

    output_resolved = output.resolve()
    config_sha = config.sha256()
    in_output: dict[int, UnitRecord] = {}
    damaged: dict[int, list[str]] = {}
    if output.is_dir() and (output / BUILD_CONFIG_NAME).exists():
        in_output, not_done = _finished_units(output, config)
        for unit, why_not in not_done.items():
            if why_not != "not built":
                damaged[unit] = [f"{os.fspath(output)}: {why_not}"]
    found: dict[int, list[tuple[Path, UnitRecord]]] = {}
    for folder in inputs:
        if folder.resolve() == output_resolved:
            continue
        for unit in range(config.num_units):
            if unit in in_output:
                continue
            record, why_not = unit_status(folder, unit, config.num_units, config_sha)
            if record is not None:
                found.setdefault(unit, []).append((folder, record))
            elif why_not:
                damaged.setdefault(unit, []).append(f"{os.fspath(folder)}: {why_not}")
    missing = [u for u in range(config.num_units) if u not in in_output and u not in found]
    repeated = {u: [os.fspath(f) for f, _ in copies] for u, copies in found.items() if len(copies) > 1}
    if missing or repeated:
        details = {u: damaged[u] for u in missing if u in damaged}
        raise ArgumentError(
            "inputs",
            NOT_SHOWN,
            f"cannot be merged: missing units {missing[:20]}"
            + (f" (damaged copies: {braces(details)})" if details else "")
            + f", units found more than once {braces(repeated)}.",
        )
    with folder_lock(output, "merge"):
        write_setup(output, config, excluded_text, replace=replace_setup)
        for unit, ((folder, record),) in sorted(found.items()):
            copy_unit(folder, output, record)
        for relative in (BUILD_CONFIG_NAME, EXCLUDED_NAME):
            remove_stray_temporaries(output / relative)
    summary = finalize_folder(output, config)
    summary.units_done, summary.units_skipped = len(found), len(in_output)
    logger.warning(f"Merged {len(inputs)} folders: {summary}")
    return summary
