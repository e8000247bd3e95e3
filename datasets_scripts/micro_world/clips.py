"""The micro world's clips: configuration, seeding, ground-truth labels, and rendering labels into audio.

A clip is a pure function of `(config, split, index)`. Three independent random streams are spawned from
`np.random.SeedSequence([config.seed, split_key(split), index])`: one draws the labels (classes, attributes, times),
one the caption's wording, one the audio's hidden parameters. So the labels and caption of any clip are cheap to
recompute without synthesising its audio, and any clip can be regenerated alone.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np

from .captions import caption_for
from .synthesis import CLASS_ATTRIBUTES, CLASSES, LOUDNESS_PEAKS, synthesize_event

# One UNet latent frame of the TangoCLAP pipeline is 0.32 s (32 mel frames of hop 160 at 16 kHz); 8 of them.
CLIP_SECONDS = 2.56
SAMPLING_RATE = 16000
SPLITS = ("pool", "captioned", "test")
# The mixture is scaled down to this peak when two loud overlapping events would exceed it.
MAX_PEAK = 0.95


@dataclass(frozen=True)
class WorldConfig:
    """
    Everything a micro world depends on.

    Args:
        seed (`int`, *optional*, defaults to 0):
            The world's seed; every clip's randomness is derived from it, the split and the clip index.
        clip_seconds (`float`, *optional*, defaults to `CLIP_SECONDS`):
            Length of every clip.
        sampling_rate (`int`, *optional*, defaults to 16000):
            Samples per second; at least 16000, since the highest sounds reach 6 kHz.
        split_sizes (`dict[str, int]`, *optional*, defaults to `{"pool": 600, "captioned": 150, "test": 100}`):
            Number of clips in each split.
        two_event_probability (`float`, *optional*, defaults to 0.4):
            Probability that a clip holds two events rather than one.
        then_probability (`float`, *optional*, defaults to 0.5):
            Probability that two events are sequential ("then") rather than simultaneous ("while").
        noise_floor (`float`, *optional*, defaults to 0.002):
            RMS of the white background noise added to every clip.
        wav_subtype (`str`, *optional*, defaults to `"PCM_16"`):
            soundfile subtype of the written WAV files (`"FLOAT"` keeps the generated samples exactly).
        held_out_pairs (`int`, *optional*, defaults to 0):
            Number of unordered class pairs (of the 78) that the `captioned` distribution never holds, drawn from the
            seed: the combinations AudioSet has and AudioCaps lacks. With it, `pool` clips are drawn as always (all
            pairs), `captioned` clips (and the labelled clips extending that split) redraw a held-out pair, and odd
            `test` clips are drawn from the held-out pairs, so that about half the test prompts combine classes
            that only the pool (and so only synthetic captions) ever pairs. 0 keeps every split's clips as before.
    """

    seed: int = 0
    clip_seconds: float = CLIP_SECONDS
    sampling_rate: int = SAMPLING_RATE
    split_sizes: dict[str, int] = field(default_factory=lambda: {"pool": 600, "captioned": 150, "test": 100})
    two_event_probability: float = 0.4
    then_probability: float = 0.5
    noise_floor: float = 0.002
    wav_subtype: str = "PCM_16"
    held_out_pairs: int = 0

    def __post_init__(self):
        if self.sampling_rate < 16000:
            raise ValueError(f"`sampling_rate` must be at least 16000, got {self.sampling_rate}.")
        if self.clip_seconds < 0.5:
            raise ValueError(f"`clip_seconds` must be at least 0.5, got {self.clip_seconds}.")
        for name in ("two_event_probability", "then_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"`{name}` must be in [0, 1], got {getattr(self, name)}.")
        unknown = set(self.split_sizes) - set(SPLITS)
        if unknown or any(size < 0 for size in self.split_sizes.values()):
            raise ValueError(f"`split_sizes` takes non-negative sizes of {SPLITS}, got {self.split_sizes}.")
        if not 0 <= self.held_out_pairs < len(class_pairs()):
            raise ValueError(f"`held_out_pairs` must be in [0, {len(class_pairs())}), got {self.held_out_pairs}.")

    @property
    def num_samples(self) -> int:
        """Samples per clip."""
        return round(self.clip_seconds * self.sampling_rate)

    def split_size(self, split: str) -> int:
        """Number of clips in `split` (0 for a split not in `split_sizes`)."""
        check_split(split)
        return int(self.split_sizes.get(split, 0))

    @cached_property
    def held_out(self) -> frozenset[frozenset[str]]:
        """The class pairs the `captioned` distribution never holds (see `held_out_pairs`), a pure function of the
        seed and their number."""
        pairs = class_pairs()
        rng = np.random.default_rng([self.seed, split_key("held-out-pairs")])
        chosen = rng.choice(len(pairs), size=self.held_out_pairs, replace=False)
        return frozenset(frozenset(pairs[i]) for i in sorted(chosen))

    def label_policy(self, split: str, index: int) -> LabelPolicy:
        """Which class combinations clip `index` of `split` may hold: `"all"`, `"seen"` (no held-out pair) or
        `"unseen"` (a held-out pair)."""
        check_split(split)
        if not self.held_out_pairs or split == "pool":
            return "all"
        if split == "test" and index % 2 == 1:
            return "unseen"
        return "seen"


# "all": any combination; "seen": never a held-out pair; "unseen": always a held-out pair.
LabelPolicy = Literal["all", "seen", "unseen"]


def class_pairs() -> list[tuple[str, str]]:
    """Every unordered pair of distinct classes, in `CLASSES` order."""
    return list(itertools.combinations(CLASSES, 2))


def combination(classes: list[str] | tuple[str, ...]) -> frozenset[str]:
    """A clip's class combination: the set of its classes, whatever their order or relation."""
    return frozenset(classes)


@dataclass
class MicroClip:
    """
    One generated clip.

    Args:
        clip_id (`str`):
            `"<split>-<index:05d>"`, e.g. `"pool-00042"`; also the stem of its WAV file.
        audio (`np.ndarray`):
            Mono float32 waveform of `config.num_samples` samples, peak at most `MAX_PEAK`.
        sampling_rate (`int`):
            Samples per second.
        caption (`str`):
            Reference caption, AudioCaps-like.
        labels (`dict`):
            Ground truth, JSON-able: `{"events": [{"class", "attributes", "peak", "start", "end"}, ...],
            "relation": "then" | "while" | None}`; times in seconds.
        classes (`list[str]`):
            Names of the classes present, in event order.
    """

    clip_id: str
    audio: np.ndarray
    sampling_rate: int
    caption: str
    labels: dict[str, Any]
    classes: list[str]


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; splits are {SPLITS}.")


def split_key(split: str) -> int:
    """A stable 32-bit integer for a split name (Python's `hash` is salted per process, so it cannot be used)."""
    return int.from_bytes(hashlib.sha256(split.encode()).digest()[:4], "little")


def clip_id(split: str, index: int) -> str:
    return f"{split}-{index:05d}"


def clip_streams(config: WorldConfig, split: str, index: int) -> tuple[np.random.Generator, ...]:
    """The three generators of one clip: labels, caption, audio."""
    check_split(split)
    if not 0 <= index < config.split_size(split):
        raise IndexError(f"Clip {index} is outside split {split!r} of {config.split_size(split)} clips.")
    sequence = np.random.SeedSequence([config.seed, split_key(split), index])
    return tuple(np.random.default_rng(child) for child in sequence.spawn(3))


def _event(class_name: str, start: float, end: float, rng: np.random.Generator) -> dict[str, Any]:
    attributes = {key: str(rng.choice(values)) for key, values in CLASS_ATTRIBUTES[class_name].items()}
    peak = round(float(rng.uniform(*LOUDNESS_PEAKS[attributes["loudness"]])), 4)
    return {"class": class_name, "attributes": attributes, "peak": peak, "start": start, "end": end}


def sample_labels(config: WorldConfig, rng: np.random.Generator, policy: LabelPolicy = "all") -> dict[str, Any]:
    """
    Draws a clip's ground truth: one or two distinct classes, their attributes, peaks and time spans.

    One event lasts 45-90% of the clip. "then": two events of 30-42% each, the second starting 2-8% of the clip
    after the first ends. "while": a background event of 70-95% of the clip (listed second) and a foreground event
    of 30-60% (listed first) lying inside it. Times are rounded to milliseconds and are exact in the audio.

    Args:
        config (`WorldConfig`):
            The world (its clip length and event probabilities are used).
        rng (`np.random.Generator`):
            The clip's label stream.
        policy (`str`, *optional*, defaults to `"all"`):
            `"all"`, `"seen"` (a held-out pair is redrawn) or `"unseen"` (two events of a held-out pair); see
            `WorldConfig.label_policy`. `"all"`, and `"seen"` without held-out pairs, draw exactly as before.

    Returns:
        `dict`: `{"events": [...], "relation": "then" | "while" | None}`.
    """
    length = config.clip_seconds
    margin = 0.02 * length

    def span(duration: float, earliest: float, latest_end: float) -> tuple[float, float]:
        start = rng.uniform(earliest, max(earliest, latest_end - duration))
        return round(float(start), 3), round(float(start + duration), 3)

    held_out = config.held_out if policy != "all" else frozenset()
    one_event = rng.random() >= config.two_event_probability
    if one_event and policy != "unseen":
        start, end = span(rng.uniform(0.45, 0.9) * length, margin, length - margin)
        return {"events": [_event(str(rng.choice(CLASSES)), start, end, rng)], "relation": None}
    if policy == "unseen":
        pairs = sorted(tuple(sorted(pair)) for pair in held_out)
        first, second = (str(name) for name in rng.permutation(pairs[int(rng.integers(len(pairs)))]))
    else:
        first, second = (str(name) for name in rng.choice(CLASSES, size=2, replace=False))
        while frozenset((first, second)) in held_out:
            first, second = (str(name) for name in rng.choice(CLASSES, size=2, replace=False))
    if rng.random() < config.then_probability:
        durations = rng.uniform(0.3, 0.42, size=2) * length
        gap = rng.uniform(0.02, 0.08) * length
        start_a, end_a = span(durations[0], margin, length - margin - gap - durations[1])
        start_b, end_b = span(durations[1], end_a + gap, length - margin)
        events = [_event(first, start_a, end_a, rng), _event(second, start_b, end_b, rng)]
        return {"events": events, "relation": "then"}
    start_bg, end_bg = span(rng.uniform(0.7, 0.95) * length, margin, length - margin)
    start_fg, end_fg = span(rng.uniform(0.3, 0.6) * length, start_bg, end_bg)
    events = [_event(first, start_fg, end_fg, rng), _event(second, start_bg, end_bg, rng)]
    return {"events": events, "relation": "while"}


def render_audio(labels: dict[str, Any], config: WorldConfig, rng: np.random.Generator) -> np.ndarray:
    """
    Synthesises the audio that `labels` describe: each event at its peak in its span, plus the noise floor.

    Args:
        labels (`dict`):
            Ground truth as `sample_labels` returns it (or written by hand, for tests and demos).
        config (`WorldConfig`):
            Clip length, sampling rate and noise floor.
        rng (`np.random.Generator`):
            The clip's audio stream; each event and the noise get their own child generator.

    Returns:
        `np.ndarray`: float32 mono waveform of `config.num_samples` samples, finite, peak at most `MAX_PEAK`.
    """
    sr, n = config.sampling_rate, config.num_samples
    event_rngs = rng.spawn(len(labels["events"]) + 1)
    mix = np.zeros(n)
    for event, event_rng in zip(labels["events"], event_rngs):
        start, end = round(event["start"] * sr), min(round(event["end"] * sr), n)
        if not 0 <= start < end:
            raise ValueError(
                f"Event span {event['start']}-{event['end']} s is outside a {config.clip_seconds} s clip."
            )
        wave = synthesize_event(event["class"], event["attributes"], end - start, event_rng, sr)
        mix[start:end] += event["peak"] * wave
    mix += config.noise_floor * event_rngs[-1].standard_normal(n)
    peak = np.abs(mix).max()
    if peak > MAX_PEAK:
        mix *= MAX_PEAK / peak
    return mix.astype(np.float32)


def generate_clip(config: WorldConfig, split: str, index: int) -> MicroClip:
    """
    Generates clip `index` of `split`: a pure function of `(config, split, index)`.

    Args:
        config (`WorldConfig`):
            The world.
        split (`str`):
            One of `SPLITS`.
        index (`int`):
            Position in the split, `0 <= index < config.split_size(split)`.

    Returns:
        `MicroClip`
    """
    labels_rng, caption_rng, audio_rng = clip_streams(config, split, index)
    labels = sample_labels(config, labels_rng, config.label_policy(split, index))
    return MicroClip(
        clip_id=clip_id(split, index),
        audio=render_audio(labels, config, audio_rng),
        sampling_rate=config.sampling_rate,
        caption=caption_for(labels, caption_rng),
        labels=labels,
        classes=[event["class"] for event in labels["events"]],
    )


def clip_metadata(config: WorldConfig, split: str, index: int) -> tuple[str, dict[str, Any], str]:
    """The id, labels and caption of a clip, without synthesising its audio."""
    labels_rng, caption_rng, _ = clip_streams(config, split, index)
    labels = sample_labels(config, labels_rng, config.label_policy(split, index))
    return clip_id(split, index), labels, caption_for(labels, caption_rng)
