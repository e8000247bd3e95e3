"""Architectures of Tango's components, as diffusers / transformers configs.

Every number here is a fact about Tango (declare-lab/tango) or the AudioLDM parts it reuses, cited at the
constant. The conversion script, the debug model, the benchmarks and the training script all build their
components from these functions, so a full-size model and a tiny one differ only in the arguments.
"""

from __future__ import annotations

import copy
from typing import Any

from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

# Tango's `configs/diffusion_model_config.json` (declare-lab/tango): the 866M-parameter latent UNet. In
# diffusers' historical naming, `attention_head_dim` [5, 10, 20, 20] is really the number of heads per block
# (head width 64). `cross_attention_dim` is the text encoder's width and is set by `tango_unet_config`.
TANGO_UNET_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": [5, 10, 20, 20],
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 1024,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 8,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "only_cross_attention": False,
    "out_channels": 8,
    "sample_size": [256, 16],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "use_linear_projection": True,
    "upcast_attention": True,
}

# UNet sizes for training from scratch, as overrides of TANGO_UNET_CONFIG. "tango" is the paper's 866M model; the
# smaller ones keep its layout and heads and narrow the channels, for laptop-scale runs and ablations (this
# project's choice, not from the paper). The "debug" size is what the tests train.
TANGO_UNET_SIZES: dict[str, dict[str, Any]] = {
    "tango": {},
    "tango-small": {"block_out_channels": [160, 320, 640, 640]},
    "tango-tiny": {"block_out_channels": [64, 128, 256, 256], "attention_head_dim": [2, 4, 8, 8]},
    "debug": {
        "block_out_channels": [32, 64],
        "attention_head_dim": [2, 4],
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "layers_per_block": 1,
        "norm_num_groups": 32,
    },
    # The micro-world model (`training.micro.reproduce`): the debug widths, with text cross-attention only at the
    # coarser level. Self-attention over the 1,024 first-level latent positions was half of a CPU training step.
    "micro": {
        "block_out_channels": [32, 64],
        "attention_head_dim": [2, 4],
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
        "layers_per_block": 1,
        "norm_num_groups": 32,
    },
}

# Text encoder widths that set the UNet's `cross_attention_dim` (hidden size of the last hidden state).
TEXT_ENCODER_WIDTHS: dict[str, int] = {
    "google/flan-t5-large": 1024,
    "google/flan-t5-xl": 2048,
    "laion/clap-htsat-fused": 768,
    "laion/clap-htsat-unfused": 768,
    "laion/larger_clap_general": 768,
    "laion/larger_clap_music_and_speech": 768,
}

# AudioLDM's VAE as Tango loads it (`audioldm/utils.py::default_audioldm_config`, first_stage_config):
# ch 128, ch_mult [1, 2, 4], 2 res blocks, z_channels = embed_dim = 8, 1 input channel, no attention outside
# the mid block. In diffusers terms: three down/up blocks, x4 down on time and mel axes.
AUDIOLDM_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 1,
    "out_channels": 1,
    "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3,
    "block_out_channels": [128, 256, 512],
    "layers_per_block": 2,
    "latent_channels": 8,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "scaling_factor": 1.0,
}

# HiFi-GAN v1 at 16 kHz with 64 mels (`audioldm/hifigan/utilities.py::HIFIGAN_16K_64`); the upsample rates
# multiply to 160, the STFT hop, so one mel frame becomes 160 samples.
HIFIGAN_16K_64_CONFIG: dict[str, Any] = {
    "model_in_dim": 64,
    "sampling_rate": 16000,
    "upsample_initial_channel": 1024,
    "upsample_rates": [5, 4, 2, 2, 2],
    "upsample_kernel_sizes": [16, 16, 8, 4, 4],
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    "normalize_before": False,
}

# Tango trains and samples with the scheduler config of `stabilityai/stable-diffusion-2-1` loaded as a
# DDPMScheduler: scaled_linear betas 0.00085-0.012, 1000 steps, v-prediction. The diffusers of Tango's time
# (0.10, vendored in declare-lab/tango under mustango/diffusers) spaced DDPM steps as arange(0, n) * (1000 // n)
# and ignored SD-2.1's `steps_offset: 1`, which today's "leading" spacing with offset 0 reproduces.
SD21_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "v_prediction",
    "clip_sample": False,
    "steps_offset": 0,
    "timestep_spacing": "leading",
}

# Tango's audio front end (AudioLDM's `TacotronSTFT` with `default_audioldm_config`'s preprocessing).
TANGO_STFT_CONFIG: dict[str, Any] = {
    "filter_length": 1024,
    "hop_length": 160,
    "win_length": 1024,
    "n_mel_channels": 64,
    "sampling_rate": 16000,
    "mel_fmin": 0,
    "mel_fmax": 8000,
}


def tango_unet_config(cross_attention_dim: int, **overrides: Any) -> dict[str, Any]:
    """
    The config of Tango's latent UNet for a text encoder of the given width.

    Args:
        cross_attention_dim (`int`):
            Width of the text encoder's last hidden state: 1024 for FLAN-T5-large, 768 for the CLAP text tower.
        **overrides:
            Any `UNet2DConditionModel` config entry to change, e.g. `block_out_channels` for a smaller model.

    Returns:
        `dict`: keyword arguments for `UNet2DConditionModel`.
    """
    if cross_attention_dim <= 0:
        raise ValueError(f"`cross_attention_dim` must be positive, got {cross_attention_dim}.")
    config = copy.deepcopy(TANGO_UNET_CONFIG)
    config["cross_attention_dim"] = cross_attention_dim
    config.update(copy.deepcopy(overrides))
    return config


def build_unet(cross_attention_dim: int, **overrides: Any) -> UNet2DConditionModel:
    """Tango's latent UNet (randomly initialised) for a text encoder of width `cross_attention_dim`."""
    return UNet2DConditionModel(**tango_unet_config(cross_attention_dim, **overrides))


def build_vae(**overrides: Any) -> AutoencoderKL:
    """AudioLDM's mel VAE as a diffusers `AutoencoderKL` (randomly initialised)."""
    config = copy.deepcopy(AUDIOLDM_VAE_CONFIG)
    config.update(copy.deepcopy(overrides))
    return AutoencoderKL(**config)


def build_vocoder(**overrides: Any) -> SpeechT5HifiGan:
    """Tango's 16 kHz, 64-mel HiFi-GAN as transformers' `SpeechT5HifiGan` (randomly initialised)."""
    config = copy.deepcopy(HIFIGAN_16K_64_CONFIG)
    config.update(copy.deepcopy(overrides))
    return SpeechT5HifiGan(SpeechT5HifiGanConfig(**config)).eval()


def build_scheduler(**overrides: Any) -> DDPMScheduler:
    """Tango's noise scheduler (SD-2.1's, as a `DDPMScheduler`), with the prediction type explicit."""
    config = copy.deepcopy(SD21_SCHEDULER_CONFIG)
    config.update(overrides)
    return DDPMScheduler(**config)
