"""A sanity check for any CLAP checkpoint: do matching audio-caption pairs score higher than mismatching ones?

Three generated clips (a steady sine tone, white noise, silence) are scored against three captions describing them.
A usable checkpoint ranks each clip's own caption first; a checkpoint whose similarities are all (nearly) equal,
or whose audio or text tower maps every input to the same embedding, has collapsed and is reported as broken.
Embeddings go through the pipeline's `clap_audio_embeddings` / `clap_text_embeddings`, the code the AF-AudioSet
filter and the evaluation use.

Usage:

```bash
tango-af-clap-sanity --model laion/clap-htsat-fused
```
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel, PreTrainedTokenizerBase

from ..cli import add_debug_argument, check_model_reference, command_line
from ..tango_clap.pipeline_tango_clap import clap_audio_embeddings, clap_text_embeddings

SANITY_CAPTIONS = {
    "tone": "a steady high-pitched sine tone",
    "noise": "loud white noise, a constant hiss of static",
    "silence": "complete silence",
}
# Spread of all similarities (and of embeddings within a tower) below which a checkpoint counts as collapsed.
COLLAPSE_TOLERANCE = 1e-3


def sanity_clips(sampling_rate: int, seconds: float = 10.0, seed: int = 0) -> dict[str, np.ndarray]:
    """The check's clips by name: a 440 Hz tone at half scale, white noise (std 0.3, seeded) and silence."""
    if sampling_rate <= 0 or seconds <= 0:
        raise ValueError(f"sampling_rate and seconds must be positive, got {sampling_rate} and {seconds}.")
    n = round(seconds * sampling_rate)
    t = np.arange(n) / sampling_rate
    noise = np.random.default_rng(seed).standard_normal(n) * 0.3
    return {
        "tone": (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32),
        "noise": np.clip(noise, -1.0, 1.0).astype(np.float32),
        "silence": np.zeros(n, dtype=np.float32),
    }


@dataclass
class SanityReport:
    """
    The outcome of [`check_clap`].

    Args:
        names (`list[str]`): the clips' names, also the captions' order.
        similarities (`np.ndarray`): `(captions, clips)` cosine similarities.
        collapsed (`bool`): the checkpoint maps (nearly) everything to one embedding.
        failures (`list[str]`): each clip whose own caption did not score highest, with the scores.
    """

    names: list[str]
    similarities: np.ndarray
    collapsed: bool
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.collapsed and not self.failures

    def table(self) -> str:
        width = max(len(n) for n in self.names) + 2
        rows = ["caption \\ clip".ljust(width + 8) + "".join(n.rjust(10) for n in self.names)]
        for i, name in enumerate(self.names):
            rows.append(name.ljust(width + 8) + "".join(f"{s:10.4f}" for s in self.similarities[i]))
        return "\n".join(rows)

    def summary(self) -> str:
        if self.collapsed:
            verdict = "BROKEN: the checkpoint has collapsed (all similarities or embeddings are equal)"
        elif self.failures:
            verdict = "FAILED: " + "; ".join(self.failures)
        else:
            verdict = "PASSED: every clip scores highest with its own caption"
        return f"{self.table()}\n{verdict}"


def _spread(embeddings: torch.Tensor) -> float:
    """Largest cosine distance between any two rows (embeddings are unit-norm)."""
    cosine = embeddings @ embeddings.T
    return float(1.0 - cosine.min())


def check_clap(
    model: ClapModel,
    tokenizer: PreTrainedTokenizerBase,
    feature_extractor: ClapFeatureExtractor,
    seed: int = 0,
) -> SanityReport:
    """
    Scores the sanity clips against the sanity captions.

    Args:
        model ([`~transformers.ClapModel`]): the checkpoint.
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]): its tokenizer.
        feature_extractor ([`~transformers.ClapFeatureExtractor`]): its feature extractor.
        seed (`int`, *optional*, defaults to 0): the noise clip's seed.

    Returns:
        [`SanityReport`]
    """
    clips = sanity_clips(int(feature_extractor.sampling_rate), float(feature_extractor.max_length_s), seed)
    names = list(clips)
    audio = clap_audio_embeddings(model, feature_extractor, [clips[n] for n in names])
    text = clap_text_embeddings(model, tokenizer, [SANITY_CAPTIONS[n] for n in names])
    similarities = (text @ audio.T).numpy()
    collapsed = (
        float(similarities.max() - similarities.min()) < COLLAPSE_TOLERANCE
        or _spread(audio) < COLLAPSE_TOLERANCE
        or _spread(text) < COLLAPSE_TOLERANCE
    )
    failures = []
    for j, name in enumerate(names):
        others = np.delete(similarities[:, j], j)
        if similarities[j, j] <= others.max():
            best = names[int(np.argmax(similarities[:, j]))]
            failures.append(
                f"{name!r} scores {similarities[j, j]:.4f} with its caption but {others.max():.4f} with {best!r}'s"
            )
    return SanityReport(names=names, similarities=similarities, collapsed=collapsed, failures=failures)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="A transformers CLAP checkpoint: Hub id or folder.")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    add_debug_argument(parser)
    return parser.parse_args(argv)


@command_line
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    check_model_reference(args.model, "--model")
    model = ClapModel.from_pretrained(args.model).to(args.device).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    feature_extractor = ClapFeatureExtractor.from_pretrained(args.model)
    report = check_clap(model, tokenizer, feature_extractor, seed=args.seed)
    print(f"{args.model}\n{report.summary()}")
    return 0 if report.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
