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
"""A tiny Audio Flamingo 3 captioner trained on the micro world, for the micro-scale reproduction of the paper.

The model is a transformers `AudioFlamingo3ForConditionalGeneration` (Whisper-style audio encoder, Qwen2 language
model) with an `AudioFlamingo3Processor`, built like `datasets_scripts.debug_models.build_debug_audio_flamingo3`
(same chat template, same `<sound>` expansion) but sized to learn, with a byte-level BPE learnt from the world's
captions and 3 s Whisper windows at a 20 ms hop (one window holds a whole 2.56 s clip, so the encoder does not run over 27 s of
padding). It is trained by teacher forcing on the caption tokens only, on inputs built by
`datasets_scripts.captioner.AudioCaptioner` itself, so that the saved folder is captioned with exactly the code the
AF-AudioSet builder runs:

```python
from datasets_scripts.captioner import AudioCaptioner

captioner = AudioCaptioner.from_pretrained(folder, num_captions=20)
captions = captioner.caption(["pool-00000"], [audio])   # 20 sampled captions (top_k 50, top_p 0.95)
```

Positions. `AudioCaptioner` left-pads every prompt to the length of a 10 s clip and pre-fills the prompt (but its last
token) in one forward call, which numbers tokens by their index in the padded row; `generate` then numbers the last
prompt token and every new token by counting real tokens only. For a 2.56 s clip the two numberings differ by the
number of pads, and a small model trained on one numbering is lost in the other, so training reproduces the inference
numbering exactly (`generation_position_ids`; a test checks the teacher-forced logits against the ones generation
sees). If `AudioCaptioner` ever numbers its prefill like `generate`, that function must follow, and the model be
retrained.

```bash
python -m training.micro.captioner --world-seed 0 --output micro/captioner --num-clips 1200 --epochs 18
```
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import AddedToken
from tqdm.auto import tqdm
from transformers import (
    AudioFlamingo3Config,
    AudioFlamingo3EncoderConfig,
    AudioFlamingo3ForConditionalGeneration,
    AudioFlamingo3Processor,
    Qwen2Config,
    Qwen2Tokenizer,
    WhisperFeatureExtractor,
)

from datasets_scripts.captioner import CAPTION_PROMPT, AudioCaptioner
from datasets_scripts.debug_models import (
    AF3_AUDIO_TOKENS,
    AF3_CHAT_TEMPLATE,
    QWEN2_CHAT_SPECIAL_TOKENS,
    _generation_config,
    _learn_byte_level_bpe,
)
from datasets_scripts.micro_world import classes_mentioned

from .clap import clip_pairs, world_training_clips
from .schedules import warmup_cosine_lr

logger = logging.getLogger(__name__)

__all__ = [
    "build_micro_captioner",
    "build_micro_captioner_tokenizer",
    "build_training_batch",
    "evaluate_micro_captioner",
    "generation_position_ids",
    "train_micro_captioner",
]

# One Whisper window holds a whole micro-world clip (2.56 s); a 30 s window would make the encoder 10x longer.
CHUNK_SECONDS = 3
# Text besides the captions that the prompt and chat scaffolding are made of: the BPE learns whole tokens for them.
_SCAFFOLDING = f"{CAPTION_PROMPT} You are a helpful assistant. system user assistant"


def build_micro_captioner_tokenizer(caption_corpus: Sequence[str], num_merges: int = 500) -> Qwen2Tokenizer:
    r"""A byte-level BPE `Qwen2Tokenizer` learnt from captions, with AF3's chat and audio special tokens.

    Built like `datasets_scripts.debug_models.build_debug_qwen2_tokenizer` (256 byte symbols, merges, then
    `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`, `<sound>` as special tokens; pad `<|endoftext|>`, eos `<|im_end|>`;
    AF3's chat template), but its merges are learnt from `caption_corpus` plus the prompt, so a world caption is a
    dozen word-level tokens instead of a hundred bytes.

    Args:
        caption_corpus (`Sequence[str]`):
            Captions to learn the merges from.
        num_merges (`int`, *optional*, defaults to 500):
            Most merges to learn (fewer when every word is already one token).

    Returns:
        `Qwen2Tokenizer`
    """
    if num_merges < 0:
        raise ValueError(f"num_merges must be >= 0, got {num_merges}.")
    vocab, merges = _learn_byte_level_bpe(" ".join([_SCAFFOLDING, *caption_corpus]), num_merges)
    special_tokens = list(QWEN2_CHAT_SPECIAL_TOKENS) + list(AF3_AUDIO_TOKENS)
    for token in special_tokens:
        vocab.setdefault(token, len(vocab))
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=merges, unk_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    # Special, so that they stay whole and `skip_special_tokens=True` drops them from decoded captions.
    tokenizer.add_tokens(
        [AddedToken(token, special=True, normalized=False) for token in special_tokens], special_tokens=True
    )
    tokenizer.chat_template = AF3_CHAT_TEMPLATE
    return tokenizer


def build_micro_captioner(
    caption_corpus: Sequence[str],
    *,
    text_hidden_size: int = 128,
    text_layers: int = 2,
    audio_hidden_size: int = 64,
    audio_layers: int = 2,
    num_mel_bins: int = 80,
    hop_length: int = 320,
    num_merges: int = 500,
    seed: int = 0,
) -> tuple[AudioFlamingo3ForConditionalGeneration, AudioFlamingo3Processor]:
    r"""Builds a small, randomly initialised Audio Flamingo 3 captioner and its processor for the micro world.

    The processor is the real `AudioFlamingo3Processor` over a `WhisperFeatureExtractor` with `CHUNK_SECONDS`
    windows and a 20 ms hop (150 frames a window, so `max_source_positions = 75`; a 2.56 s clip becomes 32 `<sound>`
    tokens, half of what the released 10 ms hop gives, which halves the encoder and shortens every training row) and
    the tokenizer of `build_micro_captioner_tokenizer`; the language model is a Qwen2 with untied embeddings, as in
    the debug and released AF3 checkpoints.

    Args:
        caption_corpus (`Sequence[str]`):
            Captions the tokenizer's merges are learnt from (the training captions).
        text_hidden_size (`int`, *optional*, defaults to 128):
            Width of the Qwen2 language model (a multiple of 32: heads of 32 dimensions).
        text_layers (`int`, *optional*, defaults to 2):
            Decoder layers of the language model.
        audio_hidden_size (`int`, *optional*, defaults to 64):
            Width of the audio encoder (a multiple of 32).
        audio_layers (`int`, *optional*, defaults to 2):
            Transformer layers of the audio encoder.
        num_mel_bins (`int`, *optional*, defaults to 80):
            Mel bins of the Whisper features (AF3's real encoder reads 128).
        hop_length (`int`, *optional*, defaults to 320):
            Hop of the Whisper features, in samples (AF3's is 160).
        num_merges (`int`, *optional*, defaults to 500):
            BPE merges of the tokenizer.
        seed (`int`, *optional*, defaults to 0):
            Seed of the random weights (the global torch RNG state is restored afterwards).

    Returns:
        `tuple[AudioFlamingo3ForConditionalGeneration, AudioFlamingo3Processor]`: the model, in eval mode, with a
        generation config that stops at `<|im_end|>`, and its processor.
    """
    for name, value in (("text_hidden_size", text_hidden_size), ("audio_hidden_size", audio_hidden_size)):
        if value < 32 or value % 32:
            raise ValueError(f"{name} must be a positive multiple of 32, got {value}.")
    if text_layers < 1 or audio_layers < 1:
        raise ValueError(f"text_layers and audio_layers must be >= 1, got {text_layers} and {audio_layers}.")
    tokenizer = build_micro_captioner_tokenizer(caption_corpus, num_merges=num_merges)
    feature_extractor = WhisperFeatureExtractor(
        feature_size=num_mel_bins, chunk_length=CHUNK_SECONDS, hop_length=hop_length
    )
    processor = AudioFlamingo3Processor(feature_extractor, tokenizer, chat_template=AF3_CHAT_TEMPLATE)

    audio_config = AudioFlamingo3EncoderConfig(
        num_mel_bins=num_mel_bins,
        hidden_size=audio_hidden_size,
        num_hidden_layers=audio_layers,
        num_attention_heads=audio_hidden_size // 32,
        intermediate_size=4 * audio_hidden_size,
        # The encoder adds its position table to the conv output of a full window (frames / conv stride 2).
        max_source_positions=feature_extractor.nb_max_frames // 2,
    )
    text_config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=text_hidden_size,
        intermediate_size=4 * text_hidden_size,
        num_hidden_layers=text_layers,
        num_attention_heads=text_hidden_size // 32,
        num_key_value_heads=text_hidden_size // 32,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    config = AudioFlamingo3Config(
        audio_config=audio_config, text_config=text_config, audio_token_id=processor.audio_token_id
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AudioFlamingo3ForConditionalGeneration(config)
        _rescale_audio_path(model)
    model.generation_config = _generation_config(tokenizer)
    return model.eval(), processor


@torch.no_grad()
def _rescale_audio_path(model: AudioFlamingo3ForConditionalGeneration) -> None:
    """Gives the audio encoder's and projector's convolutions and linear layers PyTorch's fan-in scaled initialisation.

    AF3 initialises them with a fixed std of 0.02, sized for its 1280-wide encoder; at a width of 64-128 that shrinks
    the signal at every layer, and the tiny encoder then learns to tell the world's classes apart about 3x more
    slowly (measured on a class probe: 22% vs 60% exact class sets after 300 steps).
    """
    for module in [*model.model.audio_tower.modules(), *model.model.multi_modal_projector.modules()]:
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv1d)):
            module.reset_parameters()


def generation_position_ids(prompt_attention_mask: torch.Tensor, num_new_tokens: int) -> torch.LongTensor:
    r"""The position of every token as `AudioCaptioner.generate_caption_ids` numbers them.

    The prompt but its last token is pre-filled in one forward call without `position_ids`, so token `i` of the
    left-padded row is at position `i`; `generate` then numbers the last prompt token and the new tokens by counting
    real tokens (`attention_mask.cumsum(-1) - 1`). Training with the same numbering makes the teacher-forced logits
    equal to the ones generation samples from.

    Args:
        prompt_attention_mask (`torch.Tensor`):
            `(batch, prompt_length)` mask of the left-padded prompts, as `AudioCaptioner.prepare_inputs` returns it.
        num_new_tokens (`int`):
            Tokens after the prompt (caption and end-of-turn token).

    Returns:
        `torch.LongTensor` of shape `(batch, prompt_length + num_new_tokens)`.
    """
    batch, length = prompt_attention_mask.shape
    prefix = torch.arange(length - 1).expand(batch, -1)
    real = prompt_attention_mask.long().sum(dim=1, keepdim=True)
    tail = real - 1 + torch.arange(num_new_tokens + 1)
    return torch.cat([prefix, tail], dim=1)


def _encode_prompts(captioner: AudioCaptioner, audios: Sequence[np.ndarray]) -> list[dict[str, torch.Tensor]]:
    """Per clip: its real prompt tokens and their inference positions, and its audio features (pads dropped).

    The pads that `prepare_inputs` puts on the left are never attended to, so leaving them out changes no logit as
    long as the real tokens keep their positions; it makes training sequences ~3x shorter.
    """
    inputs = captioner.prepare_inputs(audios)
    positions = generation_position_ids(inputs["attention_mask"], 0)
    windows = inputs["input_features"].shape[0] // len(audios)
    if windows * len(audios) != inputs["input_features"].shape[0]:
        raise ValueError(f"Clips must fit one {CHUNK_SECONDS} s window each for training; got longer clips.")
    encoded = []
    for row in range(len(audios)):
        keep = inputs["attention_mask"][row].bool()
        encoded.append(
            {
                "input_ids": inputs["input_ids"][row][keep],
                "position_ids": positions[row][keep],
                "input_features": inputs["input_features"][row * windows : (row + 1) * windows],
                "input_features_mask": inputs["input_features_mask"][row * windows : (row + 1) * windows],
            }
        )
    return encoded


def _collate(
    prompts: Sequence[dict[str, torch.Tensor]], caption_ids: Sequence[Sequence[int]], pad_token_id: int, eos_id: int
) -> dict[str, torch.Tensor]:
    rows = []
    for prompt, caption in zip(prompts, caption_ids):
        target = torch.tensor([*caption, eos_id], dtype=torch.long)
        start = int(prompt["position_ids"][-1])
        rows.append(
            {
                "input_ids": torch.cat([prompt["input_ids"], target]),
                # Only the answer is learnt: the prompt, the audio placeholders and the padding are not targets.
                "labels": torch.cat([torch.full_like(prompt["input_ids"], -100), target]),
                "position_ids": torch.cat([prompt["position_ids"], start + 1 + torch.arange(len(target))]),
            }
        )
    length = max(len(row["input_ids"]) for row in rows)

    def pad(name: str, value: int) -> torch.Tensor:
        # Right padding: the batch's rows keep the positions and left context they have at inference.
        return torch.stack([torch.nn.functional.pad(r[name], (0, length - len(r[name])), value=value) for r in rows])

    attention_mask = torch.stack(
        [
            torch.nn.functional.pad(
                torch.ones(len(r["input_ids"]), dtype=torch.long), (0, length - len(r["input_ids"]))
            )
            for r in rows
        ]
    )
    return {
        "input_ids": pad("input_ids", pad_token_id),
        "attention_mask": attention_mask,
        "position_ids": pad("position_ids", 0),
        "labels": pad("labels", -100),
        "input_features": torch.cat([p["input_features"] for p in prompts]),
        "input_features_mask": torch.cat([p["input_features_mask"] for p in prompts]),
    }


def _caption_token_ids(tokenizer: Qwen2Tokenizer, caption: str) -> list[int]:
    return tokenizer(caption, add_special_tokens=False)["input_ids"]


def build_training_batch(
    captioner: AudioCaptioner, audios: Sequence[np.ndarray], captions: Sequence[str | Sequence[int]]
) -> dict[str, torch.Tensor]:
    r"""Teacher-forcing inputs for (audio, caption) pairs, built with the captioner's own inference inputs.

    Each row is the prompt `AudioCaptioner.prepare_inputs` builds for the clip (system turn, user turn with the
    expanded `<sound>` tokens and the instruction, `<|im_start|>assistant\n`), without its left pads, then the
    caption's tokens and `<|im_end|>`. Labels are -100 everywhere but on the caption and `<|im_end|>`; positions are
    those of `generation_position_ids`; rows are right-padded to the longest.

    Args:
        captioner (`AudioCaptioner`):
            Wraps the model and processor being trained (its prompt and chat format are used).
        audios (`Sequence[np.ndarray]`):
            16 kHz mono clips of at most `CHUNK_SECONDS` each.
        captions (`Sequence[str | Sequence[int]]`):
            One caption per clip, as text or as token ids (without `<|im_end|>`).

    Returns:
        `dict[str, torch.Tensor]`: `input_ids`, `attention_mask`, `position_ids`, `labels`, `input_features`,
        `input_features_mask`, ready for the model's forward (which shifts the labels itself).
    """
    if len(audios) != len(captions):
        raise ValueError(f"Got {len(audios)} clips but {len(captions)} captions; they must match 1:1.")
    tokenizer = captioner.processor.tokenizer
    return _collate(
        _encode_prompts(captioner, audios),
        [
            _caption_token_ids(tokenizer, caption) if isinstance(caption, str) else list(caption)
            for caption in captions
        ],
        tokenizer.pad_token_id,
        tokenizer.convert_tokens_to_ids("<|im_end|>"),
    )


def _check_training_arguments(epochs: int, batch_size: int, lr: float, weight_decay: float) -> None:
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}.")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}.")


def train_micro_captioner(
    clips: Sequence[Any],
    output_dir: str | Path,
    *,
    epochs: int = 18,
    batch_size: int = 32,
    lr: float = 3e-3,
    weight_decay: float = 0.01,
    seed: int = 0,
    model_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
) -> Path:
    r"""Trains a micro Audio Flamingo 3 captioner by teacher forcing and saves it as one folder.

    The inputs are `build_training_batch`'s (the prompt `AudioCaptioner` builds at inference, then the caption);
    the loss is the mean cross-entropy of the caption tokens and `<|im_end|>`. Prompts and audio features are computed
    once; every epoch visits the clips in a seeded order and, for clips with several captions, takes one at random.
    AdamW with a short warm-up and a cosine decay.

    Args:
        clips (`Sequence`):
            `(audio, caption)`, `(audio, [captions])` or `MicroClip`-like objects; 16 kHz mono audio of at most
            `CHUNK_SECONDS` each. In the paper's setting these are not the clips to be captioned.
        output_dir (`str` or `Path`):
            Folder for the model (safetensors), its processor and generation config.
        epochs (`int`, *optional*, defaults to 18):
            Passes over the clips.
        batch_size (`int`, *optional*, defaults to 32):
            Clips per step.
        lr (`float`, *optional*, defaults to 3e-3):
            Peak learning rate.
        weight_decay (`float`, *optional*, defaults to 0.01):
            AdamW weight decay on matrices.
        seed (`int`, *optional*, defaults to 0):
            Seeds the initial weights, dropout, order and caption choice: the same seed and data give the same
            weights.
        model_kwargs (`dict[str, Any]`, *optional*):
            Size arguments of `build_micro_captioner`.
        progress (`bool`, *optional*, defaults to `True`):
            Show a tqdm progress bar.

    Returns:
        `Path`: the saved folder, loadable by `AudioCaptioner.from_pretrained`.
    """
    _check_training_arguments(epochs, batch_size, lr, weight_decay)
    pairs = clip_pairs(clips)
    if not pairs:
        raise ValueError("train_micro_captioner needs at least one clip, got none.")
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        corpus = [text for _, captions in pairs for text in captions]
        model, processor = build_micro_captioner(corpus, seed=seed, **(model_kwargs or {}))
        captioner = AudioCaptioner(model, processor, model_id="micro-captioner")
        prompts = [
            p for i in range(0, len(pairs), 64) for p in _encode_prompts(captioner, [a for a, _ in pairs[i : i + 64]])
        ]
        tokenizer = processor.tokenizer
        captions = [[_caption_token_ids(tokenizer, text) for text in texts] for _, texts in pairs]
        logger.info(
            f"Training a micro AF3 captioner ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters) on"
            f" {len(pairs)} clips: {epochs} epochs of batch {batch_size}."
        )
        _optimise(model, tokenizer, prompts, captions, epochs, batch_size, lr, weight_decay, seed, progress)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir, safe_serialization=True)
    processor.save_pretrained(output_dir)
    logger.info(f"Saved the micro captioner to {output_dir} ({time.perf_counter() - start:.0f} s).")
    return output_dir


def _optimise(
    model: AudioFlamingo3ForConditionalGeneration,
    tokenizer: Qwen2Tokenizer,
    prompts: list[dict[str, torch.Tensor]],
    captions: list[list[list[int]]],
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    progress: bool,
) -> None:
    generator = torch.Generator().manual_seed(seed)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )
    steps_per_epoch = math.ceil(len(prompts) / batch_size)
    steps = epochs * steps_per_epoch
    warmup = max(1, steps // 20)
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.train()
    bar = tqdm(total=steps, desc="micro captioner", disable=not progress)
    step = 0
    for epoch in range(epochs):
        order = torch.randperm(len(prompts), generator=generator).tolist()
        for first in range(0, len(order), batch_size):
            batch = order[first : first + batch_size]
            chosen = [captions[i][int(torch.randint(len(captions[i]), (1,), generator=generator))] for i in batch]
            inputs = _collate([prompts[i] for i in batch], chosen, tokenizer.pad_token_id, eos_id)
            for group in optimizer.param_groups:
                group["lr"] = warmup_cosine_lr(step, steps, lr, warmup)
            loss = model(**inputs).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
            if step % 20 == 0 or step == steps - 1:
                logger.info(f"epoch {epoch} step {step}: caption loss {loss.item():.4f}")
            step += 1
    bar.close()
    model.eval()


@lru_cache(maxsize=1)
def world_caption_vocabulary() -> frozenset[str]:
    """Every word (lower case) the micro world's caption grammar writes, whatever the world's seed or held-out pairs.

    The grammar (`caption_for`) is the same in every world: its words are collected by wording every class with every
    combination of its attribute values 40 times, and every ordered pair of classes in both relations 8 times, each
    with its own seeded stream (about 5,000 captions, no audio, a few seconds): the rarest word, an adjective only
    quiet rain takes, is then missed with a probability of about 3e-8.
    """
    import itertools

    from datasets_scripts.micro_world import CLASS_ATTRIBUTES, CLASSES, caption_for

    def events(name: str) -> list[dict[str, Any]]:
        keys = list(CLASS_ATTRIBUTES[name])
        return [
            {"class": name, "attributes": dict(zip(keys, values)), "peak": 0.1, "start": 0.0, "end": 1.0}
            for values in itertools.product(*(CLASS_ATTRIBUTES[name][key] for key in keys))
        ]

    words: set[str] = set()
    for c, name in enumerate(CLASSES):
        for e, event in enumerate(events(name)):
            for k in range(40):
                rng = np.random.default_rng([c, e, k, 0x766F63])
                words.update(_words(caption_for({"events": [event], "relation": None}, rng)))
    for (a, first), (b, second) in itertools.permutations(enumerate(CLASSES), 2):
        for r, relation in enumerate(("then", "while")):
            for k in range(8):
                rng = np.random.default_rng([a, b, r, k, 0x766F63])
                pair = [events(first)[int(rng.integers(len(events(first))))],
                        events(second)[int(rng.integers(len(events(second))))]]  # fmt: skip
                words.update(_words(caption_for({"events": pair, "relation": relation}, rng)))
    return frozenset(words)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+(?:['-][a-z]+)*", text.lower())


def evaluate_micro_captioner(
    folder: str | Path,
    clips: Sequence[Any],
    num_samples: int = 5,
    *,
    seed: int = 0,
    batch_size: int = 16,
    max_new_tokens: int = 64,
) -> dict[str, float]:
    r"""Samples captions with `AudioCaptioner` (the AF-AudioSet recipe: top_k 50, top_p 0.95) and scores them against
    the clips' ground truth.

    Args:
        folder (`str` or `Path`):
            A folder written by `train_micro_captioner` (or any captioner `AudioCaptioner` loads).
        clips (`Sequence`):
            `MicroClip`-like objects (`.audio`, `.classes`) or `(audio, classes)` pairs, classes as a collection of
            class names.
        num_samples (`int`, *optional*, defaults to 5):
            Captions sampled per clip.
        seed (`int`, *optional*, defaults to 0):
            The captioner's sampling seed.
        batch_size (`int`, *optional*, defaults to 16):
            Clips per `caption` call.
        max_new_tokens (`int`, *optional*, defaults to 64):
            Longest caption (world captions are under 30 tokens).

    Returns:
        `dict[str, float]`: `exact_class_rate` (sampled captions naming exactly the clip's set of classes),
        `some_class_rate` (naming at least one right class), `wrong_class_rate` (naming a class the clip does not
        have), `well_formed_rate` (non-empty, naming a class, every word from the world's caption vocabulary),
        `unique_rate` (distinct captions per clip / samples), `mean_words`, `num_clips`, `num_captions`, and
        `examples` (a few captions, for reading).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
    audios, truths = [], []
    for index, clip in enumerate(clips):
        audio, classes = (clip.audio, clip.classes) if hasattr(clip, "audio") else clip
        audios.append(np.asarray(audio, dtype=np.float32))
        truths.append(frozenset(classes))
    if not audios:
        raise ValueError("evaluate_micro_captioner needs at least one clip, got none.")
    captioner = AudioCaptioner.from_pretrained(
        str(folder), num_captions=num_samples, seed=seed, max_new_tokens=max_new_tokens
    )
    captions: list[list[str]] = []
    for first in range(0, len(audios), batch_size):
        keys = [f"eval-{i:05d}" for i in range(first, min(first + batch_size, len(audios)))]
        captions.extend(captioner.caption(keys, audios[first : first + batch_size]))
    vocabulary = world_caption_vocabulary()
    rows = []
    for truth, texts in zip(truths, captions):
        for text in texts:
            named = classes_mentioned(text)
            words = _words(text)
            rows.append(
                (
                    named == truth,
                    bool(named & truth),
                    bool(named - truth),
                    bool(words) and bool(named) and all(word in vocabulary for word in words),
                    len(words),
                )
            )
    exact, some, wrong, formed, lengths = (np.array(column, dtype=float) for column in zip(*rows))
    return {
        "exact_class_rate": float(exact.mean()),
        "some_class_rate": float(some.mean()),
        "wrong_class_rate": float(wrong.mean()),
        "well_formed_rate": float(formed.mean()),
        "unique_rate": float(np.mean([len(set(texts)) / len(texts) for texts in captions])),
        "mean_words": float(lengths.mean()),
        "num_clips": float(len(audios)),
        "num_captions": float(len(rows)),
        "examples": [f"{sorted(truth)}: {texts[0]}" for truth, texts in list(zip(truths, captions))[:8]],
    }


def main(argv: Sequence[str] | None = None) -> Path:
    """Command line: trains a micro captioner on a micro world's captioned distribution and reports test quality."""
    from datasets_scripts.micro_world import WorldConfig, generate_clip

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world-seed", type=int, default=0)
    parser.add_argument("--held-out-pairs", type=int, default=0, help="The world's held-out class pairs.")
    parser.add_argument("--output", required=True, help="Folder to save the captioner in.")
    parser.add_argument("--num-clips", type=int, default=1200, help="Training clips (captioned split, extended).")
    parser.add_argument("--captions-per-clip", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=18)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-clips", type=int, default=50, help="Clips of the test split to evaluate on (0: none).")
    parser.add_argument("--eval-samples", type=int, default=5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    world = WorldConfig(
        seed=args.world_seed,
        held_out_pairs=args.held_out_pairs,
        split_sizes={**WorldConfig().split_sizes, "test": max(args.eval_clips, 1)},
    )
    clips = world_training_clips(world, args.num_clips, captions_per_clip=args.captions_per_clip)
    start = time.perf_counter()
    folder = train_micro_captioner(
        clips, args.output, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed
    )
    logger.info(f"Training took {time.perf_counter() - start:.0f} s.")
    if args.eval_clips:
        test = [generate_clip(world, "test", index) for index in range(args.eval_clips)]
        metrics = evaluate_micro_captioner(folder, test, num_samples=args.eval_samples)
        for example in metrics.pop("examples"):
            logger.info(f"  {example}")
        logger.info("Test captions: " + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items()))
    return folder


if __name__ == "__main__":
    main()
