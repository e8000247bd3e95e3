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
"""Tiny random audio language models, built fully offline.

They have the exact classes, processors and chat formats of the real captioners
(`nvidia/audio-flamingo-3-hf`, `Qwen/Qwen2-Audio-7B-Instruct`) but a few thousand parameters, so that tests and
end-to-end demos exercise the real code paths (chat template, `<sound>` expansion, `generate`, `save_pretrained` /
`from_pretrained`) in well under a second per call on a CPU. Their captions are random byte soup.

Nothing here touches the Hub: the tokenizer is a byte-level BPE learnt in-process from a fixed corpus and passed as
`vocab=` / `merges=` (transformers 5 silently ignores `vocab_file=` / `merges_file=`).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import torch
from tokenizers import AddedToken
from transformers import (
    AudioFlamingo3Config,
    AudioFlamingo3EncoderConfig,
    AudioFlamingo3ForConditionalGeneration,
    AudioFlamingo3Processor,
    GenerationConfig,
    Qwen2AudioConfig,
    Qwen2AudioEncoderConfig,
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioProcessor,
    Qwen2Config,
    Qwen2Tokenizer,
    WhisperFeatureExtractor,
)
from transformers.utils import logging

from pipelines.tango_clap.debug import byte_level_alphabet

logger = logging.get_logger(__name__)

__all__ = [
    "AF3_CHAT_TEMPLATE",
    "save_debug_af_audioset_models",
    "QWEN2_AUDIO_CHAT_TEMPLATE",
    "build_debug_audio_flamingo3",
    "build_debug_qwen2_audio",
    "build_debug_qwen2_tokenizer",
]

# Chat special tokens of the Qwen2 family, in the order the real vocabularies give them ids.
QWEN2_CHAT_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# Audio placeholders of each captioner's processor.
AF3_AUDIO_TOKENS = ("<sound>",)
QWEN2_AUDIO_AUDIO_TOKENS = ("<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>")

# A Qwen2-style chat template written for the debug checkpoints. Like the released AF3 template it renders every
# audio item of a turn as one `<sound>` placeholder placed before the turn's text (the processor then expands each
# placeholder to the number of audio frames), and adds the default system prompt when none is given.
AF3_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}"
    "{{ message['content'] }}"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' %}<sound>{% endif %}"
    "{% endfor %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}"
    "{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2-Audio-Instruct's published format: "Audio N: <|audio_bos|><|AUDIO|><|audio_eos|>\n" per audio item, in
# content order (the same string the processor carries as its legacy default template).
QWEN2_AUDIO_CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' %}"
    "{% set audio_count.value = audio_count.value + 1 %}"
    "Audio {{ audio_count.value }}: <|audio_bos|><|AUDIO|><|audio_eos|>\n"
    "{% elif content['type'] == 'text' %}"
    "{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}"
    "<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Text the debug BPE learns its merges from: the captioning prompt, chat roles and caption-like English, so that the
# prompt tokenizes into a handful of word-level tokens as with a real vocabulary.
_BPE_CORPUS = (
    "Can you briefly describe what you hear in this audio? "
    "You are a helpful assistant. system user assistant "
    "A dog barks while a man speaks in the background. "
    "A woman is singing with a guitar and soft drums. "
    "Birds are chirping and the wind is blowing. "
    "A car engine revs and accelerates on a road. "
    "Water is running from a tap and dishes clatter. "
    "Music with a piano melody and a slow beat is playing. "
    "People are talking and laughing in a crowded room. "
    "A sine tone hums steadily with some white noise. "
    "Transcribe the input speech. Audio 1: "
)


def _learn_byte_level_bpe(corpus: str, num_merges: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Learns byte-level BPE merges from `corpus` with a plain, deterministic implementation.

    Ties between equally frequent pairs are broken lexicographically, so the vocabulary never depends on hash seeds or
    library versions (a `tokenizers` trainer would work too, but its tie-breaking is not a documented contract).
    """
    byte_map = byte_level_alphabet()
    vocab = {char: index for index, char in enumerate(byte_map.values())}
    # Pre-split like GPT-2 / Qwen2 (a word keeps its leading space), then spell every word in byte-level characters.
    words = Counter(re.findall(r" ?[A-Za-z]+| ?[0-9]| ?[^\sA-Za-z0-9]+|\s+", corpus))
    spelled = {tuple(byte_map[b] for b in word.encode("utf-8")): count for word, count in words.items()}

    merges: list[tuple[str, str]] = []
    for _ in range(num_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols, count in spelled.items():
            for pair in pairwise(symbols):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        vocab.setdefault(best[0] + best[1], len(vocab))
        merged = {}
        for symbols, count in spelled.items():
            out, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            merged[tuple(out)] = merged.get(tuple(out), 0) + count
        spelled = merged
    return vocab, merges


def build_debug_qwen2_tokenizer(
    audio_tokens: Sequence[str] = AF3_AUDIO_TOKENS,
    chat_template: str | None = AF3_CHAT_TEMPLATE,
    num_merges: int = 160,
) -> Qwen2Tokenizer:
    r"""Builds a tiny byte-level BPE Qwen2 tokenizer with the chat and audio special tokens, fully offline.

    `Qwen2Tokenizer` is the class the AF3 and Qwen2-Audio checkpoints load in transformers 5 (`Qwen2TokenizerFast` is
    an alias of it). Its vocabulary is the 256 byte symbols, `num_merges` merges learnt from a fixed corpus, then
    `<|endoftext|>`, `<|im_start|>`, `<|im_end|>` and `audio_tokens`, all registered as special tokens so that
    `skip_special_tokens=True` removes them from decoded captions.

    Args:
        audio_tokens (`Sequence[str]`, *optional*, defaults to `("<sound>",)`):
            Audio placeholder tokens of the processor the tokenizer is for.
        chat_template (`str`, *optional*, defaults to `AF3_CHAT_TEMPLATE`):
            Jinja chat template stored on the tokenizer.
        num_merges (`int`, *optional*, defaults to 160):
            Number of BPE merges to learn; the vocabulary has `256 + num_merges + 3 + len(audio_tokens)` entries at
            most.

    Returns:
        `Qwen2Tokenizer`: the tokenizer; its pad token is `<|endoftext|>` as in the real checkpoints.
    """
    vocab, merges = _learn_byte_level_bpe(_BPE_CORPUS, num_merges)
    special_tokens = list(QWEN2_CHAT_SPECIAL_TOKENS) + list(audio_tokens)
    for token in special_tokens:
        vocab.setdefault(token, len(vocab))
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    # `special=True` keeps them whole when tokenizing and lets `skip_special_tokens` drop them when decoding;
    # `normalized=False` stops NFC / byte-level from splitting them.
    tokenizer.add_tokens(
        [AddedToken(token, special=True, normalized=False) for token in special_tokens], special_tokens=True
    )
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


def _tiny_qwen2_text_config(tokenizer: Qwen2Tokenizer, hidden_size: int = 32, num_layers: int = 2) -> Qwen2Config:
    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )


def _generation_config(tokenizer: Qwen2Tokenizer) -> GenerationConfig:
    # As in the released Qwen2-family checkpoints: a chat turn ends at <|im_end|>, plain text at <|endoftext|>.
    return GenerationConfig(
        eos_token_id=[tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")],
        pad_token_id=tokenizer.pad_token_id,
    )


def build_debug_audio_flamingo3(
    seed: int = 0,
    text_hidden_size: int = 32,
    text_layers: int = 2,
    audio_hidden_size: int = 16,
    audio_layers: int = 1,
) -> tuple[AudioFlamingo3ForConditionalGeneration, AudioFlamingo3Processor]:
    r"""Builds a tiny random Audio Flamingo 3 (model and processor) with the released checkpoint's interfaces.

    The processor is the real `AudioFlamingo3Processor` over a `WhisperFeatureExtractor(feature_size=80)` (30 s windows,
    hop 160 -> 3000 frames) and the debug tokenizer. The encoder keeps `max_source_positions=1500` because AF3's
    encoder adds its position table to the conv output of a full 30 s window (3000 frames / stride 2); after the
    average pool each window gives `(frames - 1) // 2 + 1 -> (... - 2) // 2 + 1` audio tokens, i.e. 250 `<sound>`
    tokens for a 10 s clip and 750 for a full 30 s window.

    Args:
        seed (`int`, *optional*, defaults to 0):
            Seed of the random weights (the global torch RNG state is restored afterwards).
        text_hidden_size, text_layers, audio_hidden_size, audio_layers (`int`, *optional*):
            Sizes of the language model and of the audio encoder (defaults: 32 / 2 / 16 / 1); larger values give
            the "medium" models of the benchmarks.

    Returns:
        `tuple[AudioFlamingo3ForConditionalGeneration, AudioFlamingo3Processor]`: the model, in eval mode, and its
        processor.
    """
    tokenizer = build_debug_qwen2_tokenizer(audio_tokens=AF3_AUDIO_TOKENS, chat_template=AF3_CHAT_TEMPLATE)
    feature_extractor = WhisperFeatureExtractor(feature_size=80)
    processor = AudioFlamingo3Processor(feature_extractor, tokenizer, chat_template=AF3_CHAT_TEMPLATE)

    audio_config = AudioFlamingo3EncoderConfig(
        num_mel_bins=feature_extractor.feature_size,
        hidden_size=audio_hidden_size,
        num_hidden_layers=audio_layers,
        num_attention_heads=2,
        intermediate_size=2 * audio_hidden_size,
        max_source_positions=feature_extractor.nb_max_frames // 2,
    )
    config = AudioFlamingo3Config(
        audio_config=audio_config,
        text_config=_tiny_qwen2_text_config(tokenizer, text_hidden_size, text_layers),
        audio_token_id=processor.audio_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AudioFlamingo3ForConditionalGeneration(config)
    model.generation_config = _generation_config(tokenizer)
    return model.eval(), processor


def build_debug_qwen2_audio(seed: int = 0) -> tuple[Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor]:
    r"""Builds a tiny random Qwen2-Audio (model and processor) with the released checkpoint's interfaces.

    The processor is the real `Qwen2AudioProcessor` over a `WhisperFeatureExtractor(feature_size=80)` and the debug
    tokenizer with `<|AUDIO|>`, `<|audio_bos|>` and `<|audio_eos|>`; each clip (truncated to 30 s) expands to
    `((frames - 1) // 2 + 1 - 2) // 2 + 1` `<|AUDIO|>` tokens (250 for 10 s).

    Args:
        seed (`int`, *optional*, defaults to 0):
            Seed of the random weights (the global torch RNG state is restored afterwards).

    Returns:
        `tuple[Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor]`: the model, in eval mode, and its processor.
    """
    tokenizer = build_debug_qwen2_tokenizer(
        audio_tokens=QWEN2_AUDIO_AUDIO_TOKENS, chat_template=QWEN2_AUDIO_CHAT_TEMPLATE
    )
    feature_extractor = WhisperFeatureExtractor(feature_size=80)
    processor = Qwen2AudioProcessor(feature_extractor, tokenizer, chat_template=QWEN2_AUDIO_CHAT_TEMPLATE)

    audio_config = Qwen2AudioEncoderConfig(
        num_mel_bins=feature_extractor.feature_size,
        d_model=16,
        encoder_layers=1,
        encoder_attention_heads=2,
        encoder_ffn_dim=32,
        max_source_positions=feature_extractor.nb_max_frames // 2,
    )
    config = Qwen2AudioConfig(
        audio_config=audio_config,
        text_config=_tiny_qwen2_text_config(tokenizer),
        audio_token_index=processor.audio_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2AudioForConditionalGeneration(config)
    model.generation_config = _generation_config(tokenizer)
    return model.eval(), processor


def save_debug_af_audioset_models(folder: str | os.PathLike, seed: int = 0) -> dict[str, str]:
    """
    Saves a tiny Audio Flamingo 3 captioner and a tiny CLAP scorer as folders, loadable like Hub ids by the
    AF-AudioSet builder (`captioner=`, `clap=`).

    Args:
        folder (`str` or `os.PathLike`): where to write `af3/` and `clap/`.
        seed (`int`, *optional*, defaults to 0): seed of both models' weights.

    Returns:
        `dict[str, str]`: the two folders, as `{"captioner": ..., "clap": ...}`.
    """
    from pipelines.tango_clap.debug import build_debug_clap_scorer

    folder = Path(folder)
    model, processor = build_debug_audio_flamingo3(seed=seed)
    model.save_pretrained(folder / "af3")
    processor.save_pretrained(folder / "af3")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        clap = build_debug_clap_scorer()
    for part in clap.values():
        part.save_pretrained(folder / "clap")
    return {"captioner": str(folder / "af3"), "clap": str(folder / "clap")}
