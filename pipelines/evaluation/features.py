"""Clips in, backbone features out: loading evaluation sets, batched extraction, and a content-keyed feature cache.

audioldm_eval embeds one clip per forward pass. Here clips of the same length are batched (the backbones pool over
time, so zero-padding clips of other lengths would change their features; grouping by length keeps every clip's
features what they would be alone). Features can be cached in a folder keyed by the clip's samples, its sampling
rate and the backbone's weights, never beside the user's audio.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from tqdm.auto import tqdm
from transformers.utils import logging

from datasets_scripts.audio import ClipError, decode_audio, to_mono

logger = logging.get_logger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")
# A clip whose peak is below this is reported as silent (kept: a silent generation is a valid, bad, output).
SILENCE_PEAK = 1e-4


@dataclass
class EvalClip:
    """
    One clip of an evaluation set.

    Args:
        key (`str`): what pairs it with its reference and prompt: the file name without its extension (so that
            `a.wav` pairs with `a.flac`), or the dataset's id column.
        audio (`np.ndarray`): mono float32 samples.
        sampling_rate (`int`): their rate.
    """

    key: str
    audio: np.ndarray
    sampling_rate: int


@dataclass
class ClipSet:
    """Loaded clips and what happened to the others (`skipped` by reason, `silent` keys, `sampling_rates` seen)."""

    clips: list[EvalClip]
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_keys: list[str] = field(default_factory=list)
    silent: list[str] = field(default_factory=list)
    sampling_rates: dict[int, int] = field(default_factory=dict)

    def summary(self) -> dict:
        return {
            "clips": len(self.clips),
            "skipped": self.skipped,
            "silent": len(self.silent),
            "sampling_rates": {str(k): v for k, v in sorted(self.sampling_rates.items())},
        }


def _finish(loaded: list[tuple[str, Callable[[], tuple[np.ndarray, int]]]], source: str) -> ClipSet:
    clips, skipped, skipped_keys, silent, rates = [], Counter(), [], [], Counter()
    for key, load in tqdm(loaded, desc=f"Loading {Path(source).name or source}", leave=False):
        try:
            audio, rate = load()
        except ClipError as error:
            skipped[error.reason] += 1
            skipped_keys.append(key)
            logger.warning(f"Skipping {key!r} of {source}: {error}")
            continue
        audio = to_mono(audio)
        if np.abs(audio).max() < SILENCE_PEAK:
            silent.append(key)
        rates[rate] += 1
        clips.append(EvalClip(key=key, audio=audio, sampling_rate=rate))
    if not clips:
        raise ValueError(f"No readable audio clip in {source!r} (skipped: {dict(skipped) or 'nothing found'}).")
    keys = Counter(c.key for c in clips)
    duplicated = [k for k, n in keys.items() if n > 1]
    if duplicated:
        raise ValueError(f"Keys appear more than once in {source!r}, so clips cannot be paired: {duplicated[:5]}.")
    return ClipSet(clips, dict(skipped), skipped_keys, silent, dict(rates))


def load_clip_set(
    source: str | os.PathLike,
    audio_column: str = "audio",
    key_column: str | None = None,
    split: str = "test",
) -> ClipSet:
    """
    Loads an evaluation set: a folder of audio files (keyed by file name without extension; audioldm_eval pairs by
    file name) or a Hugging Face dataset (Hub id, saved folder or data folder), keyed by `key_column` or by row
    number.

    Unreadable or empty clips are skipped and counted; silent ones are kept and listed; NaN samples are unreadable.

    Raises:
        `ValueError`: for a source with no readable clip, or keys that repeat.
    """
    source = os.fspath(source)
    path = Path(source)
    if path.is_dir() and not (path / "dataset_info.json").exists() and not (path / "state.json").exists():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
        if files:
            return _finish([(p.stem, lambda p=p: decode_audio(p)) for p in files], source)
        if not any(path.glob("*.parquet")) and not (path / "README.md").exists():
            raise ValueError(f"{source!r} holds no audio file ({', '.join(AUDIO_EXTENSIONS)}) and no dataset.")
    import datasets

    if (path / "state.json").exists() or (path / "dataset_dict.json").exists():
        table = datasets.load_from_disk(source)
        if isinstance(table, datasets.DatasetDict):
            table = table[split]
    else:
        table = datasets.load_dataset(source, split=split)
    if audio_column not in table.column_names:
        raise ValueError(f"{source!r} has no audio column {audio_column!r}; columns: {table.column_names}.")
    if key_column is not None and key_column not in table.column_names:
        raise ValueError(f"{source!r} has no key column {key_column!r}; columns: {table.column_names}.")
    table = table.cast_column(audio_column, datasets.Audio(decode=False))
    keys = [str(k) for k in table[key_column]] if key_column else [str(i) for i in range(len(table))]

    def loader(index: int) -> Callable[[], tuple[np.ndarray, int]]:
        def load() -> tuple[np.ndarray, int]:
            value = table[index][audio_column]
            if value is None:
                raise ClipError("unreadable", "no audio")
            return decode_audio(value["bytes"] if value.get("bytes") is not None else value["path"])

        return load

    return _finish([(key, loader(i)) for i, key in enumerate(keys)], source)


class FeatureCache:
    """
    Features on disk, one safetensors file per (clip samples, sampling rate, backbone weights).

    Args:
        folder (`str` or `os.PathLike`, *optional*): defaults to `~/.cache/tango-af/eval-features` (under
            `$XDG_CACHE_HOME` when set).
    """

    def __init__(self, folder: str | os.PathLike | None = None):
        if folder is None:
            folder = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tango-af" / "eval-features"
        self.folder = Path(folder)
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
            self.hits += 1
            return load_file(path)
        self.misses += 1
        return None

    def put(self, clip: EvalClip, backbone_id: str, features: dict[str, np.ndarray]) -> None:
        path = self._path(self.key(clip, backbone_id))
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_suffix(f".{os.getpid()}.partial")
        save_file({k: np.ascontiguousarray(v) for k, v in features.items()}, str(staging))
        os.replace(staging, path)


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
    Features of every clip by key: each clip `prepare`d from its samples and rate (resampling included, the
    backbone's way), grouped by prepared length and embedded `batch_size` at a time by `embed_batch` (which returns
    per-row arrays).
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
    return out
