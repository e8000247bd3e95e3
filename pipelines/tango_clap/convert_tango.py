"""Convert a released declare-lab Tango checkpoint into a `TangoCLAPPipeline` folder (diffusers layout, safetensors).

Works for the checkpoints of `declare-lab/tango`, `declare-lab/tango-full-ft-audiocaps`,
`declare-lab/tango-af-ac-ft-ac` and `declare-lab/tango-music-af-ft-mc`, i.e. a folder (local or on the Hub) holding

- `main_config.json`: the keyword arguments of Tango's `AudioDiffusion` (`text_encoder_name`, `scheduler_name`,
  `unet_model_name`, `unet_model_config_path`, ...);
- `pytorch_model_main.bin`: `AudioDiffusion`'s state dict, `unet.*` (diffusers `UNet2DConditionModel` names) and
  `text_encoder.*` (transformers `T5EncoderModel` names);
- `pytorch_model_vae.bin`: AudioLDM's `AutoencoderKL` state dict, LDM-style VAE keys plus the HiFi-GAN vocoder
  under `vocoder.*` (weight norm removed);
- `vae_config.json` and `stft_config.json`: the VAE's and the mel front end's keyword arguments.

`pytorch_model_stft.bin` (the STFT's fixed buffers) carries no learned weight and is neither downloaded nor read.
Every `.bin` is read with `torch.load(..., weights_only=True)` and refused when that fails; a `.safetensors` file of
the same stem is preferred when present.

Usage:

```bash
tango-af-convert-tango --checkpoint declare-lab/tango-af-ac-ft-ac --output_dir ./tango-af-ac-ft-ac-diffusers
```

What could not be checked without the released files (the tests build tiny checkpoints in the original layout from
the key names read in declare-lab/tango's code):

- the real key sets and tensor shapes of the released `.bin` files (e.g. whether both `text_encoder.shared.weight`
  and `text_encoder.encoder.embed_tokens.weight` are stored, or whether any vocoder still carries
  `weight_g`/`weight_v`; both cases are handled, but only on tiny stand-ins);
- that diffusers 0.42 `UNet2DConditionModel` and transformers 5 `T5EncoderModel` still use the parameter names that
  diffusers 0.18 / transformers 4.27 (Tango's pins) wrote; the names are the same in both versions' code, but no
  released state dict was loaded;
- exact numerical parity with Tango's own code (`AudioDiffusion.inference`, AudioLDM's `AutoencoderKL` and its
  HiFi-GAN `Generator`): the tests compare the converted VAE with the diffusers model the LDM keys were written
  from, and the vocoder with a functional re-statement of HiFi-GAN's forward pass, not with Tango's modules;
- `declare-lab/tango-music-af-ft-mc`'s files, assumed to follow the same layout as the other three.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging as py_logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
from diffusers.utils import logging
from transformers import AutoConfig, AutoTokenizer, SpeechT5HifiGan, SpeechT5HifiGanConfig, T5Config, T5EncoderModel

from ..checkpoints import KEYS_SHOWN, load_state_dict_file
from ..cli import add_debug_argument, check_model_reference, check_output_folder, command_line
from .architectures import AUDIOLDM_VAE_CONFIG, HIFIGAN_16K_64_CONFIG, build_scheduler, tango_unet_config
from .pipeline_tango_clap import TangoCLAPPipeline

logger = logging.get_logger(__name__)  # pylint: disable=invalid-name

MAIN_CONFIG_NAME = "main_config.json"
VAE_CONFIG_NAME = "vae_config.json"
STFT_CONFIG_NAME = "stft_config.json"
MAIN_WEIGHTS_NAME = "pytorch_model_main.bin"
VAE_WEIGHTS_NAME = "pytorch_model_vae.bin"

# What `snapshot_download` fetches from a Hub checkpoint: the configs (also a UNet config stored in the repo,
# e.g. `configs/diffusion_model_config.json`) and the two weight files, as `.bin` or `.safetensors`.
CHECKPOINT_ALLOW_PATTERNS = [
    "*.json",
    MAIN_WEIGHTS_NAME,
    VAE_WEIGHTS_NAME,
    MAIN_WEIGHTS_NAME.replace(".bin", ".safetensors"),
    VAE_WEIGHTS_NAME.replace(".bin", ".safetensors"),
]

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
PREDICTION_TYPES = ("v_prediction", "epsilon")

# Tango's `AudioDiffusion` trains with SD-2.1's scheduler config (`architectures.SD21_SCHEDULER_CONFIG`).
SD21_SCHEDULER_NAME = "stabilityai/stable-diffusion-2-1"


# ---------------------------------------------------------------------------------------------------- reading


def _weights_file(folder: str, bin_name: str) -> str:
    """The `.safetensors` file of the same stem as `bin_name` if there is one, else `bin_name` itself."""
    for name in (bin_name.replace(".bin", ".safetensors"), bin_name):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"Neither {bin_name!r} nor its `.safetensors` equivalent is in {folder!r}.")


def _read_json(folder: str, name: str) -> dict[str, Any]:
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{name!r} is missing from the checkpoint folder {folder!r}.")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def resolve_checkpoint(checkpoint: str | os.PathLike, revision: str | None = None) -> str:
    """
    The local folder of a Tango checkpoint.

    Args:
        checkpoint (`str` or `os.PathLike`):
            A local folder, or a Hub repo id such as `"declare-lab/tango"`.
        revision (`str`, *optional*):
            Branch, tag or commit of the Hub repo; ignored for a local folder.

    Returns:
        `str`: the folder (for a repo id, a snapshot holding only the files this conversion reads).
    """
    checkpoint = os.fspath(checkpoint)
    if os.path.isdir(checkpoint):
        return checkpoint
    if os.path.exists(checkpoint) or checkpoint.startswith((".", "/", "~")) or checkpoint.count("/") > 1:
        raise FileNotFoundError(f"{checkpoint!r} is neither a checkpoint folder nor a Hub repo id.")
    from huggingface_hub import snapshot_download

    logger.info(f"Downloading {checkpoint} (revision {revision or 'main'}) from the Hub.")
    return snapshot_download(repo_id=checkpoint, revision=revision, allow_patterns=CHECKPOINT_ALLOW_PATTERNS)


def split_main_state_dict(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict, dict]:
    """
    Splits `AudioDiffusion`'s state dict into the UNet's and the text encoder's.

    Raises:
        `NotImplementedError`: for the variant initialised from Stable Diffusion (`group_in.*` / `group_out.*`).
        `ValueError`: for any other prefix, or when a part is absent.
    """
    grouped = sorted(k for k in state_dict if k.startswith(("group_in.", "group_out.")))
    if grouped:
        raise NotImplementedError(
            "This checkpoint was trained from a Stable Diffusion UNet with `group_in` / `group_out` projections "
            f"around it ({grouped[:4]}); TangoCLAPPipeline has no such layers, so it is not supported."
        )
    unet, text_encoder, other = {}, {}, []
    for key, value in state_dict.items():
        if key.startswith("unet."):
            unet[key[len("unet.") :]] = value
        elif key.startswith("text_encoder."):
            text_encoder[key[len("text_encoder.") :]] = value
        else:
            other.append(key)
    if other:
        raise ValueError(
            f"Unexpected keys in the main state dict (neither `unet.` nor `text_encoder.`): {other[:KEYS_SHOWN]}."
        )
    if not unet or not text_encoder:
        raise ValueError(
            f"The main state dict lacks {'`unet.*`' if not unet else '`text_encoder.*`'} weights; is this a Tango "
            "`pytorch_model_main.bin`?"
        )
    return unet, text_encoder


def split_vae_state_dict(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict, dict]:
    """Splits AudioLDM's `AutoencoderKL` state dict into the VAE's LDM keys and the vocoder's (prefix removed)."""
    vae = {k: v for k, v in state_dict.items() if not k.startswith("vocoder.")}
    vocoder = {k[len("vocoder.") :]: v for k, v in state_dict.items() if k.startswith("vocoder.")}
    if not vocoder:
        raise ValueError("The VAE state dict has no `vocoder.*` weights; is this a Tango `pytorch_model_vae.bin`?")
    return vae, vocoder


# ---------------------------------------------------------------------------------------------------- loading


def load_strict(
    module: torch.nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    name: str,
    allowed_missing: Sequence[str] = (),
) -> None:
    """
    Loads `state_dict` into `module`, requiring the key sets and shapes to match exactly.

    Args:
        module (`torch.nn.Module`): the model to fill.
        state_dict (`Mapping[str, torch.Tensor]`): its weights, with the module's own names.
        name (`str`): what the module is, for error messages.
        allowed_missing (`Sequence[str]`, *optional*, defaults to `()`):
            Keys of the module that may stay as initialised (e.g. tied weights, fixed buffers).

    Raises:
        `ValueError`: listing a few of the missing keys, unexpected keys and shape mismatches.
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict) - set(allowed_missing))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(state_dict) & set(expected)
        if state_dict[k].shape != expected[k].shape
    )
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatches", mismatched)):
            if keys:
                more = f" (+{len(keys) - KEYS_SHOWN} more)" if len(keys) > KEYS_SHOWN else ""
                parts.append(f"{len(keys)} {label}: {keys[:KEYS_SHOWN]}{more}")
        raise ValueError(f"The {name} weights do not match its config; " + "; ".join(parts) + ".")
    module.load_state_dict(state_dict, strict=False)


def infer_unet_config(unet_state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """
    Tango's UNet config (`architectures.tango_unet_config`) with the widths the weights fix: the cross-attention
    width (the text encoder's) and the latent channels in and out.
    """
    cross = next((v for k, v in unet_state_dict.items() if k.endswith("attn2.to_k.weight")), None)
    if cross is None or "conv_in.weight" not in unet_state_dict or "conv_out.weight" not in unet_state_dict:
        raise ValueError(
            "Cannot read the UNet's widths from its weights (no `attn2.to_k.weight`, `conv_in.weight` or "
            "`conv_out.weight`); pass its config with `unet_config`."
        )
    return tango_unet_config(
        int(cross.shape[1]),
        in_channels=int(unet_state_dict["conv_in.weight"].shape[1]),
        out_channels=int(unet_state_dict["conv_out.weight"].shape[0]),
    )


def resolve_unet_config(
    folder: str,
    main_config: Mapping[str, Any],
    unet_state_dict: Mapping[str, torch.Tensor],
    unet_config: str | os.PathLike | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """
    The UNet config: `unet_config` if given; else the file `main_config["unet_model_config_path"]` names, when it
    exists inside the checkpoint folder; else Tango's config with the widths read from the weights.
    """
    if isinstance(unet_config, Mapping):
        return dict(unet_config)
    if unet_config is not None:
        logger.info(f"UNet config: {unet_config}.")
        return dict(UNet2DConditionModel.load_config(os.fspath(unet_config)))
    relative = main_config.get("unet_model_config_path")
    if relative:
        path = os.path.join(folder, relative)
        if os.path.isfile(path):
            logger.info(f"UNet config: {path} (from `unet_model_config_path`).")
            return dict(UNet2DConditionModel.load_config(path))
        logger.info(f"`unet_model_config_path` {relative!r} is not in the checkpoint folder; using Tango's config.")
    return infer_unet_config(unet_state_dict)


def vae_config_from_audioldm(vae_config: Mapping[str, Any]) -> dict[str, Any]:
    """
    Diffusers `AutoencoderKL` config equivalent to AudioLDM's `AutoencoderKL(**vae_config)`.

    Args:
        vae_config (`Mapping[str, Any]`):
            The contents of Tango's `vae_config.json` (`ddconfig`, `embed_dim`, `scale_factor`, `subband`, ...).

    Raises:
        `ValueError`: for AudioLDM options diffusers' `AutoencoderKL` has no equivalent of (attention outside the
            middle block, time-stride-4 resampling, sub-band splitting, `embed_dim != z_channels`, ...).
    """
    dd = vae_config["ddconfig"]
    unsupported = []
    if dd.get("attn_resolutions"):
        unsupported.append(f"attn_resolutions={dd['attn_resolutions']}")
    if dd.get("downsample_time_stride4_levels"):
        unsupported.append(f"downsample_time_stride4_levels={dd['downsample_time_stride4_levels']}")
    if not dd.get("double_z", True):
        unsupported.append("double_z=False")
    if not dd.get("resamp_with_conv", True):
        unsupported.append("resamp_with_conv=False")
    if dd.get("use_linear_attn") or dd.get("attn_type", "vanilla") != "vanilla":
        unsupported.append(f"attn_type={dd.get('attn_type')}, use_linear_attn={dd.get('use_linear_attn')}")
    if dd.get("tanh_out") or dd.get("give_pre_end"):
        unsupported.append("tanh_out / give_pre_end")
    if int(vae_config.get("subband", 1)) != 1:
        unsupported.append(f"subband={vae_config['subband']}")
    embed_dim = int(vae_config.get("embed_dim", dd["z_channels"]))
    if embed_dim != int(dd["z_channels"]):
        unsupported.append(f"embed_dim={embed_dim} != z_channels={dd['z_channels']}")
    if unsupported:
        raise ValueError(f"vae_config.json uses options diffusers' AutoencoderKL cannot express: {unsupported}.")

    levels = len(dd["ch_mult"])
    config = copy.deepcopy(AUDIOLDM_VAE_CONFIG)
    config.update(
        in_channels=int(dd["in_channels"]),
        out_channels=int(dd["out_ch"]),
        down_block_types=["DownEncoderBlock2D"] * levels,
        up_block_types=["UpDecoderBlock2D"] * levels,
        block_out_channels=[int(dd["ch"]) * int(m) for m in dd["ch_mult"]],
        layers_per_block=int(dd["num_res_blocks"]),
        latent_channels=embed_dim,
        scaling_factor=float(vae_config.get("scale_factor", 1.0)),
    )
    return config


def convert_vae(ldm_state_dict: Mapping[str, torch.Tensor], vae_config: Mapping[str, Any]) -> AutoencoderKL:
    """AudioLDM's VAE (LDM keys, no `vocoder.*`) as a diffusers `AutoencoderKL`."""
    config = vae_config_from_audioldm(vae_config)
    converted = convert_ldm_vae_checkpoint(dict(ldm_state_dict), config)
    # diffusers' function drops the keys it does not know; each LDM weight must have found a diffusers name (the
    # converted tensors are the originals or views of them, so their storages identify them).
    used = {t.untyped_storage().data_ptr() for t in converted.values()}
    left = sorted(k for k, t in ldm_state_dict.items() if t.untyped_storage().data_ptr() not in used)
    if left:
        more = f" (+{len(left) - KEYS_SHOWN} more)" if len(left) > KEYS_SHOWN else ""
        raise ValueError(f"{len(left)} VAE weights have no diffusers name: {left[:KEYS_SHOWN]}{more}.")
    vae = AutoencoderKL(**config)
    load_strict(vae, converted, "VAE")
    return vae.eval()


# (magnitude, direction) names of a weight-normalised layer: `torch.nn.utils.weight_norm`, then parametrizations.
_WEIGHT_NORM_SUFFIXES = (
    (".weight_g", ".weight_v"),
    (".parametrizations.weight.original0", ".parametrizations.weight.original1"),
)


def _fold_weight_norm(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replaces weight-norm pairs (`weight_g`/`weight_v`, or `parametrizations.weight.original0/1`) by `weight`."""
    folded = dict(state_dict)
    for key in list(folded):
        for g_suffix, v_suffix in _WEIGHT_NORM_SUFFIXES:
            if key.endswith(g_suffix):
                stem = key[: -len(g_suffix)]
                g, v = folded.pop(key), folded.pop(stem + v_suffix)
                folded[stem + ".weight"] = torch._weight_norm(v, g, 0)
    return folded


def vocoder_config_from_weights(vocoder_state_dict: Mapping[str, torch.Tensor]) -> SpeechT5HifiGanConfig:
    """Tango's HiFi-GAN config (hard-coded in Tango) with the mel count and first width read from `conv_pre`."""
    if "conv_pre.weight" not in vocoder_state_dict:
        raise ValueError("The vocoder weights have no `conv_pre.weight`.")
    conv_pre = vocoder_state_dict["conv_pre.weight"]
    config = copy.deepcopy(HIFIGAN_16K_64_CONFIG)
    config.update(upsample_initial_channel=int(conv_pre.shape[0]), model_in_dim=int(conv_pre.shape[1]))
    config["normalize_before"] = False
    return SpeechT5HifiGanConfig(**config)


def convert_vocoder(vocoder_state_dict: Mapping[str, torch.Tensor]) -> SpeechT5HifiGan:
    """AudioLDM's HiFi-GAN `Generator` weights (without the `vocoder.` prefix) as transformers' `SpeechT5HifiGan`."""
    state_dict = _fold_weight_norm(vocoder_state_dict)
    renamed = {re.sub(r"^ups\.", "upsampler.", k): v for k, v in state_dict.items()}
    vocoder = SpeechT5HifiGan(vocoder_config_from_weights(state_dict))
    load_strict(vocoder, renamed, "vocoder", allowed_missing=("mean", "scale"))
    with torch.no_grad():
        vocoder.mean.zero_()
        vocoder.scale.fill_(1.0)
    return vocoder.eval()


def check_stft_config(stft_config: Mapping[str, Any], vocoder_config: SpeechT5HifiGanConfig) -> None:
    """
    Checks that Tango's mel front end (`stft_config.json`) is the one the vocoder inverts.

    Raises:
        `ValueError`: naming the value when the hop is not the product of the upsampling rates, the mel count is not
            the vocoder's input width, or the sampling rates differ.
    """
    hop = math.prod(vocoder_config.upsample_rates)
    problems = []
    if int(stft_config["hop_length"]) != hop:
        problems.append(
            f"hop_length={stft_config['hop_length']} but the vocoder upsamples by {hop} "
            f"(upsample_rates {list(vocoder_config.upsample_rates)})"
        )
    if int(stft_config["n_mel_channels"]) != vocoder_config.model_in_dim:
        problems.append(
            f"n_mel_channels={stft_config['n_mel_channels']} but the vocoder takes {vocoder_config.model_in_dim} mels"
        )
    if int(stft_config["sampling_rate"]) != vocoder_config.sampling_rate:
        problems.append(
            f"sampling_rate={stft_config['sampling_rate']} but the vocoder runs at {vocoder_config.sampling_rate} Hz"
        )
    if problems:
        raise ValueError("stft_config.json does not match the vocoder: " + "; ".join(problems) + ".")


def convert_text_encoder(
    text_encoder_state_dict: Mapping[str, torch.Tensor], text_encoder_name: str
) -> T5EncoderModel:
    """A `T5EncoderModel` of `text_encoder_name`'s config (config only, no weights read there) with Tango's weights."""
    config = AutoConfig.from_pretrained(text_encoder_name)
    if not isinstance(config, T5Config):
        raise NotImplementedError(
            f"Text encoder {text_encoder_name!r} is a {config.model_type!r} model; only T5 encoders (Tango's "
            "FLAN-T5) are supported."
        )
    model = T5EncoderModel(config)
    state_dict = dict(text_encoder_state_dict)
    # Tied embeddings: one stored copy is enough, two must agree.
    tied = getattr(model, "_tied_weights_keys", None) or {}
    tied = tied if isinstance(tied, Mapping) else {k: "shared.weight" for k in tied}
    allowed_missing = []
    for target, source in tied.items():
        if target in state_dict and source in state_dict:
            if not torch.equal(state_dict[target], state_dict[source]):
                raise ValueError(f"Text encoder weights {target} and {source} should be tied but differ.")
            del state_dict[target]
        elif target in state_dict:
            state_dict[source] = state_dict.pop(target)
        allowed_missing.append(target)
    load_strict(model, state_dict, "text encoder", allowed_missing=allowed_missing)
    return model.eval()


# ---------------------------------------------------------------------------------------------------- conversion


def convert_tango_checkpoint(
    checkpoint: str | os.PathLike,
    text_encoder_name: str | None = None,
    unet_config: str | os.PathLike | Mapping[str, Any] | None = None,
    prediction_type: str = "v_prediction",
    revision: str | None = None,
) -> dict[str, Any]:
    """
    Converts a released Tango checkpoint into the components of a `TangoCLAPPipeline`.

    Args:
        checkpoint (`str` or `os.PathLike`):
            A local folder in Tango's layout, or a Hub repo id such as `"declare-lab/tango-af-ac-ft-ac"`.
        text_encoder_name (`str`, *optional*):
            Where the text encoder's config and tokenizer come from (a Hub id or a local folder); defaults to
            `main_config["text_encoder_name"]` (e.g. `"google/flan-t5-large"`). Its weights are not read: they
            come from the checkpoint.
        unet_config (`str`, `os.PathLike` or `dict`, *optional*):
            The UNet's config (a JSON file or a dict). Defaults to the file named by
            `main_config["unet_model_config_path"]` when it is inside the checkpoint folder, else to Tango's
            config with the widths read from the weights.
        prediction_type (`str`, *optional*, defaults to `"v_prediction"`):
            Written into the scheduler config; Tango trained with SD-2.1's scheduler, i.e. v-prediction.
        revision (`str`, *optional*):
            Revision of the Hub repo; ignored for a local folder.

    Returns:
        `dict[str, Any]`: `vae`, `text_encoder`, `tokenizer`, `unet`, `scheduler` and `vocoder`, ready for
        `TangoCLAPPipeline(**components)`.
    """
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"`prediction_type` must be one of {PREDICTION_TYPES}, got {prediction_type!r}.")
    folder = resolve_checkpoint(checkpoint, revision=revision)
    main_config = _read_json(folder, MAIN_CONFIG_NAME)
    vae_config = _read_json(folder, VAE_CONFIG_NAME)
    stft_config = _read_json(folder, STFT_CONFIG_NAME)

    if main_config.get("unet_model_name") and not main_config.get("unet_model_config_path"):
        raise NotImplementedError(
            f"main_config.json starts the UNet from {main_config['unet_model_name']!r}: Tango then wraps it in "
            "`group_in` / `group_out` projections, which TangoCLAPPipeline has no place for; not supported."
        )
    scheduler_name = main_config.get("scheduler_name")
    if scheduler_name != SD21_SCHEDULER_NAME:
        logger.warning(
            f"main_config.json names the scheduler {scheduler_name!r}; the converted pipeline uses SD-2.1's "
            f"scheduler config (Tango's) with prediction_type={prediction_type!r}."
        )
    text_encoder_name = text_encoder_name or main_config.get("text_encoder_name")
    if not text_encoder_name:
        raise ValueError("main_config.json has no `text_encoder_name`; pass `text_encoder_name`.")

    main_path = _weights_file(folder, MAIN_WEIGHTS_NAME)
    vae_path = _weights_file(folder, VAE_WEIGHTS_NAME)
    unet_weights, text_weights = split_main_state_dict(load_state_dict_file(main_path))
    vae_weights, vocoder_weights = split_vae_state_dict(load_state_dict_file(vae_path))

    # Cheap checks first, before any model is built.
    vocoder_config = vocoder_config_from_weights(_fold_weight_norm(vocoder_weights))
    check_stft_config(stft_config, vocoder_config)

    logger.info("Converting the vocoder.")
    vocoder = convert_vocoder(vocoder_weights)
    logger.info("Converting the VAE.")
    vae = convert_vae(vae_weights, vae_config)

    logger.info(f"Converting the text encoder (config and tokenizer of {text_encoder_name}).")
    text_encoder = convert_text_encoder(text_weights, text_encoder_name)
    tokenizer = AutoTokenizer.from_pretrained(text_encoder_name)

    config = resolve_unet_config(folder, main_config, unet_weights, unet_config)
    if config.get("cross_attention_dim") != text_encoder.config.d_model:
        raise ValueError(
            f"The UNet's cross_attention_dim ({config.get('cross_attention_dim')}) is not the text encoder's width "
            f"({text_encoder.config.d_model}, {text_encoder_name})."
        )
    if config.get("in_channels") != vae.config.latent_channels:
        raise ValueError(
            f"The UNet takes {config.get('in_channels')} channels but the VAE's latents have "
            f"{vae.config.latent_channels}."
        )
    logger.info("Converting the UNet.")
    unet = UNet2DConditionModel.from_config(config)
    load_strict(unet, unet_weights, "UNet")

    return {
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "unet": unet.eval(),
        "scheduler": build_scheduler(prediction_type=prediction_type),
        "vocoder": vocoder,
    }


def save_pipeline(
    components: Mapping[str, Any],
    output_dir: str | os.PathLike,
    dtype: str | torch.dtype | None = None,
    push_to_hub: str | None = None,
    source: str | None = None,
) -> TangoCLAPPipeline:
    """
    Builds a `TangoCLAPPipeline` from converted components and saves it (safetensors only).

    Args:
        components (`Mapping[str, Any]`):
            What `convert_tango_checkpoint` returns.
        output_dir (`str` or `os.PathLike`):
            Folder to write.
        dtype (`str` or `torch.dtype`, *optional*):
            `"float32"`, `"float16"` or `"bfloat16"`: cast every model before saving. By default they stay in float32.
        push_to_hub (`str`, *optional*):
            A Hub repo id to upload the pipeline to as well (with its model card, as `tango-af-publish model`).
        source (`str`, *optional*):
            The checkpoint converted, recorded in `conversion.json` for the model card.

    Returns:
        [`TangoCLAPPipeline`]: the pipeline that was saved.
    """
    components = dict(components)
    if dtype is not None:
        torch_dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
        for name, component in components.items():
            if isinstance(component, torch.nn.Module):
                components[name] = component.to(torch_dtype)
    pipe = TangoCLAPPipeline(**components)
    pipe.save_pretrained(output_dir)
    if source is not None:
        from model_cards.pipeline_card import CONVERSION_RECORD_NAME

        record = {"tool": "tango-af-convert-tango", "source": str(source), "dtype": str(dtype or "float32")}
        (Path(output_dir) / CONVERSION_RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")
    logger.info(f"Saved the pipeline to {output_dir}.")
    if push_to_hub:
        from model_cards.publish import publish_model

        publish_model(output_dir, push_to_hub)
        logger.info(f"Pushed the pipeline to {push_to_hub}.")
    return pipe


# ---------------------------------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Convert a declare-lab Tango checkpoint to a TangoCLAPPipeline folder (safetensors)."
    )
    parser.add_argument("--checkpoint", required=True, help="Local folder or Hub repo id, e.g. declare-lab/tango.")
    parser.add_argument("--output_dir", required=True, help="Where to write the pipeline.")
    parser.add_argument("--revision", default=None, help="Revision of the Hub checkpoint.")
    parser.add_argument(
        "--text_encoder_name",
        default=None,
        help="Hub id or local folder of the text encoder's config and tokenizer (default: main_config's).",
    )
    parser.add_argument(
        "--unet_config",
        default=None,
        help="JSON config of the UNet (default: main_config's unet_model_config_path when that file is in the "
        "checkpoint folder, else Tango's config with the widths read from the weights).",
    )
    parser.add_argument(
        "--prediction_type",
        default="v_prediction",
        choices=PREDICTION_TYPES,
        help="Written into the scheduler config (default: v_prediction, SD-2.1's, which Tango trained with).",
    )
    parser.add_argument("--dtype", default=None, choices=sorted(DTYPES), help="Cast the weights before saving.")
    parser.add_argument("--push_to_hub", default=None, metavar="REPO_ID", help="Also upload to this Hub repo.")
    add_debug_argument(parser)
    return parser.parse_args(argv)


@command_line
def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry point (`tango-af-convert-tango`)."""
    args = parse_args(argv)
    # Everything the conversion needs is checked before the multi-GB checkpoint is read; the output folder must be
    # new, empty, or an earlier conversion's own (which writes `conversion.json`).
    check_model_reference(args.checkpoint, "--checkpoint")
    if args.text_encoder_name:
        check_model_reference(args.text_encoder_name, "--text_encoder_name")
    if args.unet_config and not os.path.isfile(args.unet_config):
        raise FileNotFoundError(2, "--unet_config file not found", args.unet_config)
    check_output_folder(args.output_dir, "--output_dir", owned_marker="conversion.json")
    logging.set_verbosity_info()  # diffusers' own messages
    logger.setLevel(py_logging.INFO)  # this module's logger is not under diffusers' root logger
    if not logger.handlers:
        logger.addHandler(py_logging.StreamHandler())
    components = convert_tango_checkpoint(
        args.checkpoint,
        text_encoder_name=args.text_encoder_name,
        unet_config=args.unet_config,
        prediction_type=args.prediction_type,
        revision=args.revision,
    )
    save_pipeline(components, args.output_dir, dtype=args.dtype, push_to_hub=args.push_to_hub, source=args.checkpoint)


if __name__ == "__main__":
    raise SystemExit(main())
