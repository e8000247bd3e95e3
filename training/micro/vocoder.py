"""A tiny HiFi-GAN vocoder for the micro world: transformers' `SpeechT5HifiGan` turning Tango log-mels back into
16 kHz audio, 160 samples per mel frame.

The architecture is Tango's HiFi-GAN v1 at micro scale: three upsampling stages of x8, x5, x4 instead of five, 128
initial channels instead of 1024, two residual kernels (3, 7) instead of three. It is trained without a
discriminator, which minutes of CPU cannot afford: the generator learns from a multi-resolution STFT loss (spectral
convergence plus log-magnitude L1, as in Parallel WaveGAN), an L1 loss between the Tango log-mels of its output and
of the real audio, and a small penalty on a DC offset. Noise bursts, rain, clicks, drums and engines come out
recognisable; the audio is buzzier than a GAN vocoder's.

Pitch: a HiFi-GAN is convolutional with a x160 upsampling, so a mel that stays the same from frame to frame (a
steady tone) becomes a waveform that repeats every 160 samples, i.e. harmonics of the 100 Hz frame rate only. A mel
holds no phase, so no HiFi-GAN can do otherwise (it is why singing vocoders add a sine source): a steady 440 Hz tone
comes back at 400 or 500 Hz, at most 50 Hz off; tones on multiples of 100 Hz come back exact. The STFT resolutions
below are chosen so that the loss rewards the nearest harmonic rather than silence.

The vocoder reads exactly what the VAE decodes: log-mels of clips prepared by `front_end.prepare_waveform` (peak 0.5)
and computed by `front_end.TangoMelSpectrogram`. Its input is standardised inside the model
(`normalize_before=True`, with the training mels' per-bin mean and std in its `mean` / `scale` buffers), so the
pipeline hands it raw log-mels as it would to Tango's vocoder.

```bash
python -m training.micro.vocoder --world-seed 0 --output micro/vocoder --steps 800
```
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

from training.front_end import HOP_LENGTH, SAMPLING_RATE, TangoMelSpectrogram, prepare_waveform

from .discriminators import (
    MicroHifiGanDiscriminator,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from .schedules import warmup_cosine_lr

logger = logging.getLogger(__name__)

__all__ = [
    "STFT_RESOLUTIONS",
    "TRAINING_RECORD",
    "VocoderLossWeights",
    "build_micro_vocoder",
    "evaluate_micro_vocoder",
    "multi_resolution_stft_loss",
    "resynthesize",
    "train_micro_vocoder",
]

# (n_fft, hop) pairs, window = n_fft: 8 ms (clicks, onsets) to 32 ms (31 Hz bins). Nothing finer in frequency: a
# HiFi-GAN can only place a steady tone on a multiple of the 100 Hz frame rate (module docstring), and a loss that
# tells 440 Hz from 400 Hz then teaches it to leave tones out rather than put them 40 Hz off.
STFT_RESOLUTIONS: tuple[tuple[int, int], ...] = ((128, 32), (256, 64), (512, 128))
# What a training run measured, written beside the weights (`from_pretrained` ignores it).
TRAINING_RECORD = "micro_training.json"
# Floor of the magnitudes before the log in the STFT loss: about -100 dB of a peak-0.5 clip's spectrum.
_MAGNITUDE_FLOOR = 1e-5
# Share of training segments placed at a clip's start or end (see `_random_segments`).
_EDGE_SEGMENTS = 0.1
# Gradient clipping only against rare spikes (a fresh vocoder's first steps); tighter clipping slows training.
_MAX_GRAD_NORM = 10.0


def build_micro_vocoder(
    upsample_initial_channel: int = 128,
    upsample_rates: Sequence[int] = (5, 4, 4, 2),
    upsample_kernel_sizes: Sequence[int] = (11, 8, 8, 4),
    resblock_kernel_sizes: Sequence[int] = (3,),
    resblock_dilation_sizes: Sequence[Sequence[int]] = ((1, 3, 5),),
    mel_mean: torch.Tensor | None = None,
    mel_std: torch.Tensor | None = None,
    seed: int | None = 0,
) -> SpeechT5HifiGan:
    r"""A tiny 16 kHz, 64-mel HiFi-GAN generator (randomly initialised).

    Args:
        upsample_initial_channel (`int`, *optional*, defaults to 128):
            Channels after the input convolution; halved by each upsampling stage (64, 32, 16, 8).
        upsample_rates (`Sequence[int]`, *optional*, defaults to `(5, 4, 4, 2)`):
            Upsampling factors; their product must be 160, the Tango mel hop. Four stages rather than three: the
            channels halve once more before the 16 kHz stage, whose convolutions dominate a CPU's time.
        upsample_kernel_sizes (`Sequence[int]`, *optional*, defaults to `(11, 8, 8, 4)`):
            Transposed-convolution kernels (about twice the rate, HiFi-GAN's rule); `kernel - rate` must be even so
            that each stage upsamples exactly.
        resblock_kernel_sizes (`Sequence[int]`, *optional*, defaults to `(3,)`):
            Kernels of the multi-receptive-field residual blocks, one block per kernel at every stage (HiFi-GAN v1:
            3, 7, 11; each costs the whole generator's time again).
        resblock_dilation_sizes (`Sequence[Sequence[int]]`, *optional*, defaults to `((1, 3, 5),)`):
            Dilations of each residual block (HiFi-GAN's).
        mel_mean, mel_std (`torch.Tensor`, *optional*):
            `(64,)` statistics of the training log-mels. When given, the model standardises its input with them
            (`normalize_before=True`); otherwise it reads raw log-mels.
        seed (`int`, *optional*, defaults to 0):
            Seed of the initial weights (the global RNG is untouched); `None` uses the global RNG.

    Returns:
        [`~transformers.SpeechT5HifiGan`]: in eval mode.
    """
    if math.prod(upsample_rates) != HOP_LENGTH:
        raise ValueError(f"upsample_rates must multiply to the hop {HOP_LENGTH}, got {list(upsample_rates)}.")
    if len(upsample_kernel_sizes) != len(upsample_rates):
        raise ValueError("upsample_kernel_sizes needs one kernel per upsampling rate.")
    if not resblock_kernel_sizes or len(resblock_dilation_sizes) != len(resblock_kernel_sizes):
        raise ValueError("resblock_dilation_sizes needs one tuple of dilations per residual kernel (at least one).")
    for rate, kernel in zip(upsample_rates, upsample_kernel_sizes):
        if kernel < rate or (kernel - rate) % 2:
            # ConvTranspose1d with padding (kernel - rate) // 2 gives rate * frames samples only for these kernels.
            raise ValueError(f"Kernel {kernel} of rate {rate}: need kernel >= rate and kernel - rate even.")
    if upsample_initial_channel % 2 ** len(upsample_rates):
        raise ValueError(f"upsample_initial_channel must be divisible by {2 ** len(upsample_rates)}.")
    if (mel_mean is None) != (mel_std is None):
        raise ValueError("Give both mel_mean and mel_std, or neither.")
    config = SpeechT5HifiGanConfig(
        model_in_dim=64,
        sampling_rate=SAMPLING_RATE,
        upsample_initial_channel=upsample_initial_channel,
        upsample_rates=list(upsample_rates),
        upsample_kernel_sizes=list(upsample_kernel_sizes),
        resblock_kernel_sizes=list(resblock_kernel_sizes),
        resblock_dilation_sizes=[list(d) for d in resblock_dilation_sizes],
        normalize_before=mel_mean is not None,
    )
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model = SpeechT5HifiGan(config)
        # HiFi-GAN's own initialisation (normal, std 0.01) starts at ~1e-7 of output, where a spectral loss in
        # minutes of CPU barely moves; PyTorch's default initialisation starts audible.
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
                module.reset_parameters()
    if mel_mean is not None:
        with torch.no_grad():
            model.mean.copy_(torch.as_tensor(mel_mean, dtype=torch.float32))
            model.scale.copy_(torch.as_tensor(mel_std, dtype=torch.float32).clamp(min=1e-3))
    return model.eval()


def _magnitudes(audio: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    window = torch.hann_window(n_fft, device=audio.device)
    spectrum = torch.stft(audio, n_fft, hop, window=window, center=True, pad_mode="reflect", return_complex=True)
    # The floor keeps the gradient of |X| finite where a bin is exactly 0.
    return spectrum.abs().clamp(min=_MAGNITUDE_FLOOR)


def multi_resolution_stft_loss(
    predicted: torch.Tensor, target: torch.Tensor, resolutions: Sequence[tuple[int, int]] = STFT_RESOLUTIONS
) -> torch.Tensor:
    r"""Parallel WaveGAN's multi-resolution STFT loss: spectral convergence plus log-magnitude L1, averaged over
    resolutions.

    Args:
        predicted, target (`torch.Tensor`):
            `(batch, samples)` waveforms.
        resolutions (`Sequence[tuple[int, int]]`, *optional*, defaults to `STFT_RESOLUTIONS`):
            `(n_fft, hop)` pairs (Hann window of `n_fft`).

    Returns:
        `torch.Tensor`: a scalar.
    """
    total = predicted.new_zeros(())
    for n_fft, hop in resolutions:
        predicted_magnitude = _magnitudes(predicted, n_fft, hop)
        target_magnitude = _magnitudes(target, n_fft, hop)
        convergence = torch.linalg.norm(target_magnitude - predicted_magnitude) / torch.linalg.norm(target_magnitude)
        log_magnitude = (target_magnitude.log() - predicted_magnitude.log()).abs().mean()
        total = total + convergence + log_magnitude
    return total / len(resolutions)


def _prepared_clips(clips_audio: Sequence[np.ndarray | torch.Tensor], min_frames: int) -> list[torch.Tensor]:
    """Clips as the training script prepares them (peak 0.5), each a whole number of mel frames long."""
    prepared = []
    for audio in clips_audio:
        frames = max(int(np.shape(audio)[-1]) // HOP_LENGTH, min_frames)
        prepared.append(prepare_waveform(audio, SAMPLING_RATE, num_samples=frames * HOP_LENGTH))
    return prepared


def _random_segments(
    waveforms: Sequence[torch.Tensor],
    mels: Sequence[torch.Tensor],
    indices: list[int],
    segment_frames: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Aligned (mel frames, waveform) segments: frame `f` of a whole clip's mel goes with samples `[160 f, 160 (f+1))`,
    the alignment a HiFi-GAN fed that clip's mel produces.

    A fraction `_EDGE_SEGMENTS` of the segments starts at a clip's first frame or ends at its last: with uniform
    starts a 2.56 s clip's edges are in 1 segment in 200, and a generator that never learnt them adds a click at the
    end of a clip, whose peak then sets the level of the whole clip once it is peak-normalised."""
    mel_segments, audio_segments = [], []
    for index in indices:
        last_start = mels[index].shape[0] - segment_frames
        draw = float(torch.rand((), generator=generator))
        if draw < _EDGE_SEGMENTS / 2:
            start = 0
        elif draw < _EDGE_SEGMENTS:
            start = last_start
        else:
            start = int(torch.randint(0, last_start + 1, (1,), generator=generator))
        mel_segments.append(mels[index][start : start + segment_frames])
        audio_segments.append(waveforms[index][start * HOP_LENGTH : (start + segment_frames) * HOP_LENGTH])
    return torch.stack(mel_segments), torch.stack(audio_segments)


@dataclass(frozen=True)
class VocoderLossWeights:
    r"""Weights of the generator's loss terms.

    Args:
        mel (`float`, *optional*, defaults to 45.0):
            L1 between the Tango log-mels of the output and of the real segment (HiFi-GAN's mel loss and weight).
        stft (`float`, *optional*, defaults to 2.5):
            [`multi_resolution_stft_loss`] (UnivNet's weight against one adversarial loss).
        adversarial (`float`, *optional*, defaults to 1.0):
            [`~training.micro.discriminators.generator_adversarial_loss`].
        feature_matching (`float`, *optional*, defaults to 2.0):
            [`~training.micro.discriminators.feature_matching_loss`] (HiFi-GAN's weight).
        offset (`float`, *optional*, defaults to 10.0):
            L1 between the mean of the output and of the real segment. Neither spectral loss sees an offset (the
            mel filters ignore 0 Hz, the STFT's 0 Hz bin is one of hundreds), and without this term the vocoder drifts
            one in as a cheap stand-in for low-frequency energy.
    """

    mel: float = 45.0
    stft: float = 2.5
    adversarial: float = 1.0
    feature_matching: float = 2.0
    offset: float = 10.0

    def __post_init__(self):
        for name, value in dataclasses.asdict(self).items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"Loss weight {name} must be a finite number >= 0, got {value!r}.")


def _reconstruction_loss(
    predicted: torch.Tensor, audio: torch.Tensor, front_end: TangoMelSpectrogram, weights: VocoderLossWeights
) -> tuple[torch.Tensor, dict[str, float]]:
    stft = multi_resolution_stft_loss(predicted, audio)
    frames = audio.shape[-1] // HOP_LENGTH
    mel_l1 = (front_end(predicted, frames) - front_end(audio, frames)).abs().mean()
    offset = (predicted.mean(dim=-1) - audio.mean(dim=-1)).abs().mean()
    loss = weights.stft * stft + weights.mel * mel_l1 + weights.offset * offset
    return loss, {"stft": float(stft.detach()), "mel_l1": float(mel_l1.detach()), "offset": float(offset.detach())}


def _step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, parameters: list[torch.nn.Parameter]) -> float:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(parameters, _MAX_GRAD_NORM)
    optimizer.step()
    return float(grad_norm)


def _optimise(
    vocoder: SpeechT5HifiGan,
    discriminator: MicroHifiGanDiscriminator | None,
    waveforms: Sequence[torch.Tensor],
    mels: Sequence[torch.Tensor],
    steps: int,
    segment_frames: int,
    batch_size: int,
    lr: float,
    weights: VocoderLossWeights,
    discriminator_start: int,
    seed: int,
    progress: bool,
) -> list[dict[str, float]]:
    """HiFi-GAN's alternating updates: each step updates the discriminators on real and (detached) generated segments,
    then the generator on its reconstruction, adversarial and feature-matching losses. Before `discriminator_start`
    the generator learns from the reconstruction alone (Parallel WaveGAN's warm-up, which spares the discriminators a
    generator that still outputs noise)."""
    generator = torch.Generator().manual_seed(seed)
    front_end = TangoMelSpectrogram()
    # HiFi-GAN's AdamW betas (0.8, 0.99), no weight decay, for both halves.
    vocoder_optimizer = torch.optim.AdamW(vocoder.parameters(), lr=lr, betas=(0.8, 0.99), weight_decay=0.0)
    vocoder_parameters = list(vocoder.parameters())
    if discriminator is not None:
        discriminator_parameters = list(discriminator.parameters())
        discriminator_optimizer = torch.optim.AdamW(
            discriminator_parameters, lr=lr, betas=(0.8, 0.99), weight_decay=0.0
        )
        discriminator.train()
    warmup = max(1, steps // 20)
    order: list[int] = []
    history = []
    vocoder.train()
    bar = tqdm(range(steps), desc="micro vocoder", disable=not progress)
    for step in bar:
        if len(order) < batch_size:
            order = order + torch.randperm(len(mels), generator=generator).tolist()
        batch, order = order[:batch_size], order[batch_size:]
        mel, audio = _random_segments(waveforms, mels, batch, segment_frames, generator)
        rate = warmup_cosine_lr(step, steps, lr, warmup)
        predicted = vocoder(mel)
        adversarial = discriminator is not None and step >= discriminator_start
        parts: dict[str, float] = {}
        if adversarial:
            for group in discriminator_optimizer.param_groups:
                group["lr"] = rate
            real_logits, _ = discriminator(audio)
            fake_logits, _ = discriminator(predicted.detach())
            loss = discriminator_loss(real_logits, fake_logits)
            parts["discriminator"] = float(loss.detach())
            parts["discriminator_grad_norm"] = _step(discriminator_optimizer, loss, discriminator_parameters)
        loss, reconstruction = _reconstruction_loss(predicted, audio, front_end, weights)
        parts.update(reconstruction)
        if adversarial:
            # The generator's update only needs gradients with respect to the waveform, not the discriminators' own.
            discriminator.requires_grad_(False)
            with torch.no_grad():
                _, real_features = discriminator(audio)
            fake_logits, fake_features = discriminator(predicted)
            adversarial_loss = generator_adversarial_loss(fake_logits)
            matching = feature_matching_loss(real_features, fake_features)
            loss = loss + weights.adversarial * adversarial_loss + weights.feature_matching * matching
            discriminator.requires_grad_(True)
            parts.update(adversarial=float(adversarial_loss.detach()), feature_matching=float(matching.detach()))
        for group in vocoder_optimizer.param_groups:
            group["lr"] = rate
        grad_norm = _step(vocoder_optimizer, loss, vocoder_parameters)
        history.append(parts)
        bar.set_postfix(mel=f"{parts['mel_l1']:.3f}", d=f"{parts.get('discriminator', float('nan')):.2f}")
        if step % 100 == 0 or step == steps - 1:
            logger.info(
                f"step {step}: log-mel L1 {parts['mel_l1']:.4f}, STFT loss {parts['stft']:.4f}, "
                + (
                    f"adversarial {parts['adversarial']:.3f}, feature matching {parts['feature_matching']:.3f}, "
                    f"discriminator {parts['discriminator']:.3f}, "
                    if adversarial
                    else ""
                )
                + f"gradient norm {grad_norm:.2f}"
            )
    vocoder.eval()
    if discriminator is not None:
        discriminator.eval()
    return history


@torch.no_grad()
def resynthesize(vocoder: SpeechT5HifiGan, audio: np.ndarray | torch.Tensor) -> np.ndarray:
    r"""Audio -> Tango log-mel -> vocoder: what the vocoder makes of a clip's mel.

    The audio is used as given (not peak-normalised); the micro vocoder was trained on clips of peak 0.5. A steady
    tone comes back on the multiple of 100 Hz nearest its pitch (see the module docstring).

    Args:
        vocoder ([`~transformers.SpeechT5HifiGan`]):
            The vocoder.
        audio (`np.ndarray` or `torch.Tensor`):
            `(samples,)` or `(batch, samples)` at 16 kHz; at least 513 samples.

    Returns:
        `np.ndarray`: float32, the input's shape cut to whole mel frames (`samples // 160 * 160`).
    """
    waveform = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    mel = TangoMelSpectrogram()(waveform)
    parameter = next(vocoder.parameters())
    return vocoder(mel.to(parameter.device, parameter.dtype)).float().cpu().numpy()


@torch.no_grad()
def evaluate_micro_vocoder(
    vocoder: SpeechT5HifiGan, clips_audio: Sequence[np.ndarray | torch.Tensor], batch_size: int = 8
) -> dict[str, float]:
    r"""Resynthesis quality of a vocoder on whole clips, prepared as for training (peak 0.5).

    Args:
        vocoder ([`~transformers.SpeechT5HifiGan`]):
            The vocoder.
        clips_audio (`Sequence[np.ndarray | torch.Tensor]`):
            Mono 16 kHz clips.
        batch_size (`int`, *optional*, defaults to 8):
            Clips per forward pass (clips of one length).

    Returns:
        `dict[str, float]`: `stft_loss` (`multi_resolution_stft_loss`, lower is better) and `mel_l1` (natural-log
        mel L1 between the clip and its resynthesis), averaged over clips.
    """
    vocoder.eval()
    front_end = TangoMelSpectrogram()
    waveforms = _prepared_clips(clips_audio, min_frames=1)
    by_length: dict[int, list[torch.Tensor]] = {}
    for waveform in waveforms:
        by_length.setdefault(waveform.shape[0], []).append(waveform)
    stft, mel_l1 = [], []
    for group in by_length.values():
        for start in range(0, len(group), batch_size):
            audio = torch.stack(group[start : start + batch_size])
            frames = audio.shape[-1] // HOP_LENGTH
            predicted = vocoder(front_end(audio, frames))
            for i in range(len(audio)):
                stft.append(float(multi_resolution_stft_loss(predicted[i : i + 1], audio[i : i + 1])))
            mel_l1 += (front_end(predicted, frames) - front_end(audio, frames)).abs().mean(dim=(1, 2)).tolist()
    return {"stft_loss": float(np.mean(stft)), "mel_l1": float(np.mean(mel_l1))}


def _check_training_arguments(**values: Any) -> None:
    for name in ("steps", "segment_frames", "batch_size"):
        if not isinstance(values[name], int) or values[name] < 1:
            raise ValueError(f"{name} must be a positive integer, got {values[name]!r}.")
    if values["segment_frames"] < 4:
        # The mel loss's STFT needs more than n_fft / 2 = 512 samples.
        raise ValueError(f"segment_frames must be at least 4, got {values['segment_frames']}.")
    if not values["lr"] > 0:
        raise ValueError(f"lr must be > 0, got {values['lr']!r}.")
    if not isinstance(values["discriminator_start"], int) or values["discriminator_start"] < 0:
        raise ValueError(f"discriminator_start must be an integer >= 0, got {values['discriminator_start']!r}.")
    if not 0 <= values["eval_fraction"] < 1:
        raise ValueError(f"eval_fraction must be in [0, 1), got {values['eval_fraction']!r}.")


def train_micro_vocoder(
    clips_audio: Sequence[np.ndarray | torch.Tensor],
    output_dir: str | Path,
    *,
    steps: int = 1500,
    segment_frames: int = 32,
    batch_size: int = 8,
    lr: float = 1e-3,
    loss_weights: VocoderLossWeights | None = None,
    discriminator_start: int = 0,
    seed: int = 0,
    eval_fraction: float = 0.05,
    vocoder: SpeechT5HifiGan | None = None,
    model_kwargs: dict[str, Any] | None = None,
    discriminator: MicroHifiGanDiscriminator | None = None,
    discriminator_kwargs: dict[str, Any] | None = None,
    adversarial: bool = True,
    progress: bool = True,
) -> Path:
    r"""Trains a micro HiFi-GAN on 16 kHz clips and saves the generator with `save_pretrained` (safetensors).

    Clips are prepared as the training script prepares them (peak 0.5) and their Tango log-mels computed once. Each
    step draws `batch_size` random aligned segments of `segment_frames` frames, updates the discriminators
    ([`~training.micro.discriminators.MicroHifiGanDiscriminator`], least squares) on the real and generated segments,
    then the generator on `loss_weights`' sum of the log-mel L1, [`multi_resolution_stft_loss`], the least-squares
    adversarial loss and feature matching. AdamW (HiFi-GAN's betas 0.8, 0.99) for both, short warm-up, cosine decay.
    Held-out clips are resynthesised before and after training ([`evaluate_micro_vocoder`]); the numbers are logged
    and written to `micro_training.json` in the folder. The discriminators are not saved.

    Args:
        clips_audio (`Sequence[np.ndarray | torch.Tensor]`):
            Mono 16 kHz waveforms (e.g. the world's `MicroClip.audio`).
        output_dir (`str` or `Path`):
            The folder to save the vocoder in.
        steps (`int`, *optional*, defaults to 1500):
            Generator updates (each with one discriminator update once the discriminators have started).
        segment_frames (`int`, *optional*, defaults to 32):
            Mel frames per training segment (32 = 0.32 s, 5,120 samples).
        batch_size (`int`, *optional*, defaults to 8):
            Segments per step.
        lr (`float`, *optional*, defaults to 1e-3):
            Peak learning rate of the generator and the discriminators.
        loss_weights ([`VocoderLossWeights`], *optional*):
            Weights of the generator's losses; HiFi-GAN's mel and feature-matching weights by default.
        discriminator_start (`int`, *optional*, defaults to 0):
            Steps of reconstruction-only training before the discriminators start (Parallel WaveGAN's warm-up).
        seed (`int`, *optional*, defaults to 0):
            Seeds the initial weights, the held-out split and the segments: the same seed and clips give the same
            weights.
        eval_fraction (`float`, *optional*, defaults to 0.05):
            Fraction of the clips held out for the report (the training clips when it rounds to 0).
        vocoder ([`~transformers.SpeechT5HifiGan`], *optional*):
            A vocoder to start from; by default [`build_micro_vocoder`] with `model_kwargs`, its input statistics
            taken from the training mels.
        model_kwargs (`dict[str, Any]`, *optional*):
            Size arguments of [`build_micro_vocoder`].
        discriminator ([`~training.micro.discriminators.MicroHifiGanDiscriminator`], *optional*):
            Discriminators to start from; by default new ones built with `discriminator_kwargs`.
        discriminator_kwargs (`dict[str, Any]`, *optional*):
            Size arguments of [`~training.micro.discriminators.MicroHifiGanDiscriminator`].
        adversarial (`bool`, *optional*, defaults to `True`):
            `False` trains the generator on the reconstruction losses alone (no discriminator): an ablation.
        progress (`bool`, *optional*, defaults to `True`):
            Show a tqdm progress bar.

    Returns:
        `Path`: the saved folder, loadable with `SpeechT5HifiGan.from_pretrained`.
    """
    _check_training_arguments(
        steps=steps,
        segment_frames=segment_frames,
        batch_size=batch_size,
        lr=lr,
        discriminator_start=discriminator_start,
        eval_fraction=eval_fraction,
    )
    weights = loss_weights if loss_weights is not None else VocoderLossWeights()
    if not len(clips_audio):
        raise ValueError("No clips to train the vocoder on.")
    started, started_cpu = time.perf_counter(), time.process_time()
    held_out = int(len(clips_audio) * eval_fraction) if len(clips_audio) > 1 else 0
    order = torch.randperm(len(clips_audio), generator=torch.Generator().manual_seed(seed)).tolist()
    train_audio = [clips_audio[i] for i in sorted(order[held_out:])]
    eval_audio = [clips_audio[i] for i in sorted(order[:held_out])] or train_audio
    waveforms = _prepared_clips(train_audio, min_frames=segment_frames)
    front_end = TangoMelSpectrogram()
    with torch.no_grad():
        mels = [front_end(waveform) for waveform in waveforms]
    if vocoder is None:
        frames = torch.cat(mels)
        vocoder = build_micro_vocoder(
            **{"seed": seed, "mel_mean": frames.mean(0), "mel_std": frames.std(0), **(model_kwargs or {})}
        )
    if adversarial and discriminator is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            discriminator = MicroHifiGanDiscriminator(**(discriminator_kwargs or {}))
    if not adversarial:
        discriminator = None
    before = evaluate_micro_vocoder(vocoder, eval_audio)
    logger.info(
        f"Training a micro vocoder ({sum(p.numel() for p in vocoder.parameters()) / 1e6:.2f}M parameters"
        + (
            f", discriminators {sum(p.numel() for p in discriminator.parameters()) / 1e6:.2f}M from step "
            f"{discriminator_start}"
            if discriminator is not None
            else ", no discriminator"
        )
        + f") on {len(waveforms)} clips: {steps} steps of {batch_size} x {segment_frames} frames."
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        history = _optimise(
            vocoder,
            discriminator,
            waveforms,
            mels,
            steps,
            segment_frames,
            batch_size,
            lr,
            weights,
            discriminator_start,
            seed,
            progress,
        )
    after = evaluate_micro_vocoder(vocoder, eval_audio)
    last = history[-min(50, len(history)) :]
    record = {
        "clips": len(waveforms),
        "held_out_clips": held_out,
        "evaluated_on": "held_out" if held_out else "train",
        "steps": steps,
        "segment_frames": segment_frames,
        "batch_size": batch_size,
        "lr": lr,
        "loss_weights": dataclasses.asdict(weights),
        "adversarial": discriminator is not None,
        "discriminator_start": discriminator_start if discriminator is not None else None,
        "seed": seed,
        "final_train_losses": {key: float(np.mean([h[key] for h in last if key in h])) for key in last[-1]},
        "before": before,
        "after": after,
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(time.process_time() - started_cpu, 1),
    }
    output_dir = Path(output_dir)
    vocoder.save_pretrained(output_dir, safe_serialization=True)
    (output_dir / TRAINING_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    logger.info(
        f"Micro vocoder: held-out log-mel L1 {after['mel_l1']:.3f} (untrained {before['mel_l1']:.3f}), STFT loss "
        f"{after['stft_loss']:.3f} (untrained {before['stft_loss']:.3f}); saved to {output_dir} in "
        f"{record['seconds']:.0f} s ({record['cpu_seconds']:.0f} s of CPU)."
    )
    return output_dir


def main(argv: Sequence[str] | None = None) -> Path:
    """Command line: trains the micro vocoder on a world's `pool` and `captioned` clips."""
    from datasets_scripts.micro_world import WorldConfig, generate_clip

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world-seed", type=int, default=0)
    parser.add_argument("--output", required=True)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--segment-frames", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = WorldConfig(seed=args.world_seed)
    audios = [generate_clip(config, s, i).audio for s in ("pool", "captioned") for i in range(config.split_size(s))]
    return train_micro_vocoder(
        audios,
        args.output,
        steps=args.steps,
        segment_frames=args.segment_frames,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
    )


if __name__ == "__main__":
    main()
