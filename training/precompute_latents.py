#!/usr/bin/env python
"""Encode a training set once: VAE posterior moments of each clip's log-mel and its caption's text encoding.

`train_tango_clap.py --precomputed_latents DIR` then trains without running the VAE or the text encoder at each
step; it still draws the posterior sample per step (from the stored mean and log-variance), so the loss is the same
as with on-the-fly encoding for the same clips and noise. What is fixed at encoding time: the crop of each clip
(epoch 0's) and the captions (no mixup).

```bash
python training/precompute_latents.py --pretrained_model_name_or_path ./tango-diffusers \\
  --train_data "hf:/data/audiocaps" --output_dir ./audiocaps-latents
```

Rows are written in shards of `--shard_size` clips, each renamed into place when whole: a killed job is run again
with the same arguments and continues after the last whole shard.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging as py_logging
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm
from transformers.utils import logging

from pipelines.cli import add_debug_argument, command_line
from pipelines.tango_clap.pipeline_tango_clap import TangoCLAPPipeline
from training.components import build_pipeline, frames_for
from training.data import AudioCaptionDataset, collate_audio_captions, parse_source
from training.front_end import TangoMelSpectrogram

logger = logging.get_logger(__name__)

INFO_NAME = "precompute_info.json"
SHARDS_DIR = "shards"
EMPTY_SHARD_MARKER = "EMPTY"


def row_features(row: dict) -> datasets.Features:
    """
    The columns of a precomputed row with fixed-shape array types (`Array3D` for the latent moments, `Array2D` with a
    free first axis for the text encoding): `datasets` reads those back as whole arrays, about ten times faster per
    training batch than nested lists, which the data loader would otherwise spend more time on than the UNet.
    """
    channels, frames, bins = row["latent_mean"].shape
    return datasets.Features(
        {
            "caption": datasets.Value("string"),
            "latent_mean": datasets.Array3D((channels, frames, bins), "float32"),
            "latent_logvar": datasets.Array3D((channels, frames, bins), "float32"),
            "text_hidden": datasets.Array2D((None, row["text_hidden"].shape[-1]), "float32"),
            "text_mask": datasets.Sequence(datasets.Value("int64")),
        }
    )


def shard_folders(output_dir: str | os.PathLike) -> list[Path]:
    root = Path(output_dir) / SHARDS_DIR
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit()) if root.is_dir() else []


def load_precomputed(output_dir: str | os.PathLike) -> tuple[datasets.Dataset, dict]:
    """The encoded rows of a precompute folder (all shards) and its info (including the encoding of `""`)."""
    info_path = Path(output_dir) / INFO_NAME
    if not info_path.is_file():
        raise ValueError(f"{os.fspath(output_dir)!r} is not a precomputed-latents folder (no {INFO_NAME}).")
    info = json.loads(info_path.read_text())
    shards = shard_folders(output_dir)
    if len(shards) != info["num_shards"]:
        raise ValueError(
            f"{os.fspath(output_dir)!r} has {len(shards)} of its {info['num_shards']} shards: the encoding did not "
            "finish; run precompute_latents.py again with the same arguments to complete it."
        )
    # A shard whose clips were all skipped is an empty folder marking the shard done.
    tables = [datasets.load_from_disk(str(p)) for p in shards if not (p / EMPTY_SHARD_MARKER).is_file()]
    if not tables:
        raise ValueError(f"{os.fspath(output_dir)!r} holds no clip: every one was skipped ({info['skipped']}).")
    return datasets.concatenate_datasets(tables), info


def parse_latents_spec(spec: str | os.PathLike) -> tuple[str, float]:
    """
    Reads a precomputed-latents source written `path[?weight=W]` (the mixture weight of `--train_data` sources).

    Args:
        spec (`str` or `os.PathLike`): the source.

    Returns:
        `tuple[str, float]`: the folder and its weight (1.0 when not given).

    Raises:
        `ValueError`: an option other than `weight`, or a weight that is not a positive finite number; the message
        quotes `spec`.
    """
    path, _, query = os.fspath(spec).partition("?")
    weight = 1.0
    for item in filter(None, query.split("&")):
        key, equals, value = item.partition("=")
        if key.strip() != "weight" or not equals:
            raise ValueError(f"Precomputed-latents source {spec!r} takes only '?weight=W', got {item!r}.")
        try:
            weight = float(value)
        except ValueError:
            raise ValueError(f"The weight {value!r} of precomputed-latents source {spec!r} is not a number.") from None
        if not (np.isfinite(weight) and weight > 0):
            raise ValueError(f"The weight of precomputed-latents source {spec!r} must be positive, got {value!r}.")
    return path, weight


# What every folder of one training run must share: they feed one UNet through one text encoder and one VAE.
_SHARED_INFO = ("frames", "scaling_factor", "empty_text_hidden", "empty_text_mask")


class LatentsDataset(torch.utils.data.Dataset):
    """
    The rows of one or more precompute folders as tensors, with the attributes the training loop's mixture sampler
    needs (one source per folder, drawn by its weight).

    Args:
        paths (`str`, `os.PathLike` or a list of them): folders written by [`precompute_latents`], each optionally
            followed by `?weight=W` (see [`parse_latents_spec`]).
    """

    def __init__(self, paths: str | os.PathLike | list[str | os.PathLike]):
        specs = [parse_latents_spec(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
        if not specs:
            raise ValueError("No precomputed-latents folder given.")
        tables = []
        for path, _ in specs:
            table, info = load_precomputed(path)
            if tables:
                different = [key for key in _SHARED_INFO if info[key] != self.info[key]]
                if different:
                    raise ValueError(
                        f"Precomputed-latents folders {specs[0][0]!r} and {path!r} differ in {different}: they were "
                        "encoded with other settings or another text encoder or VAE and cannot train one model."
                    )
            else:
                self.info = info
            tables.append(table)
        self.paths = [path for path, _ in specs]
        self.table = datasets.concatenate_datasets(tables).with_format("torch")
        self.source_lengths = [len(t) for t in tables]
        self.weights = [weight for _, weight in specs]

    def set_epoch(self, epoch: int) -> None:
        """Crops were fixed at encoding time: nothing changes between epochs."""

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> dict:
        return self.table[int(index)]

    def __getitems__(self, indices: list[int]) -> list[dict]:
        """A whole batch in one read (the data loader calls this when it exists): far cheaper than row by row."""
        columns = self.table[[int(i) for i in indices]]
        return [{name: values[i] for name, values in columns.items()} for i in range(len(indices))]


def collate_latents(rows: list[dict]) -> dict:
    """Stacks moments, and zero-pads text encodings (mask 0) to the batch's longest caption."""
    length = max(row["text_mask"].shape[0] for row in rows)

    def pad(tensor: torch.Tensor) -> torch.Tensor:
        missing = length - tensor.shape[0]
        return torch.nn.functional.pad(tensor, (0, 0, 0, missing) if tensor.dim() == 2 else (0, missing))

    return {
        "mean": torch.stack([row["latent_mean"] for row in rows]),
        "logvar": torch.stack([row["latent_logvar"] for row in rows]),
        "hidden": torch.stack([pad(row["text_hidden"]) for row in rows]),
        "mask": torch.stack([pad(row["text_mask"]) for row in rows]),
        "captions": [row["caption"] for row in rows],
        "skipped": {},
    }


class EncodingCache:
    """
    Encodings already computed with one pipeline, kept in memory so that a clip that appears in several rows or
    sources (AF-AudioSet keeps up to three captions a clip; a study trains on several filtered copies of one corpus)
    goes through the mel front end and the VAE once, and a repeated caption through the text encoder once. Clips are
    keyed by their samples (and the frames asked for), so the same audio read from two sources is recognised.

    Use one cache per pipeline: it does not know which VAE or text encoder filled it.
    """

    def __init__(self):
        self.moments: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.texts: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @staticmethod
    def clip_key(waveform: torch.Tensor, frames: int) -> str:
        return f"{frames}:{hashlib.sha1(waveform.detach().cpu().numpy().tobytes()).hexdigest()}"


@torch.no_grad()
def encode_batch(
    pipe: TangoCLAPPipeline,
    front_end: TangoMelSpectrogram,
    batch: dict,
    frames: int,
    device: torch.device,
    cache: EncodingCache | None = None,
) -> Iterator[dict]:
    """
    Rows for one collated batch: posterior moments and the caption's encoding trimmed to its own tokens. With a
    `cache`, only clips and captions it does not hold yet are encoded (and then added to it).
    """
    cache = EncodingCache() if cache is None else cache
    keys = [cache.clip_key(waveform, frames) for waveform in batch["waveforms"]]
    missing = [i for i, key in enumerate(keys) if key not in cache.moments]
    if missing:
        mel = front_end(batch["waveforms"][missing].to(device), num_frames=frames)
        posterior = pipe.vae.encode(mel[:, None].to(pipe.vae.dtype)).latent_dist
        for j, i in enumerate(missing):
            cache.moments[keys[i]] = (
                posterior.mean[j].float().cpu().numpy(),
                posterior.logvar[j].float().cpu().numpy(),
            )
    new_captions = [c for c in dict.fromkeys(batch["captions"]) if c not in cache.texts]
    if new_captions:
        hidden, mask = pipe.encode_text(new_captions, device=device)
        for i, caption in enumerate(new_captions):
            length = int(mask[i].sum())
            cache.texts[caption] = (
                hidden[i, :length].float().cpu().numpy(),
                mask[i, :length].cpu().numpy().astype(np.int64),
            )
    for key, caption in zip(keys, batch["captions"]):
        mean, logvar = cache.moments[key]
        text_hidden, text_mask = cache.texts[caption]
        yield {
            "caption": caption,
            "latent_mean": mean,
            "latent_logvar": logvar,
            "text_hidden": text_hidden,
            "text_mask": text_mask,
        }


def precompute_latents(
    pipe: TangoCLAPPipeline,
    dataset: AudioCaptionDataset,
    output_dir: str | os.PathLike,
    frames: int,
    batch_size: int = 8,
    shard_size: int = 1000,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    cache: EncodingCache | None = None,
) -> dict:
    """
    Encodes `dataset` (epoch 0's crops, in order) into `output_dir`, resuming after the last whole shard.

    Args:
        pipe ([`TangoCLAPPipeline`]): its VAE and text encoder encode the rows.
        dataset (`AudioCaptionDataset`): the rows.
        output_dir (`str` or `os.PathLike`): the folder (see the module docstring).
        frames (`int`): mel frames per clip.
        batch_size (`int`, *optional*, defaults to 8): rows per encoding batch.
        shard_size (`int`, *optional*, defaults to 1000): rows per shard (a multiple of `batch_size`).
        device (`str` or `torch.device`, *optional*, defaults to `"cpu"`): where to encode.
        num_workers (`int`, *optional*, defaults to 0): data loader workers.
        cache ([`EncodingCache`], *optional*): encodings to reuse and extend, e.g. across the sources of a study;
            a fresh one per call otherwise (repeated clips and captions within `dataset` are still encoded once).

    Returns:
        `dict`: the folder's info (clip counts, skipped clips by reason, the encoding of `""`, settings).
    """
    if shard_size < batch_size or shard_size % batch_size:
        raise ValueError(f"--shard_size {shard_size} must be a multiple of --batch_size {batch_size}.")
    output = Path(output_dir)
    (output / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    cache = EncodingCache() if cache is None else cache
    pipe.to(device)
    front_end = TangoMelSpectrogram().to(device)
    dataset.set_epoch(0)
    num_shards = -(-len(dataset) // shard_size)
    done = {int(p.name) for p in shard_folders(output)}
    skipped: Counter = Counter()
    counts_path = output / "skipped_by_shard.json"
    by_shard = json.loads(counts_path.read_text()) if counts_path.is_file() else {}
    for shard in tqdm(range(num_shards), desc="Shards"):
        if shard in done:
            continue
        indices = list(range(shard * shard_size, min(len(dataset), (shard + 1) * shard_size)))
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(dataset, indices),
            batch_size=batch_size,
            collate_fn=collate_audio_captions,
            num_workers=num_workers,
        )
        rows, shard_skipped = [], Counter()
        for batch in loader:
            shard_skipped.update(batch["skipped"])
            if batch["captions"]:
                rows.extend(encode_batch(pipe, front_end, batch, frames, device, cache))
        staging = output / SHARDS_DIR / f".{shard:05d}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        if rows:
            datasets.Dataset.from_list(rows, features=row_features(rows[0])).save_to_disk(str(staging))
        else:
            staging.mkdir()
            (staging / EMPTY_SHARD_MARKER).write_text("every clip of this shard was skipped\n")
        by_shard[str(shard)] = dict(shard_skipped)
        counts_path.write_text(json.dumps(by_shard))
        os.replace(staging, output / SHARDS_DIR / f"{shard:05d}")
    for counts in by_shard.values():
        skipped.update(counts)
    empty_hidden, empty_mask = pipe.encode_text([""], device=device)
    info = {
        "num_shards": num_shards,
        "clips": len(dataset),
        "skipped": dict(skipped),
        "frames": frames,
        "scaling_factor": float(pipe.vae.config.scaling_factor),
        "empty_text_hidden": empty_hidden[0].float().cpu().tolist(),
        "empty_text_mask": empty_mask[0].cpu().tolist(),
    }
    (output / INFO_NAME).write_text(json.dumps(info))
    logger.info(f"Encoded {len(dataset) - sum(skipped.values())} clips into {output} (skipped: {dict(skipped)}).")
    return info


@command_line
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pretrained_model_name_or_path", required=True)
    parser.add_argument("--text_encoder", default=None, help="Another text encoder (as in train_tango_clap.py).")
    parser.add_argument("--train_data", nargs="+", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--tau", type=float, default=0.45)
    parser.add_argument("--top_k", type=int, default=3)
    parser.add_argument("--audio_length_in_s", type=float, default=10.24)
    parser.add_argument("--no_random_crop", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--shard_size", type=int, default=1000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dataloader_num_workers", type=int, default=0)
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    py_logging.basicConfig(level=py_logging.INFO, format="%(message)s")

    pipe = build_pipeline(args.pretrained_model_name_or_path, text_encoder=args.text_encoder)
    num_samples, frames = frames_for(pipe, args.audio_length_in_s)
    dataset = AudioCaptionDataset(
        [parse_source(spec) for spec in args.train_data],
        num_samples=num_samples,
        random_crop=not args.no_random_crop,
        seed=args.seed,
        default_tau=args.tau,
        default_top_k=args.top_k,
    )
    precompute_latents(
        pipe,
        dataset,
        args.output_dir,
        frames=frames,
        batch_size=args.batch_size,
        shard_size=args.shard_size,
        device=args.device,
        num_workers=args.dataloader_num_workers,
    )


if __name__ == "__main__":
    raise SystemExit(main())
