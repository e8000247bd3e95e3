"""Writing the micro world to disk: one Hugging Face dataset folder per split, plus the raw WAVs.

A split folder holds

    audio/<clip_id>.wav                       the clips, for `datasets_scripts.sources.clips_from_audio_dir`
    data/train-00000-of-00001.parquet         clip_id, audio (WAV bytes embedded), caption, labels (JSON), classes
    README.md                                 the `configs:` that `load_dataset(folder, split="train")` reads
    split.json                                the world config and split that wrote the folder

Every file is written under a temporary name and renamed when whole, so a killed run leaves no half file and a rerun
synthesises only the WAVs that are missing; the labels and captions are recomputed without audio (cheap).
"""

from __future__ import annotations

import argparse
import io
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import soundfile as sf
from tqdm.auto import tqdm

from pipelines.cli import UserError, add_debug_argument, command_line

from .clips import SPLITS, WorldConfig, clip_metadata, generate_clip
from .synthesis import CLASS_ATTRIBUTES, CLASSES

PARQUET_NAME = "train-00000-of-00001.parquet"
_README = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/*.parquet
---
# Micro world: split `{split}`

{size} procedurally generated clips of {seconds} s at {rate} Hz (world seed {seed}), written by
`datasets_scripts.micro_world`. Columns: `clip_id`, `audio`, `caption`, `labels` (JSON), `classes`.
"""


def _features(sampling_rate: int):
    import datasets

    return datasets.Features(
        {
            "clip_id": datasets.Value("string"),
            "audio": datasets.Audio(sampling_rate=sampling_rate),
            "caption": datasets.Value("string"),
            "labels": datasets.Value("string"),
            "classes": datasets.List(datasets.Value("string")),
        }
    )


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_wav(config: WorldConfig, split: str, index: int, path: str) -> None:
    clip = generate_clip(config, split, index)
    buffer = io.BytesIO()
    sf.write(buffer, clip.audio, clip.sampling_rate, format="WAV", subtype=config.wav_subtype)
    _write_atomically(Path(path), buffer.getvalue())


def _config_record(config: WorldConfig) -> dict:
    return {**asdict(config), "classes": list(CLASSES), "class_attributes": CLASS_ATTRIBUTES}


def _split_record(config: WorldConfig, split: str) -> str:
    # What the split's files depend on: everything but the other splits' sizes.
    record = {key: value for key, value in _config_record(config).items() if key != "split_sizes"}
    return json.dumps({"split": split, "size": config.split_size(split), "config": record}, indent=2, sort_keys=True)


def write_split(
    config: WorldConfig, split: str, folder: str | os.PathLike, num_proc: int = 1, progress: bool = True
) -> Path:
    """
    Writes one split as a dataset folder (see the module docstring), resuming an interrupted run.

    Args:
        config (`WorldConfig`):
            The world.
        split (`str`):
            One of `SPLITS`.
        folder (`str` or `os.PathLike`):
            Output folder; created if needed.
        num_proc (`int`, *optional*, defaults to 1):
            Worker processes synthesising WAVs; the files are identical for any value.
        progress (`bool`, *optional*, defaults to `True`):
            Whether to show a tqdm progress bar.

    Returns:
        `Path`: the folder, loadable with `datasets.load_dataset(str(folder), split="train")`.

    Raises:
        `ValueError`: when the folder was written by a different config or split.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(folder)
    audio_dir, data_dir = folder / "audio", folder / "data"
    audio_dir.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    record = _split_record(config, split)
    marker = folder / "split.json"
    if marker.exists() and marker.read_text() != record:
        raise ValueError(f"{folder} holds a split written with another config or split; use a new folder.")
    _write_atomically(marker, record.encode())

    size = config.split_size(split)
    ids = [clip_metadata(config, split, index) for index in range(size)]
    todo = [index for index, (cid, _, _) in enumerate(ids) if not (audio_dir / f"{cid}.wav").exists()]
    paths = [str(audio_dir / f"{ids[index][0]}.wav") for index in todo]
    bar = tqdm(total=len(todo), desc=f"micro world {split}", unit="clip", disable=not progress)
    if num_proc > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=num_proc) as pool:
            for _ in pool.map(_write_wav, [config] * len(todo), [split] * len(todo), todo, paths, chunksize=8):
                bar.update()
    else:
        for index, path in zip(todo, paths):
            _write_wav(config, split, index, path)
            bar.update()
    bar.close()

    parquet = data_dir / PARQUET_NAME
    if todo or not parquet.exists():
        features = _features(config.sampling_rate)
        columns = {
            "clip_id": [cid for cid, _, _ in ids],
            "audio": [{"bytes": (audio_dir / f"{cid}.wav").read_bytes(), "path": f"{cid}.wav"} for cid, _, _ in ids],
            "caption": [caption for _, _, caption in ids],
            "labels": [json.dumps(labels) for _, labels, _ in ids],
            "classes": [[event["class"] for event in labels["events"]] for _, labels, _ in ids],
        }
        tmp = parquet.with_name(f".{parquet.name}.tmp")
        pq.write_table(pa.table(columns, schema=features.arrow_schema), tmp, row_group_size=100)
        os.replace(tmp, parquet)
    readme = _README.format(
        split=split, size=size, seconds=config.clip_seconds, rate=config.sampling_rate, seed=config.seed
    )
    _write_atomically(folder / "README.md", readme.encode())
    return folder


def write_world(
    config: WorldConfig, root: str | os.PathLike, num_proc: int = 1, progress: bool = True
) -> dict[str, Path]:
    """
    Writes every split into `root/<split>` and the config and class list into `root/world.json`.

    Args:
        config (`WorldConfig`):
            The world.
        root (`str` or `os.PathLike`):
            Output folder.
        num_proc (`int`, *optional*, defaults to 1):
            Worker processes per split.
        progress (`bool`, *optional*, defaults to `True`):
            Whether to show progress bars.

    Returns:
        `dict[str, Path]`: split name -> its folder.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _write_atomically(root / "world.json", json.dumps(_config_record(config), indent=2, sort_keys=True).encode())
    return {split: write_split(config, split, root / split, num_proc, progress) for split in SPLITS}


@command_line
def main(argv: list[str] | None = None) -> int:
    """`python -m datasets_scripts.micro_world --root DIR [--seed N] [--pool N] [--captioned N] [--test N] ...`"""
    defaults = WorldConfig()
    parser = argparse.ArgumentParser(prog="python -m datasets_scripts.micro_world", description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, help="Output folder: one subfolder per split, plus world.json.")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    for split in SPLITS:
        parser.add_argument(f"--{split}", type=int, default=defaults.split_sizes[split], help=f"Clips in {split}.")
    parser.add_argument("--clip-seconds", type=float, default=defaults.clip_seconds)
    parser.add_argument("--two-event-probability", type=float, default=defaults.two_event_probability)
    parser.add_argument("--then-probability", type=float, default=defaults.then_probability)
    parser.add_argument("--wav-subtype", default=defaults.wav_subtype, help="soundfile subtype, e.g. PCM_16, FLOAT.")
    parser.add_argument(
        "--held-out-pairs",
        type=int,
        default=defaults.held_out_pairs,
        help="Class pairs the captioned split never holds (odd test clips are drawn from them).",
    )
    parser.add_argument("--num-proc", type=int, default=1)
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if args.num_proc < 1:
        raise UserError(f"--num-proc must be at least 1, got {args.num_proc}.")
    config = WorldConfig(
        seed=args.seed,
        clip_seconds=args.clip_seconds,
        split_sizes={split: getattr(args, split) for split in SPLITS},
        two_event_probability=args.two_event_probability,
        then_probability=args.then_probability,
        wav_subtype=args.wav_subtype,
        held_out_pairs=args.held_out_pairs,
    )
    for split, path in write_world(config, args.root, num_proc=args.num_proc).items():
        print(f"{split}: {path}")
    return 0
