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
"""TangoCLAPPipeline: Tango's latent-diffusion text-to-audio model (arXiv 2304.13731) with the CLAP text tower
or FLAN-T5 as its text encoder, as trained in "Improving Text-To-Audio Models with Synthetic Captions"
(arXiv 2406.15487).

This file is self-contained (torch, diffusers, transformers, numpy and the standard library only): it is pushed
to the Hub beside `model_index.json` as `pipeline.py`, so that
`DiffusionPipeline.from_pretrained(repo, trust_remote_code=True)` finds it.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DiffusionPipeline, UNet2DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.pipelines.pipeline_utils import AudioPipelineOutput
from diffusers.schedulers import SchedulerMixin
from diffusers.utils import logging, replace_example_docstring
from diffusers.utils.torch_utils import randn_tensor
from transformers import (
    ClapFeatureExtractor,
    ClapModel,
    ClapTextModelWithProjection,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    SpeechT5HifiGan,
    T5EncoderModel,
)

logger = logging.get_logger(__name__)  # pylint: disable=invalid-name

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import soundfile as sf
        >>> import torch
        >>> from diffusers import DiffusionPipeline

        >>> pipe = DiffusionPipeline.from_pretrained("REPO_ID", trust_remote_code=True, dtype=torch.bfloat16)
        >>> pipe = pipe.to("cuda")

        >>> prompt = "A dog barks twice, then a car passes by in the rain"
        >>> generator = torch.Generator("cuda").manual_seed(0)
        >>> output = pipe(
        ...     prompt,
        ...     audio_length_in_s=10.0,
        ...     num_inference_steps=100,
        ...     guidance_scale=3.0,
        ...     num_waveforms_per_prompt=3,
        ...     generator=generator,
        ... )
        >>> # candidates come back best first when the pipeline has CLAP scoring parts
        >>> sf.write("dog.wav", output.audios[0], pipe.sampling_rate)
        ```
"""

# The name under which this file is saved beside `model_index.json` (see `save_pretrained`).
HUB_PIPELINE_MODULE = "pipeline"


@dataclass
class TangoCLAPPipelineOutput(AudioPipelineOutput):
    """
    Output class for [`TangoCLAPPipeline`].

    Args:
        audios (`np.ndarray` or `torch.Tensor`):
            Waveforms of shape `(batch_size * num_waveforms_per_prompt, num_samples)` at `pipe.sampling_rate`, or
            latents of shape `(batch_size * num_waveforms_per_prompt, channels, frames, mel_bins)` when
            `output_type="latent"`. With CLAP scoring parts, the candidates of each prompt are sorted best first.
            A waveform with a non-finite sample (NaN or inf, e.g. after a float16 overflow) is passed through
            unchanged, with a logged warning naming it, so that callers can see what happened; check
            `np.isfinite(audios).all(axis=1)` before writing audio out.
        clap_scores (`torch.Tensor`, *optional*):
            CLAP cosine similarity between each waveform and its prompt, shape
            `(batch_size, num_waveforms_per_prompt)`, sorted like `audios`. A non-finite waveform is never scored:
            its score is NaN and it is ranked after every finite candidate of its prompt (non-finite candidates keep
            their generation order among themselves). `None` when the pipeline has no CLAP scoring parts, when only
            embeddings were given, or for `output_type="latent"`.
        mel_spectrograms (`np.ndarray` or `torch.Tensor`, *optional*):
            The decoded log-mel spectrograms the vocoder turned into `audios`, shape
            `(batch_size * num_waveforms_per_prompt, frames, mel_bins)`, sorted like `audios` (for display: frames
            cover the padded length, whole UNet latent frames). `None` for `output_type="latent"`.
    """

    clap_scores: torch.Tensor | None = None
    mel_spectrograms: np.ndarray | torch.Tensor | None = None


def resample_waveform(waveform: torch.Tensor, orig_sr: int, target_sr: int) -> torch.Tensor:
    """
    Band-limited resampling along the last axis, by zero-padding (or truncating) the spectrum.

    Args:
        waveform (`torch.Tensor`): audio of shape `(..., num_samples)`.
        orig_sr (`int`): its sampling rate.
        target_sr (`int`): the sampling rate wanted.

    Returns:
        `torch.Tensor`: float32 audio of shape `(..., round(num_samples * target_sr / orig_sr))`.
    """
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"Sampling rates must be positive, got {orig_sr} and {target_sr}.")
    waveform = waveform.float()
    if orig_sr == target_sr:
        return waveform
    num_in = waveform.shape[-1]
    num_out = max(1, round(num_in * target_sr / orig_sr))
    spectrum = torch.fft.rfft(waveform, dim=-1)
    bins_out = num_out // 2 + 1
    if bins_out > spectrum.shape[-1]:
        spectrum = F.pad(spectrum, (0, bins_out - spectrum.shape[-1]))
    else:
        spectrum = spectrum[..., :bins_out]
    return torch.fft.irfft(spectrum, n=num_out, dim=-1) * (num_out / num_in)


# LAION-CLAP's text length: laion_clap tokenizes with `max_length=77` (`laion_clap/hook.py`, `CLAP_Module.tokenizer`).
CLAP_TEXT_MAX_LENGTH = 77


def int16_round_trip(audio: np.ndarray) -> np.ndarray:
    """
    laion_clap's quantisation of every clip before embedding it (`float32_to_int16` then `int16_to_float32` in
    `laion_clap/training/data.py`): clip to [-1, 1], scale by 32767, truncate to int16, scale back.
    """
    quantised = (np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0) * 32767.0).astype(np.int16)
    return (quantised / 32767.0).astype(np.float32)


def _pad_to_window(audio: np.ndarray, length: int, padding: str) -> np.ndarray:
    """laion_clap's `data_filling` for a clip shorter than the window (`repeatpad`, `repeat` or `pad`)."""
    if len(audio) >= length:
        return audio
    if padding == "repeatpad":
        audio = np.tile(audio, length // len(audio))
    elif padding == "repeat":
        audio = np.tile(audio, length // len(audio) + 1)[:length]
    elif padding != "pad":
        raise ValueError(f"Unknown CLAP padding {padding!r}; expected 'repeatpad', 'repeat' or 'pad'.")
    return np.pad(audio, (0, length - len(audio)))


def clap_fusion_crop_starts(total_frames: int, chunk_frames: int) -> list[int]:
    """
    Where the three window-long crops of a fused CLAP's input start, in mel frames, for a spectrogram longer than the
    window: the middle of the first, second and last third of the possible starts.

    laion_clap draws one start at random in each of the same thirds (`np.random.choice` over `np.array_split` in
    `get_audio_features`, `laion_clap/training/data.py`), with NumPy's global generator, so that its score of a long
    clip changes from call to call; the middles sample the clip the same way, deterministically.

    Args:
        total_frames (`int`): mel frames of the whole clip.
        chunk_frames (`int`): mel frames of one window.

    Returns:
        `list[int]`: three start frames (0 where a third is empty, as laion_clap does).
    """
    ranges = np.array_split(np.arange(max(total_frames - chunk_frames + 1, 1)), 3)
    return [int(part[len(part) // 2]) if len(part) else 0 for part in ranges]


def clap_window_starts(num_samples: int, window: int) -> list[int]:
    """
    Where the windows an unfused (`rand_trunc`) CLAP reads a clip with start: `[0]` for a clip that fits one window,
    else the fewest `window`-sample windows that cover the whole clip, evenly spaced from its first sample to its last
    (they overlap unless the clip is a whole number of windows long). laion_clap reads one window at a random start
    instead (`np.random.randint` in `get_audio_features`, `laion_clap/training/data.py`).

    Args:
        num_samples (`int`): length of the clip.
        window (`int`): samples per window (`feature_extractor.nb_max_samples`).

    Returns:
        `list[int]`: start samples, first 0, last `num_samples - window`.
    """
    if num_samples <= window:
        return [0]
    count = math.ceil(num_samples / window)
    return [round(i * (num_samples - window) / (count - 1)) for i in range(count)]


def clap_audio_windows(feature_extractor: ClapFeatureExtractor, audio: np.ndarray) -> list[np.ndarray]:
    """
    The parts of `audio` that CLAP embeds separately so that the whole clip is scored, deterministically: the clip
    itself for a fused model (its input holds the whole clip, shrunk, and three crops, see
    [`clap_fusion_crop_starts`]) or one that fits the window; otherwise the windows of [`clap_window_starts`].
    [`clap_audio_embeddings`] averages their embeddings.

    Args:
        feature_extractor ([`~transformers.ClapFeatureExtractor`]): gives the truncation mode and the window.
        audio (`np.ndarray`): a mono waveform at `feature_extractor.sampling_rate`.

    Returns:
        `list[np.ndarray]`: views of `audio`.
    """
    window = int(feature_extractor.nb_max_samples)
    if feature_extractor.truncation == "fusion":
        return [audio]
    return [audio[start : start + window] for start in clap_window_starts(len(audio), window)]


def _fused_clap_features(
    feature_extractor: ClapFeatureExtractor, clip: np.ndarray, crop_starts: list[int] | None = None
) -> tuple[np.ndarray, bool]:
    """
    The 4-channel input of a fused CLAP and its "longer" flag, following laion_clap's `get_audio_features` with
    `data_truncating="fusion"` step by step, except where the three crops of a long clip start: `crop_starts`, by
    default [`clap_fusion_crop_starts`] (laion_clap draws them at random).
    """
    from transformers.audio_utils import spectrogram, window_function

    window, hop = int(feature_extractor.nb_max_samples), int(feature_extractor.hop_length)

    def log_mel(audio: np.ndarray) -> np.ndarray:
        return spectrogram(
            np.asarray(audio, dtype=np.float64),
            window_function(feature_extractor.fft_window_size, "hann"),
            frame_length=feature_extractor.fft_window_size,
            hop_length=hop,
            power=2.0,
            mel_filters=feature_extractor.mel_filters,  # torchaudio's defaults (HTK scale, no norm), as laion_clap
            log_mel="dB",
        ).T

    if len(clip) <= window:
        mel = log_mel(_pad_to_window(clip, window, feature_extractor.padding))
        return np.stack([mel] * 4), False
    mel = log_mel(clip)
    chunk_frames, total_frames = window // hop + 1, mel.shape[0]
    longer = chunk_frames != total_frames
    if not longer:  # just past the window but no more frames: the whole clip, four times
        return np.stack([mel] * 4), False
    if crop_starts is None:
        crop_starts = clap_fusion_crop_starts(total_frames, chunk_frames)
    if len(crop_starts) != 3 or not all(0 <= int(start) <= total_frames - chunk_frames for start in crop_starts):
        raise ValueError(
            f"`crop_starts` must be 3 start frames in [0, {total_frames - chunk_frames}] for a clip of "
            f"{total_frames} mel frames, got {list(crop_starts)}."
        )
    crops = [mel[int(start) : int(start) + chunk_frames] for start in crop_starts]
    # torchvision's `Resize` (bilinear, antialias=True since 0.17), which laion_clap uses for this channel.
    shrunk = F.interpolate(
        torch.from_numpy(mel)[None, None],
        size=[chunk_frames, mel.shape[1]],
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )[0, 0].numpy()
    return np.stack([shrunk, *crops]), True


def clap_audio_features(
    feature_extractor: ClapFeatureExtractor,
    audios: list[np.ndarray],
    fusion_crop_starts: list[list[int] | None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """
    CLAP's input features for `audios`, one row per clip, as laion_clap's `get_audio_embedding_from_data` prepares
    them (every clip goes through laion_clap's int16 round trip first), except that nothing is random: where
    laion_clap crops a clip longer than the window at random, the crops here are fixed.

    For `truncation="fusion"` the features are computed here rather than by transformers' `ClapFeatureExtractor`,
    which differs from laion_clap's inference in two ways: it marks one random clip of a batch as "longer" when none
    is (a training-time rule that laion_clap's HTSAT skips in eval mode), so that clip's embedding depended on its
    batch; and it shrinks the whole-clip channel of a long clip without antialiasing (and only for 64 mel bins),
    where laion_clap's `torchvision.transforms.Resize` antialiases. A long clip's three crops start where
    [`clap_fusion_crop_starts`] says, or where `fusion_crop_starts` says. `rand_trunc` clips go through the
    extractor, which matches laion_clap for a clip that fits the window; a longer clip is cut to its middle window
    here (the extractor would pick one at random). To score all of a long clip, use [`clap_audio_embeddings`], which
    embeds every window of [`clap_audio_windows`].

    Args:
        feature_extractor ([`~transformers.ClapFeatureExtractor`]): fusion or `rand_trunc`; its settings (rate,
            window, hop, mel filters, padding) are used.
        audios (`list[np.ndarray]`): mono float waveforms at `feature_extractor.sampling_rate`.
        fusion_crop_starts (`list[list[int] | None]`, *optional*): for fusion, the three crop starts (mel frames) of
            each clip, `None` for the default; e.g. to reproduce crops laion_clap drew.

    Returns:
        `tuple[torch.Tensor, torch.Tensor | None]`: `input_features` and, for fusion, `is_longer` `(batch, 1)`.
    """
    clips = [int16_round_trip(audio) for audio in audios]
    if feature_extractor.truncation != "fusion":
        window = int(feature_extractor.nb_max_samples)
        clips = [clip if len(clip) <= window else clip[(len(clip) - window) // 2 :][:window] for clip in clips]
        rate = int(feature_extractor.sampling_rate)
        return feature_extractor(clips, sampling_rate=rate, return_tensors="pt")["input_features"], None
    if fusion_crop_starts is None:
        fusion_crop_starts = [None] * len(clips)
    if len(fusion_crop_starts) != len(clips):
        raise ValueError(f"Got {len(fusion_crop_starts)} `fusion_crop_starts` for {len(clips)} clips.")
    features, longer = zip(
        *(_fused_clap_features(feature_extractor, clip, starts) for clip, starts in zip(clips, fusion_crop_starts))
    )
    return torch.from_numpy(np.stack(features)).float(), torch.tensor(longer, dtype=torch.bool)[:, None]


@torch.no_grad()
def clap_audio_embeddings(
    clap_model: ClapModel, feature_extractor: ClapFeatureExtractor, audios: list[np.ndarray]
) -> torch.Tensor:
    """
    L2-normalised CLAP audio embeddings of whole clips, deterministic and independent of the batch. For a clip that
    fits the window they equal laion_clap's `get_audio_embedding_from_data` for converted LAION-CLAP weights (see
    [`clap_audio_features`]); a longer clip, which laion_clap reads at random, is read whole here: a fused model
    sees it shrunk plus three fixed crops, an unfused one embeds every window of [`clap_audio_windows`] and the
    normalised window embeddings are averaged (then normalised again).

    A clip with a non-finite sample (NaN or inf) gets an all-NaN embedding and is not run through the model: the
    int16 round trip would turn it into arbitrary finite samples and so a finite, meaningless score.

    Args:
        clap_model ([`~transformers.ClapModel`]): the CLAP model.
        feature_extractor ([`~transformers.ClapFeatureExtractor`]): its feature extractor (fusion or `rand_trunc`).
        audios (`list[np.ndarray]`): mono float waveforms at `feature_extractor.sampling_rate`.

    Returns:
        `torch.Tensor`: float32 `(len(audios), projection_dim)`, on the CPU.
    """
    windows, owners = [], []
    for index, audio in enumerate(audios):
        if np.isfinite(audio).all():
            parts = clap_audio_windows(feature_extractor, audio)
            windows += parts
            owners += [index] * len(parts)
    if not windows:
        return torch.full((len(audios), clap_model.config.projection_dim), float("nan"))
    input_features, is_longer = clap_audio_features(feature_extractor, windows)
    output = clap_model.get_audio_features(
        input_features=input_features.to(device=clap_model.device, dtype=clap_model.dtype),
        is_longer=is_longer.to(clap_model.device) if is_longer is not None else None,
    )
    # transformers 5 returns an output object whose `pooler_output` is the projected embedding.
    per_window = F.normalize(getattr(output, "pooler_output", output).float(), dim=-1).cpu()
    owners = torch.tensor(owners)
    summed = torch.zeros(len(audios), per_window.shape[-1]).index_add_(0, owners, per_window)
    counts = torch.bincount(owners, minlength=len(audios))
    embeddings = torch.full_like(summed, float("nan"))
    embeddings[counts == 1] = summed[counts == 1]  # a single window's embedding, untouched
    embeddings[counts > 1] = F.normalize(summed[counts > 1], dim=-1)
    return embeddings


@torch.no_grad()
def clap_text_embeddings(clap_model: ClapModel, tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> torch.Tensor:
    """
    L2-normalised CLAP text embeddings.

    Args:
        clap_model ([`~transformers.ClapModel`]): the CLAP model.
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]): its tokenizer.
        texts (`list[str]`): the texts, each cut to [`CLAP_TEXT_MAX_LENGTH`] tokens as laion_clap does (or to the
            tokenizer's `model_max_length` if shorter).

    Returns:
        `torch.Tensor`: float32 `(len(texts), projection_dim)`, on the CPU.
    """
    max_length = min(CLAP_TEXT_MAX_LENGTH, tokenizer.model_max_length)
    tokens = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    tokens = tokens.to(clap_model.device)
    output = clap_model.get_text_features(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)
    return F.normalize(getattr(output, "pooler_output", output).float(), dim=-1).cpu()


def _pad_sequence(embeds: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pads text embeddings with zeros and their mask with 0 up to `length` tokens."""
    missing = length - embeds.shape[1]
    if missing <= 0:
        return embeds, mask
    return F.pad(embeds, (0, 0, 0, missing)), F.pad(mask, (0, missing))


def _is_number(value: Any) -> bool:
    """A real number, Python's or NumPy's (`np.float32`, `np.int64`), but not a bool: `True` seconds is a mistake."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    """An integer, Python's or NumPy's (`np.int64`), but not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_num_inference_steps(scheduler: SchedulerMixin, num_inference_steps: int) -> None:
    """
    Refuses, before any work, a number of denoising steps that `scheduler` cannot serve.

    No scheduler has more distinct timesteps than the `num_train_timesteps` it was configured with (DDPM and DDIM
    refuse more in `set_timesteps`; DPM-Solver++, UniPC or Euler silently repeat a timestep and fail, or run
    nonsense, later). Below that, what a scheduler needs depends on the scheduler and its configuration (e.g.
    DPM-Solver++ with `timestep_spacing="leading"` serves at most `num_train_timesteps - 1` steps, PNDM at least 3),
    so a scheduler built from its config runs the whole schedule on a one-element sample with a zero model output:
    this takes well under a second even for 1000 steps and leaves `scheduler` and the global random state untouched.

    Args:
        scheduler ([`SchedulerMixin`]): the scheduler, e.g. `pipe.scheduler`, or one built from a checkpoint's
            scheduler config alone (to check a command line before loading the models).
        num_inference_steps (`int`): the number of steps asked for.

    Raises:
        `ValueError`: naming `num_inference_steps`, the scheduler and why it cannot serve that many steps.
    """
    name = type(scheduler).__name__
    limit = scheduler.config.get("num_train_timesteps")
    if limit is not None and num_inference_steps > limit:
        raise ValueError(
            f"`num_inference_steps` {num_inference_steps} is more than {name} can serve: its schedule has "
            f"num_train_timesteps={limit} timesteps, so at most {limit} steps."
        )
    settings = ", ".join(
        f"{key}={scheduler.config[key]!r}"
        for key in ("num_train_timesteps", "timestep_spacing", "steps_offset")
        if key in scheduler.config
    )

    def refuse(reason: str) -> ValueError:
        return ValueError(
            f"`num_inference_steps` {num_inference_steps} cannot be served by {name} ({settings}): {reason}. "
            "Choose another number of steps or another scheduler."
        )

    trial = type(scheduler).from_config(scheduler.config)
    try:
        trial.set_timesteps(num_inference_steps, device="cpu")
    except Exception as error:
        raise refuse(f"`set_timesteps` fails with {type(error).__name__}: {_first_line(error)}") from error
    timesteps = trial.timesteps
    if len(timesteps) > 1 and bool((timesteps == timesteps[0]).all()):
        raise refuse(f"its schedule is timestep {timesteps[0].item()} repeated {len(timesteps)} times")
    extra = {}
    if "generator" in inspect.signature(trial.step).parameters:
        extra["generator"] = torch.Generator().manual_seed(0)  # never the global generator
    sample = torch.ones(1, 1, 1, 1) * trial.init_noise_sigma
    try:
        for t in timesteps:
            model_input = trial.scale_model_input(sample, t)
            sample = trial.step(torch.zeros_like(model_input), t, sample, return_dict=False, **extra)[0]
    except Exception as error:  # the real run would fail the same way, after all the UNet calls
        raise refuse(f"a dry run of its schedule fails with {type(error).__name__}: {_first_line(error)}") from error


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else "(no message)"


def _input_device(model: torch.nn.Module, execution_device: torch.device) -> torch.device:
    """
    Where `model`'s inputs go: its own device (a model may sit apart from the UNet, e.g. the text encoder on the CPU),
    except under `enable_sequential_cpu_offload`, which keeps its weights on the meta device and has accelerate's hooks
    bring them, and the inputs, to the execution device at each forward.
    """
    device = model.device
    return execution_device if device.type == "meta" else device


class TangoCLAPPipeline(DiffusionPipeline):
    r"""
    Pipeline for text-to-audio generation with Tango's latent diffusion model, conditioned through cross-attention
    on the last hidden states of a CLAP text tower (Tango-CLAP) or of FLAN-T5 (Tango, Tango-AF).

    This model inherits from [`DiffusionPipeline`]. Check the superclass documentation for the generic methods
    implemented for all pipelines (downloading, saving, running on a particular device, etc.).

    Args:
        vae ([`AutoencoderKL`]):
            Variational auto-encoder between log-mel spectrograms `(batch, 1, frames, mel_bins)` and latents.
        text_encoder ([`~transformers.ClapTextModelWithProjection`] or [`~transformers.T5EncoderModel`]):
            Frozen text encoder; its `last_hidden_state` conditions the UNet.
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]):
            Tokenizer of the text encoder (RoBERTa's for CLAP, T5's for FLAN-T5).
        unet ([`UNet2DConditionModel`]):
            Denoiser of the mel latents, cross-attending to the text with `encoder_attention_mask`.
        scheduler ([`SchedulerMixin`]):
            Any diffusers scheduler matching the UNet's training (`prediction_type` "v_prediction" or "epsilon").
        vocoder ([`~transformers.SpeechT5HifiGan`]):
            HiFi-GAN turning the decoded mel spectrogram into a waveform at `vocoder.config.sampling_rate`.
        clap_model ([`~transformers.ClapModel`], *optional*):
            CLAP model scoring each generated waveform against its prompt; candidates are returned best first.
        clap_tokenizer ([`~transformers.PreTrainedTokenizerBase`], *optional*):
            Tokenizer of `clap_model`.
        clap_feature_extractor ([`~transformers.ClapFeatureExtractor`], *optional*):
            Feature extractor of `clap_model`; waveforms are resampled to its `sampling_rate` first.
    """

    model_cpu_offload_seq = "text_encoder->unet->vae->vocoder"
    _optional_components = ["clap_model", "clap_tokenizer", "clap_feature_extractor"]
    _exclude_from_cpu_offload = ["clap_model"]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: ClapTextModelWithProjection | T5EncoderModel | PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        unet: UNet2DConditionModel,
        scheduler: SchedulerMixin,
        vocoder: SpeechT5HifiGan,
        clap_model: ClapModel | None = None,
        clap_tokenizer: PreTrainedTokenizerBase | None = None,
        clap_feature_extractor: ClapFeatureExtractor | None = None,
    ):
        super().__init__()
        self.register_modules(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            vocoder=vocoder,
            clap_model=clap_model,
            clap_tokenizer=clap_tokenizer,
            clap_feature_extractor=clap_feature_extractor,
        )
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1) if vae is not None else 4

    # ------------------------------------------------------------------ properties

    @property
    def sampling_rate(self) -> int:
        """Sampling rate of the generated audio (the vocoder's)."""
        return int(self.vocoder.config.sampling_rate)

    @property
    def hop_length(self) -> int:
        """Samples per mel frame: the product of the vocoder's upsampling rates (Tango: 160)."""
        return int(math.prod(self.vocoder.config.upsample_rates))

    @property
    def frames_multiple(self) -> int:
        """Mel frames are padded to a multiple of this so that every UNet level sees whole latent frames."""
        unet_downsamples = 2 ** (len(self.unet.config.block_out_channels) - 1)
        return self.vae_scale_factor * unet_downsamples

    @property
    def has_clap_scorer(self) -> bool:
        """Whether the CLAP model, tokenizer and feature extractor needed to rank candidates are all present."""
        return all(
            getattr(self, name, None) is not None
            for name in ("clap_model", "clap_tokenizer", "clap_feature_extractor")
        )

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1.0

    @property
    def cross_attention_kwargs(self) -> dict[str, Any] | None:
        """What the current call passes to the UNet's attention processors (e.g. a LoRA `{"scale": 0.5}`)."""
        return self._cross_attention_kwargs

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    # ------------------------------------------------------------------ text

    def _tokenize(self, text: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        max_length = self.tokenizer.model_max_length
        if max_length is None or max_length > 100_000:  # tokenizers saved without a limit report ~1e30
            max_length = 512  # what both FLAN-T5 and CLAP's RoBERTa were trained with
        inputs = self.tokenizer(text, padding="longest", return_tensors="pt")
        if inputs.input_ids.shape[-1] > max_length:
            # Rare: only then is the text tokenized a second time, truncated, and what was cut measured. The removed
            # text itself can be any length (a pasted document), so the log line shows only its ends.
            lengths = inputs.attention_mask.sum(-1).tolist()
            for index, (full, length) in enumerate(zip(inputs.input_ids, lengths)):
                if length > max_length:
                    removed = self.tokenizer.decode(full[max_length - 1 : length], skip_special_tokens=True)
                    excerpt = removed.strip()
                    excerpt = excerpt if len(excerpt) <= 60 else f"{excerpt[:30]} ... {excerpt[-25:]}"
                    logger.warning(
                        f"Prompt {index} of its batch was truncated to the text encoder's {max_length} tokens: "
                        f"{length - max_length} tokens ({len(removed)} characters) were removed: {excerpt!r}."
                    )
            inputs = self.tokenizer(
                text, padding="longest", max_length=max_length, truncation=True, return_tensors="pt"
            )
        return inputs.input_ids, inputs.attention_mask

    @torch.no_grad()
    def encode_text(self, text: list[str], device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Encodes text into the conditioning of the UNet.

        Args:
            text (`list[str]`): prompts; `""` gives the unconditional embedding used for classifier-free guidance
                (and the one training must drop the condition to).
            device (`torch.device`, *optional*): where to put the result; defaults to the execution device.

        Returns:
            `tuple[torch.Tensor, torch.Tensor]`: the text encoder's last hidden state `(batch, tokens, width)` and
            its attention mask `(batch, tokens)`.
        """
        device = device or self._execution_device
        input_ids, attention_mask = self._tokenize(text)
        text_device = _input_device(self.text_encoder, device)
        hidden = self.text_encoder(
            input_ids=input_ids.to(text_device), attention_mask=attention_mask.to(text_device)
        ).last_hidden_state
        return hidden.to(device), attention_mask.to(device)

    def encode_prompt(
        self,
        prompt: str | list[str] | None,
        device: torch.device | None = None,
        num_waveforms_per_prompt: int = 1,
        do_classifier_free_guidance: bool = True,
        negative_prompt: str | list[str] | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        negative_attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        r"""
        Encodes the prompt (and the negative prompt for classifier-free guidance) into text encoder hidden states.

        Every argument but `prompt` has a default, so that `pipe.encode_prompt(prompt)` gives, in isolation, exactly
        the conditioning `pipe(prompt)` uses; its outputs can be passed back to `__call__` as `prompt_embeds`,
        `attention_mask`, `negative_prompt_embeds` and `negative_attention_mask` (e.g. to a pipeline loaded without
        its text encoder).

        Args:
            prompt (`str` or `list[str]`, *optional*):
                The prompt(s). Not needed when `prompt_embeds` is given.
            device (`torch.device`, *optional*):
                Torch device of the result; defaults to the pipeline's execution device.
            num_waveforms_per_prompt (`int`, *optional*, defaults to 1):
                Number of waveforms generated per prompt; embeddings are repeated that many times.
            do_classifier_free_guidance (`bool`, *optional*, defaults to `True`):
                Whether the unconditional embeddings are needed (`__call__` uses guidance by default).
            negative_prompt (`str` or `list[str]`, *optional*):
                What not to generate. Defaults to `""`, the unconditional prompt that training drops to.
            prompt_embeds (`torch.Tensor`, *optional*):
                Pre-computed text embeddings `(batch, tokens, width)`.
            negative_prompt_embeds (`torch.Tensor`, *optional*):
                Pre-computed negative text embeddings `(batch, tokens, width)`.
            attention_mask (`torch.Tensor`, *optional*):
                Mask of `prompt_embeds` `(batch, tokens)`; all ones when omitted.
            negative_attention_mask (`torch.Tensor`, *optional*):
                Mask of `negative_prompt_embeds`; all ones when omitted.

        Returns:
            `tuple`: `(prompt_embeds, attention_mask, negative_prompt_embeds, negative_attention_mask)`, each
            repeated `num_waveforms_per_prompt` times; the negative ones are `None` without guidance.
        """
        device = device or self._execution_device
        if prompt_embeds is None:
            if prompt is None:
                raise ValueError("Pass `prompt` or `prompt_embeds` to `encode_prompt`: both are None.")
            prompt = [prompt] if isinstance(prompt, str) else list(prompt)
            prompt_embeds, attention_mask = self.encode_text(prompt, device)
        elif attention_mask is None:
            attention_mask = torch.ones(prompt_embeds.shape[:2], dtype=torch.long, device=prompt_embeds.device)
        batch_size = prompt_embeds.shape[0]

        if do_classifier_free_guidance and negative_prompt_embeds is None:
            if negative_prompt is None:
                negative_prompt = [""] * batch_size
            elif isinstance(negative_prompt, str):
                negative_prompt = [negative_prompt] * batch_size
            negative_prompt_embeds, negative_attention_mask = self.encode_text(list(negative_prompt), device)
        elif negative_prompt_embeds is not None and negative_attention_mask is None:
            negative_attention_mask = torch.ones(
                negative_prompt_embeds.shape[:2], dtype=torch.long, device=negative_prompt_embeds.device
            )

        # The embeddings are the UNet's input, so they take its dtype (the text encoder may run in another one, e.g.
        # `dtype={"unet": torch.float16, "default": torch.float32}`); without a UNet (a text-only pipeline
        # computing embeddings for later), the text encoder's.
        if self.unet is not None:
            dtype = self.unet.dtype
        elif self.text_encoder is not None:
            dtype = self.text_encoder.dtype
        else:
            dtype = prompt_embeds.dtype
        prompt_embeds = prompt_embeds.to(device=device, dtype=dtype).repeat_interleave(num_waveforms_per_prompt, 0)
        attention_mask = attention_mask.to(device).repeat_interleave(num_waveforms_per_prompt, 0)
        if not do_classifier_free_guidance:
            return prompt_embeds, attention_mask, None, None

        negative_prompt_embeds = negative_prompt_embeds.to(device=device, dtype=dtype).repeat_interleave(
            num_waveforms_per_prompt, 0
        )
        negative_attention_mask = negative_attention_mask.to(device).repeat_interleave(num_waveforms_per_prompt, 0)
        # Both halves of the guidance batch need one token length; padding is masked out of cross-attention.
        length = max(prompt_embeds.shape[1], negative_prompt_embeds.shape[1])
        prompt_embeds, attention_mask = _pad_sequence(prompt_embeds, attention_mask, length)
        negative_prompt_embeds, negative_attention_mask = _pad_sequence(
            negative_prompt_embeds, negative_attention_mask, length
        )
        return prompt_embeds, attention_mask, negative_prompt_embeds, negative_attention_mask

    # ------------------------------------------------------------------ checks and shapes

    def num_frames(self, audio_length_in_s: float) -> int:
        """Mel frames generated for `audio_length_in_s` seconds: enough frames, padded to `frames_multiple`."""
        num_samples = round(audio_length_in_s * self.sampling_rate)
        frames = math.ceil(num_samples / self.hop_length)
        return math.ceil(frames / self.frames_multiple) * self.frames_multiple

    def check_inputs(
        self,
        prompt: str | list[str] | None,
        audio_length_in_s: float,
        num_inference_steps: int,
        guidance_scale: float,
        num_waveforms_per_prompt: int,
        negative_prompt: str | list[str] | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        negative_attention_mask: torch.Tensor | None = None,
        output_type: str = "np",
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        eta: float = 0.0,
        latents: torch.Tensor | None = None,
    ) -> None:
        """
        Raises a `ValueError` naming the bad value for each argument that cannot be generated from, before any work:
        numbers of the wrong type or out of range (NumPy scalars count as numbers, bools do not), a number of steps
        the scheduler cannot serve (see [`check_num_inference_steps`]), and non-finite `latents` or embeddings,
        which could only give non-finite audio. Logs a warning for arguments that would be ignored.
        """
        if not _is_integer(num_inference_steps) or num_inference_steps <= 0:
            raise ValueError(f"`num_inference_steps` must be a positive integer, got {num_inference_steps!r}.")
        check_num_inference_steps(self.scheduler, int(num_inference_steps))
        if not _is_number(audio_length_in_s) or not math.isfinite(audio_length_in_s) or audio_length_in_s <= 0:
            raise ValueError(f"`audio_length_in_s` must be a positive number of seconds, got {audio_length_in_s!r}.")
        min_length = self.vae_scale_factor * self.hop_length / self.sampling_rate
        if audio_length_in_s < min_length:
            raise ValueError(
                f"`audio_length_in_s` {audio_length_in_s} is shorter than one latent frame "
                f"({self.vae_scale_factor} mel frames of {self.hop_length} samples = {min_length} s)."
            )
        if not _is_number(guidance_scale) or not math.isfinite(guidance_scale) or guidance_scale < 0:
            raise ValueError(f"`guidance_scale` must be a number >= 0, got {guidance_scale!r}.")
        if not _is_integer(num_waveforms_per_prompt) or num_waveforms_per_prompt < 1:
            raise ValueError(
                f"`num_waveforms_per_prompt` must be a positive integer, got {num_waveforms_per_prompt!r}."
            )
        # DDIM's eta scales the noise it adds back; above 1 the deterministic part's weight
        # sqrt(1 - alpha_prev - sigma^2) takes the root of a negative number (DDIM paper, eq. 12; `DDIMScheduler.step`).
        if not _is_number(eta) or not 0 <= eta <= 1:
            raise ValueError(f"`eta` must be a number in [0, 1] (0: deterministic DDIM), got {eta!r}.")
        if eta != 0 and "eta" not in inspect.signature(self.scheduler.step).parameters:
            logger.warning(f"`eta` {eta} is ignored: {type(self.scheduler).__name__} takes no eta (DDIM does).")
        if guidance_scale <= 1 and (negative_prompt is not None or negative_prompt_embeds is not None):
            name = "negative_prompt" if negative_prompt is not None else "negative_prompt_embeds"
            logger.warning(
                f"`{name}` is ignored: `guidance_scale` {guidance_scale} <= 1 turns classifier-free guidance off, "
                "and only guidance uses it."
            )
        for name, tensor in (
            ("latents", latents),
            ("prompt_embeds", prompt_embeds),
            ("negative_prompt_embeds", negative_prompt_embeds),
        ):
            if tensor is None:
                continue
            if not isinstance(tensor, torch.Tensor):  # a ValueError, like every refusal of `check_inputs` in diffusers
                raise ValueError(f"`{name}` must be a torch.Tensor, got {type(tensor).__name__}.")  # noqa: TRY004
            non_finite = int((~torch.isfinite(tensor)).sum())
            if non_finite:
                raise ValueError(
                    f"`{name}` has {non_finite} non-finite values (NaN or inf) among its {tensor.numel()}: the audio "
                    "would be non-finite."
                )
        if output_type not in ("np", "pt", "latent"):
            raise ValueError(f"`output_type` must be one of 'np', 'pt', 'latent', got {output_type!r}.")
        if callback_on_step_end_tensor_inputs is not None:
            unknown = [k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]
            if unknown:
                raise ValueError(
                    f"`callback_on_step_end_tensor_inputs` has {unknown}, not among {self._callback_tensor_inputs}."
                )

        if prompt is not None and prompt_embeds is not None:
            raise ValueError("Pass either `prompt` or `prompt_embeds`, not both.")
        if prompt is None and prompt_embeds is None:
            raise ValueError("Pass `prompt` or `prompt_embeds`: both are None.")
        if prompt is not None:
            if not isinstance(prompt, (str, list)) or (
                isinstance(prompt, list) and not all(isinstance(p, str) for p in prompt)
            ):
                raise ValueError(
                    f"`prompt` must be a string or a list of strings, got {type(prompt).__name__}: {prompt!r}."
                )
            if isinstance(prompt, list) and len(prompt) == 0:
                raise ValueError("`prompt` is an empty list: nothing to generate.")
        batch_size = (1 if isinstance(prompt, str) else len(prompt)) if prompt is not None else prompt_embeds.shape[0]

        if negative_prompt is not None and negative_prompt_embeds is not None:
            raise ValueError("Pass either `negative_prompt` or `negative_prompt_embeds`, not both.")
        if negative_prompt is not None:
            if not isinstance(negative_prompt, (str, list)) or (
                isinstance(negative_prompt, list) and not all(isinstance(p, str) for p in negative_prompt)
            ):
                raise ValueError(
                    f"`negative_prompt` must be a string or a list of strings, got "
                    f"{type(negative_prompt).__name__}: {negative_prompt!r}."
                )
            if isinstance(negative_prompt, list) and len(negative_prompt) != batch_size:
                raise ValueError(
                    f"`negative_prompt` has {len(negative_prompt)} entries but there are {batch_size} prompts."
                )

        width = self.unet.config.cross_attention_dim
        for name, embeds, mask in (
            ("prompt_embeds", prompt_embeds, attention_mask),
            ("negative_prompt_embeds", negative_prompt_embeds, negative_attention_mask),
        ):
            if embeds is None:
                if mask is not None:
                    mask_name = "attention_mask" if name == "prompt_embeds" else "negative_attention_mask"
                    raise ValueError(f"`{mask_name}` was given without `{name}`.")
                continue
            if embeds.ndim != 3 or embeds.shape[-1] != width:
                raise ValueError(
                    f"`{name}` must have shape (batch, tokens, {width}) to match the UNet's cross_attention_dim, "
                    f"got {tuple(embeds.shape)}."
                )
            if embeds.shape[0] != batch_size:
                raise ValueError(f"`{name}` has batch size {embeds.shape[0]} but there are {batch_size} prompts.")
            if mask is not None and tuple(mask.shape) != tuple(embeds.shape[:2]):
                mask_name = "attention_mask" if name == "prompt_embeds" else "negative_attention_mask"
                raise ValueError(
                    f"`{mask_name}` must have shape {tuple(embeds.shape[:2])} like `{name}`, got {tuple(mask.shape)}."
                )

    def prepare_latents(
        self,
        batch_size: int,
        num_channels_latents: int,
        num_frames: int,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | list[torch.Generator] | None,
        latents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Initial noise of shape `(batch, channels, num_frames // vae_scale_factor, mel_bins // vae_scale_factor)`."""
        shape = (
            batch_size,
            num_channels_latents,
            num_frames // self.vae_scale_factor,
            int(self.vocoder.config.model_in_dim) // self.vae_scale_factor,
        )
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(
                f"Got {len(generator)} generators for a batch of {batch_size} waveforms "
                "(prompts x num_waveforms_per_prompt): pass one generator or exactly one per waveform."
            )
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        else:
            if tuple(latents.shape) != shape:
                raise ValueError(
                    f"`latents` must have shape {shape} for this batch and `audio_length_in_s`, got {tuple(latents.shape)}."
                )
            latents = latents.to(device=device, dtype=dtype)
        return latents * self.scheduler.init_noise_sigma

    def prepare_extra_step_kwargs(self, generator: torch.Generator | list[torch.Generator] | None, eta: float) -> dict:
        """Keyword arguments for `scheduler.step`: `eta` and `generator` for the schedulers that take them."""
        params = set(inspect.signature(self.scheduler.step).parameters)
        kwargs: dict[str, Any] = {}
        if "eta" in params:
            kwargs["eta"] = eta
        if "generator" in params:
            kwargs["generator"] = generator
        return kwargs

    # ------------------------------------------------------------------ decoding and scoring

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> log-mel spectrogram `(batch, frames, mel_bins)` through the VAE decoder."""
        latents = latents.to(self.vae.dtype) / self.vae.config.scaling_factor
        mel = self.vae.decode(latents).sample
        return mel.squeeze(1)

    def mel_to_waveform(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel spectrogram `(batch, frames, mel_bins)` -> float32 waveform `(batch, frames * hop_length)`."""
        vocoder_device = _input_device(self.vocoder, self._execution_device)
        waveform = self.vocoder(mel.to(device=vocoder_device, dtype=self.vocoder.dtype))
        return waveform.float()

    def _warn_non_finite(self, outputs: torch.Tensor, num_waveforms_per_prompt: int, what: str) -> None:
        """Logs which outputs hold NaN or inf, by their index in the output (and their prompt and rank)."""
        finite = torch.isfinite(outputs.flatten(1)).all(dim=1)
        if bool(finite.all()):
            return
        bad = (~finite).nonzero().flatten().tolist()
        named = ", ".join(
            f"{index} (prompt {index // num_waveforms_per_prompt}, candidate {index % num_waveforms_per_prompt})"
            for index in bad
        )
        half = [
            name
            for name in ("text_encoder", "unet", "vae", "vocoder")
            if getattr(self, name, None) is not None and self.components[name].dtype == torch.float16
        ]
        hint = (
            f" The {', '.join(half)} run in float16, whose largest value is 65504: an overflow gives inf, then NaN;"
            " bfloat16 or float32 do not overflow there."
            if half
            else ""
        )
        logger.warning(
            f"{len(bad)} of {len(finite)} {what} came out non-finite (NaN or inf), at output indices {named}: they "
            f"have no CLAP score and come after their prompt's finite candidates; do not use them.{hint}"
        )

    @torch.no_grad()
    def score_waveforms(self, text: list[str], waveforms: torch.Tensor) -> torch.Tensor:
        """
        CLAP cosine similarity between each waveform and the text at the same index. A clip longer than CLAP's
        window is scored whole and deterministically (see [`clap_audio_embeddings`]); a waveform with a NaN or inf
        sample is not scored at all: its similarity is NaN.

        Args:
            text (`list[str]`): one caption per waveform.
            waveforms (`torch.Tensor`): `(len(text), num_samples)` at `self.sampling_rate`.

        Returns:
            `torch.Tensor`: float32 similarities of shape `(len(text),)`, on the CPU.
        """
        if not self.has_clap_scorer:
            raise ValueError("Scoring needs `clap_model`, `clap_tokenizer` and `clap_feature_extractor`.")
        if len(text) != waveforms.shape[0]:
            raise ValueError(f"Got {len(text)} texts for {waveforms.shape[0]} waveforms.")
        target_sr = int(self.clap_feature_extractor.sampling_rate)
        audio = resample_waveform(waveforms.cpu(), self.sampling_rate, target_sr).numpy()
        audio_embeds = clap_audio_embeddings(self.clap_model, self.clap_feature_extractor, list(audio))
        # Each distinct text is embedded once, however many candidates share it.
        unique = list(dict.fromkeys(text))
        text_embeds = clap_text_embeddings(self.clap_model, self.clap_tokenizer, unique)
        index = torch.tensor([unique.index(t) for t in text])
        return (audio_embeds * text_embeds[index]).sum(-1)

    # ------------------------------------------------------------------ generation

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        audio_length_in_s: float = 10.0,
        num_inference_steps: int = 100,
        guidance_scale: float = 3.0,
        negative_prompt: str | list[str] | None = None,
        num_waveforms_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        negative_attention_mask: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        cross_attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Callable[[Any, int, int, dict], dict]
        | PipelineCallback
        | MultiPipelineCallbacks
        | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> TangoCLAPPipelineOutput | tuple:
        r"""
        Generates audio from text.

        Args:
            prompt (`str` or `list[str]`, *optional*):
                The prompt(s) describing the audio. Prompts longer than the tokenizer's limit are truncated with a
                warning. Not needed when `prompt_embeds` is given.
            audio_length_in_s (`float`, *optional*, defaults to 10.0):
                Length of the generated audio in seconds; the output has exactly
                `round(audio_length_in_s * sampling_rate)` samples. Any length of at least one latent frame works.
            num_inference_steps (`int`, *optional*, defaults to 100):
                Number of denoising steps (Tango used 100-200 with DDPM; DPM-Solver++ needs about 25).
            guidance_scale (`float`, *optional*, defaults to 3.0):
                Classifier-free guidance scale; guidance is off at 1.0 or below.
            negative_prompt (`str` or `list[str]`, *optional*):
                What to steer away from. Defaults to the empty prompt, the same unconditional input used in training.
            num_waveforms_per_prompt (`int`, *optional*, defaults to 1):
                Candidates per prompt. With CLAP scoring parts they are ranked, best first.
            eta (`float`, *optional*, defaults to 0.0):
                DDIM's eta; ignored by other schedulers.
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*):
                Generator(s) for reproducible noise; a list gives one per waveform.
            latents (`torch.Tensor`, *optional*):
                Initial noise `(batch * num_waveforms_per_prompt, channels, frames, mel_bins)` in latent units.
            prompt_embeds (`torch.Tensor`, *optional*):
                Pre-computed text encoder hidden states `(batch, tokens, cross_attention_dim)`.
            negative_prompt_embeds (`torch.Tensor`, *optional*):
                Pre-computed negative hidden states, same layout.
            attention_mask (`torch.Tensor`, *optional*):
                Mask `(batch, tokens)` of `prompt_embeds`.
            negative_attention_mask (`torch.Tensor`, *optional*):
                Mask `(batch, tokens)` of `negative_prompt_embeds`.
            output_type (`str`, *optional*, defaults to `"np"`):
                `"np"` (NumPy float32), `"pt"` (torch float32) or `"latent"` (latents, nothing decoded).
            return_dict (`bool`, *optional*, defaults to `True`):
                Return a [`TangoCLAPPipelineOutput`] rather than a tuple.
            cross_attention_kwargs (`dict`, *optional*):
                A kwargs dictionary that, if given, is passed on to the UNet's [`AttentionProcessor`]s at every step
                (see `diffusers.models.attention_processor`); e.g. `{"scale": 0.5}` scales a LoRA adapter loaded
                into the UNet with `pipe.unet.load_lora_adapter(...)`, `{"scale": 0.0}` turns it off.
            callback_on_step_end (`Callable`, `PipelineCallback` or `MultiPipelineCallbacks`, *optional*):
                Called after each step as `callback_on_step_end(self, step, timestep, callback_kwargs)`; it returns
                a dict whose tensors (among `callback_on_step_end_tensor_inputs`) replace the pipeline's.
            callback_on_step_end_tensor_inputs (`list[str]`, *optional*, defaults to `["latents"]`):
                Tensors passed to the callback, from `_callback_tensor_inputs`.

        Examples:

        Returns:
            [`TangoCLAPPipelineOutput`] or `tuple`: with `return_dict=False`, `(audios,)`, or `(audios, clap_scores)`
            when candidates were scored.
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        if callback_on_step_end_tensor_inputs is None:
            callback_on_step_end_tensor_inputs = ["latents"]

        # 1. Check inputs
        self.check_inputs(
            prompt,
            audio_length_in_s,
            num_inference_steps,
            guidance_scale,
            num_waveforms_per_prompt,
            negative_prompt,
            prompt_embeds,
            negative_prompt_embeds,
            attention_mask,
            negative_attention_mask,
            output_type,
            callback_on_step_end_tensor_inputs,
            eta=eta,
            latents=latents,
        )
        # NumPy scalars are accepted above; from here on plain Python numbers.
        audio_length_in_s, num_inference_steps = float(audio_length_in_s), int(num_inference_steps)
        num_waveforms_per_prompt, eta = int(num_waveforms_per_prompt), float(eta)
        self._guidance_scale = float(guidance_scale)
        self._cross_attention_kwargs = cross_attention_kwargs
        self._interrupt = False

        # 2. Define call parameters
        prompts = [prompt] if isinstance(prompt, str) else prompt
        batch_size = len(prompts) if prompts is not None else prompt_embeds.shape[0]
        device = self._execution_device
        num_samples = round(audio_length_in_s * self.sampling_rate)
        num_frames = self.num_frames(audio_length_in_s)

        # 3. Encode the prompt; guidance runs [unconditional, conditional] as one batch
        prompt_embeds, attention_mask, negative_prompt_embeds, negative_attention_mask = self.encode_prompt(
            prompts,
            device,
            num_waveforms_per_prompt,
            self.do_classifier_free_guidance,
            negative_prompt,
            prompt_embeds,
            negative_prompt_embeds,
            attention_mask,
            negative_attention_mask,
        )

        # 4. Prepare timesteps
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)

        # 5. Prepare latent variables
        latents = self.prepare_latents(
            batch_size * num_waveforms_per_prompt,
            self.unet.config.in_channels,
            num_frames,
            prompt_embeds.dtype,
            device,
            generator,
            latents,
        )

        # 6. Prepare extra step kwargs
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)

        # 7. Denoising loop
        num_warmup_steps = len(timesteps) - num_inference_steps * self.scheduler.order
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                if self.do_classifier_free_guidance:
                    latent_model_input = torch.cat([latents] * 2)
                    encoder_hidden_states = torch.cat([negative_prompt_embeds, prompt_embeds])
                    encoder_attention_mask = torch.cat([negative_attention_mask, attention_mask])
                else:
                    latent_model_input = latents
                    encoder_hidden_states = prompt_embeds
                    encoder_attention_mask = attention_mask
                latent_model_input = self.scheduler.scale_model_input(latent_model_input, t)

                noise_pred = self.unet(
                    latent_model_input,
                    t,
                    encoder_hidden_states=encoder_hidden_states,
                    encoder_attention_mask=encoder_attention_mask,
                    cross_attention_kwargs=self.cross_attention_kwargs,
                    return_dict=False,
                )[0]

                if self.do_classifier_free_guidance:
                    noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
                    noise_pred = noise_pred_uncond + self.guidance_scale * (noise_pred_text - noise_pred_uncond)

                latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]

                if callback_on_step_end is not None:
                    callback_kwargs = {}
                    for k in callback_on_step_end_tensor_inputs:
                        callback_kwargs[k] = locals()[k]
                    callback_outputs = callback_on_step_end(self, i, t, callback_kwargs)
                    latents = callback_outputs.pop("latents", latents)
                    prompt_embeds = callback_outputs.pop("prompt_embeds", prompt_embeds)
                    negative_prompt_embeds = callback_outputs.pop("negative_prompt_embeds", negative_prompt_embeds)

                if i == len(timesteps) - 1 or ((i + 1) > num_warmup_steps and (i + 1) % self.scheduler.order == 0):
                    progress_bar.update()

        # 8. Decode: latents -> mel -> waveform of exactly num_samples samples
        clap_scores = mel = None
        if output_type == "latent":
            audio = latents
            self._warn_non_finite(audio, num_waveforms_per_prompt, "latents")
        else:
            mel = self.decode_latents(latents)
            audio = self.mel_to_waveform(mel)[:, :num_samples]

            # 9. Rank the candidates of each prompt by CLAP similarity, best first. A non-finite waveform has no
            # score (NaN) and goes after every finite one: `sort` alone would put NaN first when descending.
            if self.has_clap_scorer and prompts is not None:
                texts = [p for p in prompts for _ in range(num_waveforms_per_prompt)]
                scores = self.score_waveforms(texts, audio).view(batch_size, num_waveforms_per_prompt)
                order = scores.nan_to_num(nan=-math.inf).sort(dim=1, descending=True, stable=True).indices
                clap_scores = scores.gather(1, order)
                rows = (order + torch.arange(batch_size).unsqueeze(1) * num_waveforms_per_prompt).flatten()
                audio = audio[rows.to(audio.device)]
                mel = mel[rows.to(mel.device)]
            self._warn_non_finite(audio, num_waveforms_per_prompt, "waveforms")
            mel = mel.float()
            if output_type == "np":
                audio = audio.cpu().numpy()
                mel = mel.cpu().numpy()

        self.maybe_free_model_hooks()

        if not return_dict:
            return (audio,) if clap_scores is None else (audio, clap_scores)
        return TangoCLAPPipelineOutput(audios=audio, clap_scores=clap_scores, mel_spectrograms=mel)

    # ------------------------------------------------------------------ saving for the Hub

    @classmethod
    def _dict_from_json_file(cls, json_file: str | os.PathLike) -> dict:
        config = super()._dict_from_json_file(json_file)
        # A folder saved by `save_pretrained` names this class as ["pipeline", "TangoCLAPPipeline"] so that
        # `DiffusionPipeline` can find `pipeline.py`. Loading through this class itself uses this class, rather
        # than executing the folder's copy (which would need `trust_remote_code`).
        class_name = config.get("_class_name")
        if isinstance(class_name, (list, tuple)) and class_name[-1] == cls.__name__:
            config["_class_name"] = cls.__name__
        return config

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        variant: str | None = None,
        max_shard_size: int | str | None = None,
        push_to_hub: bool = False,
        **kwargs: Any,
    ) -> None:
        """
        Saves the pipeline so that it loads both through this class and through
        `DiffusionPipeline.from_pretrained(save_directory, trust_remote_code=True)`: besides the components'
        folders, this file is copied to `pipeline.py` and `model_index.json` points at it.

        Args:
            save_directory (`str` or `os.PathLike`):
                Folder to write (created if needed).
            safe_serialization (`bool`, *optional*, defaults to `True`):
                Write the weights as safetensors. `False` writes the diffusers components' weights as pickled `.bin`
                files, as [`DiffusionPipeline.save_pretrained`] does, with a logged warning (transformers 5 writes
                safetensors either way). Loading prefers safetensors whenever a folder has them.
            variant (`str`, *optional*):
                Weights variant suffix, e.g. `"fp16"` writes `diffusion_pytorch_model.fp16.safetensors`; load it back
                with `from_pretrained(save_directory, variant="fp16")`.
            max_shard_size (`int` or `str`, *optional*):
                Largest shard of each component's weights.
            push_to_hub (`bool`, *optional*, defaults to `False`):
                Upload the folder afterwards; `kwargs` may carry `repo_id`, `token`, `private`, `commit_message`
                and `create_pr`. Other `kwargs` (e.g. `use_flashpack`) go to [`DiffusionPipeline.save_pretrained`].
        """
        if not safe_serialization:
            logger.warning(
                "`safe_serialization=False`: the diffusers components' weights are written as pickled `.bin` files, "
                "which can run arbitrary code when a less careful loader unpickles them. safetensors, the default, "
                "is the safe format; publish safetensors only."
            )
        hub_keys = ("repo_id", "token", "private", "commit_message", "create_pr")
        hub_kwargs = {key: kwargs.pop(key) for key in hub_keys if key in kwargs}
        super().save_pretrained(
            save_directory,
            safe_serialization=safe_serialization,
            variant=variant,
            max_shard_size=max_shard_size,
            push_to_hub=False,
            **kwargs,
        )
        source = inspect.getsourcefile(type(self))
        target = os.path.join(save_directory, f"{HUB_PIPELINE_MODULE}.py")
        # A folder may already hold this very file under that name (the shipped default model links to it): nothing
        # to copy then. Any other link is replaced by a copy, never written through.
        if not (os.path.exists(target) and os.path.samefile(source, target)):
            if os.path.islink(target):
                os.unlink(target)
            shutil.copyfile(source, target)
        index_path = os.path.join(save_directory, "model_index.json")
        with open(index_path, encoding="utf-8") as f:
            index = json.load(f)
        index["_class_name"] = [HUB_PIPELINE_MODULE, type(self).__name__]
        with open(index_path, "w", encoding="utf-8") as f:
            json.dump(index, f, indent=2, sort_keys=True)
            f.write("\n")

        if push_to_hub:
            from huggingface_hub import create_repo

            repo_id = hub_kwargs.get("repo_id", str(save_directory).rstrip("/").split("/")[-1])
            token = hub_kwargs.get("token")
            repo_id = create_repo(repo_id, exist_ok=True, private=hub_kwargs.get("private"), token=token).repo_id
            self._upload_folder(
                save_directory,
                repo_id,
                token=token,
                commit_message=hub_kwargs.get("commit_message"),
                create_pr=hub_kwargs.get("create_pr", False),
            )
