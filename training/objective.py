"""The training objective: per-step random draws, condition dropout to `""`, the (Min-SNR weighted) diffusion loss."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers.training_utils import compute_snr

from pipelines.tango_clap.pipeline_tango_clap import TangoCLAPPipeline
from training.front_end import TangoMelSpectrogram


def step_generator(seed: int, step: int, process_index: int) -> torch.Generator:
    """The CPU generator of one optimisation step on one process: a pure function of its arguments."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 1_009 + process_index) % (2**63))


def drop_conditions(
    hidden: torch.Tensor, mask: torch.Tensor, empty_hidden: torch.Tensor, empty_mask: torch.Tensor, drop: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Replaces the text encoding of the rows where `drop` is true with the encoding of `""` (zero-padded to the
    batch's length, mask 0 beyond its tokens), exactly the unconditional input the pipeline uses at inference.
    """
    if not drop.any():
        return hidden, mask
    length = max(hidden.shape[1], empty_hidden.shape[1])
    hidden = F.pad(hidden, (0, 0, 0, length - hidden.shape[1]))
    mask = F.pad(mask, (0, length - mask.shape[1]))
    empty_hidden = F.pad(empty_hidden, (0, 0, 0, length - empty_hidden.shape[1])).to(hidden.dtype)
    empty_mask = F.pad(empty_mask, (0, length - empty_mask.shape[1])).to(mask.dtype)
    rows = drop.to(hidden.device)
    hidden = torch.where(rows[:, None, None], empty_hidden.expand_as(hidden), hidden)
    mask = torch.where(rows[:, None], empty_mask.expand_as(mask), mask)
    return hidden, mask


def diffusion_loss(
    unet: torch.nn.Module,
    scheduler: Any,
    latents: torch.Tensor,
    hidden: torch.Tensor,
    mask: torch.Tensor,
    generator: torch.Generator,
    snr_gamma: float | None = None,
    noise_offset: float = 0.0,
) -> torch.Tensor:
    """
    The denoising loss of one batch: noise and timesteps drawn from `generator`, the target by the scheduler's
    prediction type, optionally Min-SNR weighted (https://arxiv.org/abs/2303.09556), correctly for both targets.
    """
    batch = latents.shape[0]
    noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
    if noise_offset:
        offset = torch.randn((batch, latents.shape[1], 1, 1), generator=generator)
        noise = noise + noise_offset * offset.to(latents.device, latents.dtype)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=generator)
    timesteps = timesteps.to(latents.device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        target = noise
    elif prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        raise ValueError(f"Unsupported prediction type {prediction_type!r}.")
    prediction = unet(noisy, timesteps, hidden, encoder_attention_mask=mask, return_dict=False)[0]
    loss = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=[1, 2, 3])
    if snr_gamma is not None:
        snr = compute_snr(scheduler, timesteps)
        clipped = torch.clamp(snr, max=snr_gamma)
        # The v-prediction loss is (snr + 1) times the epsilon loss at the same step, hence its denominator.
        weights = clipped / (snr + 1) if prediction_type == "v_prediction" else clipped / snr
        loss = loss * weights.float()
    return loss.mean()


def sample_latents(
    mean: torch.Tensor, logvar: torch.Tensor, scaling_factor: float, generator: torch.Generator
) -> torch.Tensor:
    """A draw from the VAE posterior, scaled to UNet units (Tango's `get_first_stage_encoding`)."""
    eps = torch.randn(mean.shape, generator=generator).to(mean.device, mean.dtype)
    std = torch.exp(0.5 * torch.clamp(logvar, -30.0, 20.0))
    return (mean + std * eps) * scaling_factor


@torch.no_grad()
def encode_audio(pipe: TangoCLAPPipeline, front_end: TangoMelSpectrogram, waveforms: torch.Tensor, frames: int):
    """Waveforms -> the VAE posterior's mean and log-variance of their log-mel spectrograms."""
    mel = front_end(waveforms.float(), num_frames=frames)
    posterior = pipe.vae.encode(mel[:, None].to(pipe.vae.dtype)).latent_dist
    return posterior.mean, posterior.logvar
