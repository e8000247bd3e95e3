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
"""The controls of the micro study's caption filter, plugged into `build_af_audioset` where CLAP and the captioner go.

* `OracleScorer` scores a caption by how well the classes it names agree with the clip's ground truth: the best any
  CLAP could do. Under it, caption exactness must rise with tau; if it does not, the filtering machinery is wrong.
* `RandomScorer` scores captions uniformly at random: under it, exactness must stay flat, whatever tau.
* `ReplayCaptioner` returns the captions of a finished build, so that every scorer ranks the very same captions
  without captioning the pool again.

All three are duck-typed like `datasets_scripts.scorer.ClapScorer` (`score`, `sampling_rate`, `model_id`) and
`datasets_scripts.captioner.AudioCaptioner` (`caption`, `model_id`, `device`), which is all the builder calls:

```python
from datasets_scripts.build import build_af_audioset
from training.micro.scorers import OracleScorer, ReplayCaptioner

build_af_audioset(sources, "af/oracle", captioner=ReplayCaptioner("af/clap-strong"), clap=OracleScorer(pool_clips))
```

The builder gives a scorer audio and captions but not the clips' ids, so the oracle recognises each clip by its sound:
the log-energy envelope of the clip cut into a fixed number of equal segments, which resampling and 16-bit WAV
quantization leave unchanged, matched to the envelopes of the clips whose ground truth it holds.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.dataset as pa_dataset
import torch

from datasets_scripts.audio import ClipWindow
from datasets_scripts.micro_world import SAMPLING_RATE, classes_mentioned

__all__ = ["OracleScorer", "RandomScorer", "ReplayCaptioner", "audio_envelope", "caption_agreement"]

# Segments of the envelope: 40 ms each for a 2.56 s clip, far finer than the shortest event (30% of a clip).
ENVELOPE_SEGMENTS = 64


def caption_agreement(caption: str, classes: Collection[str]) -> float:
    r"""Jaccard similarity of the classes a caption names (`classes_mentioned`) and a clip's classes.

    Args:
        caption (`str`): the caption.
        classes (`Collection[str]`): the clip's classes.

    Returns:
        `float`: 1 when the caption names exactly the clip's classes, 0 when it names none of them (or nothing).
    """
    named, present = classes_mentioned(caption), set(classes)
    union = named | present
    return len(named & present) / len(union) if union else 0.0


def audio_envelope(audio: np.ndarray, segments: int = ENVELOPE_SEGMENTS) -> np.ndarray:
    r"""The log-energy envelope of a clip over `segments` equal stretches of its duration: a fingerprint of the clip
    that does not depend on its sampling rate, and that 16-bit quantization and band-limited resampling barely move.

    Args:
        audio (`np.ndarray`): mono waveform, any rate, at least `segments` samples.
        segments (`int`, *optional*, defaults to 64): stretches.

    Returns:
        `np.ndarray`: float64 `(segments,)`, the mean power of each stretch in dB (floored at -120 dB).
    """
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 1 or len(audio) < segments:
        raise ValueError(f"Need a mono waveform of at least {segments} samples, got shape {audio.shape}.")
    edges = np.linspace(0, len(audio), segments + 1).round().astype(int)
    power = np.array([np.mean(audio[a:b] ** 2) for a, b in zip(edges[:-1], edges[1:])])
    return 10.0 * np.log10(np.maximum(power, 1e-12))


def _unit_uniform(*parts: Any) -> float:
    """A uniform number in [0, 1) that is a pure function of `parts` (SHA-256, not Python's salted `hash`)."""
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64


def _audio_digest(audio: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(audio, dtype=np.float32).tobytes()).hexdigest()


def _check_pairs(audios: Sequence[np.ndarray], captions: Sequence[Sequence[str]]) -> None:
    if len(audios) != len(captions):
        raise ValueError(f"Got {len(audios)} clips but {len(captions)} lists of captions.")


class OracleScorer:
    r"""
    Scores each caption by the agreement of the classes it names with its clip's ground truth
    (`caption_agreement`, Jaccard), plus a small seeded noise that orders equally right captions at random; scores
    lie in [0, 1), like the cosine similarities a tau is chosen among.

    Args:
        clips (`Sequence`):
            The clips it knows: `MicroClip`-like objects (`.audio`, `.classes`) or `(audio, classes)` pairs, audio at
            any one rate. A clip to score is recognised by its `audio_envelope`.
        seed (`int`, *optional*, defaults to 0):
            Seed of the noise; each caption's noise is a pure function of the seed, the clip and the caption's
            position and text, so scores do not depend on the batch.
        noise (`float`, *optional*, defaults to 0.01):
            Amplitude of the uniform noise; below the smallest gap between two agreements of captions naming up to
            three classes (1/12, between 1/4 and 1/3), so it never reorders captions of different agreement.
        max_distance_db (`float`, *optional*, defaults to 3.0):
            Largest RMS difference, in dB, between a scored clip's envelope and the closest known one: a farther clip
            is one the oracle does not know, and is refused.
        model_id (`str`, *optional*, defaults to `"oracle"`):
            Name recorded with every score.
    """

    def __init__(
        self,
        clips: Sequence[Any],
        seed: int = 0,
        noise: float = 0.01,
        max_distance_db: float = 3.0,
        model_id: str = "oracle",
    ):
        if not 0 <= noise < 1 / 12:
            raise ValueError(f"`noise` must be in [0, 1/12) so that it never reorders agreements, got {noise}.")
        pairs = [(clip.audio, clip.classes) if hasattr(clip, "audio") else clip for clip in clips]
        if not pairs:
            raise ValueError("OracleScorer needs the clips whose ground truth it knows, got none.")
        self.classes = [frozenset(classes) for _, classes in pairs]
        self.envelopes = np.stack([audio_envelope(audio) for audio, _ in pairs])
        self.seed = seed
        self.noise = noise
        self.max_distance_db = max_distance_db
        self.model_id = model_id

    @property
    def sampling_rate(self) -> int:
        """The rate the builder should give it; the envelope reads any rate."""
        return SAMPLING_RATE

    def identify(self, audio: np.ndarray) -> int:
        """Index (in `clips`) of the known clip whose envelope is closest to `audio`'s; a `ValueError` if none is
        within `max_distance_db`."""
        distances = np.sqrt(np.mean((self.envelopes - audio_envelope(audio)) ** 2, axis=1))
        best = int(np.argmin(distances))
        if distances[best] > self.max_distance_db:
            raise ValueError(
                f"The oracle knows no clip like this one: the closest envelope is {distances[best]:.1f} dB RMS away "
                f"(at most {self.max_distance_db} dB)."
            )
        return best

    def score(self, audios: list[np.ndarray], captions: list[list[str]]) -> list[list[float]]:
        """
        Agreement of every caption with its clip's classes, plus noise.

        Args:
            audios (`list[np.ndarray]`): the clips, each one the oracle knows.
            captions (`list[list[str]]`): the captions of each clip.

        Returns:
            `list[list[float]]`: one score per caption, `(1 - noise) * agreement + noise * u` with `u` in [0, 1).
        """
        _check_pairs(audios, captions)
        scores = []
        for audio, texts in zip(audios, captions):
            if not np.isfinite(audio).all():
                raise ValueError("Non-finite audio is never scored.")
            known = self.identify(audio)
            scores.append(
                [
                    # Scaled into [0, 1), the range of a cosine similarity that the loader's tau accepts.
                    (1 - self.noise) * caption_agreement(text, self.classes[known])
                    + self.noise * _unit_uniform(self.seed, known, i, text)
                    for i, text in enumerate(texts)
                ]
            )
        return scores


class RandomScorer:
    r"""
    Scores every caption uniformly at random in [0, 1): the control under which the filter keeps captions regardless
    of their quality.

    Args:
        seed (`int`, *optional*, defaults to 0):
            Seed; each score is a pure function of it, the clip's samples and the caption's position and text, so
            scores do not depend on the batch.
        model_id (`str`, *optional*, defaults to `"random"`):
            Name recorded with every score.
    """

    def __init__(self, seed: int = 0, model_id: str = "random"):
        self.seed = seed
        self.model_id = model_id

    @property
    def sampling_rate(self) -> int:
        """The rate the builder should give it (any rate works)."""
        return SAMPLING_RATE

    def score(self, audios: list[np.ndarray], captions: list[list[str]]) -> list[list[float]]:
        """
        A uniform random score for every caption.

        Args:
            audios (`list[np.ndarray]`): the clips.
            captions (`list[list[str]]`): the captions of each clip.

        Returns:
            `list[list[float]]`: one score per caption, in `[0, 1)`.
        """
        _check_pairs(audios, captions)
        scores = []
        for audio, texts in zip(audios, captions):
            if not np.isfinite(audio).all():
                raise ValueError("Non-finite audio is never scored.")
            clip = _audio_digest(audio)
            scores.append([_unit_uniform(self.seed, clip, i, text) for i, text in enumerate(texts)])
        return scores


class ReplayCaptioner:
    r"""
    Returns the captions a finished AF-AudioSet build stored for each window, in their original order: a captioner
    for building the same captions again with another scorer.

    Args:
        af_folder (`str` or `os.PathLike`):
            A folder written by `build_af_audioset` (its `data/*.parquet` and `build_config.json`).
        model_id (`str`, *optional*):
            Name recorded as the captioner; defaults to the captioner of the replayed build, which wrote the captions.
    """

    def __init__(self, af_folder: str | os.PathLike, model_id: str | None = None):
        from datasets_scripts.build import read_build_config
        from datasets_scripts.schema import DATA_DIR

        folder = Path(af_folder)
        config = read_build_config(folder)
        files = sorted((folder / DATA_DIR).glob("*.parquet"))
        if not files:
            raise FileNotFoundError(f"{os.fspath(folder)!r} holds no caption shards under {DATA_DIR}/.")
        table = pa_dataset.dataset([str(f) for f in files], format="parquet").to_table(
            columns=["clip_id", "window_start", "caption_index", "caption"]
        )
        rows: dict[str, dict[int, str]] = {}
        for clip_id, start, index, caption in zip(*(table[c].to_pylist() for c in table.column_names)):
            rows.setdefault(_window_key(clip_id, start), {})[index] = caption
        self.captions = {}
        for key, by_index in rows.items():
            if sorted(by_index) != list(range(len(by_index))):
                raise ValueError(
                    f"{os.fspath(folder)!r} holds captions {sorted(by_index)} of window {key!r}, not 0..n-1."
                )
            self.captions[key] = [by_index[i] for i in range(len(by_index))]
        self.num_captions = config.num_captions
        self.model_id = model_id or config.captioner
        self.source = os.fspath(folder)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def caption(self, clip_keys: list[str], audios: list[np.ndarray]) -> list[list[str]]:
        """
        The stored captions of each window.

        Args:
            clip_keys (`list[str]`): window keys, `"<clip_id>@<start>"` (`ClipWindow.window_key`).
            audios (`list[np.ndarray]`): the windows' audio (not read).

        Returns:
            `list[list[str]]`: the captions of each window, in their original order.

        Raises:
            `KeyError`: naming a window the replayed build did not caption.
        """
        if len(clip_keys) != len(audios):
            raise ValueError(f"Got {len(clip_keys)} keys but {len(audios)} clips.")
        missing = [key for key in clip_keys if key not in self.captions]
        if missing:
            raise KeyError(f"{self.source!r} holds no captions for windows {missing[:5]}.")
        return [list(self.captions[key]) for key in clip_keys]


def _window_key(clip_id: str, window_start: float) -> str:
    # The builder asks for captions by `ClipWindow.window_key`: the same format, from the same code.
    return ClipWindow(clip_id, window_start, np.empty(0), np.empty(0)).window_key
