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
"""Synthetic captions for AF-AudioSet: many sampled captions per 10 s clip from an audio language model.

The recipe of arXiv 2406.15487 (and of NVIDIA's later release of the same pipeline): ask the captioner "Can you
briefly describe what you hear in this audio?", draw 20 captions per clip with `do_sample=True, top_k=50,
top_p=0.95` and at most 128 new tokens. The captions are then scored with CLAP and filtered elsewhere.

Sampling here is reproducible per clip: the same `(seed, clip_key)` gives the same 20 captions whatever else is in
the batch, so a crashed or sharded run can be resumed or re-batched without changing the dataset. `generate` itself
cannot do that (`do_sample=True` draws from one global RNG stream shared by every row), so the random draw is made by a
logits processor holding one `torch.Generator` per output row (Gumbel-max trick, see `GumbelSamplingProcessor`).
"""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import (
    AudioFlamingo3ForConditionalGeneration,
    AudioFlamingo3Processor,
    AutoConfig,
    BatchFeature,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    ProcessorMixin,
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioProcessor,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from transformers.utils import logging

logger = logging.get_logger(__name__)

__all__ = [
    "CAPTIONER_SAMPLING_RATE",
    "CAPTION_PROMPT",
    "DEFAULT_CAPTIONER",
    "SUPPORTED_CAPTIONERS",
    "AudioCaptioner",
    "GumbelSamplingProcessor",
    "row_seed",
    "strip_chat_scaffolding",
]

CAPTION_PROMPT = "Can you briefly describe what you hear in this audio?"
DEFAULT_CAPTIONER = "nvidia/audio-flamingo-3-hf"
CAPTIONER_SAMPLING_RATE = 16000
# AF-AudioSet captions 10 s windows; every prompt is left-padded to the length such a clip gives (see `prepare_inputs`).
CLIP_SECONDS = 10.0

# `config.model_type` -> (model class, processor class). Audio Flamingo 1 (the paper's captioner) is not in
# transformers; AF3 is its in-tree successor and Qwen2-Audio another in-tree audio chat model.
SUPPORTED_CAPTIONERS: dict[str, tuple[type[PreTrainedModel], type[ProcessorMixin]]] = {
    "audioflamingo3": (AudioFlamingo3ForConditionalGeneration, AudioFlamingo3Processor),
    "qwen2_audio": (Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor),
}

# Chat scaffolding that can survive `skip_special_tokens=True` (role names are plain text in Qwen2 chat formats) or
# appear literally when a tokenizer does not mark its control tokens as special.
_CONTROL_TOKEN = re.compile(r"<\|[^<>|]*\|>|</?sound>")
_LEADING_ROLE = re.compile(r"^\s*(?:assistant|user|system)\s*(?::|\n|$)\s*", flags=re.IGNORECASE)
_QUOTE_PAIRS = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019", "`": "`"}


def strip_chat_scaffolding(text: str) -> str:
    r"""Removes chat scaffolding from a decoded caption.

    Drops control tokens such as `<|im_start|>` / `<|im_end|>` / `<sound>`, leading role markers (`assistant\n`,
    `Assistant:`), surrounding whitespace and one or more pairs of surrounding quotes. Role words inside the caption are
    kept: a marker is only stripped at the very start and when followed by a colon, a newline or nothing.

    An empty result stays an empty string: the caller keeps it (it scores low under CLAP) rather than silently
    dropping a sample, so every clip always has exactly `num_captions` captions.

    Args:
        text (`str`):
            A decoded model output.

    Returns:
        `str`: the caption.
    """
    text = _CONTROL_TOKEN.sub("", text).strip()
    previous = None
    while previous != text:
        previous = text
        text = _LEADING_ROLE.sub("", text).strip()
        if len(text) >= 2 and _QUOTE_PAIRS.get(text[0]) == text[-1]:
            text = text[1:-1].strip()
    return text


def row_seed(seed: int, clip_key: str, sample_index: int) -> int:
    r"""Stable 63-bit seed of one sampled caption, from `(seed, clip_key, sample_index)`.

    Uses SHA-256 rather than Python's `hash()`, which is salted per process (`PYTHONHASHSEED`), so that seeds agree
    across runs, workers and machines.

    Args:
        seed (`int`):
            Global seed of the captioning run.
        clip_key (`str`):
            Identifier of the clip (e.g. `"<ytid>_<start_ms>"`).
        sample_index (`int`):
            Index of the caption among the clip's `num_captions`.

    Returns:
        `int`: a seed in `[0, 2**63)` for `torch.Generator.manual_seed`.
    """
    # A separator that cannot occur in the decimal fields keeps ("1", "2x") and ("12", "x") apart.
    digest = hashlib.sha256(f"{int(seed)}\x1f{clip_key}\x1f{int(sample_index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class GumbelSamplingProcessor(LogitsProcessor):
    r"""Turns greedy decoding into exact sampling with one random stream per row (Gumbel-max trick).

    With `g_i = -log(-log(u_i))`, `u_i ~ U(0, 1)` i.i.d., `argmax_i (log p_i + g_i)` is distributed exactly as
    `Categorical(p)` (Gumbel 1954; e.g. Maddison, Tarlow & Minka, "A* Sampling", NeurIPS 2014). Placed after
    `TopKLogitsWarper` / `TopPLogitsWarper` in the processor list of a `do_sample=False` generate call, the argmax that
    greedy decoding takes is therefore a sample from the same filtered distribution that `do_sample=True` would draw
    from, but each row's noise comes from its own generator: row `r` always uses the `t`-th draw of generator `r` at
    step `t`, whatever the other rows are, which makes a caption depend only on its own seed.

    Args:
        generators (`Sequence[torch.Generator]`):
            One generator per row of the batch `generate` decodes (after any expansion to several captions per
            clip), in row order, on the device the scores live on.
    """

    def __init__(self, generators: Sequence[torch.Generator]):
        self.generators = list(generators)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != len(self.generators):
            raise ValueError(
                f"GumbelSamplingProcessor has {len(self.generators)} generators but got scores for "
                f"{scores.shape[0]} rows; rows and generators must be aligned one to one."
            )
        vocab_size = scores.shape[-1]
        # One draw of the whole vocabulary per row and step, even for rows that already finished, so that the t-th
        # step always consumes the t-th draw of the row's stream.
        uniform = torch.stack(
            [torch.rand(vocab_size, generator=g, device=g.device, dtype=torch.float32) for g in self.generators]
        ).to(scores.device)
        # torch.rand is in [0, 1): clamping the lower end keeps the noise finite, so filtered tokens (-inf) stay -inf
        # instead of becoming NaN (-inf + inf) and winning the argmax.
        gumbel = -torch.log(-torch.log(uniform.clamp_(min=torch.finfo(torch.float32).tiny)))
        log_probs = torch.log_softmax(scores.float(), dim=-1)
        return log_probs + gumbel


class AudioCaptioner:
    r"""Samples several captions per audio clip with an audio language model, reproducibly per clip.

    Caption `j` of a clip is drawn with its own random stream, seeded from `(seed, clip_key, j)`, and every prompt is
    left-padded to one fixed length, so a clip's captions do not depend on the other clips of its batch, nor on
    their order. That holds bit for bit as long as the model's kernels compute each row independently of the batch
    size, as the tests check on CPU. GPU kernels (cuBLAS, fused attention) may pick another algorithm for another
    batch size; last-bit differences in the logits then flip a sampled token only at a near-tie of two noisy scores,
    and keeping the number of clips per call fixed makes GPU runs exact too.

    Args:
        model (`PreTrainedModel`):
            An `AudioFlamingo3ForConditionalGeneration` or `Qwen2AudioForConditionalGeneration` (or a model with the
            same `generate` interface).
        processor (`ProcessorMixin`):
            The model's processor, with a chat template.
        model_id (`str`):
            Name of the captioner (Hub id or path), stored in the dataset's `captioner` column.
        num_captions (`int`, *optional*, defaults to 20):
            Captions sampled per clip.
        top_k (`int`, *optional*, defaults to 50):
            Top-k filter of the sampling distribution.
        top_p (`float`, *optional*, defaults to 0.95):
            Nucleus (top-p) filter of the sampling distribution.
        max_new_tokens (`int`, *optional*, defaults to 128):
            Maximum tokens per caption.
        prompt (`str`, *optional*, defaults to `CAPTION_PROMPT`):
            Instruction sent with each clip.
        seed (`int`, *optional*, defaults to 0):
            Global seed; caption `j` of clip `k` is drawn from a generator seeded with `row_seed(seed, k, j)`.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        processor: ProcessorMixin,
        model_id: str,
        num_captions: int = 20,
        top_k: int = 50,
        top_p: float = 0.95,
        max_new_tokens: int = 128,
        prompt: str = CAPTION_PROMPT,
        seed: int = 0,
    ):
        if num_captions < 1:
            raise ValueError(f"num_captions must be >= 1, got {num_captions}.")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}.")
        self.model = model.eval()
        self.processor = processor
        self.model_id = model_id
        self.num_captions = num_captions
        self.top_k = top_k
        self.top_p = top_p
        self.max_new_tokens = max_new_tokens
        self.prompt = prompt
        self.seed = seed
        self._reference_length: int | None = None

        if getattr(getattr(processor, "feature_extractor", None), "dither", 0.0):
            # Whisper's dither draws from the global torch RNG: the audio features, hence the captions, would change
            # from run to run.
            logger.warning(
                f"The feature extractor of {model_id} has dither={processor.feature_extractor.dither}; captions will"
                " not be reproducible. Set `processor.feature_extractor.dither = 0.0` to make them so."
            )
        checkpoint_temperature = getattr(model.generation_config, "temperature", None)
        if checkpoint_temperature not in (None, 1.0):
            # The paper's recipe samples at temperature 1; a checkpoint default would silently change the captions.
            logger.warning(
                f"{model_id} sets temperature={checkpoint_temperature} in its generation config; captions are sampled"
                " at temperature 1.0 as in the AF-AudioSet recipe."
            )

    @classmethod
    def from_pretrained(
        cls,
        model_id: str,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        **kwargs: Any,
    ) -> AudioCaptioner:
        r"""Loads a captioner (model and processor) from the Hub or a local folder.

        The model class is chosen from the checkpoint's `config.model_type` (see `SUPPORTED_CAPTIONERS`).

        Args:
            model_id (`str`):
                Hub id (e.g. `"nvidia/audio-flamingo-3-hf"`) or local folder written by `save_pretrained`.
            device (`str` or `torch.device`, *optional*, defaults to `"cpu"`):
                Device to run the model on.
            dtype (`torch.dtype`, *optional*, defaults to `torch.float32`):
                Weights dtype (`torch.bfloat16` on GPUs for the 8B captioners).
            **kwargs:
                Arguments of `AudioCaptioner.__init__` (`num_captions`, `seed`, ...); any other keyword (`revision`,
                `cache_dir`, `token`, ...) is passed to the `from_pretrained` calls.

        Returns:
            `AudioCaptioner`: the captioner, with `model_id` set to `model_id`.

        Raises:
            `ValueError`: if the checkpoint's model type is not a supported captioner.
        """
        init_names = set(inspect.signature(cls.__init__).parameters) - {"self", "model", "processor", "model_id"}
        captioner_kwargs = {k: v for k, v in kwargs.items() if k in init_names}
        hub_kwargs = {k: v for k, v in kwargs.items() if k not in init_names}

        config = AutoConfig.from_pretrained(model_id, **hub_kwargs)
        if config.model_type not in SUPPORTED_CAPTIONERS:
            raise ValueError(
                f"Unsupported captioner model type {config.model_type!r} (from {model_id!r}); supported model types:"
                f" {sorted(SUPPORTED_CAPTIONERS)}."
            )
        model_class, processor_class = SUPPORTED_CAPTIONERS[config.model_type]
        logger.info(f"Loading captioner {model_id} ({model_class.__name__}, {dtype}) on {device}.")
        # `device_map` puts the weights straight onto `device` (no CPU copy of an 8B model first).
        model = model_class.from_pretrained(model_id, config=config, dtype=dtype, device_map=device, **hub_kwargs)
        processor = processor_class.from_pretrained(model_id, **hub_kwargs)
        return cls(model, processor, model_id=model_id, **captioner_kwargs)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _conversations(self, audios: Sequence[np.ndarray]) -> list[list[dict[str, Any]]]:
        # Audio, then the instruction. AF3's released template puts its `<sound>` placeholder before the text whatever
        # the order; Qwen2-Audio's renders items in order, and its model card puts the audio first.
        return [
            [
                {
                    "role": "user",
                    "content": [{"type": "audio", "audio": audio}, {"type": "text", "text": self.prompt}],
                }
            ]
            for audio in audios
        ]

    def _reference_prompt_length(self) -> int:
        """Token length of the prompt for a full `CLIP_SECONDS` clip (cached)."""
        if self._reference_length is None:
            silence = np.zeros(int(CLIP_SECONDS * CAPTIONER_SAMPLING_RATE), dtype=np.float32)
            inputs = self.processor.apply_chat_template(
                self._conversations([silence]),
                tokenize=True,
                add_generation_prompt=True,
                return_dict=True,
                return_tensors="pt",
            )
            self._reference_length = int(inputs["input_ids"].shape[1])
        return self._reference_length

    def prepare_inputs(self, audios: Sequence[np.ndarray]) -> BatchFeature:
        r"""Builds the model inputs for a batch of clips through the processor's chat template.

        Each clip becomes one user turn (`{"type": "audio"}` + `{"type": "text", "text": prompt}`), the processor
        expands the audio placeholder to one token per audio frame, and every prompt is left-padded to the length of a
        full `CLIP_SECONDS` clip (or to the longest prompt in the batch when a clip is longer). A fixed length makes each
        row's tokens, positions and padding independent of the other clips in the batch, which is what keeps captions
        of a clip identical across batch compositions.

        Args:
            audios (`Sequence[np.ndarray]`):
                Mono float waveforms at 16 kHz.

        Returns:
            `BatchFeature`: `input_ids`, `attention_mask` and the audio features of the processor, one row per clip.
        """
        audios = [_as_mono_float32(audio) for audio in audios]
        inputs = self.processor.apply_chat_template(
            self._conversations(audios),
            tokenize=True,
            add_generation_prompt=True,
            return_dict=True,
            return_tensors="pt",
            # Decoder-only generation continues every row from its last token: pad the text on the left (Qwen2-Audio's
            # processor does not pad at all by default, AF3's pads left). Text only: a flat `padding=True` would also
            # reach the feature extractor and shorten AF3's 30 s feature windows to the longest clip.
            processor_kwargs={"text_kwargs": {"padding": True, "padding_side": "left"}},
        )
        # Inputs only the processor uses (e.g. AF3's per-clip audio token counts) are not model inputs.
        for name in getattr(self.processor, "unused_input_names", []):
            inputs.pop(name, None)

        length = inputs["input_ids"].shape[1]
        target = max(length, self._reference_prompt_length())
        if length > self._reference_prompt_length():
            logger.warning(
                f"A clip is longer than {CLIP_SECONDS:g} s; its batch is padded to {length} tokens instead of "
                f"{self._reference_prompt_length()}, so its captions can depend on the batch it is in."
            )
        if target > length:
            pad_id = self.processor.tokenizer.pad_token_id
            extra = target - length
            ids, mask = inputs["input_ids"], inputs["attention_mask"]
            inputs["input_ids"] = torch.cat([ids.new_full((ids.shape[0], extra), pad_id), ids], dim=1)
            inputs["attention_mask"] = torch.cat([mask.new_zeros((mask.shape[0], extra)), mask], dim=1)
        return inputs

    def _generation_config(self) -> GenerationConfig:
        checkpoint = self.model.generation_config
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            # Greedy on purpose: the sampling is done by GumbelSamplingProcessor (see its docstring).
            do_sample=False,
            num_beams=1,
            num_return_sequences=1,
            # Pinned to the neutral values so that a checkpoint's sampling defaults neither leak in nor warn.
            temperature=1.0,
            top_k=50,
            top_p=1.0,
            eos_token_id=checkpoint.eos_token_id,
            pad_token_id=(
                checkpoint.pad_token_id
                if checkpoint.pad_token_id is not None
                else self.processor.tokenizer.pad_token_id
            ),
            bos_token_id=checkpoint.bos_token_id,
        )

    @torch.inference_mode()
    def generate_caption_ids(self, clip_keys: Sequence[str], audios: Sequence[np.ndarray]) -> torch.LongTensor:
        r"""Samples the caption token ids of a batch of clips.

        Args:
            clip_keys (`Sequence[str]`):
                One stable identifier per clip; with `seed` it determines the clip's captions.
            audios (`Sequence[np.ndarray]`):
                Mono float waveforms at 16 kHz (up to 10 s each), aligned with `clip_keys`.

        Returns:
            `torch.LongTensor` of shape `(len(clip_keys) * num_captions, <= max_new_tokens)`: the new tokens only,
            rows `i * num_captions ... (i + 1) * num_captions - 1` for clip `i`, right-padded with the pad token after
            a row's end-of-sequence token.
        """
        if len(clip_keys) != len(audios):
            raise ValueError(f"Got {len(clip_keys)} clip keys but {len(audios)} audios; they must match 1:1.")
        audios = [_as_mono_float32(audio) for audio in audios]
        inputs = {
            name: value.to(self.device) if isinstance(value, torch.Tensor) else value
            for name, value in self.prepare_inputs(audios).items()
        }
        if "input_features" in inputs and inputs["input_features"].is_floating_point():
            inputs["input_features"] = inputs["input_features"].to(self.model.dtype)
        input_ids, attention_mask = inputs["input_ids"], inputs["attention_mask"]
        n = self.num_captions

        # The audio encoder and the prompt's prefill (hundreds of audio tokens) run once per clip, not once per
        # sample: the prompt but its last token is encoded at the clips' batch size, the resulting KV cache is
        # repeated for the clip's `n` samples, and `generate` goes on from the last prompt token (text, never an
        # audio token) for all `n` rows. The rows see exactly the keys and values they would have computed.
        prefix = dict(inputs, input_ids=input_ids[:, :-1], attention_mask=attention_mask[:, :-1])
        cache = self.model(**prefix, use_cache=True).past_key_values
        cache.batch_repeat_interleave(n)

        # Row r of the generated batch is caption r % n of clip r // n: its generator is seeded accordingly.
        generators = []
        for key in clip_keys:
            for sample_index in range(self.num_captions):
                generator = torch.Generator(device=self.device)
                generator.manual_seed(row_seed(self.seed, key, sample_index))
                generators.append(generator)
        # Same filters, same order as `generate(do_sample=True, top_k=..., top_p=...)` builds (top-k, then top-p).
        logits_processor = LogitsProcessorList(
            [
                TopKLogitsWarper(top_k=self.top_k),
                TopPLogitsWarper(top_p=self.top_p),
                GumbelSamplingProcessor(generators),
            ]
        )
        prompt_length = input_ids.shape[1]
        logger.debug(
            f"Captioning {len(clip_keys)} clips x {self.num_captions} captions ({prompt_length}-token prompts)."
        )
        sequences = self.model.generate(
            input_ids=input_ids.repeat_interleave(n, dim=0),
            attention_mask=attention_mask.repeat_interleave(n, dim=0),
            past_key_values=cache,
            generation_config=self._generation_config(),
            logits_processor=logits_processor,
        )
        return sequences[:, prompt_length:].cpu()

    def caption(self, clip_keys: list[str], audios: list[np.ndarray]) -> list[list[str]]:
        r"""Samples `num_captions` captions for each clip.

        Args:
            clip_keys (`list[str]`):
                One stable identifier per clip (e.g. `"<ytid>_<start_ms>"`). The captions of a clip depend only on
                `(seed, clip_key)`, the audio and the model, not on the other clips of the batch.
            audios (`list[np.ndarray]`):
                Mono float waveforms at 16 kHz (`CAPTIONER_SAMPLING_RATE`), up to 10 s each.

        Returns:
            `list[list[str]]`: for each clip, `num_captions` captions (possibly empty strings, never dropped).
        """
        if not clip_keys and not audios:
            return []
        token_ids = self.generate_caption_ids(clip_keys, audios)
        texts = self.processor.tokenizer.batch_decode(token_ids, skip_special_tokens=True)
        captions = [strip_chat_scaffolding(text) for text in texts]
        n = self.num_captions
        return [captions[i * n : (i + 1) * n] for i in range(len(clip_keys))]


def _as_mono_float32(audio: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().numpy()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"Expected a mono waveform (1-D array), got shape {audio.shape}.")
    if audio.size == 0:
        raise ValueError("Got an empty waveform.")
    return audio
