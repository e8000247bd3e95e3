"""A tiny mel VAE for the micro world: a diffusers `AutoencoderKL` over Tango's log-mel spectrograms.

The VAE is AudioLDM's (and so Tango's) at micro scale: one input channel, 8 latent channels, three levels, so a
`(frames, 64)` log-mel becomes an `(8, frames / 4, 16)` latent, the shape `TangoCLAPPipeline` expects
(`vae_scale_factor` 4). It sees exactly what `training/train_tango_clap.py` feeds it: each clip is prepared by
`front_end.prepare_waveform` (centred, peak 0.5) and turned into a natural-log mel by `front_end.TangoMelSpectrogram`,
with no normalisation.

Training is reconstruction (L1 on the log-mel) plus a small KL term, on random crops of the clips (the model is
convolutional, so crops cost a quarter of whole clips and teach the same thing). Afterwards two things make the
latents diffusion-ready without any change to the pipeline or the training script, which only divide by
`scaling_factor`:

- the per-channel mean of the latents is folded into the encoder's `quant_conv` and the decoder's `post_quant_conv`
  biases (an exact re-parametrisation: the decoder sees the same input), so that the latents are centred;
- `scaling_factor` is set to 1 / std of the sampled latents, as Stable Diffusion's was.

```bash
python -m training.micro.autoencoder --world-seed 0 --output micro/vae --steps 600
```
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL
from tqdm.auto import tqdm

from training.front_end import HOP_LENGTH, SAMPLING_RATE, TangoMelSpectrogram, prepare_waveform

from .schedules import warmup_cosine_lr

logger = logging.getLogger(__name__)

__all__ = [
    "MICRO_VAE_DOWNSAMPLING",
    "TRAINING_RECORD",
    "build_micro_vae",
    "evaluate_micro_vae",
    "tango_mels",
    "train_micro_vae",
]

# Three levels halve time and frequency twice: Tango's x4 (`TangoCLAPPipeline.vae_scale_factor`).
MICRO_VAE_DOWNSAMPLING = 4
# What a training run measured, written beside the weights (the folder's loaders ignore it).
TRAINING_RECORD = "micro_training.json"


def build_micro_vae(
    block_out_channels: Sequence[int] = (16, 32, 64),
    latent_channels: int = 8,
    layers_per_block: int = 1,
    norm_num_groups: int = 16,
    mid_block_add_attention: bool = False,
    seed: int | None = 0,
) -> AutoencoderKL:
    r"""A tiny AudioLDM-style mel VAE (randomly initialised).

    Args:
        block_out_channels (`Sequence[int]`, *optional*, defaults to `(16, 32, 64)`):
            Widths of the three levels. The full-resolution level dominates a CPU's time, hence its 16 channels.
        latent_channels (`int`, *optional*, defaults to 8):
            Channels of the latent (Tango's 8, which the UNet's in/out channels follow).
        layers_per_block (`int`, *optional*, defaults to 1):
            Residual blocks per level.
        norm_num_groups (`int`, *optional*, defaults to 16):
            GroupNorm groups; must divide every width.
        mid_block_add_attention (`bool`, *optional*, defaults to `False`):
            Self-attention in the middle block (AudioLDM has it; at this size it costs time and buys nothing).
        seed (`int`, *optional*, defaults to 0):
            Seed of the initial weights (the global RNG is untouched); `None` uses the global RNG.

    Returns:
        [`~diffusers.AutoencoderKL`]: in eval mode, with `scaling_factor` 1 until trained.
    """
    if len(block_out_channels) != 3:
        # The pipeline derives its x4 from the number of levels; another count would change the latent shape.
        raise ValueError(f"The micro VAE has 3 levels (x4 down), got block_out_channels={list(block_out_channels)}.")
    if any(width % norm_num_groups for width in block_out_channels):
        raise ValueError(f"norm_num_groups={norm_num_groups} must divide every width of {list(block_out_channels)}.")
    config: dict[str, Any] = {
        "in_channels": 1,
        "out_channels": 1,
        "down_block_types": ["DownEncoderBlock2D"] * 3,
        "up_block_types": ["UpDecoderBlock2D"] * 3,
        "block_out_channels": list(block_out_channels),
        "layers_per_block": layers_per_block,
        "latent_channels": latent_channels,
        "norm_num_groups": norm_num_groups,
        "sample_size": 256,
        "scaling_factor": 1.0,
        "mid_block_add_attention": mid_block_add_attention,
    }
    if seed is None:
        return AutoencoderKL(**config).eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderKL(**config).eval()


@torch.no_grad()
def tango_mels(clips_audio: Sequence[np.ndarray | torch.Tensor], min_frames: int = 0) -> list[torch.Tensor]:
    r"""The log-mels `training/train_tango_clap.py` would compute for 16 kHz clips: `prepare_waveform` (centred, peak
    0.5, at the clip's own length, or zero-padded to `min_frames` frames) then `TangoMelSpectrogram`.

    Args:
        clips_audio (`Sequence[np.ndarray | torch.Tensor]`):
            Mono 16 kHz waveforms, any lengths.
        min_frames (`int`, *optional*, defaults to 0):
            Shorter clips are zero-padded (as waveforms) to this many frames.

    Returns:
        `list[torch.Tensor]`: float32 `(samples // 160, 64)` per clip.
    """
    front_end = TangoMelSpectrogram()
    mels = []
    for audio in clips_audio:
        num_samples = max(int(np.shape(audio)[-1]) // HOP_LENGTH, min_frames, 1) * HOP_LENGTH
        waveform = prepare_waveform(audio, SAMPLING_RATE, num_samples=num_samples)
        mels.append(front_end(waveform))
    return mels


def _encode(vae: AutoencoderKL, mel: torch.Tensor) -> Any:
    return vae.encode(mel[:, None]).latent_dist


def _reconstruct(vae: AutoencoderKL, mel: torch.Tensor, generator: torch.Generator | None = None) -> tuple:
    """Decoded mel from a posterior sample (the posterior's mean with `generator=None`) and the posterior."""
    posterior = _encode(vae, mel)
    latents = posterior.mode() if generator is None else posterior.sample(generator=generator)
    return vae.decode(latents).sample[:, 0], posterior


def _whole_clip_batches(mels: Sequence[torch.Tensor], batch_size: int):
    """Batches of whole clips of equal length, cut to a multiple of the VAE's x4."""
    by_length: dict[int, list[torch.Tensor]] = {}
    for mel in mels:
        frames = mel.shape[0] // MICRO_VAE_DOWNSAMPLING * MICRO_VAE_DOWNSAMPLING
        if frames:
            by_length.setdefault(frames, []).append(mel[:frames])
    for group in by_length.values():
        for start in range(0, len(group), batch_size):
            yield torch.stack(group[start : start + batch_size])


@torch.no_grad()
def evaluate_micro_vae(vae: AutoencoderKL, mels: Sequence[torch.Tensor], batch_size: int = 16) -> dict[str, float]:
    r"""Reconstruction quality of a mel VAE on whole clips, from the posterior means.

    Args:
        vae ([`~diffusers.AutoencoderKL`]):
            The VAE.
        mels (`Sequence[torch.Tensor]`):
            `(frames, 64)` log-mels, as [`tango_mels`] returns them.
        batch_size (`int`, *optional*, defaults to 16):
            Clips per forward pass.

    Returns:
        `dict[str, float]`: `l1` and `mse` of the reconstruction (natural-log mel units), `mean_l1` (the L1 of
        always answering each mel bin's mean: what a VAE that learnt nothing about the clip would score),
        `latent_std` (of the unscaled posterior means) and `posterior_std` (the mean std of the posterior: the noise
        the decoder has to ignore).
    """
    vae.eval()
    sums = {"l1": 0.0, "mse": 0.0, "mean_l1": 0.0, "count": 0}
    latent_sq, posterior_std, latent_count = 0.0, 0.0, 0
    bin_mean = torch.cat(list(mels)).mean(0)
    for batch in _whole_clip_batches(mels, batch_size):
        reconstruction, posterior = _reconstruct(vae, batch)
        sums["l1"] += float((reconstruction - batch).abs().sum())
        sums["mse"] += float(((reconstruction - batch) ** 2).sum())
        sums["mean_l1"] += float((batch - bin_mean).abs().sum())
        sums["count"] += batch.numel()
        latent_sq += float(((posterior.mean - posterior.mean.mean()) ** 2).sum())
        posterior_std += float(posterior.std.sum())
        latent_count += posterior.mean.numel()
    if not sums["count"]:
        raise ValueError("No clip of at least 4 mel frames to evaluate.")
    return {
        "l1": sums["l1"] / sums["count"],
        "mse": sums["mse"] / sums["count"],
        "mean_l1": sums["mean_l1"] / sums["count"],
        "latent_std": math.sqrt(latent_sq / latent_count),
        "posterior_std": posterior_std / latent_count,
    }


def _random_crops(
    mels: Sequence[torch.Tensor], indices: list[int], crop_frames: int, generator: torch.Generator
) -> torch.Tensor:
    crops = []
    for index in indices:
        mel = mels[index]
        start = int(torch.randint(0, mel.shape[0] - crop_frames + 1, (1,), generator=generator))
        crops.append(mel[start : start + crop_frames])
    return torch.stack(crops)


def _optimise(
    vae: AutoencoderKL,
    mels: Sequence[torch.Tensor],
    steps: int,
    batch_size: int,
    crop_frames: int,
    lr: float,
    kl_weight: float,
    seed: int,
    progress: bool,
) -> list[float]:
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 20)
    order: list[int] = []
    losses = []
    vae.train()
    bar = tqdm(range(steps), desc="micro VAE", disable=not progress)
    for step in bar:
        if len(order) < batch_size:
            order = order + torch.randperm(len(mels), generator=generator).tolist()
        batch, order = order[:batch_size], order[batch_size:]
        mel = _random_crops(mels, batch, crop_frames, generator)
        reconstruction, posterior = _reconstruct(vae, mel, generator)
        reconstruction_loss = (reconstruction - mel).abs().mean()
        # KL per latent element (not summed), so that `kl_weight` does not depend on the crop size.
        kl = 0.5 * (posterior.mean**2 + posterior.var - 1.0 - posterior.logvar).mean()
        loss = reconstruction_loss + kl_weight * kl
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine_lr(step, steps, lr, warmup)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        losses.append(float(reconstruction_loss.detach()))
        bar.set_postfix(l1=f"{losses[-1]:.3f}", kl=f"{float(kl.detach()):.1f}")
        if step % 100 == 0 or step == steps - 1:
            logger.info(f"step {step}: L1 {losses[-1]:.4f}, KL {float(kl.detach()):.3f}")
    vae.eval()
    return losses


@torch.no_grad()
def _sampled_latents(
    vae: AutoencoderKL, mels: Sequence[torch.Tensor], seed: int, batch_size: int = 16
) -> torch.Tensor:
    """Posterior samples of whole clips (what the training script diffuses), as `(channels, values)`."""
    generator = torch.Generator().manual_seed(seed)
    latents = [_encode(vae, batch).sample(generator=generator) for batch in _whole_clip_batches(mels, batch_size)]
    return torch.cat([z.transpose(0, 1).reshape(z.shape[1], -1) for z in latents], dim=1)


@torch.no_grad()
def centre_and_scale_latents(vae: AutoencoderKL, mels: Sequence[torch.Tensor], seed: int = 0) -> dict[str, Any]:
    r"""Centres a trained VAE's latents per channel and sets `scaling_factor` to 1 / their std.

    The pipeline and the training script only divide or multiply by `scaling_factor` (no `shift_factor`), so the
    channel means are folded into the weights instead: subtracted from the bias of the `quant_conv` rows that give
    the posterior mean, and added back through `post_quant_conv` (`W (z - m) + (b + W m) = W z + b`), which leaves
    every decoded mel unchanged.

    Args:
        vae ([`~diffusers.AutoencoderKL`]):
            A trained VAE with `quant_conv` and `post_quant_conv`; modified in place.
        mels (`Sequence[torch.Tensor]`):
            `(frames, 64)` log-mels to measure the latents on.
        seed (`int`, *optional*, defaults to 0):
            Seeds the posterior samples.

    Returns:
        `dict[str, Any]`: `channel_means` (removed) and `scaling_factor`.
    """
    if vae.quant_conv is None or vae.post_quant_conv is None:
        raise ValueError("Centring the latents needs a VAE with `quant_conv` and `post_quant_conv`.")
    channels = vae.config.latent_channels
    latents = _sampled_latents(vae, mels, seed)
    means = latents.mean(1)
    # The first `channels` outputs of `quant_conv` are the posterior mean, the others its log-variance.
    vae.quant_conv.bias[:channels] -= means
    vae.post_quant_conv.bias += vae.post_quant_conv.weight[:, :, 0, 0] @ means
    std = float((latents - means[:, None]).std())
    vae.register_to_config(scaling_factor=1.0 / std)
    return {"channel_means": means.tolist(), "scaling_factor": 1.0 / std}


def _check_training_arguments(**values: Any) -> None:
    for name in ("steps", "batch_size", "crop_frames"):
        if not isinstance(values[name], int) or values[name] < 1:
            raise ValueError(f"{name} must be a positive integer, got {values[name]!r}.")
    if values["crop_frames"] % MICRO_VAE_DOWNSAMPLING:
        raise ValueError(f"crop_frames must be a multiple of {MICRO_VAE_DOWNSAMPLING}, got {values['crop_frames']}.")
    if not values["lr"] > 0:
        raise ValueError(f"lr must be > 0, got {values['lr']!r}.")
    if values["kl_weight"] < 0:
        raise ValueError(f"kl_weight must be >= 0, got {values['kl_weight']!r}.")
    if not 0 <= values["eval_fraction"] < 1:
        raise ValueError(f"eval_fraction must be in [0, 1), got {values['eval_fraction']!r}.")


def _split(count: int, eval_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Training and held-out indices; with nothing to hold out, the report is on the training clips."""
    held_out = int(count * eval_fraction) if count > 1 else 0
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[held_out:]), sorted(order[:held_out])


def train_micro_vae(
    clips_audio: Sequence[np.ndarray | torch.Tensor],
    output_dir: str | Path,
    *,
    steps: int = 600,
    batch_size: int = 8,
    lr: float = 1e-3,
    kl_weight: float = 1e-4,
    seed: int = 0,
    crop_frames: int = 64,
    eval_fraction: float = 0.05,
    vae: AutoencoderKL | None = None,
    model_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
) -> Path:
    r"""Trains a micro mel VAE on 16 kHz clips and saves it with `save_pretrained` (safetensors).

    Mels are computed once ([`tango_mels`]). Each step reconstructs `batch_size` random `crop_frames`-frame crops from
    a posterior sample, with loss `L1 + kl_weight * KL` (KL per latent element against N(0, 1)); AdamW with a short
    warm-up and a cosine decay. Afterwards the latents are centred and scaled ([`centre_and_scale_latents`]) and the
    reconstruction error of the held-out clips is measured before and after training, logged, and written to
    `micro_training.json` in the folder.

    Args:
        clips_audio (`Sequence[np.ndarray | torch.Tensor]`):
            Mono 16 kHz waveforms (e.g. the world's `MicroClip.audio`).
        output_dir (`str` or `Path`):
            The folder to save the VAE in.
        steps (`int`, *optional*, defaults to 600):
            Optimiser steps.
        batch_size (`int`, *optional*, defaults to 8):
            Crops per step.
        lr (`float`, *optional*, defaults to 1e-3):
            Peak learning rate.
        kl_weight (`float`, *optional*, defaults to 1e-4):
            Weight of the KL term. Small: it keeps the latents bounded while the posterior std stays well under
            the latents' spread, so that the latents carry the clip.
        seed (`int`, *optional*, defaults to 0):
            Seeds the initial weights, the held-out split, the crops and the posterior samples: the same seed and
            clips give the same weights.
        crop_frames (`int`, *optional*, defaults to 64):
            Frames per training crop (a multiple of 4; 64 = 0.64 s).
        eval_fraction (`float`, *optional*, defaults to 0.05):
            Fraction of the clips held out to measure the reconstruction on (the training clips when it rounds to 0).
        vae ([`~diffusers.AutoencoderKL`], *optional*):
            A VAE to start from; by default [`build_micro_vae`] with `model_kwargs`.
        model_kwargs (`dict[str, Any]`, *optional*):
            Arguments of [`build_micro_vae`] (its `seed` defaults to `seed`).
        progress (`bool`, *optional*, defaults to `True`):
            Show a tqdm progress bar.

    Returns:
        `Path`: the saved folder, loadable with `AutoencoderKL.from_pretrained`.
    """
    _check_training_arguments(
        steps=steps,
        batch_size=batch_size,
        crop_frames=crop_frames,
        lr=lr,
        kl_weight=kl_weight,
        eval_fraction=eval_fraction,
    )
    if not len(clips_audio):
        raise ValueError("No clips to train the VAE on.")
    started = time.perf_counter()
    mels = tango_mels(clips_audio, min_frames=crop_frames)
    train_ids, held_out_ids = _split(len(mels), eval_fraction, seed)
    train_mels = [mels[i] for i in train_ids]
    eval_mels = [mels[i] for i in held_out_ids] or train_mels
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if vae is None:
            vae = build_micro_vae(**{"seed": seed, **(model_kwargs or {})})
            # Log-mels sit around -8, far from a fresh decoder's 0: starting the output there saves the first
            # steps from learning a constant.
            with torch.no_grad():
                vae.decoder.conv_out.bias.fill_(float(torch.cat(train_mels).mean()))
        before = evaluate_micro_vae(vae, eval_mels)
        logger.info(
            f"Training a micro VAE ({sum(p.numel() for p in vae.parameters()) / 1e6:.2f}M parameters) on "
            f"{len(train_mels)} clips: {steps} steps of {batch_size} x {crop_frames} frames."
        )
        losses = _optimise(vae, train_mels, steps, batch_size, crop_frames, lr, kl_weight, seed, progress)
        scaling = centre_and_scale_latents(vae, train_mels, seed)
        after = evaluate_micro_vae(vae, eval_mels)
    record = {
        "clips": len(train_mels),
        "held_out_clips": len(held_out_ids),
        "evaluated_on": "held_out" if held_out_ids else "train",
        "steps": steps,
        "batch_size": batch_size,
        "crop_frames": crop_frames,
        "lr": lr,
        "kl_weight": kl_weight,
        "seed": seed,
        "final_train_l1": float(np.mean(losses[-20:])),
        "before": before,
        "after": after,
        "scaling_factor": scaling["scaling_factor"],
        "seconds": round(time.perf_counter() - started, 1),
    }
    output_dir = Path(output_dir)
    vae.save_pretrained(output_dir, safe_serialization=True)
    (output_dir / TRAINING_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    logger.info(
        f"Micro VAE: held-out L1 {after['l1']:.3f} (untrained {before['l1']:.3f}, per-bin mean {after['mean_l1']:.3f}),"
        f" scaling_factor {scaling['scaling_factor']:.3f}; saved to {output_dir} in {record['seconds']:.0f} s."
    )
    return output_dir


def main(argv: Sequence[str] | None = None) -> Path:
    """Command line: trains the micro VAE on a world's `pool` and `captioned` clips."""
    from datasets_scripts.micro_world import WorldConfig, generate_clip

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world-seed", type=int, default=0)
    parser.add_argument("--output", required=True)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--kl-weight", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = WorldConfig(seed=args.world_seed)
    audios = [generate_clip(config, s, i).audio for s in ("pool", "captioned") for i in range(config.split_size(s))]
    return train_micro_vae(
        audios,
        args.output,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        kl_weight=args.kl_weight,
        seed=args.seed,
    )


if __name__ == "__main__":
    main()
