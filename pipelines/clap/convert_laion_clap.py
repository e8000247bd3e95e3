"""Convert an original LAION-CLAP checkpoint (`laion_clap` package, `*.pt`) into a transformers `ClapModel` folder.

Handles every checkpoint the LAION-CLAP README lists with the RoBERTa text tower: `630k-best.pt`,
`630k-audioset-best.pt`, `630k-fusion-best.pt`, `630k-audioset-fusion-best.pt` (HTSAT-tiny) and the
`music_audioset_epoch_15_esc_90.14.pt`, `music_speech_epoch_15_esc_89.25.pt`,
`music_speech_audioset_epoch_15_esc_89.98.pt` ones (HTSAT-base). Only the state dict is read, with
`torch.load(weights_only=True)`; the `laion_clap` package is not needed. The architecture (HTSAT width and depth,
window, heads, fusion, text tower size, projection) is read off the tensors' names and shapes, so the same code
converts HTSAT-tiny, HTSAT-base and the tiny random checkpoints of the tests.

The processor written beside the weights reproduces `laion_clap.CLAP_Module.get_audio_embedding_from_data`'s
front end: 48 kHz, 10 s windows (480,000 samples), 64 mel bins over 50-14,000 Hz with a 1024-point window and hop
480 (`laion_clap/clap_module/model_configs/HTSAT-*.json`), `repeatpad` for short clips, and `fusion` truncation for
fused checkpoints, `rand_trunc` for the others (`laion_clap/hook.py`).

What is dropped, because transformers' `ClapModel` has no counterpart and no embedding depends on it:

- `audio_branch.spectrogram_extractor.*` and `audio_branch.logmel_extractor.*`: fixed STFT / mel buffers; the
  feature extractor computes the same log-mel spectrogram;
- `audio_branch.tscam_conv.*` and `audio_branch.head.*`: HTSAT's AudioSet classification head;
- `audio_transform.*` and `text_transform.*`: the MLPs of LAION-CLAP's training loss, not used for embeddings;
- `audio_branch.layers.*.blocks.*.attn_mask`: HTSAT's shifted-window masks, fixed buffers that transformers computes
  on the fly;
- `text_branch.embeddings.position_ids`: a buffer older transformers saved.

Usage:

```bash
tango-af-convert-laion-clap --checkpoint 630k-audioset-fusion-best.pt --tokenizer roberta-base \
    --output_dir ./clap-630k-audioset-fusion-best
```
"""

from __future__ import annotations

import argparse
import json
import logging as py_logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import (
    AutoTokenizer,
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    ClapProcessor,
)
from transformers.utils import logging

from ..checkpoints import KEYS_SHOWN, check_state_dict, load_weights_only
from ..cli import add_debug_argument, check_model_reference, check_output_folder, command_line

logger = logging.get_logger(__name__)

# `laion_clap/clap_module/model_configs/HTSAT-tiny.json` and `HTSAT-base.json` (identical audio front ends).
LAION_AUDIO_FRONT_END = {
    "sampling_rate": 48_000,
    "max_length_s": 10,
    "feature_size": 64,
    "fft_window_size": 1024,
    "hop_length": 480,
    "frequency_min": 50,
    "frequency_max": 14_000,
    "padding": "repeatpad",
}

# LAION-CLAP's text tower is `RobertaModel.from_pretrained("roberta-base")` (`laion_clap/clap_module/model.py`):
# these are roberta-base's `config.json` values that no tensor shape carries.
ROBERTA_BASE_TEXT_CONFIG = {
    "num_attention_heads": 12,
    "layer_norm_eps": 1e-5,
    "hidden_act": "gelu",
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
}

# HTSAT settings that no tensor shape carries: `create_htsat_model` in `laion_clap/clap_module/htsat.py` always
# builds a 256-wide spectrogram image.
HTSAT_AUDIO_CONFIG = {"spec_size": 256}

# laion_clap tokenizes with `max_length=77` (`CLAP_Module.tokenizer`), the length it was trained with.
LAION_TEXT_MAX_LENGTH = 77

# Weights that the transformers model has no place for (see the module docstring).
DROPPED_PREFIXES = (
    "audio_branch.spectrogram_extractor.",
    "audio_branch.logmel_extractor.",
    "audio_branch.tscam_conv.",
    "audio_branch.head.",
    "audio_transform.",
    "text_transform.",
)
DROPPED_KEYS = ("text_branch.embeddings.position_ids",)

# Renames inside one HTSAT Swin block, original -> transformers; `attn.qkv` is split separately.
_BLOCK_RENAMES = {
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.proj": "attention.output.dense",
    "attn.relative_position_bias_table": "attention.self.relative_position_bias_table",
    "attn.relative_position_index": "attention.self.relative_position_index",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}
# Shifted-window attention masks: fixed buffers that transformers computes on the fly.
_ATTN_MASK_KEY = re.compile(r"^audio_branch\.layers\.\d+\.blocks\.\d+\.attn_mask$")
_BLOCK_KEY = re.compile(r"^audio_branch\.layers\.(\d+)\.blocks\.(\d+)\.(.+)\.(weight|bias|relative_position_\w+)$")


def read_laion_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """
    Reads the model weights of a LAION-CLAP `.pt` checkpoint.

    The files hold `{"epoch", "name", "state_dict", "optimizer", ...}` with `module.`-prefixed names (saved from
    DistributedDataParallel); a bare state dict, with or without the prefix, is accepted too.

    Args:
        path (`str` or `os.PathLike`): the checkpoint, read with `torch.load(weights_only=True)` (or safetensors).

    Returns:
        `dict[str, torch.Tensor]`: the weights by their names in `laion_clap`'s `CLAP` module.
    """
    checkpoint = load_weights_only(path)
    if isinstance(checkpoint, Mapping) and "state_dict" in checkpoint:
        checkpoint = checkpoint["state_dict"]
    state_dict = check_state_dict(checkpoint, os.fspath(path))
    if state_dict and all(k.startswith("module.") for k in state_dict):
        state_dict = {k[len("module.") :]: v for k, v in state_dict.items()}
    if not any(k.startswith("audio_branch.") for k in state_dict) or not any(
        k.startswith("text_branch.") for k in state_dict
    ):
        raise ValueError(
            f"{os.fspath(path)!r} is not a LAION-CLAP checkpoint: no `audio_branch.` and `text_branch.` weights "
            f"(first keys: {list(state_dict)[:KEYS_SHOWN]})."
        )
    return state_dict


def _count_indices(state_dict: Mapping[str, torch.Tensor], pattern: str) -> int:
    found = {int(m.group(1)) for k in state_dict if (m := re.match(pattern, k))}
    if found != set(range(len(found))):
        raise ValueError(f"Non-contiguous indices for {pattern!r}: {sorted(found)}.")
    return len(found)


def infer_clap_config(
    state_dict: Mapping[str, torch.Tensor],
    text_config_overrides: Mapping[str, Any] | None = None,
    audio_config_overrides: Mapping[str, Any] | None = None,
) -> ClapConfig:
    """
    The `ClapConfig` of a LAION-CLAP state dict, read off its tensors' names and shapes.

    Args:
        state_dict (`Mapping[str, torch.Tensor]`): as returned by [`read_laion_state_dict`].
        text_config_overrides (`Mapping[str, Any]`, *optional*):
            Text-tower settings that shapes do not carry; defaults to roberta-base's ([`ROBERTA_BASE_TEXT_CONFIG`]).
        audio_config_overrides (`Mapping[str, Any]`, *optional*):
            Audio-tower settings that shapes do not carry; defaults to LAION-CLAP's ([`HTSAT_AUDIO_CONFIG`]).

    Returns:
        [`~transformers.ClapConfig`]
    """
    if "audio_branch.patch_embed.proj.weight" not in state_dict:
        raise ValueError("Only HTSAT audio towers are supported; `audio_branch.patch_embed.proj.weight` is missing.")
    patch = state_dict["audio_branch.patch_embed.proj.weight"]
    num_layers = _count_indices(state_dict, r"^audio_branch\.layers\.(\d+)\.")
    depths = [_count_indices(state_dict, rf"^audio_branch\.layers\.{i}\.blocks\.(\d+)\.") for i in range(num_layers)]
    heads = [
        state_dict[f"audio_branch.layers.{i}.blocks.0.attn.relative_position_bias_table"].shape[1]
        for i in range(num_layers)
    ]
    table_size = state_dict["audio_branch.layers.0.blocks.0.attn.relative_position_bias_table"].shape[0]
    window_size = (round(table_size**0.5) + 1) // 2
    if (2 * window_size - 1) ** 2 != table_size:
        raise ValueError(f"Relative position table of {table_size} rows is not (2 * window - 1) ** 2.")
    dim = patch.shape[0]
    enable_fusion = "audio_branch.patch_embed.mel_conv2d.weight" in state_dict
    audio_config = {
        "patch_embeds_hidden_size": dim,
        "hidden_size": state_dict["audio_branch.norm.weight"].shape[0],
        "depths": depths,
        "num_hidden_layers": len(depths),
        "num_attention_heads": heads,
        "window_size": window_size,
        "patch_size": patch.shape[-1],
        "patch_stride": [patch.shape[-1], patch.shape[-1]],
        "mlp_ratio": state_dict["audio_branch.layers.0.blocks.0.mlp.fc1.weight"].shape[0] / dim,
        "num_mel_bins": state_dict["audio_branch.bn0.weight"].shape[0],
        "enable_fusion": enable_fusion,
        "fusion_type": "aff_2d" if enable_fusion else None,
        "projection_dim": state_dict["audio_projection.2.weight"].shape[0],
        **HTSAT_AUDIO_CONFIG,
        **(audio_config_overrides or {}),
    }
    if "audio_branch.head.weight" in state_dict:
        audio_config["num_classes"] = state_dict["audio_branch.head.weight"].shape[0]
    if audio_config["hidden_size"] != dim * 2 ** (num_layers - 1):
        raise ValueError(
            f"HTSAT width {audio_config['hidden_size']} is not patch width {dim} * 2 ** ({num_layers} - 1)."
        )

    words = state_dict["text_branch.embeddings.word_embeddings.weight"]
    text_config = {
        "vocab_size": words.shape[0],
        "hidden_size": words.shape[1],
        "num_hidden_layers": _count_indices(state_dict, r"^text_branch\.encoder\.layer\.(\d+)\."),
        "intermediate_size": state_dict["text_branch.encoder.layer.0.intermediate.dense.weight"].shape[0],
        "max_position_embeddings": state_dict["text_branch.embeddings.position_embeddings.weight"].shape[0],
        "type_vocab_size": state_dict["text_branch.embeddings.token_type_embeddings.weight"].shape[0],
        "projection_dim": state_dict["text_projection.2.weight"].shape[0],
        **ROBERTA_BASE_TEXT_CONFIG,
        **(text_config_overrides or {}),
    }
    return ClapConfig(
        text_config=text_config,
        audio_config=audio_config,
        projection_dim=audio_config["projection_dim"],
        projection_hidden_act="relu",
    )


def rename_laion_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """
    Renames (and splits the fused `qkv` projections of) a LAION-CLAP state dict into `ClapModel`'s names.

    Raises:
        `ValueError`: naming any weight that has no transformers name and is not in [`DROPPED_PREFIXES`].
    """
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in state_dict.items():
        if key in DROPPED_KEYS or key.startswith(DROPPED_PREFIXES) or _ATTN_MASK_KEY.match(key):
            continue
        if key in ("logit_scale_a", "logit_scale_t"):
            out[key] = tensor
        elif key.startswith("text_branch."):
            out["text_model." + key[len("text_branch.") :]] = tensor
        elif m := re.match(r"^(text|audio)_projection\.([02])\.(weight|bias)$", key):
            out[f"{m.group(1)}_projection.linear{1 if m.group(2) == '0' else 2}.{m.group(3)}"] = tensor
        elif key.startswith("audio_branch.bn0."):
            out["audio_model.audio_encoder.batch_norm." + key[len("audio_branch.bn0.") :]] = tensor
        elif key.startswith(("audio_branch.patch_embed.", "audio_branch.norm.")) or re.match(
            r"^audio_branch\.layers\.\d+\.downsample\.", key
        ):
            out["audio_model.audio_encoder." + key[len("audio_branch.") :]] = tensor
        elif m := _BLOCK_KEY.match(key):
            layer, block, module, leaf = m.groups()
            prefix = f"audio_model.audio_encoder.layers.{layer}.blocks.{block}."
            if module == "attn.qkv":
                for name, part in zip(("query", "key", "value"), tensor.chunk(3, dim=0)):
                    out[f"{prefix}attention.self.{name}.{leaf}"] = part.clone()
            elif module == "attn" and leaf.startswith("relative_position_"):
                out[prefix + _BLOCK_RENAMES[f"attn.{leaf}"]] = tensor
            elif module in _BLOCK_RENAMES:
                out[f"{prefix}{_BLOCK_RENAMES[module]}.{leaf}"] = tensor
            else:
                unknown.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"{len(unknown)} LAION-CLAP weights have no transformers name: {unknown[:KEYS_SHOWN]}.")
    return out


@dataclass
class LoadReport:
    """What loading the renamed weights left out, by name; both empty for a complete conversion."""

    missing: list[str]
    unexpected: list[str]


# Buffers that transformers builds itself and that the original files do not (all) carry.
_REBUILT_BUFFERS = ("text_model.embeddings.position_ids", "text_model.embeddings.token_type_ids")


def laion_clap_to_transformers(
    state_dict: Mapping[str, torch.Tensor],
    text_config_overrides: Mapping[str, Any] | None = None,
    audio_config_overrides: Mapping[str, Any] | None = None,
) -> tuple[ClapModel, LoadReport]:
    """
    Builds the `ClapModel` holding a LAION-CLAP state dict's weights.

    Args:
        state_dict (`Mapping[str, torch.Tensor]`): as returned by [`read_laion_state_dict`].
        text_config_overrides, audio_config_overrides (`Mapping[str, Any]`, *optional*): see
            [`infer_clap_config`].

    Returns:
        `tuple[ClapModel, LoadReport]`: the model in eval mode, float32, and what did not load.

    Raises:
        `ValueError`: when a weight has no place in the model, or a model weight is not in the checkpoint.
    """
    config = infer_clap_config(state_dict, text_config_overrides, audio_config_overrides)
    model = ClapModel(config).eval()
    renamed = rename_laion_state_dict(state_dict)
    result = model.load_state_dict(renamed, strict=False)
    missing = [k for k in result.missing_keys if k not in _REBUILT_BUFFERS]
    report = LoadReport(missing=missing, unexpected=list(result.unexpected_keys))
    if report.missing or report.unexpected:
        raise ValueError(
            f"The converted weights do not fit `ClapModel`: {len(report.missing)} missing "
            f"{report.missing[:KEYS_SHOWN]}, {len(report.unexpected)} unexpected {report.unexpected[:KEYS_SHOWN]}."
        )
    return model, report


def laion_feature_extractor(enable_fusion: bool) -> ClapFeatureExtractor:
    """The `ClapFeatureExtractor` matching laion_clap's front end for a fused or unfused checkpoint."""
    return ClapFeatureExtractor(truncation="fusion" if enable_fusion else "rand_trunc", **LAION_AUDIO_FRONT_END)


def convert_laion_clap_checkpoint(
    checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike,
    tokenizer: str | os.PathLike = "roberta-base",
    text_config_overrides: Mapping[str, Any] | None = None,
    audio_config_overrides: Mapping[str, Any] | None = None,
) -> ClapModel:
    """
    Converts a LAION-CLAP `.pt` into a `ClapModel` folder with its `ClapProcessor` (safetensors).

    Args:
        checkpoint (`str` or `os.PathLike`): the original file.
        output_dir (`str` or `os.PathLike`): the folder to write.
        tokenizer (`str` or `os.PathLike`, *optional*, defaults to `"roberta-base"`):
            The RoBERTa tokenizer (Hub id or folder) LAION-CLAP was trained with.
        text_config_overrides, audio_config_overrides (`Mapping[str, Any]`, *optional*): see
            [`infer_clap_config`].

    Returns:
        [`~transformers.ClapModel`]: the converted model.
    """
    state_dict = read_laion_state_dict(checkpoint)
    model, _ = laion_clap_to_transformers(state_dict, text_config_overrides, audio_config_overrides)
    text_tokenizer = AutoTokenizer.from_pretrained(tokenizer)
    if len(text_tokenizer) > model.config.text_config.vocab_size:
        raise ValueError(
            f"The tokenizer {os.fspath(tokenizer)!r} has {len(text_tokenizer)} tokens but the checkpoint's text "
            f"tower only {model.config.text_config.vocab_size}."
        )
    text_tokenizer.model_max_length = LAION_TEXT_MAX_LENGTH
    processor = ClapProcessor(
        feature_extractor=laion_feature_extractor(model.config.audio_config.enable_fusion), tokenizer=text_tokenizer
    )
    os.makedirs(output_dir, exist_ok=True)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    logger.info(
        f"Converted {os.fspath(checkpoint)} ({'fused' if model.config.audio_config.enable_fusion else 'unfused'} "
        f"HTSAT, depths {model.config.audio_config.depths}) to {os.fspath(output_dir)}."
    )
    return model


def compare_weights(converted: Mapping[str, torch.Tensor], other: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """
    Compares two `ClapModel` state dicts tensor by tensor (e.g. a converted original and a Hub port).

    Returns:
        `dict`: `max_abs_diff` over the shared tensors, `differing` (names whose values differ by more than 1e-6,
        or whose shapes differ), `only_converted` and `only_other` (names present on one side).
    """
    shared = sorted(set(converted) & set(other))
    differing, worst = [], 0.0
    for name in shared:
        a, b = converted[name], other[name]
        if a.shape != b.shape:
            differing.append(name)
            continue
        if a.is_floating_point():
            diff = (a.float() - b.float()).abs().max().item() if a.numel() else 0.0
        else:
            diff = float((a != b).any().item())
        worst = max(worst, diff)
        if diff > 1e-6:
            differing.append(name)
    return {
        "max_abs_diff": worst,
        "differing": differing,
        "only_converted": sorted(set(converted) - set(other) - set(_REBUILT_BUFFERS)),
        "only_other": sorted(set(other) - set(converted) - set(_REBUILT_BUFFERS)),
    }


# Settings that change embeddings; the rest of a config (ids, bookkeeping, dropout) does not at inference.
COMPARED_CONFIG_FIELDS = {
    "text_config": ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
                    "layer_norm_eps", "max_position_embeddings", "type_vocab_size", "pad_token_id"),
    "audio_config": ("patch_embeds_hidden_size", "hidden_size", "depths", "num_attention_heads", "window_size",
                     "spec_size", "num_mel_bins", "patch_size", "patch_stride", "mlp_ratio", "enable_fusion",
                     "layer_norm_eps", "hidden_act"),
}  # fmt: skip


def compare_configs(converted: ClapConfig, other: ClapConfig) -> list[str]:
    """The embedding-relevant settings on which two `ClapConfig`s differ, as `"audio_config.spec_size: 256 != 128"`."""
    differences = []
    for part, fields in COMPARED_CONFIG_FIELDS.items():
        mine, theirs = getattr(converted, part).to_dict(), getattr(other, part).to_dict()
        for name in fields:
            if mine.get(name) != theirs.get(name):
                differences.append(f"{part}.{name}: {mine.get(name)!r} != {theirs.get(name)!r}")
    return differences


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="The original LAION-CLAP .pt file.")
    parser.add_argument("--output_dir", help="Where to write the ClapModel folder.")
    parser.add_argument("--tokenizer", default="roberta-base", help="RoBERTa tokenizer id or folder.")
    parser.add_argument(
        "--text_config",
        type=json.loads,
        default=None,
        help="JSON of text-tower settings no tensor shape carries, over roberta-base's (e.g. '{\"num_attention_heads\": 4}').",
    )
    parser.add_argument(
        "--audio_config", type=json.loads, default=None, help="JSON of audio-tower settings, over LAION-CLAP's."
    )
    parser.add_argument(
        "--compare_with",
        help="A transformers CLAP (Hub id or folder) to compare the converted weights with, tensor by tensor.",
    )
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if not args.output_dir and not args.compare_with:
        parser.error("give --output_dir, --compare_with, or both.")
    return args


@command_line
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not os.path.isfile(args.checkpoint):
        raise FileNotFoundError(2, "--checkpoint file not found", args.checkpoint)
    if args.compare_with:
        check_model_reference(args.compare_with, "--compare_with")
    if args.output_dir:
        # A converted folder always holds config.json and the processor files; any other non-empty folder is not ours.
        check_output_folder(args.output_dir, "--output_dir", owned_marker="preprocessor_config.json")
    py_logging.basicConfig(level=py_logging.INFO, format="%(message)s")
    logging.set_verbosity_info()
    if args.output_dir:
        model = convert_laion_clap_checkpoint(
            args.checkpoint,
            args.output_dir,
            tokenizer=args.tokenizer,
            text_config_overrides=args.text_config,
            audio_config_overrides=args.audio_config,
        )
    else:
        state_dict = read_laion_state_dict(args.checkpoint)
        model, _ = laion_clap_to_transformers(state_dict, args.text_config, args.audio_config)
    if args.compare_with:
        other_model = ClapModel.from_pretrained(args.compare_with)
        other = other_model.state_dict()
        report = compare_weights(model.state_dict(), other)
        same = not report["differing"] and not report["only_converted"] and not report["only_other"]
        config_differences = compare_configs(model.config, other_model.config)
        print(f"{'SAME WEIGHTS' if same else 'DIFFERENT WEIGHTS'}: {args.checkpoint} vs {args.compare_with}")
        print(
            f"  max |difference| over {len(set(other) & set(model.state_dict()))} shared tensors: "
            f"{report['max_abs_diff']:.3g}"
        )
        for field in ("differing", "only_converted", "only_other"):
            if report[field]:
                print(f"  {field}: {len(report[field])}, e.g. {report[field][:KEYS_SHOWN]}")
        print(f"{'SAME' if not config_differences else 'DIFFERENT'} CONFIG (settings that change embeddings)")
        for difference in config_differences:
            print(f"  {difference}")
        if not same or config_differences:
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
