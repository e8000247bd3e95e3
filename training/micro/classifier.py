"""The micro world's evaluation classifier: a small CNN that hears which sound-event classes a clip holds.

It plays the part PANNs plays on AudioSet: trained once on ground-truth labels (never on the test split), then used
to judge generated audio, by the Frechet distance of its penultimate embeddings ([`MicroEventClassifier.embed`]) and
by the set of classes it hears ([`MicroEventClassifier.predict_proba`], one sigmoid per class).

Front end: the Tango log-mel (`front_end.TangoMelSpectrogram`: 16 kHz, hop 160, 64 mel bins, natural log) of the
waveform centred and peak-normalised to 0.5 (`front_end.normalize_waveform`), so that a clip's level does not
matter, then standardised per mel bin with statistics of the training clips (saved with the weights). Audio of any
length works (the network pools over time); clips of at least 0.1 s.

The folder holds `config.json` (sizes and class names) and `model.safetensors`: no pickle.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from training.front_end import HOP_LENGTH, TangoMelSpectrogram, normalize_waveform

logger = logging.getLogger(__name__)

__all__ = ["MicroEventClassifier", "evaluate_micro_classifier", "train_micro_classifier"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# The shortest clip classified: 10 frames, and more than the 512 samples the mel's reflection padding needs.
MIN_SAMPLES = 10 * HOP_LENGTH

# Largest gain (natural log of the magnitude: 0.69 = 6 dB) between the two clips of a training mix, on top of their
# own levels.
_MIX_GAIN = 0.69
# Distinct noise clips the augmentation draws from.
_NOISE_CLIPS = 8

# (audio, class names present)
LabelledClip = tuple[np.ndarray, Sequence[str]]


def _default_classes() -> list[str]:
    from datasets_scripts.micro_world import CLASSES

    return list(CLASSES)


class MicroEventClassifier(nn.Module):
    r"""A small multi-label CNN over Tango log-mels.

    Four blocks of 3x3 convolution, 2x2 average pooling, batch norm and ReLU; the remaining frequency bands are kept
    apart and the time axis is pooled by mean and max (events last from 0.3 s to the whole clip, so both matter); a
    hidden layer gives the embedding and a linear layer one logit per class. About 90k parameters.

    Args:
        classes (`Sequence[str]`, *optional*):
            Class names, in logit order; the micro world's `CLASSES` by default.
        channels (`Sequence[int]`, *optional*, defaults to `(8, 16, 32, 64)`):
            Widths of the convolution blocks.
        embedding_dim (`int`, *optional*, defaults to 128):
            Width of the penultimate layer ([`embed`]'s output).
        num_mel_bins (`int`, *optional*, defaults to 64):
            Mel bins of the front end (Tango's 64).
    """

    def __init__(
        self,
        classes: Sequence[str] | None = None,
        channels: Sequence[int] = (8, 16, 32, 64),
        embedding_dim: int = 128,
        num_mel_bins: int = 64,
    ):
        super().__init__()
        self.config: dict[str, Any] = {
            "classes": list(classes) if classes is not None else _default_classes(),
            "channels": list(channels),
            "embedding_dim": int(embedding_dim),
            "num_mel_bins": int(num_mel_bins),
        }
        if len(set(self.config["classes"])) != len(self.config["classes"]) or not self.config["classes"]:
            raise ValueError(f"classes must be distinct names, got {self.config['classes']}.")
        self.front_end = TangoMelSpectrogram()
        if self.front_end.n_mels != num_mel_bins:
            raise ValueError(f"The Tango front end has {self.front_end.n_mels} mel bins, not {num_mel_bins}.")
        # Per-bin statistics of the training mels (set by `fit_normalisation`), saved with the weights.
        self.register_buffer("mel_mean", torch.zeros(num_mel_bins))
        self.register_buffer("mel_std", torch.ones(num_mel_bins))
        blocks, width = [], 1
        for out in channels:
            # Pooling before the norm and the activation (not after) runs them on a quarter of the values: on a CPU
            # the full-resolution batch norm otherwise costs more than the convolution.
            blocks += [
                nn.Conv2d(width, out, 3, padding=1, bias=False),
                nn.AvgPool2d(2),
                nn.BatchNorm2d(out),
                nn.ReLU(),
            ]
            width = out
        self.blocks = nn.Sequential(*blocks)
        bands = num_mel_bins // 2 ** len(channels)
        if bands < 1:
            raise ValueError(f"{len(channels)} blocks halve {num_mel_bins} mel bins to nothing.")
        self.embedding = nn.Sequential(nn.Linear(2 * width * bands, embedding_dim), nn.ReLU())
        self.head = nn.Linear(embedding_dim, len(self.config["classes"]))

    @property
    def classes(self) -> list[str]:
        """Class names, in the order of [`predict_proba`]'s columns."""
        return list(self.config["classes"])

    # ------------------------------------------------------------------ features

    @torch.no_grad()
    def log_mel(self, waveforms: torch.Tensor) -> torch.Tensor:
        """`(batch, samples)` 16 kHz audio -> `(batch, samples // 160, 64)` log-mels of the peak-normalised audio."""
        return self.front_end(normalize_waveform(waveforms.float()))

    @torch.no_grad()
    def fit_normalisation(self, mels: Sequence[torch.Tensor]) -> None:
        """Sets the per-bin input statistics from `(frames, 64)` training log-mels."""
        frames = torch.cat([mel.reshape(-1, mel.shape[-1]) for mel in mels])
        self.mel_mean.copy_(frames.mean(0))
        self.mel_std.copy_(frames.std(0).clamp(min=1e-3))

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            mel (`torch.Tensor`): `(batch, frames, 64)` log-mels from [`log_mel`], at least 16 frames.

        Returns:
            `tuple[torch.Tensor, torch.Tensor]`: logits `(batch, classes)` and embeddings `(batch, embedding_dim)`.
        """
        hidden = ((mel - self.mel_mean) / self.mel_std)[:, None]
        hidden = self.blocks(hidden)
        # Frequency bands stay apart (a high tone and a low one are different classes); time is pooled away.
        hidden = hidden.permute(0, 1, 3, 2).flatten(1, 2)
        pooled = torch.cat([hidden.mean(dim=2), hidden.amax(dim=2)], dim=1)
        embedding = self.embedding(pooled)
        return self.head(embedding), embedding

    # ------------------------------------------------------------------ inference on audio

    def _batches(self, audio_batch: Any, batch_size: int) -> Iterator[tuple[list[int], torch.Tensor]]:
        """Row indices and `(batch, samples)` tensors of equal-length clips."""
        clips = [torch.as_tensor(np.asarray(a, dtype=np.float32)).reshape(-1) for a in audio_batch]
        by_length: dict[int, list[int]] = {}
        for index, clip in enumerate(clips):
            if clip.numel() < MIN_SAMPLES:
                raise ValueError(f"Clip {index} has {clip.numel()} samples; the classifier needs {MIN_SAMPLES}.")
            by_length.setdefault(clip.numel(), []).append(index)
        device = self.mel_mean.device
        for indices in by_length.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                yield chunk, torch.stack([clips[i] for i in chunk]).to(device)

    @torch.no_grad()
    def _run(self, audio_batch: Any, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        if len(audio_batch) == 0:
            raise ValueError("No audio given.")
        was_training = self.training
        self.eval()
        logits = np.zeros((len(audio_batch), len(self.classes)), dtype=np.float32)
        embeddings = np.zeros((len(audio_batch), self.config["embedding_dim"]), dtype=np.float32)
        for indices, waveforms in self._batches(audio_batch, batch_size):
            batch_logits, batch_embeddings = self(self.log_mel(waveforms))
            logits[indices] = batch_logits.float().cpu().numpy()
            embeddings[indices] = batch_embeddings.float().cpu().numpy()
        self.train(was_training)
        return logits, embeddings

    def embed(self, audio_batch: Sequence[np.ndarray] | np.ndarray | torch.Tensor, batch_size: int = 64) -> np.ndarray:
        r"""Penultimate embeddings, for a Frechet distance.

        Args:
            audio_batch (`Sequence[np.ndarray]`, `np.ndarray` or `torch.Tensor`):
                16 kHz mono clips: a list (any lengths) or a `(N, samples)` array.
            batch_size (`int`, *optional*, defaults to 64):
                Clips per forward pass.

        Returns:
            `np.ndarray`: float32 `(N, embedding_dim)`.
        """
        return self._run(audio_batch, batch_size)[1]

    def predict_proba(
        self, audio_batch: Sequence[np.ndarray] | np.ndarray | torch.Tensor, batch_size: int = 64
    ) -> np.ndarray:
        r"""Probability that each class is present.

        Args:
            audio_batch (`Sequence[np.ndarray]`, `np.ndarray` or `torch.Tensor`):
                16 kHz mono clips: a list (any lengths) or a `(N, samples)` array.
            batch_size (`int`, *optional*, defaults to 64):
                Clips per forward pass.

        Returns:
            `np.ndarray`: float32 `(N, len(classes))`, columns in [`classes`] order.
        """
        return 1.0 / (1.0 + np.exp(-self._run(audio_batch, batch_size)[0]))

    def predict_classes(self, audio_batch: Any, threshold: float = 0.5) -> list[set[str]]:
        """The set of classes heard in each clip (probability >= `threshold`)."""
        probabilities = self.predict_proba(audio_batch)
        return [{self.classes[i] for i in np.flatnonzero(p >= threshold)} for p in probabilities]

    # ------------------------------------------------------------------ saving

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Writes `config.json` and `model.safetensors` into `folder` (created if needed); returns the folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in self.state_dict().items()}
        save_file(state, folder / WEIGHTS_NAME, metadata={"format": "pt"})
        (folder / CONFIG_NAME).write_text(json.dumps(self.config, indent=2) + "\n")
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, device: str | torch.device = "cpu") -> MicroEventClassifier:
        """Loads a folder written by [`save_pretrained`] (strictly: every weight must be there), in eval mode."""
        folder = Path(folder)
        config = json.loads((folder / CONFIG_NAME).read_text())
        model = cls(**config)
        model.load_state_dict(load_file(folder / WEIGHTS_NAME, device=str(device)), strict=True)
        return model.to(device).eval()


# ---------------------------------------------------------------------------------------------------- training


def _targets(labels: Sequence[Sequence[str]], classes: Sequence[str]) -> torch.Tensor:
    index = {name: i for i, name in enumerate(classes)}
    targets = torch.zeros(len(labels), len(classes))
    for row, names in enumerate(labels):
        unknown = [name for name in names if name not in index]
        if unknown:
            raise ValueError(f"Clip {row} has classes {unknown} the classifier does not know ({list(classes)}).")
        targets[row, [index[name] for name in names]] = 1.0
    return targets


def _clip_mels(model: MicroEventClassifier, audios: Sequence[np.ndarray], batch_size: int = 64) -> list[torch.Tensor]:
    mels: list[torch.Tensor] = [torch.empty(0)] * len(audios)
    for indices, waveforms in model._batches(audios, batch_size):
        for index, mel in zip(indices, model.log_mel(waveforms)):
            mels[index] = mel
    return mels


def _log_peaks(audios: Sequence[np.ndarray]) -> torch.Tensor:
    """`log(peak / 0.5)` of each centred clip: what `normalize_waveform` took off its log-mel."""
    peaks = [np.abs(np.asarray(a, dtype=np.float64) - np.mean(a)).max() for a in audios]
    return torch.tensor(np.log((np.asarray(peaks) + 1e-8) / 0.5), dtype=torch.float32)


def _noise_mels(front_end: TangoMelSpectrogram, frames: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """Log-mels of `count` clips of white noise of RMS 1, `frames` long: the noise the augmentation adds."""
    noise = torch.randn(count, frames * HOP_LENGTH, generator=generator)
    return front_end(noise, frames)


def _augmented_batch(
    mels: Sequence[torch.Tensor],
    log_peaks: torch.Tensor,
    targets: torch.Tensor,
    indices: list[int],
    mix_probability: float,
    generator: torch.Generator,
    noise: tuple[float, torch.Tensor, tuple[float, float]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of mels, each rolled in time by a random offset (an event may sound anywhere), some mixed with another
    clip of the same length at a random gain of up to +-6 dB from the two clips' own levels, their labels joined, and
    some with white noise added.

    The mix is made on the mels: magnitudes of sounds that do not share time-frequency cells add, so
    `logaddexp` of the two clips' un-normalised log-mels, less the louder one's peak (the mixture's peak
    normalisation, approximately), is close to the log-mel of the summed waveforms, at no STFT cost. Noise is added
    the same way: `noise` is `(probability, noise log-mels of RMS 1, (lowest, highest) RMS)`, the RMS drawn
    log-uniformly and relative to the clip's peak of 0.5.
    """
    frames = mels[indices[0]].shape[0]
    same_length = [i for i in range(len(mels)) if mels[i].shape[0] == frames]
    batch, batch_targets = [], []
    for index in indices:
        mel = torch.roll(mels[index], int(torch.randint(frames, (1,), generator=generator)), dims=0)
        target = targets[index]
        if float(torch.rand((), generator=generator)) < mix_probability and len(same_length) > 1:
            other = same_length[int(torch.randint(len(same_length), (1,), generator=generator))]
            other_mel = torch.roll(mels[other], int(torch.randint(frames, (1,), generator=generator)), dims=0)
            gain = float(torch.empty(()).uniform_(-_MIX_GAIN, _MIX_GAIN, generator=generator))
            mel = torch.logaddexp(mel + log_peaks[index], other_mel + log_peaks[other] + gain)
            mel = mel - torch.maximum(log_peaks[index], log_peaks[other] + gain)
            target = torch.maximum(target, targets[other])
        if noise is not None and float(torch.rand((), generator=generator)) < noise[0]:
            probability, noise_mels, (lowest, highest) = noise
            level = float(torch.empty(()).uniform_(math.log(lowest), math.log(highest), generator=generator))
            pick = noise_mels[int(torch.randint(len(noise_mels), (1,), generator=generator))]
            mel = torch.logaddexp(mel, pick[: mel.shape[0]] + level)
        batch.append(mel)
        batch_targets.append(target)
    return torch.stack(batch), torch.stack(batch_targets)


def _length_batches(mels: Sequence[torch.Tensor], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """One epoch's batches in random order; a batch only holds clips of one length."""
    by_length: dict[int, list[int]] = {}
    for index in torch.randperm(len(mels), generator=generator).tolist():
        by_length.setdefault(mels[index].shape[0], []).append(index)
    batches = [group[i : i + batch_size] for group in by_length.values() for i in range(0, len(group), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def train_micro_classifier(
    clips: Sequence[LabelledClip],
    output_dir: str | os.PathLike,
    *,
    epochs: int = 15,
    batch_size: int = 32,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    mix_probability: float = 0.5,
    noise_probability: float = 0.5,
    noise_levels: tuple[float, float] = (1e-3, 3e-2),
    seed: int = 0,
    classes: Sequence[str] | None = None,
    model_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
) -> Path:
    r"""Trains a [`MicroEventClassifier`] on ground-truth labels of real audio and saves it.

    Log-mels are computed once; each step augments them as ordinary audio augmentation does, on the mels: a random
    time shift (a roll) of each clip, mixes of some clips with others at a random relative gain (`mix_probability`,
    labels joined), and white noise added to some (`noise_probability`), so that a level of background noise a
    vocoder or a generator adds does not change what the classifier hears. Binary cross-entropy per class; AdamW with
    a one-cycle schedule.

    Args:
        clips (`Sequence[tuple[np.ndarray, Sequence[str]]]`):
            `(16 kHz audio, names of the classes present)` pairs, e.g. `(clip.audio, clip.classes)`.
        output_dir (`str` or `os.PathLike`):
            The folder to save the classifier in.
        epochs (`int`, *optional*, defaults to 15):
            Passes over the clips.
        batch_size (`int`, *optional*, defaults to 32):
            Clips per step.
        lr (`float`, *optional*, defaults to 2e-3):
            Peak learning rate.
        weight_decay (`float`, *optional*, defaults to 1e-4):
            AdamW weight decay.
        mix_probability (`float`, *optional*, defaults to 0.5):
            Chance that a training clip is mixed with another (labels joined), which teaches the classifier to hear
            a quiet event under a loud one.
        noise_probability (`float`, *optional*, defaults to 0.5):
            Chance that white noise is added to a training clip.
        noise_levels (`tuple[float, float]`, *optional*, defaults to `(1e-3, 3e-2)`):
            Lowest and highest RMS of that noise (drawn log-uniformly), against the clip's peak of 0.5: from the
            micro world's own noise floor to 24 dB above it.
        seed (`int`, *optional*, defaults to 0):
            Seeds the initial weights, the batch order and the time shifts: the same seed and clips give the same
            weights.
        classes (`Sequence[str]`, *optional*):
            The label set; the micro world's `CLASSES` by default.
        model_kwargs (`dict[str, Any]`, *optional*):
            Size arguments of [`MicroEventClassifier`].
        progress (`bool`, *optional*, defaults to `True`):
            Show a tqdm progress bar.

    Returns:
        `Path`: the saved folder, loadable with [`MicroEventClassifier.from_pretrained`].
    """
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}.")
    for name, value in (("mix_probability", mix_probability), ("noise_probability", noise_probability)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {value!r}.")
    if len(noise_levels) != 2 or not 0 < noise_levels[0] <= noise_levels[1]:
        raise ValueError(
            f"noise_levels must be (lowest, highest) RMS with 0 < lowest <= highest, got {noise_levels!r}."
        )
    if not len(clips):
        raise ValueError("No clips to train the classifier on.")
    started, started_cpu = time.perf_counter(), time.process_time()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MicroEventClassifier(classes=classes, **(model_kwargs or {}))
    targets = _targets([names for _, names in clips], model.classes)
    audios = [audio for audio, _ in clips]
    mels = _clip_mels(model, audios)
    log_peaks = _log_peaks(audios)
    model.fit_normalisation(mels)
    generator = torch.Generator().manual_seed(seed)
    noise = None
    if noise_probability > 0:
        with torch.no_grad():
            noise_mels = _noise_mels(model.front_end, max(m.shape[0] for m in mels), _NOISE_CLIPS, generator)
        noise = (noise_probability, noise_mels, tuple(noise_levels))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = len(_length_batches(mels, batch_size, torch.Generator().manual_seed(seed)))
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.1, anneal_strategy="cos"
    )
    logger.info(
        f"Training a micro event classifier ({sum(p.numel() for p in model.parameters()) / 1e3:.0f}k parameters) on "
        f"{len(clips)} clips: {epochs} epochs of {steps_per_epoch} steps."
    )
    model.train()
    bar = tqdm(range(epochs), desc="micro classifier", disable=not progress)
    for epoch in bar:
        total, count = 0.0, 0
        for batch in _length_batches(mels, batch_size, generator):
            mel, target = _augmented_batch(mels, log_peaks, targets, batch, mix_probability, generator, noise)
            logits, _ = model(mel)
            loss = F.binary_cross_entropy_with_logits(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total, count = total + float(loss.detach()) * len(batch), count + len(batch)
        bar.set_postfix(bce=f"{total / count:.4f}")
        logger.info(f"epoch {epoch}: BCE {total / count:.4f}")
    model.eval()
    folder = model.save_pretrained(output_dir)
    logger.info(
        f"Saved the micro event classifier to {folder} ({time.perf_counter() - started:.0f} s, "
        f"{time.process_time() - started_cpu:.0f} s of CPU)."
    )
    return folder


def evaluate_micro_classifier(
    folder: str | os.PathLike | MicroEventClassifier, clips: Sequence[LabelledClip], threshold: float = 0.5
) -> dict[str, Any]:
    r"""How well a classifier hears the classes of labelled clips.

    Args:
        folder (`str`, `os.PathLike` or [`MicroEventClassifier`]):
            A saved classifier (or the model itself).
        clips (`Sequence[tuple[np.ndarray, Sequence[str]]]`):
            `(16 kHz audio, names of the classes present)` pairs.
        threshold (`float`, *optional*, defaults to 0.5):
            A class is heard when its probability reaches this.

    Returns:
        `dict[str, Any]`: `clips`; `exact_set_accuracy` (the heard set is exactly the true set); `mean_accuracy`
        (per-class presence accuracy, averaged over classes); `per_class_accuracy` (`{class: accuracy}`); and
        `mean_recall` (true classes heard, averaged over clips).
    """
    model = folder if isinstance(folder, MicroEventClassifier) else MicroEventClassifier.from_pretrained(folder)
    if not len(clips):
        raise ValueError("No clips to evaluate on.")
    targets = _targets([names for _, names in clips], model.classes).numpy().astype(bool)
    heard = model.predict_proba([audio for audio, _ in clips]) >= threshold
    per_class = (heard == targets).mean(axis=0)
    recall = [(h & t).sum() / t.sum() for h, t in zip(heard, targets) if t.any()]
    return {
        "clips": len(clips),
        "exact_set_accuracy": float((heard == targets).all(axis=1).mean()),
        "mean_accuracy": float(per_class.mean()),
        "per_class_accuracy": {name: float(a) for name, a in zip(model.classes, per_class)},
        "mean_recall": float(np.mean(recall)) if recall else float("nan"),
    }
