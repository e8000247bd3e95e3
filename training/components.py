"""The pipeline being trained: its frozen parts, a swapped text encoder, a UNet from scratch or pretrained."""

from __future__ import annotations

import json
from typing import Any

import torch
import transformers
from diffusers import UNet2DConditionModel

from pipelines.tango_clap.architectures import TANGO_UNET_SIZES, tango_unet_config
from pipelines.tango_clap.pipeline_tango_clap import TangoCLAPPipeline
from training.front_end import HOP_LENGTH, SAMPLING_RATE


def load_text_encoder(name_or_path: str) -> tuple[torch.nn.Module, Any]:
    """A CLAP text tower (`ClapTextModelWithProjection`) or a `T5EncoderModel`, by the checkpoint's model type."""
    config = transformers.AutoConfig.from_pretrained(name_or_path)
    if config.model_type in ("clap", "clap_text_model"):
        encoder = transformers.ClapTextModelWithProjection.from_pretrained(name_or_path)
    elif config.model_type in ("t5", "mt5", "umt5"):
        encoder = transformers.T5EncoderModel.from_pretrained(name_or_path)
    else:
        raise ValueError(
            f"--text_encoder {name_or_path!r} is a {config.model_type!r} checkpoint; expected a CLAP or T5 one."
        )
    return encoder, transformers.AutoTokenizer.from_pretrained(name_or_path)


def text_width(text_encoder: torch.nn.Module) -> int:
    config = text_encoder.config
    return int(getattr(config, "d_model", None) or config.hidden_size)


def build_pipeline(
    pretrained_model_name_or_path: str,
    revision: str | None = None,
    text_encoder: str | None = None,
    unet_from_scratch: str | None = None,
    unet_config: str | None = None,
    prediction_type: str | None = None,
) -> TangoCLAPPipeline:
    """
    The pipeline whose UNet is trained; the CLAP scoring parts are dropped (validation does not rank).

    Args:
        pretrained_model_name_or_path (`str`): a `TangoCLAPPipeline` folder or Hub id.
        revision (`str`, *optional*): its Hub revision.
        text_encoder (`str`, *optional*): another text encoder (see [`load_text_encoder`]).
        unet_from_scratch (`str`, *optional*): a key of `TANGO_UNET_SIZES`: a new, random UNet of that size.
        unet_config (`str`, *optional*): a JSON file of UNet config overrides for the new UNet.
        prediction_type (`str`, *optional*): `"v_prediction"` or `"epsilon"`, replacing the scheduler's.
    """
    pipe = TangoCLAPPipeline.from_pretrained(pretrained_model_name_or_path, revision=revision)
    components = {
        name: getattr(pipe, name) for name in ("vae", "text_encoder", "tokenizer", "unet", "scheduler", "vocoder")
    }
    if text_encoder:
        components["text_encoder"], components["tokenizer"] = load_text_encoder(text_encoder)
    if prediction_type:
        components["scheduler"] = type(pipe.scheduler).from_config(
            pipe.scheduler.config, prediction_type=prediction_type
        )
    if unet_from_scratch:
        if unet_from_scratch not in TANGO_UNET_SIZES:
            raise ValueError(f"Unknown UNet size {unet_from_scratch!r}; expected one of {sorted(TANGO_UNET_SIZES)}.")
        overrides = dict(TANGO_UNET_SIZES[unet_from_scratch])
        if unet_config:
            with open(unet_config, encoding="utf-8") as f:
                overrides.update(json.load(f))
        overrides.setdefault("in_channels", pipe.vae.config.latent_channels)
        overrides.setdefault("out_channels", pipe.vae.config.latent_channels)
        components["unet"] = UNet2DConditionModel(
            **tango_unet_config(text_width(components["text_encoder"]), **overrides)
        )
    return TangoCLAPPipeline(**components)


def frames_for(pipe: TangoCLAPPipeline, seconds: float) -> tuple[int, int]:
    """Samples and mel frames of a training clip of `seconds`; the frames must fill whole UNet latent frames."""
    num_samples = round(seconds * SAMPLING_RATE)
    frames = num_samples // HOP_LENGTH
    if frames == 0 or frames % pipe.frames_multiple:
        raise ValueError(
            f"A clip length of {seconds} s gives {frames} mel frames; training needs a multiple of "
            f"{pipe.frames_multiple} (e.g. 10.24 s = 1024 frames)."
        )
    return num_samples, frames
