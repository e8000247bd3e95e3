"""Training data for TangoCLAP: (audio, caption) pairs from several sources, mixed by weight, bad clips skipped and
counted.

Three kinds of source, each written `kind:path?key=value&...` on the command line (`parse_source`):

- `hf`: any `datasets` dataset with an audio column and a caption column (a Hub id, a local data folder, an
  `audiofolder` with `metadata.csv`, or a `save_to_disk` folder).
- `af_audioset`: AF-AudioSet at a CLAP threshold `tau` among the `top_k` best captions of each window, with its
  audio either embedded (the `audio` column, the 16 kHz window) or in a folder of clips named by clip id, from which
  the captioned 10 s window is cut.
- `manifest`: Tango's JSON-lines files (`{"location": ..., "captions": ...}` per line).

A clip that cannot be used (missing, corrupt, empty, silent, no caption) never stops training: `__getitem__` returns
a record saying why, and `collate_audio_captions` drops it from the batch and counts it by reason and by source, so
the training script can log exactly what was skipped.

Everything random is a pure function of `(seed, epoch, index)`: the mixture order (`MixtureSampler`) and the random
crops (`AudioCaptionDataset`), so a resumed run sees the same data as an uninterrupted one.
"""

from __future__ import annotations

import bisect
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import torch
from transformers.utils import logging

from datasets_scripts.audio import (
    CAPTIONER_RATE,
    EMPTY,
    UNREADABLE,
    WINDOW_SECONDS,
    ClipError,
    decode_audio,
    resample,
    to_mono,
)
from datasets_scripts.loading import local_cache_kwargs

from .front_end import TARGET_SAMPLES, prepare_waveform

logger = logging.get_logger(__name__)

SOURCE_KINDS: tuple[str, ...] = ("hf", "af_audioset", "manifest")
# Skip reason for a row whose caption is missing, empty or not a string (the others are `ClipError` reasons).
NO_CAPTION = "no_caption"
# Tango's JSON-lines keys (`data/train_audiocaps.json`: {"dataset", "location", "captions"}).
MANIFEST_AUDIO_KEY = "location"
MANIFEST_CAPTION_KEY = "captions"
# Written by `datasets_scripts.build` into every AF-AudioSet folder; its `window_seconds` is the captioned window.
_AF_BUILD_CONFIG = "build_config.json"


@dataclass
class DataSourceSpec:
    """
    One training data source.

    Args:
        kind (`str`):
            `"hf"`, `"af_audioset"` or `"manifest"`.
        path (`str`):
            A Hub dataset id or local folder (`hf`), an AF-AudioSet folder or Hub repo (`af_audioset`), or a
            JSON-lines file (`manifest`).
        weight (`float`, *optional*, defaults to 1.0):
            Relative probability of drawing from this source (`MixtureSampler`).
        split (`str`, *optional*, defaults to `"train"`):
            The split (`hf`, `af_audioset`).
        config_name (`str`, *optional*):
            The dataset configuration (`hf` loaded with `load_dataset`).
        audio_column (`str`, *optional*, defaults to `"audio"`):
            The column of audio (an `Audio` feature or file paths). For a `manifest`, the key of the audio path; the
            default stands for Tango's `"location"`.
        caption_column (`str`, *optional*, defaults to `"caption"`):
            The column of captions. For a `manifest`, the key of the caption; the default stands for Tango's
            `"captions"`.
        tau (`float`, *optional*):
            `af_audioset` only: least CLAP similarity kept; `None` takes the dataset's `default_tau`. `-1` keeps
            every caption.
        top_k (`int`, *optional*):
            `af_audioset` only: best captions per window considered; `None` takes the dataset's `default_top_k`.
        audio_dir (`str`, *optional*):
            `af_audioset` without embedded audio: folder of the source clips, named by clip id (searched
            recursively, see `datasets_scripts.sources.clips_from_audio_dir`). `manifest`: the folder relative
            locations resolve against (defaults to the manifest's folder).
    """

    kind: str
    path: str
    weight: float = 1.0
    split: str = "train"
    config_name: str | None = None
    audio_column: str = "audio"
    caption_column: str = "caption"
    tau: float | None = None
    top_k: int | None = None
    audio_dir: str | None = None

    def __post_init__(self):
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"Unknown data source kind {self.kind!r}; expected one of {SOURCE_KINDS}.")
        if not self.path:
            raise ValueError(f"A {self.kind} data source needs a path.")
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"Data source weight must be a positive number, got {self.weight} for {self.path!r}.")
        if self.kind != "af_audioset" and (self.tau is not None or self.top_k is not None):
            raise ValueError(f"tau and top_k apply to af_audioset sources only, not to {self.kind}:{self.path}.")
        if self.tau is not None and not -1.0 <= self.tau <= 1.0:
            raise ValueError(f"tau is a cosine similarity threshold in [-1, 1], got {self.tau} for {self.path!r}.")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k} for {self.path!r}.")

    @property
    def name(self) -> str:
        """`kind:path`, plus `tau`/`top_k` when set: how the source is named in logs and skip counts."""
        extras = [f"{key}={getattr(self, key)}" for key in ("tau", "top_k") if getattr(self, key) is not None]
        return f"{self.kind}:{self.path}" + (f"?{'&'.join(extras)}" if extras else "")


_FIELD_TYPES: dict[str, type] = {"weight": float, "tau": float, "top_k": int}
_SPEC_KEYS = tuple(f.name for f in fields(DataSourceSpec) if f.name not in ("kind", "path"))


def parse_source(spec: str) -> DataSourceSpec:
    """
    Reads a data source written `kind:path`, optionally followed by `?key=value&key=value` with keys among the
    `DataSourceSpec` fields. Values may be percent-encoded (`%26` for `&` in a path).

    Examples: `"af_audioset:/data/af?tau=0.45&top_k=3&audio_dir=/clips&weight=0.7"`,
    `"hf:/data/audiocaps?caption_column=text"`, `"manifest:data/train_audiocaps.json"`.

    Args:
        spec (`str`):
            The source.

    Returns:
        `DataSourceSpec`: the parsed source.

    Raises:
        `ValueError`: an unknown kind or key, a repeated key, a value that is not a number where one is needed, or
        a value out of range; the message quotes `spec`.
    """
    kind, colon, rest = spec.partition(":")
    if not colon:
        raise ValueError(f"Data source {spec!r} is not of the form kind:path (kind one of {SOURCE_KINDS}).")
    kind = kind.strip()
    if kind not in SOURCE_KINDS:
        raise ValueError(f"Unknown data source kind {kind!r} in {spec!r}; expected one of {SOURCE_KINDS}.")
    path, _, query = rest.partition("?")
    options: dict[str, Any] = {}
    for item in filter(None, query.split("&")):
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals:
            raise ValueError(f"Option {item!r} in data source {spec!r} is not key=value.")
        if key not in _SPEC_KEYS:
            raise ValueError(f"Unknown option {key!r} in data source {spec!r}; options are {_SPEC_KEYS}.")
        if key in options:
            raise ValueError(f"Option {key!r} is given twice in data source {spec!r}.")
        value = unquote(value)
        if key in _FIELD_TYPES:
            try:
                options[key] = _FIELD_TYPES[key](value)
            except ValueError:
                raise ValueError(
                    f"Option {key}={value!r} in data source {spec!r} is not a valid {_FIELD_TYPES[key].__name__}."
                ) from None
        else:
            options[key] = value
    try:
        return DataSourceSpec(kind=kind, path=unquote(path), **options)
    except ValueError as error:
        raise ValueError(f"Bad data source {spec!r}: {error}") from None


def _decode_audio_value(value: Any, where: str) -> tuple[np.ndarray, int]:
    """Decodes an `Audio(decode=False)` value (`{"bytes", "path"}`) or a file path; failures are `ClipError`s."""
    if value is None:
        raise ClipError(UNREADABLE, f"{where}: no audio")
    if isinstance(value, (str, os.PathLike)):
        return decode_audio(value)
    if isinstance(value, dict):
        # Empty bytes are an empty clip (decode_audio says "empty"), not a reason to look for the file by name:
        # save_to_disk embeds local files and keeps only their base name as the path.
        if value.get("bytes") is not None:
            try:
                return decode_audio(value["bytes"])
            except ClipError as error:
                # The embedded file's name is what a user can look up; decode_audio only saw bytes.
                raise ClipError(error.reason, f"{value.get('path') or where}: {error.detail}") from error
        if value.get("path"):
            return decode_audio(value["path"])
        raise ClipError(UNREADABLE, f"{where}: audio has neither bytes nor path")
    raise ClipError(UNREADABLE, f"{where}: unexpected audio value of type {type(value).__name__}")


def _read_row(dataset: Any, row: int, where: str) -> dict:
    try:
        return dataset[row]
    except Exception as error:  # a broken shard or an unreadable row is this row's failure, not the run's
        raise ClipError(UNREADABLE, f"{where}: cannot read row {row}: {error}") from error


def _audio_only_access(dataset: Any, audio_column: str, where: str) -> Any:
    """The dataset with its audio column as `Audio(decode=False)`, so a row read returns the encoded bytes (or
    path) and decoding goes through `decode_audio`, whose failures are `ClipError`s rather than crashes."""
    import datasets

    feature = dataset.features[audio_column]
    if isinstance(feature, datasets.Audio):
        dataset = dataset.cast_column(audio_column, datasets.Audio(decode=False))
    elif not (isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")):
        raise ValueError(f"Column {audio_column!r} of {where} is {feature}, neither an Audio feature nor file paths.")
    # Rows must come back as plain Python values whatever format the dataset was saved with.
    return dataset.with_format(None)


def _check_columns(dataset: Any, wanted: list[str], where: str) -> None:
    missing = [column for column in wanted if column not in dataset.column_names]
    if missing:
        raise ValueError(f"{where} has no column {missing[0]!r}; its columns are {dataset.column_names}.")


class _HFRows:
    """Rows of a `datasets` dataset: a caption column and an audio column."""

    def __init__(self, spec: DataSourceSpec):
        import datasets

        location = spec.path
        saved = os.path.isdir(location) and (
            os.path.isfile(os.path.join(location, "state.json"))
            or os.path.isfile(os.path.join(location, "dataset_dict.json"))
        )
        if saved:
            if spec.config_name is not None:
                raise ValueError(
                    f"{location} is a save_to_disk folder, which has no configuration {spec.config_name!r}."
                )
            loaded = datasets.load_from_disk(location)
            if isinstance(loaded, datasets.DatasetDict):
                if spec.split not in loaded:
                    raise ValueError(f"No split {spec.split!r} in {location}; its splits are {list(loaded)}.")
                loaded = loaded[spec.split]
        else:
            loaded = datasets.load_dataset(
                location, spec.config_name, split=spec.split, **local_cache_kwargs(location)
            )
        self.where = spec.name
        _check_columns(loaded, [spec.audio_column, spec.caption_column], spec.name)
        caption_feature = loaded.features[spec.caption_column]
        if not (isinstance(caption_feature, datasets.Value) and caption_feature.dtype in ("string", "large_string")):
            raise ValueError(
                f"Caption column {spec.caption_column!r} of {spec.name} is {caption_feature}, not strings."
            )
        loaded = loaded.select_columns([spec.audio_column, spec.caption_column])
        self.dataset = _audio_only_access(loaded, spec.audio_column, spec.name)
        self.audio_column = spec.audio_column
        self.caption_column = spec.caption_column

    def __len__(self) -> int:
        return len(self.dataset)

    def read(self, row: int) -> tuple[Any, Any]:
        record = _read_row(self.dataset, row, self.where)
        return record[self.caption_column], record[self.audio_column]

    def decode(self, audio: Any, row: int) -> tuple[np.ndarray, int]:
        return _decode_audio_value(audio, f"{self.where}[{row}]")


class _AFAudioSetRows:
    """AF-AudioSet captions kept at (tau, top_k), with their window's audio embedded or cut from the source clip."""

    def __init__(self, spec: DataSourceSpec, tau: float | None, top_k: int | None):
        from datasets_scripts.loading import load_af_audioset

        dataset = load_af_audioset(spec.path, tau=tau, top_k=top_k, split=spec.split)
        self.where = spec.name
        _check_columns(dataset, ["clip_id", "window_start", "caption"], spec.name)
        self.embedded = "audio" in dataset.column_names
        columns = ["clip_id", "window_start", "caption"] + (["audio"] if self.embedded else [])
        dataset = dataset.select_columns(columns)
        self.clips = None
        self.audio_dir = spec.audio_dir
        if self.embedded:
            dataset = _audio_only_access(dataset, "audio", spec.name)
        else:
            if spec.audio_dir is None:
                raise ValueError(
                    f"{spec.name} has no embedded audio; give audio_dir=<folder of its source clips, named by clip id>."
                )
            from datasets_scripts.sources import clips_from_audio_dir

            self.clips = {source.clip_id: source for source in clips_from_audio_dir(spec.audio_dir)}
            dataset = dataset.with_format(None)
        self.dataset = dataset
        self.window_seconds = WINDOW_SECONDS
        build_config = Path(spec.path) / _AF_BUILD_CONFIG
        if build_config.is_file():
            self.window_seconds = float(json.loads(build_config.read_text()).get("window_seconds", WINDOW_SECONDS))

    def __len__(self) -> int:
        return len(self.dataset)

    def read(self, row: int) -> tuple[Any, Any]:
        record = _read_row(self.dataset, row, self.where)
        audio = record["audio"] if self.embedded else (record["clip_id"], record["window_start"])
        return record["caption"], audio

    def decode(self, audio: Any, row: int) -> tuple[np.ndarray, int]:
        if self.embedded:
            return _decode_audio_value(audio, f"{self.where}[{row}]")
        clip_id, window_start = audio
        source = self.clips.get(clip_id)
        if source is None:
            raise ClipError(UNREADABLE, f"no audio file for clip {clip_id!r} under {self.audio_dir}")
        waveform, sampling_rate = source.load()
        # Cut as the build did (`datasets_scripts.audio.make_windows`): the whole clip down-mixed and resampled to
        # 16 kHz, then sliced in 16 kHz samples, so the window is exactly the audio the caption was written for.
        audio_16k = resample(to_mono(waveform), sampling_rate, CAPTIONER_RATE)
        start = round(float(window_start) * CAPTIONER_RATE)
        window = audio_16k[start : start + round(self.window_seconds * CAPTIONER_RATE)]
        if window.size == 0:
            raise ClipError(
                EMPTY,
                f"{source.origin}: window at {window_start} s is past the clip's end "
                f"({len(audio_16k) / CAPTIONER_RATE:.2f} s)",
            )
        return window, CAPTIONER_RATE


def _string_field(entry: Any, key: str) -> str | None:
    value = entry.get(key) if isinstance(entry, dict) else None
    return value if isinstance(value, str) else None


class _ManifestRows:
    """Tango's JSON-lines manifest: one `{"location": <audio path>, "captions": <caption>}` object per line."""

    def __init__(self, spec: DataSourceSpec):
        manifest = Path(spec.path)
        if not manifest.is_file():
            raise ValueError(f"Manifest {spec.path} not found.")
        root = Path(spec.audio_dir) if spec.audio_dir is not None else manifest.parent
        audio_key = MANIFEST_AUDIO_KEY if spec.audio_column == "audio" else spec.audio_column
        caption_key = MANIFEST_CAPTION_KEY if spec.caption_column == "caption" else spec.caption_column
        self.where = spec.name
        self.entries: list[tuple[str, str]] = []
        with open(manifest, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{spec.path}, line {number}: not JSON ({error}).") from None
                location, caption = (_string_field(entry, key) for key in (audio_key, caption_key))
                for key, value in ((audio_key, location), (caption_key, caption)):
                    if value is None:
                        raise ValueError(f"{spec.path}, line {number}: no {key!r} string in {line.strip()[:200]!r}.")
                location = Path(location).expanduser()
                self.entries.append((caption, str(location if location.is_absolute() else root / location)))

    def __len__(self) -> int:
        return len(self.entries)

    def read(self, row: int) -> tuple[Any, Any]:
        return self.entries[row]

    def decode(self, audio: Any, row: int) -> tuple[np.ndarray, int]:
        return decode_audio(audio)


def _derive_seed(*values: int) -> int:
    """A 63-bit seed from non-negative integers, well mixed (numpy's SeedSequence), equal on every machine."""
    state = np.random.SeedSequence([int(v) for v in values]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class AudioCaptionDataset(torch.utils.data.Dataset):
    """
    The rows of several sources, one after another: global index `i` is row `i - offset[s]` of source `s`.

    An item is `{"waveform", "caption", "source"}`, the waveform prepared by `front_end.prepare_waveform` (16 kHz,
    `num_samples` long, peak 0.5), or, for a clip that cannot be used, `{"skipped": reason, "source", "detail"}`
    with `reason` one of `"unreadable"`, `"empty"`, `"silent"`, `"too_short"` or `"no_caption"`.

    Random crops are drawn from a generator seeded by `(seed, epoch, index)`: the same item of the same epoch is
    always the same crop, in any worker, before and after a resume. `set_epoch` must be called before the epoch's
    DataLoader iterator is created (workers copy the dataset when they start; with `persistent_workers=True` they
    keep the epoch they started with).

    Args:
        sources (`list[DataSourceSpec]`):
            The sources.
        num_samples (`int`, *optional*, defaults to 163840):
            Length of every waveform at 16 kHz (10.24 s, Tango's).
        random_crop (`bool`, *optional*, defaults to `True`):
            Crop longer clips at a random start; `False` keeps the start (Tango).
        seed (`int`, *optional*, defaults to 0):
            Seed of the crops.
        default_tau (`float`, *optional*, defaults to 0.45):
            CLAP threshold of `af_audioset` sources that do not set `tau` (the paper's best for AudioCaps); `None`
            keeps every score.
        default_top_k (`int`, *optional*, defaults to 3):
            Captions per window of `af_audioset` sources that do not set `top_k`; `None` keeps every rank.
    """

    def __init__(
        self,
        sources: list[DataSourceSpec],
        num_samples: int = TARGET_SAMPLES,
        random_crop: bool = True,
        seed: int = 0,
        default_tau: float | None = 0.45,
        default_top_k: int | None = 3,
    ):
        if not sources:
            raise ValueError("AudioCaptionDataset needs at least one data source.")
        if num_samples <= 0:
            raise ValueError(f"num_samples must be positive, got {num_samples}.")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}.")
        self.num_samples = int(num_samples)
        self.random_crop = random_crop
        self.seed = int(seed)
        self.epoch = 0
        self.readers: list[Any] = []
        self.names: list[str] = []
        self.weights: list[float] = []
        self.source_lengths: list[int] = []
        name_counts: Counter[str] = Counter()
        for spec in sources:
            if spec.kind == "hf":
                reader = _HFRows(spec)
            elif spec.kind == "af_audioset":
                tau = spec.tau if spec.tau is not None else default_tau
                top_k = spec.top_k if spec.top_k is not None else default_top_k
                reader = _AFAudioSetRows(spec, tau, top_k)
            else:
                reader = _ManifestRows(spec)
            if len(reader) == 0:
                raise ValueError(f"Data source {spec.name} has no rows.")
            # Two sources with one name (the same folder listed twice) would merge their skip counts.
            name_counts[spec.name] += 1
            name = spec.name if name_counts[spec.name] == 1 else f"{spec.name}#{name_counts[spec.name]}"
            self.readers.append(reader)
            self.names.append(name)
            self.weights.append(float(spec.weight))
            self.source_lengths.append(len(reader))
        self._offsets = np.cumsum([0] + self.source_lengths).tolist()
        total_weight = sum(self.weights)
        for name, length, weight in zip(self.names, self.source_lengths, self.weights):
            logger.info(f"Data source {name}: {length} rows, weight {weight} ({weight / total_weight:.1%} of draws)")

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch that seeds the random crops."""
        if epoch < 0:
            raise ValueError(f"epoch must be non-negative, got {epoch}.")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._offsets[-1]

    def locate(self, index: int) -> tuple[int, int]:
        """`(source, row)` of a global index."""
        if not 0 <= index < len(self):
            raise IndexError(f"Index {index} out of range for a dataset of {len(self)} rows.")
        source = bisect.bisect_right(self._offsets, index) - 1
        return source, index - self._offsets[source]

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        source, row = self.locate(index)
        reader, name = self.readers[source], self.names[source]
        try:
            caption, audio = reader.read(row)
            if not isinstance(caption, str) or not caption.strip():
                return {"skipped": NO_CAPTION, "source": name, "detail": f"row {row}: caption {caption!r}"}
            waveform, sampling_rate = reader.decode(audio, row)
            generator = None
            if self.random_crop:
                generator = torch.Generator().manual_seed(_derive_seed(self.seed, self.epoch, index))
            prepared = prepare_waveform(waveform, sampling_rate, self.num_samples, generator)
        except ClipError as error:
            return {"skipped": error.reason, "source": name, "detail": f"row {row}: {error.detail}"}
        return {"waveform": prepared, "caption": caption, "source": name}


class MixtureSampler(torch.utils.data.Sampler[int]):
    """
    Global indices of an `AudioCaptionDataset`, drawn source by weight: each draw picks source `s` with probability
    `weights[s] / sum(weights)`, then the next row of a random permutation of `s` (a new permutation when one is
    used up), so a source is covered evenly rather than with repeats by chance.

    With one source, or weights proportional to the sources' sizes, this is a random permutation of every index
    (repeated when `num_samples` exceeds the total). The order is a pure function of `(seed, epoch)`: identical on
    every process of a distributed run and after a resume.

    Args:
        source_lengths (`list[int]`):
            Rows of each source (`AudioCaptionDataset.source_lengths`).
        weights (`list[float]`):
            Relative weight of each source.
        num_samples (`int`, *optional*):
            Draws per epoch; defaults to `sum(source_lengths)`.
        seed (`int`, *optional*, defaults to 0):
            The seed.
    """

    def __init__(self, source_lengths: list[int], weights: list[float], num_samples: int | None = None, seed: int = 0):
        if len(source_lengths) != len(weights) or not source_lengths:
            raise ValueError(f"Need one weight per source, got lengths {source_lengths} and weights {weights}.")
        if any(int(length) <= 0 for length in source_lengths):
            raise ValueError(f"Every source needs rows, got lengths {source_lengths}.")
        if any(not (math.isfinite(w) and w > 0) for w in weights):
            raise ValueError(f"Weights must be positive numbers, got {weights}.")
        if num_samples is not None and num_samples <= 0:
            raise ValueError(f"num_samples must be positive, got {num_samples}.")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}.")
        self.source_lengths = [int(length) for length in source_lengths]
        self.weights = [float(w) for w in weights]
        self.num_samples = int(num_samples) if num_samples is not None else sum(self.source_lengths)
        self.seed = int(seed)
        self.epoch = 0
        total, total_weight = sum(self.source_lengths), sum(self.weights)
        self.is_permutation = len(self.source_lengths) == 1 or all(
            math.isclose(w / total_weight, n / total, rel_tol=1e-9) for w, n in zip(self.weights, self.source_lengths)
        )

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch; the order of each epoch is fixed by `(seed, epoch)`."""
        if epoch < 0:
            raise ValueError(f"epoch must be non-negative, got {epoch}.")
        self.epoch = int(epoch)

    @staticmethod
    def _cycled_permutation(length: int, count: int, generator: torch.Generator) -> torch.Tensor:
        repeats = -(-count // length)
        return torch.cat([torch.randperm(length, generator=generator) for _ in range(repeats)])[:count]

    def indices(self) -> list[int]:
        """This epoch's indices."""
        # A stream apart from the crops' (which hash (seed, epoch, index)): the leading 1 tags the sampler.
        generator = torch.Generator().manual_seed(_derive_seed(1, self.seed, self.epoch))
        if self.is_permutation:
            return self._cycled_permutation(sum(self.source_lengths), self.num_samples, generator).tolist()
        probabilities = torch.tensor(self.weights, dtype=torch.float64)
        sources = torch.multinomial(probabilities, self.num_samples, replacement=True, generator=generator)
        indices = torch.empty(self.num_samples, dtype=torch.long)
        offset = 0
        for source, length in enumerate(self.source_lengths):
            positions = (sources == source).nonzero().squeeze(1)
            if positions.numel():
                indices[positions] = offset + self._cycled_permutation(length, positions.numel(), generator)
            offset += length
        return indices.tolist()

    def __iter__(self):
        return iter(self.indices())

    def __len__(self) -> int:
        return self.num_samples


def collate_audio_captions(items: list[dict]) -> dict:
    """
    Stacks the usable items of a batch and counts the skipped ones.

    Args:
        items (`list[dict]`):
            `AudioCaptionDataset` items.

    Returns:
        `dict`: `"waveforms"` float32 `(B', num_samples)` of the usable items (`(0, 0)` when none is), `"captions"`
        and `"sources"` (one per usable item), `"skipped"` (reason -> count), `"skipped_sources"` (source name ->
        count) and `"skipped_details"` (`"<source>: <reason>: <detail>"` per skipped item, for logs).
    """
    kept = [item for item in items if "skipped" not in item]
    skipped = [item for item in items if "skipped" in item]
    if kept:
        waveforms = torch.stack([item["waveform"] for item in kept]).to(torch.float32)
    else:
        waveforms = torch.zeros((0, 0), dtype=torch.float32)
    return {
        "waveforms": waveforms,
        "captions": [item["caption"] for item in kept],
        "sources": [item["source"] for item in kept],
        "skipped": dict(Counter(item["skipped"] for item in skipped)),
        "skipped_sources": dict(Counter(item["source"] for item in skipped)),
        "skipped_details": [f"{item['source']}: {item['skipped']}: {item['detail']}" for item in skipped],
    }
