"""Tiny, randomly initialised TangoCLAP pipelines built entirely offline ("debug" models).

Like audiocraft's `get_pretrained('debug')`: the same classes and code paths as a real checkpoint, at a size that
runs in a fraction of a second on a CPU. The weights are random, so the audio is noise: these models exist for
tests, for `make demo` before a trained model ships, and for measuring pipeline overhead.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    ClapTextConfig,
    ClapTextModelWithProjection,
    PreTrainedTokenizerBase,
    RobertaTokenizer,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

from .architectures import build_scheduler, build_unet, build_vae, build_vocoder
from .pipeline_tango_clap import TangoCLAPPipeline

DEBUG_MODEL_ID = "debug"
TEXT_ENCODER_KINDS = ("clap", "t5")


def byte_level_alphabet() -> dict[int, str]:
    """The symbols byte-level BPE (GPT-2, RoBERTa, Qwen2) writes the 256 byte values as: printable bytes stand for
    themselves, the others are shifted past 255, so that every byte has a visible, non-whitespace symbol."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    alphabet, shift = {}, 0
    for byte in range(256):
        if byte in printable:
            alphabet[byte] = chr(byte)
        else:
            alphabet[byte] = chr(256 + shift)
            shift += 1
    return alphabet


def build_debug_tokenizer(kind: str = "clap", model_max_length: int = 64) -> PreTrainedTokenizerBase:
    """
    A small tokenizer of the same class as the real text encoder's, built without any file.

    Args:
        kind (`str`, *optional*, defaults to `"clap"`):
            `"clap"`: a byte-level BPE `RobertaTokenizer` with no merges (one token per byte), as CLAP's text
            tower uses; `"t5"`: a unigram `T5Tokenizer` over single characters and a few words.
        model_max_length (`int`, *optional*, defaults to 64):
            Longest tokenized prompt; longer ones are truncated by the pipeline.
    """
    if kind == "clap":
        vocab = {token: i for i, token in enumerate(["<s>", "<pad>", "</s>", "<unk>"] + list(byte_level_alphabet().values()) + ["<mask>"])}
        return RobertaTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)
    if kind == "t5":
        words = "a an the and of with in dog cat bird car rain wind music piano guitar drum speech man woman".split()
        chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"-()"
        pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
        pieces += [("▁" + w, -1.0) for w in words] + [(c, -5.0) for c in chars]
        return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=model_max_length)
    raise ValueError(f"Unknown debug text encoder kind {kind!r}; expected one of {TEXT_ENCODER_KINDS}.")


def build_debug_text_encoder(
    kind: str,
    tokenizer: PreTrainedTokenizerBase,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
) -> ClapTextModelWithProjection | T5EncoderModel:
    """A tiny CLAP text tower or T5 encoder sized for `tokenizer`."""
    if kind == "clap":
        config = ClapTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            intermediate_size=2 * hidden_size,
            # RoBERTa positions start after the padding index.
            max_position_embeddings=tokenizer.model_max_length + 2,
            projection_dim=16,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        return ClapTextModelWithProjection(config).eval()
    if kind == "t5":
        config = T5Config(
            vocab_size=len(tokenizer),
            d_model=hidden_size,
            d_kv=hidden_size // num_heads,
            d_ff=2 * hidden_size,
            num_layers=num_layers,
            num_heads=num_heads,
            relative_attention_num_buckets=8,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
        )
        return T5EncoderModel(config).eval()
    raise ValueError(f"Unknown debug text encoder kind {kind!r}; expected one of {TEXT_ENCODER_KINDS}.")


def build_debug_clap_scorer(
    tokenizer: PreTrainedTokenizerBase | None = None, enable_fusion: bool = False
) -> dict[str, Any]:
    """
    A tiny `ClapModel` with its tokenizer and a 10 s, 16-mel feature extractor at 48 kHz, for ranking candidates.
    `enable_fusion=True` gives a fused HTSAT (the architecture of `630k-audioset-fusion-best.pt`) with a `fusion`
    feature extractor, `False` an unfused one with `rand_trunc`.

    The HTSAT audio tower needs `hidden_size == patch_embeds_hidden_size * 2 ** (len(depths) - 1)` and a spectrogram
    no longer than `spec_size * (spec_size // num_mel_bins)` frames: 1001 frames of 10 s fit a 128-wide, 16-mel
    input. Like the real checkpoints, clips up to 10 s are padded, never randomly cropped, so scores are repeatable.
    """
    tokenizer = tokenizer if tokenizer is not None else build_debug_tokenizer("clap")
    text_config = ClapTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=tokenizer.model_max_length + 2,
        projection_dim=16,
        pad_token_id=tokenizer.pad_token_id,
    )
    audio_config = {
        "spec_size": 128,
        "window_size": 4,
        "num_mel_bins": 16,
        "patch_size": 4,
        "patch_stride": [4, 4],
        "patch_embeds_hidden_size": 16,
        "hidden_size": 32,
        "depths": [1, 1],
        "num_attention_heads": [2, 2],
        "num_hidden_layers": 2,
        "projection_dim": 16,
        "enable_fusion": enable_fusion,
    }
    model = ClapModel(ClapConfig(text_config=text_config.to_dict(), audio_config=audio_config, projection_dim=16))
    feature_extractor = ClapFeatureExtractor(
        feature_size=16,
        sampling_rate=48000,
        hop_length=480,
        max_length_s=10,
        fft_window_size=1024,
        truncation="fusion" if enable_fusion else "rand_trunc",
        padding="repeatpad",
    )
    return {"clap_model": model.eval(), "clap_tokenizer": tokenizer, "clap_feature_extractor": feature_extractor}


def build_debug_components(
    text_encoder: str = "clap",
    with_clap_scorer: bool = True,
    seed: int = 0,
    prediction_type: str = "v_prediction",
    text_hidden_size: int = 32,
    unet_block_out_channels: tuple[int, ...] = (32, 64),
    unet_attention_heads: tuple[int, ...] = (2, 4),
    vae_block_out_channels: tuple[int, ...] = (16, 32, 32),
    latent_channels: int = 8,
    vocoder_initial_channel: int = 32,
    model_max_length: int = 64,
) -> dict[str, Any]:
    """
    Every component of a debug TangoCLAP pipeline, randomly initialised from `seed` (the global RNG is untouched).

    Args:
        text_encoder (`str`, *optional*, defaults to `"clap"`):
            `"clap"` (CLAP text tower, Tango-CLAP) or `"t5"` (T5 encoder, Tango / Tango-AF).
        with_clap_scorer (`bool`, *optional*, defaults to `True`):
            Add a tiny CLAP model, tokenizer and feature extractor to rank candidates.
        seed (`int`, *optional*, defaults to 0):
            Seed of the random weights.
        prediction_type (`str`, *optional*, defaults to `"v_prediction"`):
            The scheduler's prediction type.
        text_hidden_size, unet_block_out_channels, unet_attention_heads, vae_block_out_channels, latent_channels,
        vocoder_initial_channel, model_max_length:
            Sizes; the VAE keeps 3 levels (x4 down, as Tango's) unless given otherwise, and the mel front end is
            Tango's (64 mels, hop 160, 16 kHz).
    """
    levels = len(unet_block_out_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tokenizer = build_debug_tokenizer(text_encoder, model_max_length=model_max_length)
        encoder = build_debug_text_encoder(text_encoder, tokenizer, hidden_size=text_hidden_size)
        unet = build_unet(
            text_hidden_size,
            block_out_channels=list(unet_block_out_channels),
            attention_head_dim=list(unet_attention_heads),
            down_block_types=["CrossAttnDownBlock2D"] * (levels - 1) + ["DownBlock2D"],
            up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (levels - 1),
            layers_per_block=1,
            norm_num_groups=min(32, min(unet_block_out_channels)),
            in_channels=latent_channels,
            out_channels=latent_channels,
        )
        vae = build_vae(
            block_out_channels=list(vae_block_out_channels),
            down_block_types=["DownEncoderBlock2D"] * len(vae_block_out_channels),
            up_block_types=["UpDecoderBlock2D"] * len(vae_block_out_channels),
            layers_per_block=1,
            latent_channels=latent_channels,
            norm_num_groups=min(32, min(vae_block_out_channels)),
        )
        vocoder = build_vocoder(upsample_initial_channel=vocoder_initial_channel)
        # HiFi-GAN's own init (normal, std 0.01) makes an untrained vocoder output ~1e-10: silence. PyTorch's
        # default init keeps the untrained demo audible, so that a listener hears it is noise.
        for module in vocoder.modules():
            if isinstance(module, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
                module.reset_parameters()
        components: dict[str, Any] = {
            "vae": vae.eval(),
            "text_encoder": encoder,
            "tokenizer": tokenizer,
            "unet": unet.eval(),
            "scheduler": build_scheduler(prediction_type=prediction_type),
            "vocoder": vocoder,
            "clap_model": None,
            "clap_tokenizer": None,
            "clap_feature_extractor": None,
        }
        if with_clap_scorer:
            clap_tokenizer = tokenizer if text_encoder == "clap" else build_debug_tokenizer("clap")
            components.update(build_debug_clap_scorer(clap_tokenizer))
    return components


def get_debug_pipeline(text_encoder: str = "clap", with_clap_scorer: bool = True, seed: int = 0) -> TangoCLAPPipeline:
    """The embedded default model: a tiny, untrained TangoCLAP pipeline (its audio is noise)."""
    return TangoCLAPPipeline(**build_debug_components(text_encoder, with_clap_scorer=with_clap_scorer, seed=seed))
