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
import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

from training.front_end import HOP_LENGTH, SAMPLING_RATE, TangoMelSpectrogram, prepare_waveform

logger = logging.getLogger(__name__)

__all__ = [
    "STFT_RESOLUTIONS",
    "TRAINING_RECORD",
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
# Weight of the L1 between the output's and the target's mean over each segment. Neither spectral loss sees an
# offset (the mel filters ignore 0 Hz, the STFT's 0 Hz bin is one of hundreds), and without this term the vocoder
# drifts one in as a cheap stand-in for low-frequency energy.
_DC_WEIGHT = 10.0
# Gradient clipping only against rare spikes (a fresh vocoder's first steps); tighter clipping slows training.
_MAX_GRAD_NORM = 10.0


def build_micro_vocoder(
    upsample_initial_channel: int = 128,
    upsample_rates: Sequence[int] = (8, 5, 4),
    upsample_kernel_sizes: Sequence[int] = (16, 11, 8),
    resblock_kernel_sizes: Sequence[int] = (3, 7),
    resblock_dilation_sizes: Sequence[Sequence[int]] = ((1, 3, 5), (1, 3, 5)),
    mel_mean: torch.Tensor | None = None,
    mel_std: torch.Tensor | None = None,
    seed: int | None = 0,
) -> SpeechT5HifiGan:
    r"""A tiny 16 kHz, 64-mel HiFi-GAN (randomly initialised).

    Args:
        upsample_initial_channel (`int`, *optional*, defaults to 128):
            Channels after the input convolution; halved by each upsampling stage (64, 32, 16).
        upsample_rates (`Sequence[int]`, *optional*, defaults to `(8, 5, 4)`):
            Upsampling factors; their product must be 160, the Tango mel hop.
        upsample_kernel_sizes (`Sequence[int]`, *optional*, defaults to `(16, 11, 8)`):
            Transposed-convolution kernels; `kernel - rate` must be even so that each stage upsamples exactly.
        resblock_kernel_sizes (`Sequence[int]`, *optional*, defaults to `(3, 7)`):
            Kernels of the multi-receptive-field residual blocks (HiFi-GAN v1 has a third, 11, which costs a CPU
            more than twice the channels do).
        resblock_dilation_sizes (`Sequence[Sequence[int]]`, *optional*, defaults to two `(1, 3, 5)`):
            Dilations of each residual block.
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
    the alignment a HiFi-GAN fed that clip's mel produces."""
    mel_segments, audio_segments = [], []
    for index in indices:
        start = int(torch.randint(0, mels[index].shape[0] - segment_frames + 1, (1,), generator=generator))
        mel_segments.append(mels[index][start : start + segment_frames])
        audio_segments.append(waveforms[index][start * HOP_LENGTH : (start + segment_frames) * HOP_LENGTH])
    return torch.stack(mel_segments), torch.stack(audio_segments)


def _learning_rate(step: int, steps: int, lr: float, warmup: int) -> float:
    # A short linear warm-up then cosine decay to 10%.
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _vocoder_loss(
    vocoder: SpeechT5HifiGan, front_end: TangoMelSpectrogram, mel: torch.Tensor, audio: torch.Tensor, mel_weight: float
) -> tuple[torch.Tensor, dict[str, float]]:
    predicted = vocoder(mel)
    stft = multi_resolution_stft_loss(predicted, audio)
    frames = audio.shape[-1] // HOP_LENGTH
    mel_l1 = (front_end(predicted, frames) - front_end(audio, frames)).abs().mean()
    offset = (predicted.mean(dim=-1) - audio.mean(dim=-1)).abs().mean()
    loss = stft + mel_weight * mel_l1 + _DC_WEIGHT * offset
    return loss, {"stft": float(stft.detach()), "mel_l1": float(mel_l1.detach()), "offset": float(offset.detach())}


def _optimise(
    vocoder: SpeechT5HifiGan,
    waveforms: Sequence[torch.Tensor],
    mels: Sequence[torch.Tensor],
    steps: int,
    segment_frames: int,
    batch_size: int,
    lr: float,
    mel_weight: float,
    seed: int,
    progress: bool,
) -> list[dict[str, float]]:
    generator = torch.Generator().manual_seed(seed)
    front_end = TangoMelSpectrogram()
    optimizer = torch.optim.AdamW(vocoder.parameters(), lr=lr, betas=(0.8, 0.99), weight_decay=0.0)
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
        loss, parts = _vocoder_loss(vocoder, front_end, mel, audio, mel_weight)
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(step, steps, lr, warmup)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(vocoder.parameters(), _MAX_GRAD_NORM)
        optimizer.step()
        history.append(parts)
        bar.set_postfix(stft=f"{parts['stft']:.3f}", mel=f"{parts['mel_l1']:.3f}")
        if step % 100 == 0 or step == steps - 1:
            logger.info(
                f"step {step}: STFT loss {parts['stft']:.4f}, log-mel L1 {parts['mel_l1']:.4f}, "
                f"gradient norm {float(grad_norm):.2f}"
            )
    vocoder.eval()
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
    if values["mel_weight"] < 0:
        raise ValueError(f"mel_weight must be >= 0, got {values['mel_weight']!r}.")
    if not 0 <= values["eval_fraction"] < 1:
        raise ValueError(f"eval_fraction must be in [0, 1), got {values['eval_fraction']!r}.")


def train_micro_vocoder(
    clips_audio: Sequence[np.ndarray | torch.Tensor],
    output_dir: str | Path,
    *,
    steps: int = 800,
    segment_frames: int = 16,
    batch_size: int = 16,
    lr: float = 2e-3,
    mel_weight: float = 1.0,
    seed: int = 0,
    eval_fraction: float = 0.05,
    vocoder: SpeechT5HifiGan | None = None,
    model_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
) -> Path:
    r"""Trains a micro vocoder on 16 kHz clips and saves it with `save_pretrained` (safetensors).

    Clips are prepared as the training script prepares them (peak 0.5) and their Tango log-mels computed once. Each
    step draws `batch_size` random aligned segments of `segment_frames` frames; the loss is
    [`multi_resolution_stft_loss`] plus `mel_weight` times the L1 between the Tango log-mels of the output and of
    the real segment. AdamW (HiFi-GAN's betas 0.8, 0.99), short warm-up, cosine decay. Held-out clips are
    resynthesised before and after training ([`evaluate_micro_vocoder`]); the numbers are logged and written to
    `micro_training.json` in the folder.

    Args:
        clips_audio (`Sequence[np.ndarray | torch.Tensor]`):
            Mono 16 kHz waveforms (e.g. the world's `MicroClip.audio`).
        output_dir (`str` or `Path`):
            The folder to save the vocoder in.
        steps (`int`, *optional*, defaults to 800):
            Optimiser steps.
        segment_frames (`int`, *optional*, defaults to 16):
            Mel frames per training segment (16 = 0.16 s).
        batch_size (`int`, *optional*, defaults to 16):
            Segments per step (16 short segments from 16 clips train faster than 8 twice as long).
        lr (`float`, *optional*, defaults to 2e-3):
            Peak learning rate.
        mel_weight (`float`, *optional*, defaults to 1.0):
            Weight of the log-mel L1 loss.
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
        mel_weight=mel_weight,
        eval_fraction=eval_fraction,
    )
    if not len(clips_audio):
        raise ValueError("No clips to train the vocoder on.")
    started = time.perf_counter()
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
    before = evaluate_micro_vocoder(vocoder, eval_audio)
    logger.info(
        f"Training a micro vocoder ({sum(p.numel() for p in vocoder.parameters()) / 1e6:.2f}M parameters) on "
        f"{len(waveforms)} clips: {steps} steps of {batch_size} x {segment_frames} frames."
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        history = _optimise(
            vocoder, waveforms, mels, steps, segment_frames, batch_size, lr, mel_weight, seed, progress
        )
    after = evaluate_micro_vocoder(vocoder, eval_audio)
    record = {
        "clips": len(waveforms),
        "held_out_clips": held_out,
        "evaluated_on": "held_out" if held_out else "train",
        "steps": steps,
        "segment_frames": segment_frames,
        "batch_size": batch_size,
        "lr": lr,
        "mel_weight": mel_weight,
        "seed": seed,
        "final_train_stft_loss": float(np.mean([h["stft"] for h in history[-20:]])),
        "before": before,
        "after": after,
        "seconds": round(time.perf_counter() - started, 1),
    }
    output_dir = Path(output_dir)
    vocoder.save_pretrained(output_dir, safe_serialization=True)
    (output_dir / TRAINING_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    logger.info(
        f"Micro vocoder: held-out STFT loss {after['stft_loss']:.3f} (untrained {before['stft_loss']:.3f}), log-mel "
        f"L1 {after['mel_l1']:.3f} (untrained {before['mel_l1']:.3f}); saved to {output_dir} in "
        f"{record['seconds']:.0f} s."
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
