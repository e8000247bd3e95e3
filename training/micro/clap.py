# Copyright 2026 The tango-af authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""A tiny CLAP trained on the micro world, for the micro-scale reproduction of the paper.

The model is a transformers `ClapModel` (RoBERTa text tower, unfused HTSAT audio tower) at a few hundred thousand
parameters, its tokenizer a byte-level BPE learnt from the training captions, and its feature extractor a
`ClapFeatureExtractor` fitted to the world: 16 kHz (no resampling), a 3 s window that holds a whole 2.56 s clip,
64 mel bins. Training is CLAP's own objective, a symmetric InfoNCE over a batch of (audio, caption) pairs scaled by
the model's learnt `logit_scale_a` / `logit_scale_t`. The audio features are computed once, by the project's
`clap_audio_features`, i.e. exactly the front end that scores captions later.

The saved folder is what the rest of the project loads: `ClapScorer.from_pretrained(folder)` (AF-AudioSet's filter)
and `training.components.load_text_encoder(folder)` (TangoCLAP's text encoder).

In the paper, CLAP is an external model trained on other data (LAION-Audio-630K), never on the clips it filters:
`train_micro_clap` takes its training pairs as an argument, and the command line draws them from the world's
`captioned` split (extended past its nominal size when more clips are asked for), never from `pool` or `test`.

```bash
python -m training.micro.clap --world-seed 0 --output micro/clap --num-clips 600 --steps 400
```
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapTextConfig, RobertaTokenizer

from datasets_scripts.debug_models import _learn_byte_level_bpe
from datasets_scripts.micro_world import WorldConfig
from pipelines.tango_clap.debug import byte_level_alphabet
from pipelines.tango_clap.pipeline_tango_clap import clap_audio_features

from .schedules import warmup_cosine_lr

logger = logging.getLogger(__name__)

__all__ = [
    "HARD_NEGATIVE_EDITS",
    "MICRO_CLAP_SAMPLING_RATE",
    "LabelledClip",
    "build_micro_clap",
    "build_micro_clap_feature_extractor",
    "build_micro_clap_tokenizer",
    "clip_pairs",
    "contrastive_loss",
    "evaluate_micro_clap",
    "hard_negative_labels",
    "train_micro_clap",
    "world_training_clips",
]

# The micro world's sampling rate: the tiny CLAP reads it natively, so nothing is resampled before scoring.
MICRO_CLAP_SAMPLING_RATE = 16000
_ROBERTA_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")


def clip_pairs(clips: Sequence[Any]) -> list[tuple[np.ndarray, list[str]]]:
    r"""Normalises training or evaluation clips to `(float32 waveform, [captions])` pairs.

    Args:
        clips (`Sequence`):
            `(audio, caption)` pairs, `(audio, [caption, ...])` pairs, objects with `.audio` and `.captions` (such as
            `LabelledClip`) or with `.audio` and `.caption` (such as `datasets_scripts.micro_world.MicroClip`).

    Returns:
        `list[tuple[np.ndarray, list[str]]]`: one mono float32 waveform and at least one non-empty caption per clip.

    Raises:
        `ValueError`: if a clip has no audio, is not mono, or has no caption.
    """
    pairs = []
    for index, clip in enumerate(clips):
        if hasattr(clip, "audio"):
            audio, captions = clip.audio, clip.captions if hasattr(clip, "captions") else clip.caption
        else:
            audio, captions = clip
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1 or audio.size == 0:
            raise ValueError(f"Clip {index} must be a non-empty mono waveform, got shape {audio.shape}.")
        captions = [captions] if isinstance(captions, str) else list(captions)
        if not captions or not all(isinstance(text, str) and text.strip() for text in captions):
            raise ValueError(f"Clip {index} needs at least one non-empty caption, got {captions!r}.")
        pairs.append((audio, captions))
    return pairs


def build_micro_clap_tokenizer(
    captions: Sequence[str], num_merges: int = 400, model_max_length: int = 64
) -> RobertaTokenizer:
    r"""A byte-level BPE `RobertaTokenizer` (CLAP's text tokenizer class) learnt from `captions`, fully offline.

    With word-level merges a world caption is about 10-20 tokens, well inside CLAP's 77-token limit; a byte-per-token
    vocabulary would cut the longest captions. Words never seen still tokenize, byte by byte.

    Args:
        captions (`Sequence[str]`):
            Corpus the merges are learnt from (ties broken lexicographically, so the vocabulary is deterministic).
        num_merges (`int`, *optional*, defaults to 400):
            Most merges to learn; fewer are learnt when every word of the corpus is already one token.
        model_max_length (`int`, *optional*, defaults to 64):
            Longest tokenized text; the text tower's position table is sized for it.

    Returns:
        `RobertaTokenizer`: `<s>`, `<pad>`, `</s>`, `<unk>`, the 256 byte symbols, the merges, then `<mask>`.
    """
    if num_merges < 0:
        raise ValueError(f"num_merges must be >= 0, got {num_merges}.")
    learnt, merges = _learn_byte_level_bpe(" ".join(captions), num_merges)
    # Specials first, as in RoBERTa's vocabulary (pad id 1), then the bytes and the merged symbols in learnt order.
    vocab = {token: index for index, token in enumerate(_ROBERTA_SPECIALS)}
    for token in list(byte_level_alphabet().values()) + sorted(learnt, key=learnt.get):
        vocab.setdefault(token, len(vocab))
    vocab["<mask>"] = len(vocab)
    return RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def build_micro_clap_feature_extractor(
    sampling_rate: int = MICRO_CLAP_SAMPLING_RATE,
    max_length_s: int = 3,
    num_mel_bins: int = 64,
    fft_window_size: int = 1024,
    hop_length: int = 200,
) -> ClapFeatureExtractor:
    r"""An unfused (`rand_trunc`, `repeatpad`) `ClapFeatureExtractor` for the micro world's clips.

    The window must be at least as long as a clip, so that no clip is randomly cropped and scores are repeatable; its
    frames (`max_length_s * sampling_rate // hop_length + 1`) must fit the HTSAT input (`2 * spec_size` frames for
    64 mel bins and `spec_size=128`, see `build_micro_clap`): 3 s at hop 200 gives 241 of 256.

    Args:
        sampling_rate (`int`, *optional*, defaults to 16000):
            Rate clips are given at.
        max_length_s (`int`, *optional*, defaults to 3):
            Window length in seconds (an integer: transformers pads to `max_length_s * sampling_rate` samples).
        num_mel_bins (`int`, *optional*, defaults to 64):
            Mel bins, between 50 Hz and the Nyquist frequency.
        fft_window_size (`int`, *optional*, defaults to 1024):
            STFT window (64 ms at 16 kHz: fine enough that no low mel filter is empty).
        hop_length (`int`, *optional*, defaults to 200):
            STFT hop (12.5 ms at 16 kHz).

    Returns:
        `ClapFeatureExtractor`
    """
    return ClapFeatureExtractor(
        feature_size=num_mel_bins,
        sampling_rate=sampling_rate,
        hop_length=hop_length,
        max_length_s=max_length_s,
        fft_window_size=fft_window_size,
        frequency_min=50,
        frequency_max=sampling_rate // 2,
        truncation="rand_trunc",
        padding="repeatpad",
    )


def build_micro_clap(
    tokenizer: RobertaTokenizer | None = None,
    *,
    captions: Sequence[str] | None = None,
    text_hidden_size: int = 128,
    text_layers: int = 2,
    audio_patch_hidden_size: int = 64,
    audio_depths: Sequence[int] = (1, 1),
    audio_patch_size: int = 8,
    projection_dim: int = 64,
    feature_extractor: ClapFeatureExtractor | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    r"""Builds a small, randomly initialised CLAP for the micro world: model, tokenizer and feature extractor.

    The configs start from `pipelines.tango_clap.debug.build_debug_clap_scorer`'s and scale up: a RoBERTa text tower
    of `text_layers` layers of width `text_hidden_size` (its last hidden states are TangoCLAP's conditioning), and
    an HTSAT of `len(audio_depths)` stages on a 128 x 128 image (64 mel bins x 256 frames, folded in two), patches
    of 4 x 4, windows of 8 x 8, widths `audio_patch_hidden_size * 2**stage`.

    Args:
        tokenizer (`RobertaTokenizer`, *optional*):
            The text tokenizer; by default one is learnt from `captions` (`build_micro_clap_tokenizer`).
        captions (`Sequence[str]`, *optional*):
            Corpus of the default tokenizer; required when `tokenizer` is not given.
        text_hidden_size (`int`, *optional*, defaults to 128):
            Width of the text tower (a multiple of 4, its head count).
        text_layers (`int`, *optional*, defaults to 2):
            Transformer layers of the text tower.
        audio_patch_hidden_size (`int`, *optional*, defaults to 32):
            Width of the first HTSAT stage (doubled at every later stage).
        audio_depths (`Sequence[int]`, *optional*, defaults to `(1, 1, 1)`):
            Swin blocks per HTSAT stage; at most 3 stages (the 32 x 32 patch grid halves at each).
        projection_dim (`int`, *optional*, defaults to 64):
            Width of the joint embedding space.
        feature_extractor (`ClapFeatureExtractor`, *optional*):
            Defaults to `build_micro_clap_feature_extractor()`; its `feature_size` sets the HTSAT's mel bins.
        seed (`int`, *optional*, defaults to 0):
            Seed of the random weights (the global torch RNG state is restored afterwards).

    Returns:
        `dict[str, Any]`: `clap_model` (`ClapModel`, eval mode), `clap_tokenizer`, `clap_feature_extractor` (the
        names of a `TangoCLAPPipeline`'s scoring components).

    Raises:
        `ValueError`: if the sizes do not make a valid model, or neither `tokenizer` nor `captions` is given.
    """
    if tokenizer is None:
        if not captions:
            raise ValueError("build_micro_clap needs a `tokenizer` or a non-empty `captions` corpus, got neither.")
        tokenizer = build_micro_clap_tokenizer(captions)
    feature_extractor = feature_extractor or build_micro_clap_feature_extractor()
    audio_depths = [int(depth) for depth in audio_depths]
    if text_hidden_size < 4 or text_hidden_size % 4:
        raise ValueError(f"text_hidden_size must be a positive multiple of 4, got {text_hidden_size}.")
    if text_layers < 1 or projection_dim < 1 or audio_patch_hidden_size < 2:
        raise ValueError(
            f"Sizes must be positive: text_layers={text_layers}, projection_dim={projection_dim},"
            f" audio_patch_hidden_size={audio_patch_hidden_size}."
        )
    if not 1 <= len(audio_depths) <= 3 or min(audio_depths) < 1:
        raise ValueError(f"audio_depths must be 1 to 3 positive stage depths, got {audio_depths}.")

    text_config = ClapTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=text_hidden_size,
        num_hidden_layers=text_layers,
        num_attention_heads=4,
        intermediate_size=4 * text_hidden_size,
        # RoBERTa positions start after the padding index.
        max_position_embeddings=tokenizer.model_max_length + 2,
        projection_dim=projection_dim,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    heads = [max(1, audio_patch_hidden_size * 2**stage // 32) for stage in range(len(audio_depths))]
    audio_config = {
        "spec_size": 128,
        "window_size": 8,
        "num_mel_bins": int(feature_extractor.feature_size),
        "patch_size": audio_patch_size,
        "patch_stride": [audio_patch_size, audio_patch_size],
        "patch_embeds_hidden_size": audio_patch_hidden_size,
        # HTSAT's width after its last patch merging.
        "hidden_size": audio_patch_hidden_size * 2 ** (len(audio_depths) - 1),
        "depths": audio_depths,
        "num_attention_heads": heads,
        "num_hidden_layers": len(audio_depths),
        "projection_dim": projection_dim,
        "enable_fusion": False,
    }
    config = ClapConfig(text_config=text_config.to_dict(), audio_config=audio_config, projection_dim=projection_dim)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ClapModel(config)
    _start_text_pooling_as_mean(model, tokenizer)
    _rescale_heads(model)
    return {"clap_model": model.eval(), "clap_tokenizer": tokenizer, "clap_feature_extractor": feature_extractor}


@torch.no_grad()
def _start_text_pooling_as_mean(model: ClapModel, tokenizer: RobertaTokenizer) -> None:
    """Zeroes the input embedding of the text tower's first token (`<s>` at the first position, token type 0).

    CLAP's text embedding is read from that token alone. With RoBERTa's random initialisation its state hardly depends
    on the rest of the caption (the residual stream carries its own embedding, the attention adds a little), and a
    small tower trained from scratch sits on a plateau for hundreds of steps before it learns to look at the words.
    With a zero input, the first layer's query is zero too, so the token attends uniformly: it starts as a mean pool of
    the caption's tokens and training goes from there. All three rows stay trainable.
    """
    embeddings = model.text_model.embeddings
    embeddings.word_embeddings.weight[tokenizer.bos_token_id] = 0.0
    embeddings.position_embeddings.weight[embeddings.padding_idx + 1] = 0.0
    # Added to every token, so zeroing it only removes a random constant offset.
    embeddings.token_type_embeddings.weight[0] = 0.0


@torch.no_grad()
def _rescale_heads(model: ClapModel) -> None:
    """Re-initialises the text pooler and both projection heads so that they keep the scale of their input.

    `ClapModel` initialises every linear layer with the same small std (made for 768-wide towers), so a narrow
    pooler + two-layer ReLU head shrinks the embeddings several-fold and the contrastive gradient reaching the towers
    with them; He initialisation keeps the signal at unit scale.
    """
    layers = [model.text_model.pooler.dense] if model.text_model.pooler is not None else []
    for head in (model.text_projection, model.audio_projection):
        layers += [head.linear1, head.linear2]
    for layer in layers:
        torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        torch.nn.init.zeros_(layer.bias)


@torch.no_grad()
def _center_projections(model: ClapModel, input_features: torch.Tensor, tokens: dict[str, torch.Tensor]) -> None:
    """Data-dependent initialisation of both projection heads: their biases are set so that, over the given clips
    and captions, each layer's output has zero mean.

    A randomly initialised HTSAT averages its tokens into nearly the same vector for every clip (the clip-to-clip
    spread of the pooled output is about a tenth of its mean, measured at the default sizes), so the normalised audio
    embeddings start within a few degrees of each other (mean pairwise cosine 0.96) and the contrastive loss has
    almost nothing to pull apart: a micro CLAP trained from there hardly beats chance after hundreds of steps. With
    the common offset removed the embeddings start spread over the sphere (as mean-only batch normalisation would
    keep them; Salimans & Kingma, 2016), so every step moves clips apart from the first. The text head gets the same
    treatment for symmetry.
    """
    audio = model.audio_model(input_features=input_features).pooler_output
    text = model.text_model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).pooler_output
    for head, pooled in ((model.audio_projection, audio), (model.text_projection, text)):
        head.linear1.bias -= head.linear1(pooled).mean(dim=0)
        head.linear2.bias -= head.linear2(head.activation(head.linear1(pooled))).mean(dim=0)


def _check_training_arguments(**values: Any) -> None:
    for name in ("steps", "batch_size"):
        if not isinstance(values[name], int) or values[name] < 1:
            raise ValueError(f"{name} must be a positive integer, got {values[name]!r}.")
    if not isinstance(values["hard_negatives"], int) or values["hard_negatives"] < 0:
        raise ValueError(f"hard_negatives must be a non-negative integer, got {values['hard_negatives']!r}.")
    if not values["lr"] > 0:
        raise ValueError(f"lr must be > 0, got {values['lr']!r}.")
    if values["weight_decay"] < 0:
        raise ValueError(f"weight_decay must be >= 0, got {values['weight_decay']!r}.")
    if values["gain_db"] < 0:
        raise ValueError(f"gain_db must be >= 0, got {values['gain_db']!r}.")
    if not 0 <= values["warmup_fraction"] < 1:
        raise ValueError(f"warmup_fraction must be in [0, 1), got {values['warmup_fraction']!r}.")


def contrastive_loss(model: ClapModel, input_features: torch.Tensor, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
    r"""CLAP's symmetric InfoNCE over a batch of matching (audio, text) pairs, plus texts that match no clip.

    Row `i` of `input_features` matches row `i` of `tokens`; every other row of the batch is a negative. Rows of
    `tokens` past the clips (hard negatives) are extra negatives of the audio-to-text term only: each clip must
    prefer its own caption to them, as the AF-AudioSet filter must prefer a right caption to an almost right one.
    The audio->text and text->audio logits use the model's own learnt temperatures (`logit_scale_a`,
    `logit_scale_t`), as `ClapModel.forward(return_loss=True)` does.

    Args:
        model (`ClapModel`):
            The model.
        input_features (`torch.Tensor`):
            `(batch, 1, frames, mels)` features from `clap_audio_features`.
        tokens (`dict[str, torch.Tensor]`):
            `input_ids` and `attention_mask` of the batch's captions, then of any extra negative texts.

    Returns:
        `torch.Tensor`: the scalar loss.
    """
    batch = input_features.shape[0]
    if tokens["input_ids"].shape[0] < batch:
        raise ValueError(f"Got {batch} clips but only {tokens['input_ids'].shape[0]} texts.")
    audio = model.get_audio_features(input_features=input_features)
    text = model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
    audio = F.normalize(getattr(audio, "pooler_output", audio), dim=-1)
    text = F.normalize(getattr(text, "pooler_output", text), dim=-1)
    similarity = text @ audio.T  # (texts, clips)
    # CLIP's cap on the temperature keeps the logits from blowing up late in training.
    scale_t = model.logit_scale_t.clamp(max=math.log(100.0)).exp()
    scale_a = model.logit_scale_a.clamp(max=math.log(100.0)).exp()
    targets = torch.arange(batch, device=similarity.device)
    text_to_audio = F.cross_entropy(scale_t * similarity[:batch], targets)
    audio_to_text = F.cross_entropy(scale_a * similarity.T, targets)
    return 0.5 * (text_to_audio + audio_to_text)


def _tokenize(tokenizer: RobertaTokenizer, texts: Sequence[str]) -> dict[str, torch.Tensor]:
    tokens = tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
    return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}


def save_micro_clap(components: dict[str, Any], output_dir: str | Path) -> Path:
    r"""Writes a micro CLAP's model, tokenizer and feature extractor into one folder (safetensors).

    Args:
        components (`dict[str, Any]`):
            `clap_model`, `clap_tokenizer` and `clap_feature_extractor`, as `build_micro_clap` returns them.
        output_dir (`str` or `Path`):
            The folder (created if needed).

    Returns:
        `Path`: `output_dir`.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    components["clap_model"].save_pretrained(output_dir, safe_serialization=True)
    components["clap_tokenizer"].save_pretrained(output_dir)
    components["clap_feature_extractor"].save_pretrained(output_dir)
    return output_dir


def train_micro_clap(
    clips: Sequence[Any],
    output_dir: str | Path,
    *,
    steps: int = 400,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    warmup_fraction: float = 0.05,
    gain_db: float = 3.0,
    hard_negatives: int = 0,
    seed: int = 0,
    components: dict[str, Any] | None = None,
    model_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
) -> Path:
    r"""Trains a micro CLAP on (audio, caption) pairs with CLAP's contrastive loss and saves it as one folder.

    Audio features are computed once, by `clap_audio_features` (the front end that scores captions later); a random
    gain of up to `gain_db` decibels is then applied per clip and step as an offset of the log-mel features (what a
    gain does to a dB spectrogram). Each step draws `batch_size` distinct clips (a seeded permutation per epoch) and,
    for clips with several captions, one caption at random; with `hard_negatives`, that many of the batch's clips
    also bring one of their hard-negative captions, which their audio must rank below its own caption
    (`contrastive_loss`). AdamW with a linear warm-up and a cosine decay.

    Args:
        clips (`Sequence`):
            Training pairs: `(audio, caption)`, `(audio, [captions])`, `LabelledClip` (`world_training_clips`) or
            `MicroClip`-like objects; 16 kHz mono audio (the feature extractor's rate). In the paper's setting these
            are NOT the clips to be filtered.
        output_dir (`str` or `Path`):
            Folder to save the model, tokenizer and feature extractor in.
        steps (`int`, *optional*, defaults to 400):
            Optimiser steps.
        batch_size (`int`, *optional*, defaults to 64):
            Pairs per step (capped at the number of clips); each brings `batch_size - 1` negatives.
        lr (`float`, *optional*, defaults to 1e-3):
            Peak learning rate.
        weight_decay (`float`, *optional*, defaults to 0.01):
            AdamW weight decay (not applied to biases, norms and temperatures).
        warmup_fraction (`float`, *optional*, defaults to 0.05):
            Fraction of the steps spent warming the learning rate up.
        gain_db (`float`, *optional*, defaults to 3.0):
            Largest random gain, in dB, applied to a clip at each step (0 disables it).
        hard_negatives (`int`, *optional*, defaults to 0):
            Hard-negative captions added to each step's texts, from as many clips of the batch (capped at the clips
            that have some); the clips must carry `hard_negatives` (`LabelledClip`).
        seed (`int`, *optional*, defaults to 0):
            Seeds the initial weights, dropout, batch order, caption choice and gains: the same seed and data give
            the same weights.
        components (`dict[str, Any]`, *optional*):
            A model to start from, as `build_micro_clap` returns it; by default one is built from the captions.
        model_kwargs (`dict[str, Any]`, *optional*):
            Size arguments for `build_micro_clap` when `components` is not given.
        progress (`bool`, *optional*, defaults to `True`):
            Show a tqdm progress bar.

    Returns:
        `Path`: the saved folder, loadable by `ClapScorer.from_pretrained` and `load_text_encoder`.

    Raises:
        `ValueError`: on an empty training set, a clip without audio or caption, hard negatives asked of clips that
        have none, or a bad hyper-parameter.
    """
    _check_training_arguments(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        gain_db=gain_db,
        warmup_fraction=warmup_fraction,
        hard_negatives=hard_negatives,
    )
    pairs = clip_pairs(clips)
    if len(pairs) < 2:
        raise ValueError(f"Contrastive training needs at least 2 clips, got {len(pairs)}.")
    negatives = [list(getattr(clip, "hard_negatives", None) or ()) for clip in clips]
    if hard_negatives and not any(negatives):
        raise ValueError(
            f"hard_negatives={hard_negatives} needs clips that carry hard-negative captions (`LabelledClip`, from "
            "`world_training_clips`); these clips have none."
        )
    batch_size = min(batch_size, len(pairs))
    start = time.perf_counter()

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if components is None:
            corpus = [text for _, captions in pairs for text in captions] + [t for texts in negatives for t in texts]
            components = build_micro_clap(captions=corpus, seed=seed, **(model_kwargs or {}))
        model, tokenizer = components["clap_model"], components["clap_tokenizer"]
        feature_extractor = components["clap_feature_extractor"]
        features, _ = clap_audio_features(feature_extractor, [audio for audio, _ in pairs])
        logger.info(
            f"Training a micro CLAP ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters) on"
            f" {len(pairs)} clips: {steps} steps of {batch_size} (+{hard_negatives} hard negatives)."
        )
        _optimise(
            model,
            tokenizer,
            features,
            pairs,
            negatives if hard_negatives else None,
            steps,
            batch_size,
            lr,
            weight_decay,
            warmup_fraction,
            gain_db,
            hard_negatives,
            seed,
            progress,
        )
    output_dir = save_micro_clap(components, output_dir)
    logger.info(f"Saved the micro CLAP to {output_dir} ({time.perf_counter() - start:.0f} s).")
    return output_dir


def _parameter_groups(model: ClapModel, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        # Decaying the temperatures, biases or norm gains would pull them towards 0 for no regularising benefit.
        if parameter.ndim < 2 or "logit_scale" in name:
            no_decay.append(parameter)
        else:
            decay.append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _optimise(
    model: ClapModel,
    tokenizer: RobertaTokenizer,
    features: torch.Tensor,
    pairs: list[tuple[np.ndarray, list[str]]],
    negatives: list[list[str]] | None,
    steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    warmup_fraction: float,
    gain_db: float,
    hard_negatives: int,
    seed: int,
    progress: bool,
) -> None:
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(_parameter_groups(model, weight_decay), lr=lr)
    warmup = max(1, round(warmup_fraction * steps))
    order: list[int] = []
    model.train()
    bar = tqdm(range(steps), desc="micro CLAP", disable=not progress)
    for step in bar:
        if len(order) < batch_size:
            # A fresh permutation per epoch; a batch never holds a clip twice (it would be its own negative).
            order = torch.randperm(len(pairs), generator=generator).tolist()
        batch, order = order[:batch_size], order[batch_size:]
        texts = [pairs[i][1][int(torch.randint(len(pairs[i][1]), (1,), generator=generator))] for i in batch]
        if negatives is not None:
            holders = [i for i in batch if negatives[i]]
            chosen = torch.randperm(len(holders), generator=generator)[:hard_negatives].tolist()
            texts += [
                negatives[holders[j]][int(torch.randint(len(negatives[holders[j]]), (1,), generator=generator))]
                for j in chosen
            ]
        batch_features = features[batch]
        if gain_db > 0:
            gains = (torch.rand(len(batch), 1, 1, 1, generator=generator) * 2 - 1) * gain_db
            batch_features = batch_features + gains
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine_lr(step, steps, lr, warmup)
        loss = contrastive_loss(model, batch_features, _tokenize(tokenizer, texts))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if step % 50 == 0 or step == steps - 1:
            logger.info(f"step {step}: contrastive loss {loss.item():.4f}")
    model.eval()


@torch.no_grad()
def evaluate_micro_clap(folder: str | Path, clips: Sequence[Any], batch_size: int = 64) -> dict[str, float]:
    r"""Retrieval quality of a saved micro CLAP over (audio, caption) pairs.

    Every caption is matched against every clip of `clips` with the scorer's own embedding code (`ClapScorer`).

    Exact-clip R@1 has a ceiling below 1 on the micro world: a caption words each attribute of an event with
    probability 0.7, and clips of the same classes, roles and worded attributes are indistinguishable from the text
    (on the 300 test clips of the study's world even a perfect model averages about 0.78). `text_to_audio_event_r1`
    counts a hit when the top clip holds the caption's clip's events (the same classes in the same roles and
    relation): its ceiling is 1.

    Args:
        folder (`str` or `Path`):
            A folder written by `train_micro_clap` (or any CLAP folder `ClapScorer` loads).
        clips (`Sequence`):
            `(audio, caption)` pairs, `LabelledClip` or `MicroClip`-like objects (the first caption of a clip is
            used); with `.labels`, the event metric is computed too.
        batch_size (`int`, *optional*, defaults to 64):
            Clips embedded per forward pass.

    Returns:
        `dict[str, float]`: `text_to_audio_r1` and `audio_to_text_r1` (fraction of captions, resp. clips, whose own
        partner ranks first; chance is `1 / len(clips)`), `text_to_audio_class_r1` (fraction of captions whose top
        clip has the same set of world classes named in its caption, by `classes_mentioned`),
        `text_to_audio_event_r1` (with labels, see above), `mean_matching` and `mean_mismatched` (mean cosine of
        matching and of all other pairs), `num_clips` and `parameters` (of the whole model).
    """
    from datasets_scripts.micro_world import classes_mentioned
    from datasets_scripts.scorer import ClapScorer

    pairs = clip_pairs(clips)
    if len(pairs) < 2:
        raise ValueError(f"Retrieval needs at least 2 clips, got {len(pairs)}.")
    scorer = ClapScorer.from_pretrained(str(folder), audio_batch_size=batch_size)
    audio = scorer.embed_audio([audio for audio, _ in pairs])
    captions = [captions[0] for _, captions in pairs]
    similarity = scorer.embed_text(captions) @ audio.T  # (texts, clips)
    n = len(pairs)
    target = torch.arange(n)
    diagonal = similarity.diagonal()
    off_diagonal = similarity[~torch.eye(n, dtype=torch.bool)]
    named = [frozenset(classes_mentioned(text)) for text in captions]
    best_audio = similarity.argmax(dim=1).tolist()
    metrics = {
        "text_to_audio_r1": float((similarity.argmax(dim=1) == target).float().mean()),
        "audio_to_text_r1": float((similarity.argmax(dim=0) == target).float().mean()),
        "text_to_audio_class_r1": float(np.mean([named[i] == named[j] for i, j in enumerate(best_audio)])),
    }
    if all(hasattr(clip, "labels") for clip in clips):
        events = [_event_key(clip.labels) for clip in clips]
        metrics["text_to_audio_event_r1"] = float(np.mean([events[i] == events[j] for i, j in enumerate(best_audio)]))
    metrics.update(
        mean_matching=float(diagonal.mean()),
        mean_mismatched=float(off_diagonal.mean()),
        num_clips=float(n),
        parameters=float(sum(p.numel() for p in scorer.model.parameters())),
    )
    return metrics


def _event_key(labels: dict[str, Any]) -> tuple:
    """What a caption always says about a clip: its classes in their roles (first/second of "then", foreground and
    background of "while") and the relation."""
    return labels.get("relation"), tuple(event["class"] for event in labels["events"])


@dataclass
class LabelledClip:
    r"""A labelled clip of the captioned distribution, as the micro CLAP and captioner learn from it.

    Args:
        audio (`np.ndarray`):
            Mono float32 waveform.
        captions (`list[str]`):
            Wordings of its labels: the world's reference caption first.
        labels (`dict`):
            Its ground truth (`datasets_scripts.micro_world.sample_labels`).
        hard_negatives (`list[str]`):
            Captions of labels one edit away from `labels` (see `hard_negative_labels`), each worded with the stream
            of one of `captions`, so that it shares its template: the negatives a contrastive batch lacks.
    """

    audio: np.ndarray
    captions: list[str]
    labels: dict[str, Any]
    hard_negatives: list[str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        """Names of the classes present, in event order (as `MicroClip.classes`)."""
        return [event["class"] for event in self.labels["events"]]


HARD_NEGATIVE_EDITS = ("swap", "order", "drop", "add")


def hard_negative_labels(labels: dict[str, Any], rng: np.random.Generator) -> list[tuple[str, dict[str, Any]]]:
    r"""Labels one edit away from a clip's: what a caption that is almost right describes.

    * `swap`: one event's class replaced by a class the clip does not hold (its attributes kept where the new class
      has them, drawn otherwise);
    * `order`: the two events of a "then" clip in the other order;
    * `drop`: one event of a two-event clip left out;
    * `add`: a one-event clip given a second event of a class it does not hold, "then" or "while" at random.

    The edited labels are for `caption_for` only: their events keep the original peaks and spans, which may no longer
    fit their roles.

    Args:
        labels (`dict`):
            A clip's ground truth (`sample_labels`).
        rng (`np.random.Generator`):
            Draws the swapped event, the new classes, missing attributes and the relation of `add`.

    Returns:
        `list[tuple[str, dict]]`: `(edit, labels)` for every edit that applies: `swap` always, `order` for "then"
        clips, `drop` for two-event clips, `add` for one-event clips.
    """
    from datasets_scripts.micro_world import CLASS_ATTRIBUTES, CLASSES

    events, relation = labels["events"], labels.get("relation")
    present = {event["class"] for event in events}
    absent = [name for name in CLASSES if name not in present]

    def recast(event: dict[str, Any], name: str) -> dict[str, Any]:
        attributes = {
            key: event["attributes"][key] if event["attributes"].get(key) in values else str(rng.choice(values))
            for key, values in CLASS_ATTRIBUTES[name].items()
        }
        return {**event, "class": name, "attributes": attributes}

    edits = []
    swapped = [dict(event) for event in events]
    which = int(rng.integers(len(events)))
    swapped[which] = recast(events[which], str(rng.choice(absent)))
    edits.append(("swap", {"events": swapped, "relation": relation}))
    if len(events) == 2:
        if relation == "then":
            edits.append(("order", {"events": [dict(events[1]), dict(events[0])], "relation": "then"}))
        kept = events[int(rng.integers(2))]
        edits.append(("drop", {"events": [dict(kept)], "relation": None}))
    else:
        extra = recast(events[0], str(rng.choice(absent)))
        pair = [dict(events[0]), extra] if rng.random() < 0.5 else [extra, dict(events[0])]
        edits.append(("add", {"events": pair, "relation": "then" if rng.random() < 0.5 else "while"}))
    return edits


def _caption_streams(
    world: WorldConfig, index: int, captions_per_clip: int
) -> list[Callable[[], np.random.Generator]]:
    """Fresh copies of the caption stream of each wording of clip `index` of the (extended) `captioned` split: the
    world's own caption stream first, then one extra seeded stream per further wording."""
    from datasets_scripts.micro_world.clips import clip_streams

    def reference() -> np.random.Generator:
        return clip_streams(world, "captioned", index)[1]

    def extra(k: int) -> Callable[[], np.random.Generator]:
        # A stream of its own: the world's caption stream of the clip stays untouched.
        return lambda: np.random.default_rng([world.seed, _CAPTIONED_INDEX, index, k, 0x6361])

    return [reference] + [extra(k) for k in range(1, captions_per_clip)]


# `SPLITS.index("captioned")`, frozen: it seeds the extra wordings, which must not move if the splits are reordered.
_CAPTIONED_INDEX = 1


def world_training_clips(
    world: WorldConfig, num_clips: int = 600, captions_per_clip: int = 1, progress: bool = False
) -> list[LabelledClip]:
    r"""Labelled clips of a micro world's captioned distribution, for training the micro CLAP or captioner.

    The first clips are the world's `captioned` split exactly as every other tool sees it; when `num_clips` is larger
    than the split, the split is extended with more clips of the same distribution (the same world, split and index
    rule, so the world's held-out pairs are never drawn), standing in for "other labelled data". Never a `pool` or
    `test` clip: in the paper CLAP and the captioner were trained on other corpora than the clips they caption.

    Args:
        world (`WorldConfig`):
            The world, with its held-out pairs (`WorldConfig.held_out_pairs`).
        num_clips (`int`, *optional*, defaults to 600):
            Clips to generate.
        captions_per_clip (`int`, *optional*, defaults to 1):
            Captions per clip: the world's reference caption, then more wordings of the same labels written by
            `caption_for` with extra seeded generators (more text variety for the same audio).
        progress (`bool`, *optional*, defaults to `False`):
            Show a tqdm progress bar.

    Returns:
        `list[LabelledClip]`: each with its labels and hard-negative captions, one per wording and applicable edit
        of `hard_negative_labels`.
    """
    from datasets_scripts.micro_world import WorldConfig, caption_for, generate_clip

    if not isinstance(world, WorldConfig):
        raise TypeError(f"world must be a `WorldConfig`, got {type(world).__name__} {world!r}.")
    if num_clips < 1 or captions_per_clip < 1:
        raise ValueError(f"num_clips and captions_per_clip must be >= 1, got {num_clips} and {captions_per_clip}.")
    config = replace(
        world, split_sizes={**world.split_sizes, "captioned": max(num_clips, world.split_size("captioned"))}
    )
    out = []
    for index in tqdm(range(num_clips), desc="labelled clips", disable=not progress):
        clip = generate_clip(config, "captioned", index)
        streams = _caption_streams(config, index, captions_per_clip)
        captions = [clip.caption] + [caption_for(clip.labels, stream()) for stream in streams[1:]]
        negatives = []
        for k, stream in enumerate(streams):
            edit_rng = np.random.default_rng([world.seed, _CAPTIONED_INDEX, index, k, 0x6E6567])
            # Each negative is worded from a fresh copy of its positive's stream: the same template where the number
            # of events allows, so that the edit is the only difference a model can learn from.
            negatives += [caption_for(edited, stream()) for _, edited in hard_negative_labels(clip.labels, edit_rng)]
        out.append(LabelledClip(clip.audio, captions, clip.labels, negatives))
    return out


def main(argv: Sequence[str] | None = None) -> Path:
    """Command line: trains a micro CLAP on a micro world's captioned distribution and reports test retrieval."""
    from datasets_scripts.micro_world import generate_clip

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world-seed", type=int, default=0)
    parser.add_argument("--held-out-pairs", type=int, default=0, help="The world's held-out class pairs.")
    parser.add_argument("--output", required=True, help="Folder to save the CLAP in.")
    parser.add_argument("--num-clips", type=int, default=600, help="Training clips (captioned split, extended).")
    parser.add_argument("--captions-per-clip", type=int, default=3)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hard-negatives", type=int, default=0, help="Hard-negative captions per step.")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--eval-clips", type=int, default=100, help="Clips of the test split to evaluate on (0: none)."
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    world = WorldConfig(
        seed=args.world_seed,
        held_out_pairs=args.held_out_pairs,
        split_sizes={**WorldConfig().split_sizes, "test": max(args.eval_clips, 1)},
    )
    clips = world_training_clips(world, args.num_clips, captions_per_clip=args.captions_per_clip)
    start = time.perf_counter()
    folder = train_micro_clap(
        clips,
        args.output,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        hard_negatives=args.hard_negatives,
        seed=args.seed,
    )
    logger.info(f"Training took {time.perf_counter() - start:.0f} s.")
    if args.eval_clips:
        test = [generate_clip(world, "test", index) for index in range(args.eval_clips)]
        metrics = evaluate_micro_clap(folder, test)
        logger.info("Test retrieval: " + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items()))
    return folder


if __name__ == "__main__":
    main()
