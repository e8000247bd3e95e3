"""The models of an AF-AudioSet build: the captioner and the CLAP scorer, loaded once per process and device, and
checks of their checkpoints that load no weights (made before anything is written, and for worker processes that
load the weights themselves).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from transformers.utils import logging

from .build_folder import BuildConfig
from .captioner import SUPPORTED_CAPTIONERS, AudioCaptioner
from .scorer import ClapScorer
from .validation import (
    describe_load_failure,
)

logger = logging.get_logger(__name__)

CAPTIONER_WHAT = "an audio captioner checkpoint (Audio Flamingo 3 or Qwen2-Audio)"
CLAP_WHAT = "a CLAP checkpoint (ClapModel)"

# Models are loaded once per process and kept for every later unit and batch (one model per GPU).
_MODELS: dict[tuple, Any] = {}


def device_for(rank: int | None, device: str | None) -> str:
    """The device a process runs its models on: `device` when given, else GPU `rank` (a `Dataset.map` worker's, or
    torchrun's `LOCAL_RANK` in a process of its own), else the CPU."""
    if device is not None and device != "auto":
        return device
    if torch.cuda.is_available():
        if rank is None:
            # One process per GPU started by torchrun / `accelerate launch`: each takes its own GPU.
            rank = int(os.environ.get("LOCAL_RANK", "0"))
        return f"cuda:{rank % torch.cuda.device_count()}"
    return "cpu"


def describe_device(device: str) -> str:
    """The device, with the GPU's model for the card's cost figure ("cuda:0 (NVIDIA H200)")."""
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index
        return f"{device} ({torch.cuda.get_device_name(index or 0)})"
    return device


def load_captioner(
    config: BuildConfig, device: str | None = None, dtype: torch.dtype = torch.float32, rank: int | None = None
) -> AudioCaptioner:
    """
    The build's captioner, loaded once per process, device and sampling settings, and kept for later calls.

    Raises:
        [`ArgumentError`]: naming `captioner` when its checkpoint cannot be loaded, and why.
    """
    device = device_for(rank, device)
    key = (
        "captioner",
        config.captioner,
        device,
        dtype,
        config.num_captions,
        config.seed,
        config.max_new_tokens,
        config.prompt,
    )
    if key not in _MODELS:
        # The model type first: weights loaded into the wrong class fail with errors that do not say so.
        check_captioner_checkpoint(config.captioner, processor=False)
        logger.info(f"Loading {config.captioner} on {device}")
        try:
            _MODELS[key] = AudioCaptioner.from_pretrained(
                config.captioner,
                device=device,
                dtype=dtype,
                num_captions=config.num_captions,
                max_new_tokens=config.max_new_tokens,
                prompt=config.prompt,
                seed=config.seed,
            )
        except (OSError, ValueError, KeyError) as error:
            raise describe_load_failure("captioner", config.captioner, CAPTIONER_WHAT, error) from error
    return _MODELS[key]


def load_scorer(
    config: BuildConfig, device: str | None = None, dtype: torch.dtype = torch.float32, rank: int | None = None
) -> ClapScorer:
    """
    The build's CLAP scorer, loaded once per process and device, and kept for later calls.

    Raises:
        [`ArgumentError`]: naming `clap` when its checkpoint cannot be loaded, and why.
    """
    device = device_for(rank, device)
    key = ("clap", config.clap, device, dtype)
    if key not in _MODELS:
        check_clap_checkpoint(config.clap, processor=False)
        logger.info(f"Loading {config.clap} on {device}")
        try:
            _MODELS[key] = ClapScorer.from_pretrained(config.clap, device=device, dtype=dtype)
        except (OSError, ValueError, KeyError) as error:
            raise describe_load_failure("clap", config.clap, CLAP_WHAT, error) from error
    return _MODELS[key]


def check_captioner_checkpoint(captioner: str, processor: bool = True) -> None:
    """
    Checks, without loading any weights, that `captioner` is a checkpoint of a supported captioner and, with
    `processor`, that its processor loads (worker processes load the weights later).

    Raises:
        [`ArgumentError`]: naming `captioner`, and why.
    """
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(captioner)
        if config.model_type not in SUPPORTED_CAPTIONERS:
            raise ValueError(f"its model type is {config.model_type!r}, not one of {sorted(SUPPORTED_CAPTIONERS)}")
        if processor:
            SUPPORTED_CAPTIONERS[config.model_type][1].from_pretrained(captioner)
    except (OSError, ValueError, KeyError) as error:
        raise describe_load_failure("captioner", captioner, CAPTIONER_WHAT, error) from error


def check_clap_checkpoint(clap: str, processor: bool = True) -> None:
    """
    Checks, without loading any weights, that `clap` is a `ClapModel` checkpoint and, with `processor`, that its
    tokenizer and feature extractor load.

    Raises:
        [`ArgumentError`]: naming `clap`, and why.
    """
    from transformers import AutoConfig, AutoTokenizer, ClapFeatureExtractor

    try:
        config = AutoConfig.from_pretrained(clap)
        if config.model_type != "clap":
            raise ValueError(f"its model type is {config.model_type!r}, not 'clap'")
        if processor:
            AutoTokenizer.from_pretrained(clap)
            ClapFeatureExtractor.from_pretrained(clap)
    except (OSError, ValueError, KeyError) as error:
        raise describe_load_failure("clap", clap, CLAP_WHAT, error) from error
