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

from pipelines.tango_clap.pipeline_tango_clap import TangoCLAPPipeline
from training.components import build_pipeline, frames_for
from training.data import AudioCaptionDataset, collate_audio_captions, parse_source
from training.front_end import TangoMelSpectrogram

logger = logging.get_logger(__name__)

INFO_NAME = "precompute_info.json"
SHARDS_DIR = "shards"
EMPTY_SHARD_MARKER = "EMPTY"


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


class LatentsDataset(torch.utils.data.Dataset):
    """
    The rows of a precompute folder as tensors, with the attributes the training loop's sampler needs.

    Args:
        path (`str` or `os.PathLike`): a folder written by [`precompute_latents`].
    """

    def __init__(self, path: str | os.PathLike):
        table, self.info = load_precomputed(path)
        self.table = table.with_format("torch")
        self.source_lengths, self.weights = [len(self.table)], [1.0]

    def set_epoch(self, epoch: int) -> None:
        """Crops were fixed at encoding time: nothing changes between epochs."""

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> dict:
        return self.table[int(index)]


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


@torch.no_grad()
def encode_batch(
    pipe: TangoCLAPPipeline, front_end: TangoMelSpectrogram, batch: dict, frames: int, device: torch.device
) -> Iterator[dict]:
    """Rows for one collated batch: posterior moments and the caption's encoding trimmed to its own tokens."""
    mel = front_end(batch["waveforms"].to(device), num_frames=frames)
    posterior = pipe.vae.encode(mel[:, None].to(pipe.vae.dtype)).latent_dist
    hidden, mask = pipe.encode_text(batch["captions"], device=device)
    for i, caption in enumerate(batch["captions"]):
        length = int(mask[i].sum())
        yield {
            "caption": caption,
            "latent_mean": posterior.mean[i].float().cpu().numpy(),
            "latent_logvar": posterior.logvar[i].float().cpu().numpy(),
            "text_hidden": hidden[i, :length].float().cpu().numpy(),
            "text_mask": mask[i, :length].cpu().numpy().astype(np.int64),
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
) -> dict:
    """
    Encodes `dataset` (epoch 0's crops, in order) into `output_dir`, resuming after the last whole shard.

    Returns:
        `dict`: the folder's info (clip counts, skipped clips by reason, the encoding of `""`, settings).
    """
    if shard_size < batch_size or shard_size % batch_size:
        raise ValueError(f"--shard_size {shard_size} must be a multiple of --batch_size {batch_size}.")
    output = Path(output_dir)
    (output / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
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
                rows.extend(encode_batch(pipe, front_end, batch, frames, device))
        staging = output / SHARDS_DIR / f".{shard:05d}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        if rows:
            datasets.Dataset.from_list(rows).save_to_disk(str(staging))
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
    main()
