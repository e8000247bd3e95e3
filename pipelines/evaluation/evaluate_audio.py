"""Evaluate generated audio against reference audio: FD, IS, KL (PANNs Cnn14), FAD (VGGish), CLAP score.

```bash
tango-af-evaluate --generated outputs/ --reference audiocaps_test/ --prompts prompts.csv \\
    --cnn14 ./cnn14-16k --vggish ./vggish --clap laion/clap-htsat-fused --output results.json
```

The backbones are local folders (or Hub ids) of safetensors weights converted from the original release files with
`python -m pipelines.evaluation.panns` / `python -m pipelines.evaluation.vggish`; nothing is downloaded at import or
construction. The JSON states the protocol next to the numbers: sample rate, backbones and their checkpoints, clip
counts, pairing, and every clip that was skipped, unpaired or silent.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.utils import logging

from .features import ClipSet, FeatureCache, extract_features, load_clip_set, weights_fingerprint
from .metrics import clap_score, frechet_distance, inception_score, paired_kl

logger = logging.get_logger(__name__)

EVAL_SAMPLING_RATE = 16000  # audioldm_eval's 16 kHz protocol (Tango's evaluation)


@dataclass
class Backbones:
    """
    The models the metrics need; any may be `None` to skip its metrics.

    Args:
        cnn14 ([`~pipelines.evaluation.panns.Cnn14`], *optional*): for FD, IS and KL.
        vggish ([`~pipelines.evaluation.vggish.VGGish`], *optional*): for FAD.
        clap ([`~datasets_scripts.scorer.ClapScorer`], *optional*): for the CLAP score (needs prompts).
        names (`dict[str, str]`, *optional*): what each was loaded from, for the protocol.
    """

    cnn14: Any = None
    vggish: Any = None
    clap: Any = None
    names: dict[str, str] | None = None


def load_backbones(
    cnn14: str | None, vggish: str | None, clap: str | None, device: str | torch.device = "cpu"
) -> Backbones:
    """Loads the named backbones (local folders or Hub ids)."""
    from .panns import Cnn14
    from .vggish import VGGish

    names = {k: v for k, v in {"cnn14": cnn14, "vggish": vggish, "clap": clap}.items() if v}
    loaded = Backbones(names=names)
    if cnn14:
        loaded.cnn14 = Cnn14.from_pretrained(cnn14).to(device).eval()
    if vggish:
        loaded.vggish = VGGish.from_pretrained(vggish).to(device).eval()
    if clap:
        from datasets_scripts.scorer import ClapScorer

        loaded.clap = ClapScorer.from_pretrained(clap, device=device)
    return loaded


def read_prompts(path: str | os.PathLike, key_column: str = "file", prompt_column: str = "caption") -> dict[str, str]:
    """A CSV of clip keys (file names, with or without extension, or ids) and their prompts, by key without extension."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{os.fspath(path)!r} has no rows.")
    for column in (key_column, prompt_column):
        if column not in rows[0]:
            raise ValueError(f"{os.fspath(path)!r} has no column {column!r}; columns: {list(rows[0])}.")
    return {_strip_audio_extension(row[key_column]): row[prompt_column] for row in rows}


def _strip_audio_extension(key: str) -> str:
    from .features import AUDIO_EXTENSIONS

    path = Path(key)
    return path.stem if path.suffix.lower() in AUDIO_EXTENSIONS else key


def _cnn14_features(backbone: Any, clips: ClipSet, batch_size: int, cache: FeatureCache | None) -> dict:
    from .panns import cnn14_inputs

    device = next(backbone.parameters()).device
    return extract_features(
        clips.clips,
        lambda batch: backbone(batch.to(device)),
        cnn14_inputs,
        "cnn14-" + weights_fingerprint(backbone),
        batch_size=batch_size,
        cache=cache,
        desc="PANNs Cnn14",
    )


def _vggish_features(backbone: Any, clips: ClipSet, batch_size: int, cache: FeatureCache | None) -> dict:
    from .vggish import waveform_to_examples

    device = next(backbone.parameters()).device

    def embed(batch: torch.Tensor) -> dict[str, torch.Tensor]:
        clips_in_batch, examples = batch.shape[0], batch.shape[1]
        flat = batch.reshape(clips_in_batch * examples, 1, *batch.shape[-2:]).to(device)
        return {"embedding": backbone(flat).reshape(clips_in_batch, examples, -1)}

    return extract_features(
        clips.clips,
        embed,
        lambda audio, rate: np.asarray(waveform_to_examples(audio, rate)).reshape(-1, 96, 64),
        "vggish-" + weights_fingerprint(backbone),
        batch_size=batch_size,
        cache=cache,
        desc="VGGish",
    )


def evaluate_audio(
    generated: ClipSet,
    reference: ClipSet,
    backbones: Backbones,
    prompts: dict[str, str] | None = None,
    batch_size: int = 16,
    cache: FeatureCache | None = None,
) -> dict:
    """
    Every metric the backbones allow, with the protocol that produced it.

    Args:
        generated ([`ClipSet`]): the generated clips.
        reference ([`ClipSet`]): the reference clips; KL pairs them with the generated ones by key.
        backbones ([`Backbones`]): the models.
        prompts (`dict[str, str]`, *optional*): the prompt of each generated clip's key, for the CLAP score.
        batch_size (`int`, *optional*, defaults to 16): clips per forward pass.
        cache ([`FeatureCache`], *optional*): reuse features across runs.

    Returns:
        `dict`: `metrics` (FD, FAD, IS, IS_std, KL, KL_sigmoid, CLAP as available), `protocol` and `clips`.
    """
    metrics: dict[str, float] = {}
    counts: dict[str, Any] = {"generated": generated.summary(), "reference": reference.summary()}
    if backbones.cnn14 is not None:
        gen = _cnn14_features(backbones.cnn14, generated, batch_size, cache)
        ref = _cnn14_features(backbones.cnn14, reference, batch_size, cache)
        metrics["FD"] = frechet_distance(
            np.stack([f["embedding"] for f in gen.values()]), np.stack([f["embedding"] for f in ref.values()])
        )
        gen_logits = np.stack([f["logits"] for f in gen.values()])
        if len(gen_logits) >= 10:
            metrics["IS"], metrics["IS_std"] = inception_score(gen_logits)
        else:
            logger.warning(f"IS needs at least 10 generated clips (10 splits); got {len(gen_logits)}: not computed.")
        kl = paired_kl({k: f["logits"] for k, f in gen.items()}, {k: f["logits"] for k, f in ref.items()})
        metrics["KL"], metrics["KL_sigmoid"] = kl.softmax, kl.sigmoid
        counts["kl_pairs"] = kl.pairs
        counts["unpaired_reference"] = kl.unpaired_reference
        counts["unpaired_generated"] = kl.unpaired_generated
    if backbones.vggish is not None:
        gen = _vggish_features(backbones.vggish, generated, batch_size, cache)
        ref = _vggish_features(backbones.vggish, reference, batch_size, cache)
        metrics["FAD"] = frechet_distance(
            np.concatenate([f["embedding"] for f in gen.values()]),
            np.concatenate([f["embedding"] for f in ref.values()]),
        )
    if backbones.clap is not None and prompts:
        from datasets_scripts.audio import resample

        scored = [clip for clip in generated.clips if clip.key in prompts]
        if not scored:
            raise ValueError(f"No generated clip has a prompt: keys {[c.key for c in generated.clips[:3]]}...")
        rate = backbones.clap.sampling_rate
        audio = backbones.clap.embed_audio([resample(c.audio, c.sampling_rate, rate) for c in scored])
        text = backbones.clap.embed_text([prompts[c.key] for c in scored])
        metrics["CLAP"] = clap_score(audio, text)
        counts["clap_clips"] = len(scored)
        counts["without_prompt"] = [c.key for c in generated.clips if c.key not in prompts]
    protocol = {
        "sampling_rate": EVAL_SAMPLING_RATE,
        "resampling": "torchaudio sinc (datasets_scripts.audio.resample) to 16 kHz; 48 kHz for CLAP",
        "FD": "Frechet distance of PANNs Cnn14 (16 kHz: window 512, hop 160, 64 mels, 50-8000 Hz) 2048-d embeddings",
        "IS": "PANNs Cnn14 logits, softmax, 10 splits, clips shuffled with seed 2020",
        "KL": "KL(reference || generated) of softmax(Cnn14 logits), paired by key, summed over classes, mean over pairs",
        "FAD": "Frechet distance of VGGish embeddings (16 kHz, 0.96 s examples, no PCA, no final ReLU)",
        "CLAP": "mean cosine of the generated clip's CLAP audio embedding and its prompt's text embedding",
        "backbones": backbones.names or {},
        "implementation": "tango-af pipelines/evaluation (audioldm_eval's definitions, as in declare-lab/tango)",
    }
    return {"metrics": metrics, "protocol": protocol, "clips": counts}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generated", required=True, help="Folder of audio files or a dataset.")
    parser.add_argument("--reference", required=True, help="Folder of audio files or a dataset.")
    parser.add_argument("--prompts", help="CSV of clip keys and prompts (for the CLAP score).")
    parser.add_argument("--prompt_key_column", default="file")
    parser.add_argument("--prompt_column", default="caption")
    parser.add_argument("--audio_column", default="audio", help="For datasets.")
    parser.add_argument("--key_column", default=None, help="For datasets: the id that pairs clips (default: row).")
    parser.add_argument("--split", default="test", help="For datasets.")
    parser.add_argument("--cnn14", help="PANNs Cnn14 16 kHz folder (converted Cnn14_16k_mAP=0.438.pth).")
    parser.add_argument("--vggish", help="VGGish folder (converted vggish-10086976.pth).")
    parser.add_argument("--clap", help="A transformers CLAP checkpoint, e.g. laion/clap-htsat-fused.")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cache_dir", help="Feature cache folder (default ~/.cache/tango-af/eval-features).")
    parser.add_argument("--no_cache", action="store_true")
    parser.add_argument("--output", help="Where to write the JSON (default: print only).")
    args = parser.parse_args(argv)
    if not (args.cnn14 or args.vggish or args.clap):
        parser.error("name at least one backbone: --cnn14, --vggish or --clap.")
    if args.clap and not args.prompts:
        parser.error("--clap needs --prompts.")
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    load = {"audio_column": args.audio_column, "key_column": args.key_column, "split": args.split}
    generated, reference = load_clip_set(args.generated, **load), load_clip_set(args.reference, **load)
    prompts = read_prompts(args.prompts, args.prompt_key_column, args.prompt_column) if args.prompts else None
    backbones = load_backbones(args.cnn14, args.vggish, args.clap, args.device)
    cache = None if args.no_cache else FeatureCache(args.cache_dir)
    result = evaluate_audio(generated, reference, backbones, prompts, args.batch_size, cache)
    result["protocol"].update(generated=os.fspath(args.generated), reference=os.fspath(args.reference))
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
