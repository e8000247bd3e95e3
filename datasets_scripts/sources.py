"""Where AF-AudioSet's audio comes from: a folder of files, an AudioSet segment CSV plus a folder, or a `datasets`
dataset with an `Audio` column.

Every source function returns a list of `ClipSource`: an id, where it came from, and a lazy `load()`. Listing reads
no audio (2M AudioSet clips must be cheap to list); decoding happens in `load()`, which raises `ClipError` so that the
builder accounts for every listed clip as windows or as a failure with a reason. A clip the source names but cannot
find (an AudioSet ytid whose video was never downloaded) is still listed, with a `load()` that fails.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm
from transformers.utils import logging

from .audio import NOT_AUDIO, UNREADABLE, ClipError, decode_audio, probe_audio
from .loading import local_cache_kwargs

logger = logging.get_logger(__name__)

# Endings of audio formats FFmpeg decodes. A file named so is listed as a clip without being opened (listing 2M
# AudioSet clips must stay cheap; a damaged one fails when decoded, as "unreadable"). Any other file is probed with
# `probe_audio`, so that a ".webm", ".mp4" or ".xyz" holding audio is a clip too, and the rest is accounted for as
# "not_audio" instead of being left out silently.
AUDIO_EXTENSIONS = (
    ".wav",
    ".flac",
    ".mp3",
    ".ogg",
    ".oga",
    ".opus",
    ".m4a",
    ".aac",
    ".aif",
    ".aiff",
    ".aifc",
    ".wma",
    ".caf",
    ".au",
    ".wv",
    ".mka",
)
# Column names that hold a YouTube id / clip id, in order of preference: AudioSet and MusicCaps use `ytid`,
# AudioCaps `youtube_id`, generic lists `id`.
ID_COLUMNS = ("ytid", "youtube_id", "id")
# Column names that hold a segment's start time: AudioSet `start_seconds`, MusicCaps `start_s`, AudioCaps
# `start_time`.
START_COLUMNS = ("start_seconds", "start_s", "start_time", "start")


class _Loader(Protocol):
    def __call__(self) -> tuple[np.ndarray, int]: ...


# Loaders are small classes rather than closures so that sources pickle (builder workers may receive them).
@dataclass(frozen=True)
class _FileLoader:
    path: str

    def __call__(self) -> tuple[np.ndarray, int]:
        return decode_audio(self.path)


@dataclass(frozen=True)
class _FailingLoader:
    reason: str
    detail: str

    def __call__(self) -> tuple[np.ndarray, int]:
        raise ClipError(self.reason, self.detail)


@dataclass(frozen=True)
class _DatasetRowLoader:
    # The dataset reduced to its audio column, cast to `Audio(decode=False)`: one row read gives the encoded bytes
    # (or the path) and nothing else, and decoding goes through `decode_audio`, whose failures are `ClipError`s.
    dataset: Any = field(repr=False)
    audio_column: str
    index: int

    def __call__(self) -> tuple[np.ndarray, int]:
        try:
            value = self.dataset[self.index][self.audio_column]
        except Exception as error:  # a broken shard or a row that cannot be read is this clip's failure
            raise ClipError(
                UNREADABLE,
                f"row {self.index}: cannot read column {self.audio_column!r}: {error}",
            ) from error
        if value is None:
            raise ClipError(UNREADABLE, f"row {self.index}: no audio")
        # `save_to_disk` embeds a zero-byte file as b"": that is an empty clip, not a missing one.
        if value.get("bytes") is not None:
            return decode_audio(value["bytes"])
        if value.get("path"):
            return decode_audio(value["path"])
        raise ClipError(UNREADABLE, f"row {self.index}: audio has neither bytes nor path")


@dataclass(frozen=True)
class ClipSource:
    """
    One input clip, listed but not yet decoded.

    Args:
        clip_id (`str`):
            The clip's id: an AudioSet ytid, a file stem, or a dataset row's id.
        origin (`str`):
            Where it comes from, for reports: a file path, `"missing:<ytid>"` for a listed clip with no file, or
            `"dataset:<name>[<row index>]"`.
        loader (`Callable[[], tuple[np.ndarray, int]]`):
            What `load()` calls. Not part of equality or the repr.
    """

    clip_id: str
    origin: str
    loader: _Loader = field(repr=False, compare=False)

    def load(self) -> tuple[np.ndarray, int]:
        """
        Decodes the clip.

        Returns:
            `tuple[np.ndarray, int]`: float32 waveform `[channels, samples]` and its sample rate.

        Raises:
            `ClipError`: when the clip is missing, empty or cannot be decoded.
        """
        return self.loader()

    @classmethod
    def from_file(cls, path: str | os.PathLike, clip_id: str | None = None) -> ClipSource:
        """A source that decodes `path`; its id defaults to the file stem."""
        path = os.fspath(path)
        return cls(
            clip_id=clip_id if clip_id is not None else Path(path).stem,
            origin=path,
            loader=_FileLoader(path),
        )

    @classmethod
    def missing(cls, clip_id: str, detail: str, reason: str = UNREADABLE) -> ClipSource:
        """A listed clip with no audio: `load()` raises `ClipError(reason, detail)` (`"unreadable"` by default)."""
        return cls(
            clip_id=clip_id,
            origin=f"missing:{clip_id}",
            loader=_FailingLoader(reason, detail),
        )

    @classmethod
    def not_audio(cls, path: str | os.PathLike, clip_id: str, detail: str) -> ClipSource:
        """A file of the source that holds no audio: listed so that it is accounted for, as `"not_audio"`."""
        return cls(clip_id=clip_id, origin=os.fspath(path), loader=_FailingLoader(NOT_AUDIO, detail))

    @property
    def listing_failure(self) -> str | None:
        """The failure reason already known when the source was listed (a missing file, a file that is not audio),
        or `None` for a clip that has to be decoded to know."""
        return self.loader.reason if isinstance(self.loader, _FailingLoader) else None


def _normalise_extensions(extensions: Iterable[str]) -> tuple[str, ...]:
    # Case-insensitive, with or without the dot: ".WAV" files are as common as ".wav" in scraped corpora.
    return tuple(ext.lower() if ext.startswith(".") else f".{ext.lower()}" for ext in extensions)


def _is_hidden(name: str) -> bool:
    """Names `datasets` leaves out of a folder's data files: dot-files and dot-folders (`.DS_Store`, macOS's
    `._clip.wav` resource forks, `.cache/`, `.git/`) and `__pycache__`-like dunder names."""
    return name.startswith((".", "__"))


def _list_files(audio_dir: str | os.PathLike) -> list[str]:
    """Every file under a folder, recursively, in a stable order; hidden files and folders are left out (and
    counted in the log), as `datasets` leaves them out of a folder's data files."""
    root = os.fspath(audio_dir)
    if not os.path.exists(root):
        raise FileNotFoundError(f"Audio folder not found: {root!r}")
    if not os.path.isdir(root):
        raise NotADirectoryError(f"{root!r} is a file, not a folder of audio files")
    found, hidden = [], []
    # os.walk (not Path.rglob) because it is markedly faster on folders of millions of files.
    for directory, subdirectories, files in os.walk(root):
        hidden += [os.path.join(directory, name) for name in subdirectories + files if _is_hidden(name)]
        subdirectories[:] = sorted(name for name in subdirectories if not _is_hidden(name))
        found.extend(os.path.join(directory, name) for name in sorted(files) if not _is_hidden(name))
    if hidden:
        logger.info(
            f"Left out {len(hidden)} hidden file(s) or folder(s) under {root!r}, e.g. "
            f"{os.path.relpath(min(hidden), root)!r} (names starting with '.' or '__', as `datasets` does)."
        )
    return found


class _AudioProbe:
    """Tells audio files from the rest: by name for `extensions`, by opening the file (`probe_audio`) otherwise.
    Results are cached, so that a file is probed once however many ids point at it."""

    def __init__(self, extensions: Iterable[str]):
        self.extensions = _normalise_extensions(extensions)
        self._cache: dict[str, str | None] = {}

    def why_not_audio(self, path: str) -> str | None:
        """`None` for an audio file, else the reason it is not one."""
        if os.path.splitext(path)[1].lower() in self.extensions:
            return None
        if path not in self._cache:
            self._cache[path] = probe_audio(path)
        return self._cache[path]

    def split(self, paths: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
        """`(audio paths, [(other path, why it is not audio)])`, with a progress bar when many files need opening."""
        unknown = [p for p in paths if os.path.splitext(p)[1].lower() not in self.extensions]
        for path in tqdm(unknown, desc="probing files for audio", unit="file", disable=len(unknown) < 1000):
            self.why_not_audio(path)
        audio, other = [], []
        for path in paths:
            reason = self.why_not_audio(path)
            if reason is None:
                audio.append(path)
            else:
                other.append((path, reason))
        return audio, other


def _index_by_stem(paths: Iterable[str]) -> dict[str, str]:
    by_stem: dict[str, str] = {}
    for path in paths:
        stem = Path(path).stem
        if stem in by_stem:
            first, second = sorted([by_stem[stem], path])
            # Two files with one id would give two clips the same window keys: refuse rather than pick one.
            raise ValueError(f"Two audio files share the id {stem!r}: {first} and {second}.")
        by_stem[stem] = path
    return by_stem


def clips_from_audio_dir(
    audio_dir: str | os.PathLike, extensions: Sequence[str] = AUDIO_EXTENSIONS
) -> list[ClipSource]:
    """
    Lists every file under a folder, recursively: each audio file is a clip; each other file is listed too, with a
    `"not_audio"` failure, so that the builder accounts for it instead of leaving it out silently.

    Audio is whatever FFmpeg decodes, whatever the file's name: files ending in one of `extensions` are taken as
    audio without being opened (a damaged one fails when decoded, as `"unreadable"`); any other file is opened with
    `probe_audio` and is a clip when FFmpeg finds an audio stream in it (a `.webm`, an `.mp4` with sound, ...).

    Args:
        audio_dir (`str` or `os.PathLike`):
            The folder.
        extensions (`Sequence[str]`, *optional*, defaults to `AUDIO_EXTENSIONS`):
            File name endings taken as audio without probing, matched case-insensitively.

    Returns:
        `list[ClipSource]`: sorted by id. An audio file's id is its stem; a file that is not audio is listed under
        its path relative to `audio_dir` (`"notes/README.txt"`), so that a sidecar `clip.json` never competes with
        `clip.wav` for an id.

    Raises:
        `FileNotFoundError`: when the folder does not exist.
        `NotADirectoryError`: when it is a file.
        `ValueError`: when two audio files have the same stem (the message names both paths).
    """
    probe = _AudioProbe(extensions)
    audio, other = probe.split(_list_files(audio_dir))
    by_stem = _index_by_stem(audio)
    sources = [ClipSource.from_file(path, clip_id=stem) for stem, path in by_stem.items()]
    for path, reason in other:
        relative = Path(os.path.relpath(path, audio_dir)).as_posix()
        sources.append(ClipSource.not_audio(path, clip_id=relative, detail=reason))
    return sorted(sources, key=lambda source: source.clip_id)


# A file named after a segment: "<ytid>_<start>" or "<ytid>_<start>_<end>" (or "-<end>"), seconds or milliseconds.
_SEGMENT_SUFFIX = re.compile(r"(?P<start>\d+(?:\.\d+)?)(?:[_-](?P<end>\d+(?:\.\d+)?))?")


def _segment_prefixes(stem: str) -> Iterable[tuple[str, float]]:
    """Every (id, start) reading of a "<id>_<start>[_<end>]" stem. YouTube ids may themselves contain "_" and
    digits, so each "_" is tried as the separator and the lookup by ytid picks the right one."""
    for position, char in enumerate(stem):
        if char == "_" and position > 0:
            match = _SEGMENT_SUFFIX.fullmatch(stem[position + 1 :])
            if match:
                yield stem[:position], float(match.group("start"))


def _parse_float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _data_lines(path: str | os.PathLike) -> tuple[list[str], int]:
    """The file's lines after its leading comment / blank lines (AudioSet's "# Segments csv created ..." header),
    and how many lines were skipped, for line numbers in messages."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        lines = handle.readlines()
    skipped = 0
    while skipped < len(lines) and (not lines[skipped].strip() or lines[skipped].lstrip().startswith("#")):
        skipped += 1
    return lines[skipped:], skipped


def _find_column(header: Sequence[str], names: Sequence[str]) -> int | None:
    normalised = [name.strip().lower() for name in header]
    for name in names:
        if name in normalised:
            return normalised.index(name)
    return None


def _read_segment_rows(
    csv_path: str | os.PathLike,
) -> list[tuple[str, float | None, int]]:
    """(ytid, start seconds or None, line number) for each data row of an AudioSet segment CSV or a CSV with a
    header naming an id column."""
    lines, skipped = _data_lines(csv_path)
    reader = csv.reader(io.StringIO("".join(lines)), skipinitialspace=True)
    rows = list(reader)
    if not rows:
        return []
    id_index = _find_column(rows[0], ID_COLUMNS)
    if id_index is not None:
        # A plain CSV with a header row (MusicCaps, AudioCaps, a hand-made list).
        start_index = _find_column(rows[0], START_COLUMNS)
        first_data = 1
    else:
        # AudioSet's segment CSVs: their header is a comment ("# YTID, start_seconds, end_seconds, positive_labels").
        id_index, start_index, first_data = 0, 1, 0
    result = []
    for offset, row in enumerate(rows[first_data:], start=first_data):
        # reader.line_num is not kept per row; the row offset is exact for one-line rows, the usual case.
        line_number = skipped + offset + 1
        if not row or not any(cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
            continue
        if id_index >= len(row) or not row[id_index].strip():
            raise ValueError(f"{csv_path}, line {line_number}: no clip id in {row!r}.")
        start = _parse_float(row[start_index]) if start_index is not None and start_index < len(row) else None
        result.append((row[id_index].strip(), start, line_number))
    return result


def clips_from_audioset_csv(
    csv_path: str | os.PathLike,
    audio_dir: str | os.PathLike,
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
) -> list[ClipSource]:
    """
    Lists the clips of an AudioSet segment CSV, matched to files in a folder.

    The CSV is either AudioSet's own (`# ...` comment lines, then `YTID, start_seconds, end_seconds,
    positive_labels` rows with quoted labels) or any CSV whose header has a `ytid` (or `youtube_id` / `id`)
    column. A row's ytid matches an audio file (searched recursively, any format FFmpeg decodes, see
    `clips_from_audio_dir`) named `<ytid>.<ext>`, else `<ytid>_<start>...` (start in seconds or milliseconds,
    optionally followed by `_<end>`), else `Y<ytid>.<ext>` (the name used by common AudioSet downloaders). Files
    that are not audio (a `<ytid>.json` beside `<ytid>.wav`) never match. Rows with the same ytid and start are one
    clip. Files the CSV does not name are not part of the source.

    Args:
        csv_path (`str` or `os.PathLike`):
            The segment list.
        audio_dir (`str` or `os.PathLike`):
            The folder holding the downloaded audio.
        extensions (`Sequence[str]`, *optional*, defaults to `AUDIO_EXTENSIONS`):
            File name endings taken as audio without probing.

    Returns:
        `list[ClipSource]`: one per distinct ytid, in CSV order. A ytid with no audio file (or several candidate
        files that cannot be told apart) is still listed; its `load()` raises `ClipError("unreadable", ...)`, or
        `ClipError("not_audio", ...)` when the only files named after it are not audio.

    Raises:
        `ValueError`: a row without an id, one ytid listed with two different start times (two clips that would
        share one id), or two audio files named exactly after one ytid.
    """
    rows = _read_segment_rows(csv_path)
    files_by_stem: dict[str, list[str]] = {}
    for path in _list_files(audio_dir):
        files_by_stem.setdefault(Path(path).stem, []).append(path)
    by_segment_id: dict[str, list[tuple[float, str]]] = {}
    for stem in files_by_stem:
        for ytid, start in _segment_prefixes(stem):
            by_segment_id.setdefault(ytid, []).append((start, stem))

    probe = _AudioProbe(extensions)
    sources: list[ClipSource] = []
    seen: dict[str, tuple[float | None, int]] = {}
    for ytid, start, line_number in rows:
        if ytid in seen:
            first_start, first_line = seen[ytid]
            if first_start == start or start is None or first_start is None:
                continue  # the same clip listed again (AudioCaps lists a clip once per caption)
            raise ValueError(
                f"{csv_path}: ytid {ytid!r} is listed with start {first_start} (line {first_line}) and {start} "
                f"(line {line_number}); two segments of one video would share the clip id."
            )
        seen[ytid] = (start, line_number)
        sources.append(_match_file(ytid, start, files_by_stem, by_segment_id, probe))
    return sources


def _match_file(
    ytid: str,
    start: float | None,
    files_by_stem: dict[str, list[str]],
    by_segment_id: dict[str, list[tuple[float, str]]],
    probe: _AudioProbe,
) -> ClipSource:
    not_audio: list[tuple[str, str]] = []

    def audio_of(stem: str) -> list[str]:
        audio, other = probe.split(files_by_stem.get(stem, []))
        not_audio.extend(other)
        return audio

    exact = audio_of(ytid)
    if len(exact) > 1:
        raise ValueError(f"Two audio files share the id {ytid!r}: {' and '.join(sorted(exact))}.")
    if exact:
        return ClipSource.from_file(exact[0], clip_id=ytid)
    candidates = [(s, path) for s, stem in by_segment_id.get(ytid, []) for path in audio_of(stem)]
    if len(candidates) > 1 and start is not None:
        # Several segments of one video on disk: keep the one whose start matches the CSV's (in s or in ms).
        candidates = [(s, p) for s, p in candidates if abs(s - start) < 1e-3 or abs(s - start * 1000) < 0.5]
    if len(candidates) == 1:
        return ClipSource.from_file(candidates[0][1], clip_id=ytid)
    if len(candidates) > 1:
        paths = ", ".join(sorted(p for _, p in candidates))
        return ClipSource.missing(ytid, f"ambiguous audio files for ytid {ytid!r} (start {start}): {paths}")
    prefixed = audio_of(f"Y{ytid}")
    if len(prefixed) == 1:
        return ClipSource.from_file(prefixed[0], clip_id=ytid)
    if len(prefixed) > 1:
        return ClipSource.missing(ytid, f"ambiguous audio files for ytid {ytid!r}: {', '.join(sorted(prefixed))}")
    if not_audio:
        details = "; ".join(reason for _, reason in not_audio)
        return ClipSource.missing(ytid, f"no audio file for ytid {ytid!r}: {details}", reason=NOT_AUDIO)
    return ClipSource.missing(ytid, f"no audio file for ytid {ytid!r}")


def clips_from_hf_dataset(
    dataset: Any,
    audio_column: str = "audio",
    id_column: str | None = None,
    name: str | None = None,
) -> list[ClipSource]:
    """
    Lists the rows of a `datasets.Dataset` as clips, without decoding any audio.

    Ids come from `id_column` when given, else from the stem of the row's audio file name, else from the row
    index as `f"{index:08d}"`. Each source's `load()` reads its one row with the column cast to
    `Audio(decode=False)` and decodes the bytes (or the path) with `decode_audio`, so a bad row fails as a
    `ClipError` of that clip instead of an exception from the dataset.

    Args:
        dataset (`datasets.Dataset`):
            The dataset. The audio column may be an `Audio` feature or a string column of file paths.
        audio_column (`str`, *optional*, defaults to `"audio"`):
            The column holding the audio.
        id_column (`str`, *optional*):
            A column holding the clip ids (e.g. `"ytid"`).
        name (`str`, *optional*):
            Name used in `origin` (`"dataset:<name>[<index>]"`); defaults to the dataset's `info.dataset_name`,
            else `"dataset"`.

    Returns:
        `list[ClipSource]`: one per row, in row order.

    Raises:
        `ValueError`: a missing audio or id column (the message lists the columns present), an audio column that
        cannot be read as audio, or two rows with the same id.
    """
    import pyarrow.compute as pc
    from datasets import Audio

    columns = list(dataset.column_names)
    if audio_column not in columns:
        raise ValueError(f"No audio column {audio_column!r} in the dataset; its columns are {columns}.")
    if id_column is not None and id_column not in columns:
        raise ValueError(f"No id column {id_column!r} in the dataset; its columns are {columns}.")
    if name is None:
        name = getattr(getattr(dataset, "info", None), "dataset_name", None) or "dataset"

    try:
        # A features-only change (no audio is rewritten or decoded): rows now come back as {"bytes", "path"}.
        audio_only = dataset.select_columns([audio_column]).cast_column(audio_column, Audio(decode=False))
        # Rows must come back as plain Python dicts whatever format the caller set (e.g. "torch").
        audio_only = audio_only.with_format(None)
    except Exception as error:
        raise ValueError(
            f"Column {audio_column!r} ({dataset.features[audio_column]}) cannot be read as audio: {error}"
        ) from error

    # The "arrow" format returns columns as Arrow arrays (memory-mapped for on-disk datasets, honouring any
    # select/shuffle indices); taking the struct's "path" child reads no audio bytes into Python.
    if id_column is not None:
        ids = [None if v is None else str(v) for v in dataset.with_format("arrow")[id_column].to_pylist()]
    else:
        ids = [None] * len(dataset)
    paths = pc.struct_field(audio_only.with_format("arrow")[audio_column], "path").to_pylist()

    sources: list[ClipSource] = []
    first_row: dict[str, int] = {}
    for index, (clip_id, path) in enumerate(zip(ids, paths)):
        if clip_id is None or clip_id == "":
            clip_id = Path(path).stem if path else f"{index:08d}"
        if clip_id in first_row:
            raise ValueError(
                f"Rows {first_row[clip_id]} and {index} of {name} have the same clip id {clip_id!r}; "
                f"give an id_column with unique values."
            )
        first_row[clip_id] = index
        sources.append(
            ClipSource(
                clip_id=clip_id,
                origin=f"dataset:{name}[{index}]",
                loader=_DatasetRowLoader(audio_only, audio_column, index),
            )
        )
    return sources


def load_hf_source(
    name_or_path: str | os.PathLike,
    split: str = "train",
    audio_column: str = "audio",
    id_column: str | None = None,
    **load_kwargs: Any,
) -> list[ClipSource]:
    """
    Loads a dataset and lists it with `clips_from_hf_dataset`.

    Args:
        name_or_path (`str` or `os.PathLike`):
            A folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`, or anything
            `datasets.load_dataset` accepts (a Hub repo id, a local data folder, a builder name such as
            `"audiofolder"` with `data_dir=` in `load_kwargs`).
        split (`str`, *optional*, defaults to `"train"`):
            The split to list.
        audio_column (`str`, *optional*, defaults to `"audio"`):
            See `clips_from_hf_dataset`.
        id_column (`str`, *optional*):
            See `clips_from_hf_dataset`.
        load_kwargs:
            Passed to `datasets.load_dataset`.

    Raises:
        [`~datasets_scripts.validation.ArgumentError`]: naming `name_or_path` when it is a file, a path that does not
        exist, or a Hub id that cannot be loaded (offline and not cached, or not on the Hub).
    """
    import datasets

    from .validation import check_reference, describe_load_failure

    location = check_reference("name_or_path", name_or_path, "a dataset")
    saved = os.path.isdir(location) and (
        os.path.isfile(os.path.join(location, "state.json"))
        or os.path.isfile(os.path.join(location, "dataset_dict.json"))
    )
    if saved:
        loaded = datasets.load_from_disk(location)
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ValueError(f"No split {split!r} in {location}; its splits are {list(loaded)}.")
            loaded = loaded[split]
    else:
        try:
            loaded = datasets.load_dataset(location, split=split, **local_cache_kwargs(location, **load_kwargs))
        except (ConnectionError, FileNotFoundError) as error:
            # datasets' DatasetNotFoundError is a FileNotFoundError; offline, an uncached id is a ConnectionError.
            raise describe_load_failure("name_or_path", location, "a dataset", error) from error
    return clips_from_hf_dataset(
        loaded,
        audio_column=audio_column,
        id_column=id_column,
        name=f"{location}:{split}",
    )


def read_id_list(path: str | os.PathLike) -> set[str]:
    """
    Reads clip ids to exclude (evaluation clips) or include.

    Accepted formats: one id per line; a CSV whose header has a `ytid`, `youtube_id` or `id` column (in that order
    of preference: MusicCaps' CSV has `ytid`, AudioCaps' `youtube_id`); or a header-less CSV such as AudioSet's
    segment lists, whose first column is the id. Blank lines and lines starting with `#` are ignored.

    Args:
        path (`str` or `os.PathLike`):
            The file.

    Returns:
        `set[str]`: the ids, stripped of surrounding spaces.
    """
    lines, _ = _data_lines(path)
    if not lines:
        return set()
    first = next(csv.reader([lines[0]], skipinitialspace=True), [])
    if _find_column(first, ID_COLUMNS) is not None or "," in lines[0]:
        # CSV: parsed as a whole because quoted fields (captions) may hold commas and line breaks.
        return {ytid for ytid, _, _ in _read_segment_rows(path)}
    ids = set()
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            ids.add(line)
    return ids


def exclude_ids(sources: Iterable[ClipSource], ids: Iterable[str]) -> tuple[list[ClipSource], list[ClipSource]]:
    """
    Splits sources by id, keeping their order.

    Args:
        sources (`Iterable[ClipSource]`):
            The sources.
        ids (`Iterable[str]`):
            The ids to exclude (e.g. from `read_id_list` on AudioCaps' and MusicCaps' test CSVs).

    Returns:
        `tuple[list[ClipSource], list[ClipSource]]`: `(kept, excluded)`.
    """
    ids = set(ids)
    kept, excluded = [], []
    for source in sources:
        (excluded if source.clip_id in ids else kept).append(source)
    return kept, excluded
