"""HiFi-GAN's training-only half at micro scale: the discriminators the micro vocoder is trained against, and the
least-squares GAN and feature-matching losses.

Two families judge a waveform, as in BigVGAN (Lee et al., 2023):

- [`PeriodDiscriminator`] (HiFi-GAN's multi-period discriminator, Kong et al., 2020, section 2.2): the waveform is
  folded into `(samples / p, p)` so that 2D convolutions with `(k, 1)` kernels look at every `p`-th sample; with
  periods 2, 3, 5, 7, 11 the discriminators see the periodic structure of tones and hums.
- [`ResolutionDiscriminator`] (UnivNet's multi-resolution discriminator, Jang et al., 2021): 2D convolutions on a
  linear-magnitude spectrogram at one STFT resolution; several resolutions see both onsets and fine spectra.

Every convolution is weight-normalised (HiFi-GAN), LeakyReLU 0.1 between layers. A discriminator returns its logits
(one per position, not pooled) and every intermediate activation, which [`feature_matching_loss`] compares between
real and generated audio. The losses are HiFi-GAN's (its equations 1-3 and 6): least squares, summed over the
sub-discriminators, feature matching as the L1 between activations averaged per layer and summed over layers.

Channel widths are a small fraction of HiFi-GAN's (32-1024 per layer there): on a CPU the discriminators cost as much
as the generator per step, and the micro world's 13 synthetic classes need far less capacity than speech. None of
this is saved with the vocoder: `TangoCLAPPipeline` loads the generator alone, a plain `SpeechT5HifiGan`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = [
    "MicroHifiGanDiscriminator",
    "PeriodDiscriminator",
    "ResolutionDiscriminator",
    "discriminator_loss",
    "feature_matching_loss",
    "generator_adversarial_loss",
]

# HiFi-GAN's and UnivNet's slope.
_LEAKY_RELU_SLOPE = 0.1

DiscriminatorOutput = tuple[list[torch.Tensor], list[list[torch.Tensor]]]


def _convolve(
    convs: nn.ModuleList, conv_post: nn.Module, hidden: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A sub-discriminator's stack (leaky ReLU after each convolution but the last): its flattened logits and every
    layer's output, which feature matching compares."""
    features = []
    for conv in convs:
        hidden = nn.functional.leaky_relu(conv(hidden), _LEAKY_RELU_SLOPE)
        features.append(hidden)
    hidden = conv_post(hidden)
    features.append(hidden)
    return hidden.flatten(1), features


class PeriodDiscriminator(nn.Module):
    r"""One sub-discriminator of HiFi-GAN's multi-period discriminator.

    Args:
        period (`int`):
            The waveform is folded into rows of `period` samples; the convolutions run down the columns.
        channels (`Sequence[int]`, *optional*, defaults to `(8, 16, 32, 32)`):
            Widths of the strided layers (HiFi-GAN: 32, 128, 512, 1024), each followed by a stride-1 layer of the
            last width and the one-channel output layer.
        kernel_size (`int`, *optional*, defaults to 5):
            Kernel length along the folded time axis (HiFi-GAN's 5).
        stride (`int`, *optional*, defaults to 3):
            Stride of the strided layers (HiFi-GAN's 3).
    """

    def __init__(self, period: int, channels: Sequence[int] = (8, 16, 32, 32), kernel_size: int = 5, stride: int = 3):
        super().__init__()
        if period < 1:
            raise ValueError(f"period must be positive, got {period}.")
        self.period = period
        padding = ((kernel_size - 1) // 2, 0)
        widths = [1, *channels]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(widths[i], widths[i + 1], (kernel_size, 1), (stride, 1), padding=padding))
            for i in range(len(channels))
        )
        self.convs.append(weight_norm(nn.Conv2d(widths[-1], widths[-1], (kernel_size, 1), 1, padding=padding)))
        self.conv_post = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        batch, samples = waveform.shape
        if samples % self.period:
            # Reflection padding up to whole rows (HiFi-GAN's).
            waveform = nn.functional.pad(waveform[:, None], (0, self.period - samples % self.period), "reflect")[:, 0]
        hidden = waveform.reshape(batch, 1, -1, self.period)
        return _convolve(self.convs, self.conv_post, hidden)


class ResolutionDiscriminator(nn.Module):
    r"""One sub-discriminator of UnivNet's multi-resolution discriminator: 2D convolutions over the linear magnitude
    spectrogram (time x frequency) at one STFT resolution.

    Args:
        n_fft (`int`):
            FFT size (and Hann window length).
        hop_length (`int`):
            STFT hop.
        channels (`int`, *optional*, defaults to 16):
            Width of every layer (UnivNet: 32).
        num_layers (`int`, *optional*, defaults to 4):
            Convolutions before the output layer, each halving the frequency axis (UnivNet keeps the first layer at
            full resolution; here it is strided too, which halves the discriminator's cost on a CPU).
    """

    def __init__(self, n_fft: int, hop_length: int, channels: int = 16, num_layers: int = 4):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be positive, got {num_layers}.")
        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        widths = [1] + [channels] * num_layers
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(widths[i], widths[i + 1], (3, 9), (1, 2), padding=(1, 4))) for i in range(num_layers)
        )
        self.conv_post = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spectrum = torch.stft(
            waveform, self.n_fft, self.hop_length, window=self.window, center=True, return_complex=True
        )
        # (batch, 1, frames, bins); UnivNet takes the plain magnitude, its gradient kept finite at 0 by the floor.
        hidden = spectrum.abs().clamp(min=1e-7).transpose(1, 2)[:, None]
        return _convolve(self.convs, self.conv_post, hidden)


class MicroHifiGanDiscriminator(nn.Module):
    r"""Every sub-discriminator the micro vocoder is trained against: multi-period plus multi-resolution.

    Args:
        periods (`Sequence[int]`, *optional*, defaults to `(2, 3, 5, 7, 11)`):
            HiFi-GAN's periods (primes, so that the sub-discriminators overlap as little as possible).
        period_channels (`Sequence[int]`, *optional*, defaults to `(8, 16, 32, 32)`):
            Widths of each [`PeriodDiscriminator`].
        resolutions (`Sequence[tuple[int, int]]`, *optional*, defaults to `((128, 32), (256, 64), (512, 128))`):
            `(n_fft, hop_length)` of each [`ResolutionDiscriminator`] (empty: none). The default spans 8 ms to
            32 ms windows at 16 kHz, the spans the micro vocoder's STFT loss uses.
        resolution_channels (`int`, *optional*, defaults to 16):
            Width of each [`ResolutionDiscriminator`].
    """

    def __init__(
        self,
        periods: Sequence[int] = (2, 3, 5, 7, 11),
        period_channels: Sequence[int] = (8, 16, 32, 32),
        resolutions: Sequence[tuple[int, int]] = ((128, 32), (256, 64), (512, 128)),
        resolution_channels: int = 16,
    ):
        super().__init__()
        if not periods and not resolutions:
            raise ValueError("A discriminator needs at least one period or one resolution.")
        self.discriminators = nn.ModuleList(
            [PeriodDiscriminator(p, period_channels) for p in periods]
            + [ResolutionDiscriminator(n_fft, hop, resolution_channels) for n_fft, hop in resolutions]
        )

    def forward(self, waveform: torch.Tensor) -> DiscriminatorOutput:
        r"""
        Args:
            waveform (`torch.Tensor`): `(batch, samples)` audio.

        Returns:
            `tuple[list[torch.Tensor], list[list[torch.Tensor]]]`: each sub-discriminator's `(batch, positions)`
            logits, and its activations layer by layer.
        """
        if waveform.dim() != 2:
            raise ValueError(f"Expected (batch, samples) audio, got shape {tuple(waveform.shape)}.")
        logits, features = [], []
        for discriminator in self.discriminators:
            scores, activations = discriminator(waveform)
            logits.append(scores)
            features.append(activations)
        return logits, features


def discriminator_loss(real_logits: Sequence[torch.Tensor], fake_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    r"""Least-squares GAN loss of the discriminators (HiFi-GAN eq. 1): `(D(x) - 1)^2 + D(G(s))^2`, averaged over
    positions and summed over sub-discriminators.

    Args:
        real_logits, fake_logits (`Sequence[torch.Tensor]`): one tensor per sub-discriminator, on real and on generated
            audio (detached from the generator).

    Returns:
        `torch.Tensor`: a scalar.
    """
    return sum(((real - 1) ** 2).mean() + (fake**2).mean() for real, fake in zip(real_logits, fake_logits))


def generator_adversarial_loss(fake_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    r"""Least-squares GAN loss of the generator (HiFi-GAN eq. 2): `(D(G(s)) - 1)^2`, averaged over positions and
    summed over sub-discriminators.

    Args:
        fake_logits (`Sequence[torch.Tensor]`): one tensor per sub-discriminator, on generated audio.

    Returns:
        `torch.Tensor`: a scalar.
    """
    return sum(((fake - 1) ** 2).mean() for fake in fake_logits)


def feature_matching_loss(
    real_features: Sequence[Sequence[torch.Tensor]], fake_features: Sequence[Sequence[torch.Tensor]]
) -> torch.Tensor:
    r"""HiFi-GAN's feature-matching loss (eq. 3): the L1 between the discriminators' activations on real and on
    generated audio, averaged within each layer and summed over layers and sub-discriminators.

    Args:
        real_features, fake_features (`Sequence[Sequence[torch.Tensor]]`): per sub-discriminator, per layer. The real
            activations are treated as constants.

    Returns:
        `torch.Tensor`: a scalar.
    """
    return sum(
        (real.detach() - fake).abs().mean()
        for real_layers, fake_layers in zip(real_features, fake_features)
        for real, fake in zip(real_layers, fake_layers)
    )
