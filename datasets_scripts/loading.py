"""Loading AF-AudioSet at any tau: `load_af_audioset(...)` and the `AFAudioSet` builder class.

`load_dataset(folder_or_repo, "tau0.45")` works without this module (the card's `configs` carry parquet filters);
these helpers add any (tau, top_k) pair and the builder interface (`download_and_prepare` / `as_dataset`).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

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


def load_af_audioset(
    path: str | os.PathLike, tau: float | None = 0.45, top_k: int | None = DEFAULT_TOP_K, split: str = SPLIT, **kwargs
) -> datasets.Dataset:
    """
    The captions of an AF-AudioSet folder or Hub repo kept at `tau` among the `top_k` best of each window.

    Args:
        path (`str` or `os.PathLike`): a dataset folder or Hub repo id.
        tau (`float`, *optional*, defaults to 0.45): least CLAP similarity kept; `None` keeps every score.
        top_k (`int`, *optional*, defaults to 3): best captions per window considered; `None` keeps all ranks.
        split (`str`, *optional*, defaults to `"train"`): the split.
        **kwargs: passed to `datasets.load_dataset` (e.g. `streaming=True`).
    """
    rules = filters(tau, top_k)
    try:
        return datasets.load_dataset(str(path), "all", split=split, filters=rules or None, **kwargs)
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
