"""Loading AF-AudioSet at any tau: `load_af_audioset(...)` and the `AFAudioSet` builder class.

`load_dataset(folder_or_repo, "tau0.45")` works without this module (the card's `configs` carry parquet filters);
these helpers add any (tau, top_k) pair and the builder interface (`download_and_prepare` / `as_dataset`).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq

from .schema import (
    DATA_DIR,
    DEFAULT_TOP_K,
    FEATURES,
    FEATURES_WITH_AUDIO,
    SPLIT,
    filters,
)
from .validation import check_reference


def local_cache_kwargs(location: str | os.PathLike, **kwargs: Any) -> dict[str, Any]:
    """
    `load_dataset` keyword arguments that keep a local dataset folder from being served a stale cache: `kwargs` plus,
    for a local folder, a `cache_dir` named after a fingerprint of its files (relative names, sizes and modification
    times).

    datasets 5.2 keys the cache of a folder whose card declares `configs` by the folder's name and the configs' data
    file patterns only, not by the files they match, so a folder rewritten in place (a resumed build, a rebuilt
    world), or another folder of the same name, loads the rows cached the first time. Measured: a shard rewritten
    with 10 of its 96 rows still loaded 96. A content-addressed cache folder is rebuilt exactly when the files change.
    Hub repos (cached by revision), streaming, and an explicit `cache_dir` are left alone.

    Args:
        location (`str` or `os.PathLike`): what is passed to `load_dataset`.
        **kwargs: the other `load_dataset` keyword arguments.

    Returns:
        `dict[str, Any]`: the keyword arguments to use.
    """
    folder = Path(os.path.expanduser(os.fspath(location)))
    if not folder.is_dir() or kwargs.get("streaming") or kwargs.get("cache_dir") is not None:
        return kwargs
    entries = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        stat = path.stat()
        entries.append((relative.as_posix(), stat.st_size, stat.st_mtime_ns))
    fingerprint = hashlib.sha256(json.dumps([os.path.abspath(folder), entries]).encode()).hexdigest()[:16]
    return {**kwargs, "cache_dir": os.path.join(datasets.config.HF_DATASETS_CACHE, "tango-af-local", fingerprint)}


def load_af_audioset(
    path: str | os.PathLike, tau: float | None = 0.45, top_k: int | None = DEFAULT_TOP_K, split: str = SPLIT, **kwargs
) -> datasets.Dataset:
    """
    The captions of an AF-AudioSet folder or Hub repo kept at `tau` among the `top_k` best of each window.

    Args:
        path (`str` or `os.PathLike`): a dataset folder or Hub repo id.
        tau (`float`, *optional*, defaults to 0.45): least CLAP similarity kept, a finite number in [-1, 1]; `None`
            keeps every score.
        top_k (`int`, *optional*, defaults to 3): best captions per window considered, a whole number of at least 1;
            `None` keeps all ranks.

    Raises:
        [`~datasets_scripts.validation.ArgumentError`] (a `ValueError`): naming a bad `tau`, `top_k` or `path`.
        split (`str`, *optional*, defaults to `"train"`): the split.
        **kwargs: passed to `datasets.load_dataset` (e.g. `streaming=True`).
    """
    rules = filters(tau, top_k)
    check_reference("path", path, "an AF-AudioSet dataset")
    try:
        return datasets.load_dataset(
            str(path), "all", split=split, filters=rules or None, **local_cache_kwargs(path, **kwargs)
        )
    except ValueError as error:
        # datasets refuses a split that the filters empty entirely; an empty table is the right answer.
        if "corresponds to no data" not in str(error):
            raise
        return datasets.Dataset.from_dict({name: [] for name in FEATURES}, features=FEATURES)


@dataclass
class AFAudioSetConfig(datasets.BuilderConfig):
    """
    Args:
        tau (`float`, *optional*): least CLAP similarity kept; `None` keeps every score.
        top_k (`int`, *optional*, defaults to 3): best captions per window considered; `None` keeps all ranks.
    """

    tau: float | None = None
    top_k: int | None = DEFAULT_TOP_K

    def __post_init__(self):
        super().__post_init__()
        filters(self.tau, self.top_k)  # validates both values


class AFAudioSet(datasets.ArrowBasedBuilder):
    """
    AF-AudioSet as a `datasets` builder over a dataset folder's parquet shards, filtered at (`tau`, `top_k`):

    ```python
    builder = AFAudioSet(data_dir="af-audioset", tau=0.45, top_k=3)
    builder.download_and_prepare()
    dataset = builder.as_dataset(split="train")
    ```
    """

    BUILDER_CONFIG_CLASS = AFAudioSetConfig
    DEFAULT_WRITER_BATCH_SIZE = 10_000

    def _shard_files(self) -> list[str]:
        data_dir = self.config.data_dir
        if not data_dir:
            raise ValueError("AFAudioSet needs `data_dir`: the dataset folder holding `data/*.parquet`.")
        files = sorted(glob.glob(os.path.join(data_dir, DATA_DIR, "*.parquet")))
        if not files:
            raise FileNotFoundError(f"No parquet shards under {os.path.join(data_dir, DATA_DIR)}.")
        return files

    def _info(self) -> datasets.DatasetInfo:
        features = FEATURES
        if self.config.data_dir and os.path.isdir(os.path.join(self.config.data_dir, DATA_DIR)):
            first = self._shard_files()[0]
            if "audio" in pq.read_schema(first).names:
                features = FEATURES_WITH_AUDIO
        return datasets.DatasetInfo(
            description="Synthetic audio captions with CLAP similarities (arXiv 2406.15487).", features=features
        )

    def _split_generators(self, dl_manager):
        return [datasets.SplitGenerator(name=SPLIT, gen_kwargs={"files": self._shard_files()})]

    def _generate_tables(self, files: list[str]):
        rules = filters(self.config.tau, self.config.top_k) or None
        for index, path in enumerate(files):
            table = pq.read_table(path, filters=rules)
            yield index, table.cast(self.info.features.arrow_schema)
