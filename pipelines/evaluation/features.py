"""Clips in, backbone features out: loading evaluation sets, batched extraction, and a content-keyed feature cache.

audioldm_eval embeds one clip per forward pass. Here clips of the same length are batched (the backbones pool over
time, so zero-padding clips of other lengths would change their features; grouping by length keeps every clip's
features what they would be alone). Features can be cached in a folder keyed by the clip's samples, its sampling
rate and the backbone's weights, never beside the user's audio.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file
from tqdm.auto import tqdm

from datasets_scripts.audio import NON_FINITE, NOT_AUDIO, UNREADABLE, ClipError, decode_audio, to_mono
from datasets_scripts.sources import clips_from_audio_dir

from ..cli import UserError, one_line
from .outputs import write_atomically

logger = logging.getLogger(__name__)

# A clip whose peak is below this is reported as silent (kept: a silent generation is a valid, bad, output).
SILENCE_PEAK = 1e-4
# Why a clip is not scored at all (besides `datasets_scripts.audio`'s failures: "unreadable", "empty", "not_audio",
# "non_finite").
EMPTY = "empty"
# Why a clip is left out of one backbone's metrics only (see `evaluate_audio`).
TOO_SHORT = "too_short"


@dataclass
class EvalClip:
    """
    One clip of an evaluation set.

    Args:
        key (`str`): what pairs it with its reference and prompt: the file name without its extension (so that
            `a.wav` pairs with `a.flac`), or the dataset's id column.
        audio (`np.ndarray`): the samples, `(samples,)` or `(channels, samples)`; stored mono float32 (channels
            averaged).
        sampling_rate (`int`): their rate, a positive integer.
    """

    key: str
    audio: np.ndarray
    sampling_rate: int

    def __post_init__(self) -> None:
        if (
            isinstance(self.sampling_rate, bool)
            or int(self.sampling_rate) != self.sampling_rate
            or self.sampling_rate <= 0
        ):
            raise ValueError(
                f"Clip {self.key!r}: sampling_rate must be a positive integer, got {self.sampling_rate!r}."
            )
        self.sampling_rate = int(self.sampling_rate)
        self.audio = to_mono(np.asarray(self.audio, dtype=np.float32))


def _unscoreable(clip: EvalClip) -> str | None:
    """Why `clip` cannot be scored by any metric, or `None`."""
    if clip.audio.size == 0:
        return EMPTY
    if not np.isfinite(clip.audio).all():
        return NON_FINITE
    return None


@dataclass
class ClipSet:
    """
    The clips of one side of an evaluation, and what became of the others.

    However the clips were made, they are screened here, so that nothing unscoreable reaches a backbone: a clip with
    no samples (`"empty"`) or with NaN or infinite samples (`"non_finite"`) is moved out of `clips` into `skipped`.
    Silent clips are kept (a silent generation is a valid, bad, output) and listed in `silent`.

    Args:
        clips (`list[EvalClip]`): the clips; their keys must be distinct.
        skipped (`dict[str, list[str]]`, *optional*): keys of clips already left out, by reason (`"unreadable"`, ...).

    Attributes:
        silent (`list[str]`): keys of kept clips whose peak is below `SILENCE_PEAK`.
        sampling_rates (`dict[int, int]`): how many kept clips are at each rate.
    """

    clips: list[EvalClip]
    skipped: dict[str, list[str]] = field(default_factory=dict)
    silent: list[str] = field(init=False)
    sampling_rates: dict[int, int] = field(init=False)

    def __post_init__(self) -> None:
        repeated = [key for key, count in Counter(c.key for c in self.clips).items() if count > 1]
        if repeated:
            raise ValueError(f"Keys appear more than once, so clips cannot be paired: {repeated[:5]}.")
        kept = []
        for clip in self.clips:
            reason = _unscoreable(clip)
            if reason is None:
                kept.append(clip)
            else:
                logger.warning(f"Not scoring clip {clip.key!r}: {reason}.")
                self.skip(clip.key, reason)
        self.clips = kept
        self.silent = [c.key for c in kept if np.abs(c.audio).max() < SILENCE_PEAK]
        self.sampling_rates = dict(sorted(Counter(c.sampling_rate for c in kept).items()))

    def skip(self, key: str, reason: str) -> None:
        """Records a clip left out, by reason."""
        self.skipped.setdefault(reason, []).append(key)

    def summary(self) -> dict[str, Any]:
        """What the results JSON says of this side: counts, and the keys of every clip skipped or silent."""
        return {
            "clips": len(self.clips),
            "skipped": {reason: list(keys) for reason, keys in sorted(self.skipped.items())},
            "silent": list(self.silent),
            "sampling_rates": {str(rate): count for rate, count in self.sampling_rates.items()},
        }


@dataclass
class ClipSource:
    """
    An evaluation set found and checked, its audio not decoded yet: what [`open_clip_source`] returns and
    [`ClipSource.load`] decodes.

    Args:
        name (`str`): how messages name it (e.g. `"--generated 'outputs'"`).
        keys (`list[str]`): one per clip, distinct.
        loaders (`list[Callable[[], tuple[np.ndarray, int]]]`): decode clip `i`, raising `ClipError`.
        skipped (`dict[str, list[str]]`, *optional*): what listing already left out, by reason: the files of a folder
            in which FFmpeg finds no audio (`"not_audio"`), by their path in the folder.
    """

    name: str
    keys: list[str]
    loaders: list[Callable[[], tuple[np.ndarray, int]]]
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def only(self, keys: Sequence[str] | dict[str, Any]) -> ClipSource:
        """The clips of `keys` only (those this source has), in this source's order; what listing skipped stays."""
        wanted = set(keys)
        kept = [(key, load) for key, load in zip(self.keys, self.loaders) if key in wanted]
        return ClipSource(self.name, [key for key, _ in kept], [load for _, load in kept], self.skipped)

    def load(self, allow_empty: bool = False) -> ClipSet:
        """
        Decodes every clip. Unreadable ones are skipped and counted by reason; the others go through [`ClipSet`]'s
        screening.

        Args:
            allow_empty (`bool`, *optional*, defaults to `False`): return a set with no usable clip rather than raise.

        Raises:
            [`~pipelines.cli.UserError`]: when no clip at all is usable (and `allow_empty` is not set).
        """
        clips = []
        skipped = defaultdict(list, {reason: list(keys) for reason, keys in self.skipped.items()})
        for key, load in tqdm(
            zip(self.keys, self.loaders), total=len(self.keys), desc=f"Loading {self.name}", leave=False
        ):
            try:
                audio, rate = load()
            except ClipError as error:
                skipped[error.reason].append(key)
                logger.warning(f"Not scoring {key!r} of {self.name}: {error}")
                continue
            clips.append(EvalClip(key=key, audio=audio, sampling_rate=rate))
        clip_set = ClipSet(clips, dict(skipped))
        if not clip_set.clips and not allow_empty:
            counts = {reason: len(keys) for reason, keys in clip_set.skipped.items()}
            raise UserError(f"{self.name}: no usable audio clip (skipped by reason: {counts}).")
        return clip_set


def _is_saved_dataset(path: Path) -> bool:
    return any((path / name).is_file() for name in ("state.json", "dataset_info.json", "dataset_dict.json"))


def open_clip_source(
    source: str | os.PathLike,
    audio_column: str = "audio",
    key_column: str | None = None,
    split: str = "test",
    name: str | None = None,
) -> ClipSource:
    """
    Finds an evaluation set and checks it without decoding any audio: a folder of audio files (keyed by file name
    without extension, as audioldm_eval pairs by file name) or a Hugging Face dataset (a folder written by
    `save_to_disk`, a data folder or a Hub id), keyed by `key_column` or by row number.

    A folder is listed as the dataset builder lists one ([`~datasets_scripts.sources.clips_from_audio_dir`]): audio
    is whatever FFmpeg reads, whatever the file's extension, and every other file is accounted for as skipped
    (`"not_audio"`, under its path in the folder) rather than silently ignored. Hidden files and folders (such as the
    partial files of an interrupted write) are not part of the set.

    Args:
        source (`str` or `os.PathLike`): the folder or dataset.
        audio_column (`str`, *optional*, defaults to `"audio"`): for datasets.
        key_column (`str`, *optional*): for datasets; defaults to the row number.
        split (`str`, *optional*, defaults to `"test"`): for datasets with splits.
        name (`str`, *optional*): how messages name the source (e.g. `"--generated 'outputs'"`); defaults to its repr.

    Raises:
        [`~pipelines.cli.UserError`]: naming the source, for one that does not exist, holds no audio, lacks a column
            or the split, cannot be loaded, or whose keys repeat.
    """
    source = os.fspath(source)
    name = name or repr(source)
    path = Path(source).expanduser()
    if path.is_file():
        raise UserError(f"{name} is a file; give a folder of audio files or a dataset.")
    if path.is_dir() and not _is_saved_dataset(path):
        folder = _open_audio_folder(path, name)
        if folder.keys:
            if folder.skipped:
                found = folder.skipped[NOT_AUDIO]
                logger.warning(f"{len(found)} files of {name} hold no audio and are not scored: {found[:5]}.")
            return folder
        if not any(path.glob("*.parquet")) and not (path / "README.md").exists():
            found = folder.skipped.get(NOT_AUDIO, [])
            contents = f"FFmpeg finds no audio in its {len(found)} files, e.g. {found[:3]}" if found else "it is empty"
            raise UserError(f"{name} holds no audio file and no dataset ({contents}).")
    table = open_dataset(source, split, name)
    check_columns(table, name, {"--audio_column": audio_column, "--key_column": key_column})
    import datasets

    table = table.cast_column(audio_column, datasets.Audio(decode=False))
    keys = [str(k) for k in table[key_column]] if key_column else [str(i) for i in range(len(table))]
    _check_distinct(keys, name, [f"row {i}" for i in range(len(keys))])

    def loader(index: int) -> Callable[[], tuple[np.ndarray, int]]:
        def load() -> tuple[np.ndarray, int]:
            value = table[index][audio_column]
            if value is None:
                raise ClipError(UNREADABLE, "no audio")
            return decode_audio(value["bytes"] if value.get("bytes") is not None else value["path"])

        return load

    return ClipSource(name, keys, [loader(i) for i in range(len(keys))])


def _is_hidden(relative: str) -> bool:
    return any(part.startswith(".") for part in Path(relative).parts)


def _open_audio_folder(path: Path, name: str) -> ClipSource:
    """A folder's audio files as clips keyed by file stem, and its other files as skipped `"not_audio"`."""
    root = os.fspath(path)
    try:
        listed = clips_from_audio_dir(root)
    except ValueError as error:  # two audio files with one stem
        raise UserError(f"{name}: {one_line(error)} Clips are paired by file name without extension.") from error
    keys, loaders, not_audio = [], [], []
    for source in listed:
        relative = os.path.relpath(source.origin, root)
        if _is_hidden(relative):
            continue
        if source.listing_failure == NOT_AUDIO:
            not_audio.append(Path(relative).as_posix())
        else:
            keys.append(source.clip_id)
            loaders.append(source.load)
    return ClipSource(name, keys, loaders, {NOT_AUDIO: not_audio} if not_audio else {})


def open_dataset(source: str | os.PathLike, split: str = "test", name: str | None = None) -> Any:
    """
    One split of a Hugging Face dataset: a folder written by `save_to_disk`, a data folder or a Hub id.

    Args:
        source (`str` or `os.PathLike`): the dataset.
        split (`str`, *optional*, defaults to `"test"`): the split (ignored by a saved single `Dataset`).
        name (`str`, *optional*): how messages name the source (e.g. `"--eval_set 'x'"`); defaults to its repr.

    Returns:
        `datasets.Dataset`: with at least one row.

    Raises:
        [`~pipelines.cli.UserError`]: naming the source, for one that does not exist, cannot be loaded, has no such
            split, or no rows.
    """
    import datasets
    from datasets.exceptions import DatasetsError
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    source = os.fspath(source)
    name = name or repr(source)
    path = Path(source).expanduser()
    if path.is_file():
        raise UserError(f"{name} is a file; give a dataset folder or a Hub dataset id.")
    if not path.exists():
        try:
            validate_repo_id(source)
        except HFValidationError:
            raise UserError(f"{name} does not exist (it is neither a folder nor a Hub dataset id).") from None
        if source.startswith((".", "/", "~")):
            raise UserError(f"{name} does not exist.")
    try:
        if _is_saved_dataset(path):
            table = datasets.load_from_disk(os.fspath(path))
        else:
            table = datasets.load_dataset(source, split=split)
    except (OSError, ValueError, KeyError, DatasetsError) as error:
        raise UserError(f"{name} could not be loaded as a dataset (split {split!r}): {one_line(error)}") from error
    if isinstance(table, datasets.DatasetDict):
        if split not in table:
            raise UserError(f"{name} has no split {split!r} (--split); its splits: {list(table)}.")
        table = table[split]
    if len(table) == 0:
        raise UserError(f"{name} has no rows (split {split!r}).")
    return table


def check_columns(table: Any, name: str, columns: dict[str, str | None]) -> None:
    """Refuses a dataset that lacks one of `columns` (option -> column name, `None` for unused), naming both."""
    for flag, column in columns.items():
        if column is not None and column not in table.column_names:
            raise UserError(f"{name} has no column {column!r} ({flag}); its columns: {table.column_names}.")


def _check_distinct(keys: list[str], name: str, labels: list[str]) -> None:
    seen: dict[str, str] = {}
    for key, label in zip(keys, labels):
        if key in seen:
            raise UserError(
                f"{name}: key {key!r} of {label!r} repeats that of {seen[key]!r}, so clips cannot be paired by key."
            )
        seen[key] = label


def load_clip_set(
    source: str | os.PathLike,
    audio_column: str = "audio",
    key_column: str | None = None,
    split: str = "test",
    name: str | None = None,
) -> ClipSet:
    """
    Loads an evaluation set ([`open_clip_source`], then [`ClipSource.load`]).

    Unreadable or empty clips and clips with NaN or infinite samples are skipped and listed by reason; silent ones
    are kept and listed.

    Raises:
        [`~pipelines.cli.UserError`]: for a source that is not there or not usable (see [`open_clip_source`]), or that
            has no usable clip.
    """
    return open_clip_source(source, audio_column, key_column, split, name).load()


# The Cache Directory Tagging Specification's marker (https://bford.info/cachedir/): backup tools skip the folder,
# and the evaluation recognises a cache folder as its own.
CACHE_TAG_NAME = "CACHEDIR.TAG"
CACHE_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by tango-af's evaluation (feature cache).\n"
)


def default_cache_folder() -> Path:
    """`~/.cache/tango-af/eval-features`, under `$XDG_CACHE_HOME` when set."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tango-af" / "eval-features"


class FeatureCache:
    """
    Features on disk, one safetensors file per (clip samples, sampling rate, backbone weights), in a folder tagged
    with a `CACHEDIR.TAG`.

    Args:
        folder (`str` or `os.PathLike`, *optional*): defaults to [`default_cache_folder`].
    """

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder) if folder is not None else default_cache_folder()
        self.hits = self.misses = 0

    @staticmethod
    def key(clip: EvalClip, backbone_id: str) -> str:
        digest = hashlib.sha256(np.ascontiguousarray(clip.audio, dtype=np.float32).tobytes())
        digest.update(f"|{clip.sampling_rate}|{backbone_id}".encode())
        return digest.hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.safetensors"

    def get(self, clip: EvalClip, backbone_id: str) -> dict[str, np.ndarray] | None:
        path = self._path(self.key(clip, backbone_id))
        if path.is_file():
            try:
                features = load_file(path)
            except (OSError, SafetensorError) as error:  # a file damaged or truncated outside this code
                logger.warning(f"Ignoring the unreadable cached features {os.fspath(path)!r} ({one_line(error)}).")
            else:
                self.hits += 1
                return features
        self.misses += 1
        return None

    def put(self, clip: EvalClip, backbone_id: str, features: dict[str, np.ndarray]) -> None:
        path = self._path(self.key(clip, backbone_id))
        path.parent.mkdir(parents=True, exist_ok=True)
        tag = self.folder / CACHE_TAG_NAME
        if not tag.is_file():
            tag.write_text(CACHE_TAG, encoding="utf-8")
        write_atomically(
            path, lambda staging: save_file({k: np.ascontiguousarray(v) for k, v in features.items()}, str(staging))
        )


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of a model's class and weights: features cached for other weights are never reused."""
    digest = hashlib.sha256(type(model).__name__.encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def extract_features(
    clips: Sequence[EvalClip],
    embed_batch: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    prepare: Callable[[np.ndarray, int], np.ndarray],
    backbone_id: str,
    batch_size: int = 16,
    cache: FeatureCache | None = None,
    desc: str = "Features",
) -> dict[str, dict[str, np.ndarray]]:
    """
    Features of every clip by key, in the order of `clips` (the inception score's splits depend on it, so it must
    not depend on what was cached or batched together): each clip `prepare`d from its samples and rate (resampling
    included, the backbone's way), grouped by prepared length and embedded `batch_size` at a time by `embed_batch`
    (which returns per-row arrays).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    out: dict[str, dict[str, np.ndarray]] = {}
    todo = []
    for clip in clips:
        cached = cache.get(clip, backbone_id) if cache is not None else None
        if cached is not None:
            out[clip.key] = cached
        else:
            todo.append(clip)
    groups: dict[int, list[tuple[EvalClip, np.ndarray]]] = defaultdict(list)
    for clip in todo:
        prepared = prepare(clip.audio, clip.sampling_rate)
        groups[len(prepared)].append((clip, prepared))
    with tqdm(total=len(todo), desc=desc, leave=False) as progress:
        for members in groups.values():
            for start in range(0, len(members), batch_size):
                batch = members[start : start + batch_size]
                with torch.no_grad():
                    result = embed_batch(torch.from_numpy(np.stack([p for _, p in batch])).float())
                for row, (clip, _) in enumerate(batch):
                    features = {name: value[row].detach().cpu().numpy() for name, value in result.items()}
                    out[clip.key] = features
                    if cache is not None:
                        cache.put(clip, backbone_id, features)
                progress.update(len(batch))
    return {clip.key: out[clip.key] for clip in clips}
