"""Evaluate generated audio against reference audio: FD, IS, KL (PANNs Cnn14), FAD (VGGish), CLAP score.

```bash
tango-af-evaluate --generated outputs/ --reference audiocaps_test/ --prompts prompts.csv \\
    --cnn14 ./cnn14-16k --vggish ./vggish --clap laion/clap-htsat-fused --output results.json
```

`--cnn14` and `--vggish` are local folders of safetensors weights converted from the original release files with
`python -m pipelines.evaluation.panns` / `python -m pipelines.evaluation.vggish`; `--clap` is a transformers CLAP
checkpoint (folder or Hub id). Nothing is downloaded at import or construction. Every input is checked, and every
backbone loaded, before any clip is embedded: a mistake costs seconds, not an evaluation.

A folder of audio is whatever FFmpeg reads in it, whatever the files' extensions (as the dataset builder reads one);
its other files are listed as `not_audio`, and hidden files are ignored. The JSON states the protocol next to the
numbers: sample rate, backbones, clip counts, pairing, and every clip that was skipped (not audio, unreadable, empty,
NaN or infinite samples), too short for a backbone, unpaired or silent. A metric that
the clips do not define (a Frechet distance with fewer than 2 clips on a side, an inception score with fewer clips
than splits, a KL with no pair, a CLAP score without prompts) is `null` in `metrics`, with the reason in
`not_computed`; the others are kept.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datasets_scripts.sources import AUDIO_EXTENSIONS

from ..cli import (
    UserError,
    add_debug_argument,
    check_model_reference,
    check_output_file,
    check_output_folder,
    command_line,
    one_line,
)
from .features import (
    CACHE_TAG_NAME,
    ClipSet,
    EvalClip,
    FeatureCache,
    default_cache_folder,
    extract_features,
    open_clip_source,
    weights_fingerprint,
)
from .metrics import IS_SPLITS, UndefinedMetricError, clap_score, frechet_distance, inception_score, paired_kl
from .outputs import write_json

logger = logging.getLogger(__name__)

EVAL_SAMPLING_RATE = 16000  # audioldm_eval's 16 kHz protocol (Tango's evaluation)
# Written into every result; an existing `--output` that says this was written by this command and may be replaced.
IMPLEMENTATION = "tango-af pipelines/evaluation (audioldm_eval's definitions, as in declare-lab/tango)"
# The metrics each backbone gives, the first of each group being the one `not_computed` names.
METRIC_GROUPS = {
    "cnn14": (("FD",), ("IS", "IS_std"), ("KL", "KL_sigmoid")),
    "vggish": (("FAD",),),
    "clap": (("CLAP",),),
}


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

    def to(self, device: str | torch.device) -> Backbones:
        """Moves every backbone to `device`."""
        for model in (self.cnn14, self.vggish):
            if model is not None:
                model.to(device)
        if self.clap is not None:
            self.clap.model.to(device)
        return self


def _load_backbone(flag: str, name: str, load: Callable[[], Any]) -> Any:
    try:
        return load()
    except Exception as error:  # missing files, a damaged safetensors file, a config of another model, wrong shapes
        raise UserError(f"{flag} {name!r} could not be loaded: {one_line(error)}") from error


def load_backbones(
    cnn14: str | None, vggish: str | None, clap: str | None, device: str | torch.device = "cpu"
) -> Backbones:
    """
    Loads the named backbones: `cnn14` and `vggish` from local folders, `clap` from a folder or a Hub id.

    Raises:
        [`~pipelines.cli.UserError`]: naming the option (`--cnn14`, `--vggish`, `--clap`) and the value of a backbone
            that is not there or does not load.
    """
    from .panns import Cnn14
    from .vggish import VGGish

    names = {k: v for k, v in {"cnn14": cnn14, "vggish": vggish, "clap": clap}.items() if v}
    loaded = Backbones(names=names)
    for flag, name, converter in (("--cnn14", cnn14, "panns"), ("--vggish", vggish, "vggish")):
        if name and not Path(name).expanduser().exists():
            raise UserError(
                f"{flag} {name!r} does not exist; give the folder written by `python -m {__package__}.{converter}`."
            )
    if cnn14:
        loaded.cnn14 = _load_backbone("--cnn14", cnn14, lambda: Cnn14.from_pretrained(Path(cnn14).expanduser()))
    if vggish:
        loaded.vggish = _load_backbone("--vggish", vggish, lambda: VGGish.from_pretrained(Path(vggish).expanduser()))
    if clap:
        from datasets_scripts.scorer import ClapScorer

        check_model_reference(clap, "--clap")
        loaded.clap = _load_backbone("--clap", clap, lambda: ClapScorer.from_pretrained(clap))
    return loaded.to(device)


def read_prompts(
    path: str | os.PathLike, key_column: str = "file", prompt_column: str = "caption", flag: str = "--prompts"
) -> dict[str, str]:
    """
    A CSV of clip keys (file names, with or without extension, or ids) and their prompts, by key without extension.

    Args:
        path (`str` or `os.PathLike`): the CSV, UTF-8, with a header row.
        key_column (`str`, *optional*, defaults to `"file"`): the header of the keys.
        prompt_column (`str`, *optional*, defaults to `"caption"`): the header of the prompts.
        flag (`str`, *optional*, defaults to `"--prompts"`): the option that named the file, for messages.

    Raises:
        [`~pipelines.cli.UserError`]: naming the file, and the line for a row with a missing or empty key or prompt,
            too many fields, or a key that repeats another row's.
    """
    name = f"{flag} {os.fspath(path)!r}"
    prompts: dict[str, str] = {}
    lines: dict[str, int] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames
            if not header:
                raise UserError(f"{name} is empty; it needs a header row with {key_column!r} and {prompt_column!r}.")
            missing = [c for c in (key_column, prompt_column) if c not in header]
            if missing:
                raise UserError(
                    f"{name} has no column {missing[0]!r} (--prompt_key_column / --prompt_column); its columns: "
                    f"{header}."
                )
            for row in reader:
                line = reader.line_num
                if None in row:
                    raise UserError(
                        f"{name}, line {line}: {len(header) + len(row[None])} fields, the header has {len(header)}."
                    )
                key, prompt = row[key_column], row[prompt_column]
                if not key or not key.strip():
                    raise UserError(f"{name}, line {line}: no key in column {key_column!r}.")
                if not prompt or not prompt.strip():
                    raise UserError(f"{name}, line {line}: no prompt in column {prompt_column!r} for {key!r}.")
                key = _strip_audio_extension(key.strip())
                if key in prompts:
                    raise UserError(f"{name}, line {line}: key {key!r} repeats line {lines[key]}.")
                prompts[key], lines[key] = prompt, line
    except UnicodeDecodeError as error:
        raise UserError(f"{name} is not UTF-8 text (byte {error.start}: {error.reason}).") from error
    except csv.Error as error:
        raise UserError(f"{name}, line {reader.line_num}: {error}.") from error
    except OSError as error:
        raise UserError(f"{name} cannot be read: {one_line(error)}") from error
    if not prompts:
        raise UserError(f"{name} has a header but no rows.")
    return prompts


def _strip_audio_extension(key: str) -> str:
    # The audio extensions the dataset builder knows (a folder's clips are keyed by file name without extension).
    path = Path(key)
    return path.stem if path.suffix.lower() in AUDIO_EXTENSIONS else key


def cnn14_long_enough(backbone: Any, clip: EvalClip) -> bool:
    """Whether Cnn14 can embed `clip`: at least `backbone.min_samples` (4960) samples at 16 kHz before the padding to
    2 s (see [`~pipelines.evaluation.panns.cnn14_min_samples`])."""
    from .panns import cnn14_input_length

    return cnn14_input_length(len(clip.audio), clip.sampling_rate) >= backbone.min_samples


def vggish_long_enough(clip: EvalClip) -> bool:
    """Whether VGGish can embed `clip`: one 0.96 s example, 15600 samples at 16 kHz (see
    [`~pipelines.evaluation.vggish.MIN_SAMPLES`])."""
    from .vggish import MIN_SAMPLES, vggish_input_length

    return vggish_input_length(len(clip.audio), clip.sampling_rate) >= MIN_SAMPLES


def _backbone_id(name: str, backbone: Any, cache: FeatureCache | None) -> str:
    """What the feature cache files a backbone's features under: its name and a fingerprint of its weights (hashing
    them takes a while, so only when there is a cache, and once per evaluation)."""
    return f"{name}-{weights_fingerprint(backbone)}" if cache is not None else name


def _cnn14_features(
    backbone: Any, clips: ClipSet, batch_size: int, cache: FeatureCache | None, backbone_id: str | None = None
) -> dict:
    """Cnn14's `embedding` and `logits` of every clip long enough for it, by key (`backbone_id` as given by
    [`_backbone_id`], computed when not given)."""
    from .panns import cnn14_inputs

    device = next(backbone.parameters()).device
    return extract_features(
        [clip for clip in clips.clips if cnn14_long_enough(backbone, clip)],
        lambda batch: backbone(batch.to(device)),
        cnn14_inputs,
        backbone_id or _backbone_id("cnn14", backbone, cache),
        batch_size=batch_size,
        cache=cache,
        desc="PANNs Cnn14",
    )


def _vggish_features(
    backbone: Any, clips: ClipSet, batch_size: int, cache: FeatureCache | None, backbone_id: str | None = None
) -> dict:
    """VGGish's `embedding` `(examples, 128)` of every clip long enough for it, by key (`backbone_id` as for
    [`_cnn14_features`])."""
    from .vggish import waveform_to_examples

    device = next(backbone.parameters()).device

    def embed(batch: torch.Tensor) -> dict[str, torch.Tensor]:
        clips_in_batch, examples = batch.shape[0], batch.shape[1]
        flat = batch.reshape(clips_in_batch * examples, 1, *batch.shape[-2:]).to(device)
        return {"embedding": backbone(flat).reshape(clips_in_batch, examples, -1)}

    return extract_features(
        [clip for clip in clips.clips if vggish_long_enough(clip)],
        embed,
        lambda audio, rate: np.asarray(waveform_to_examples(audio, rate)).reshape(-1, 96, 64),
        backbone_id or _backbone_id("vggish", backbone, cache),
        batch_size=batch_size,
        cache=cache,
        desc="VGGish",
    )


def _rows(features: dict[str, dict[str, np.ndarray]], name: str) -> np.ndarray:
    """The features `name` of every clip as one `(rows, dim)` matrix (`(0, 0)` for no clip)."""
    if not features:
        return np.zeros((0, 0))
    return np.concatenate([np.atleast_2d(f[name]) for f in features.values()])


def _frechet(generated: np.ndarray, reference: np.ndarray, unit: str) -> float:
    for side, rows in (("generated", generated), ("reference", reference)):
        if len(rows) < 2:
            raise UndefinedMetricError(f"needs at least 2 {unit} on each side; the {side} side has {len(rows)}")
    return frechet_distance(generated, reference)


class _Results:
    """Collects metrics, `null` with a reason for those the clips do not define."""

    def __init__(self) -> None:
        self.metrics: dict[str, float | None] = {}
        self.not_computed: dict[str, str] = {}

    def add(self, names: tuple[str, ...], compute: Callable[[], Sequence[float]]) -> bool:
        try:
            values = compute()
        except UndefinedMetricError as error:
            self.metrics.update(dict.fromkeys(names))
            self.not_computed[names[0]] = str(error)
            logger.warning(f"{names[0]} not computed: {error}.")
            return False
        self.metrics.update(zip(names, (float(v) for v in values)))
        return True


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

    Clips too short for a backbone (Cnn14: 4960 samples at 16 kHz; VGGish: 15600, one 0.96 s example) are left out of
    its metrics and listed under `clips.<side>.too_short.<backbone>`. A metric the remaining clips do not define is
    `None`, with the reason in `not_computed`, and logged.

    Args:
        generated ([`ClipSet`]): the generated clips.
        reference ([`ClipSet`]): the reference clips; KL pairs them with the generated ones by key.
        backbones ([`Backbones`]): the models.
        prompts (`dict[str, str]`, *optional*): the prompt of each generated clip's key, for the CLAP score.
        batch_size (`int`, *optional*, defaults to 16): clips per forward pass.
        cache ([`FeatureCache`], *optional*): reuse features across runs.

    Returns:
        `dict`: `metrics` (FD, IS, IS_std, KL, KL_sigmoid, FAD, CLAP for the backbones given; `None` when not
        defined), `not_computed` (the reason for each `None`), `protocol` and `clips`.
    """
    results = _Results()
    sides = {"generated": generated, "reference": reference}
    clips: dict[str, Any] = {side: clip_set.summary() for side, clip_set in sides.items()}
    embedded: dict[str, dict[str, int]] = {}

    def too_short(backbone: str, features: dict[str, dict], side: str) -> None:
        clips[side].setdefault("too_short", {})[backbone] = [c.key for c in sides[side].clips if c.key not in features]
        if clips[side]["too_short"][backbone]:
            logger.warning(
                f"{len(clips[side]['too_short'][backbone])} {side} clips are too short for {backbone} and left out of "
                f"its metrics: {clips[side]['too_short'][backbone][:5]}."
            )

    if backbones.cnn14 is not None:
        backbone_id = _backbone_id("cnn14", backbones.cnn14, cache)
        gen = _cnn14_features(backbones.cnn14, generated, batch_size, cache, backbone_id)
        ref = _cnn14_features(backbones.cnn14, reference, batch_size, cache, backbone_id)
        too_short("cnn14", gen, "generated")
        too_short("cnn14", ref, "reference")
        embedded["cnn14"] = {"generated": len(gen), "reference": len(ref)}
        results.add(("FD",), lambda: [_frechet(_rows(gen, "embedding"), _rows(ref, "embedding"), "clips")])
        results.add(("IS", "IS_std"), lambda: inception_score(_rows(gen, "logits"), splits=IS_SPLITS))
        gen_logits = {key: f["logits"] for key, f in gen.items()}
        ref_logits = {key: f["logits"] for key, f in ref.items()}

        def compute_kl() -> tuple[float, float]:
            kl = paired_kl(gen_logits, ref_logits)
            return kl.softmax, kl.sigmoid

        results.add(("KL", "KL_sigmoid"), compute_kl)
        clips["kl_pairs"] = sum(key in gen_logits for key in ref_logits)
        clips["unpaired_reference"] = [k for k in ref_logits if k not in gen_logits]
        clips["unpaired_generated"] = [k for k in gen_logits if k not in ref_logits]
    if backbones.vggish is not None:
        backbone_id = _backbone_id("vggish", backbones.vggish, cache)
        gen = _vggish_features(backbones.vggish, generated, batch_size, cache, backbone_id)
        ref = _vggish_features(backbones.vggish, reference, batch_size, cache, backbone_id)
        too_short("vggish", gen, "generated")
        too_short("vggish", ref, "reference")
        gen_rows, ref_rows = _rows(gen, "embedding"), _rows(ref, "embedding")
        embedded["vggish"] = {
            "generated": len(gen),
            "reference": len(ref),
            "generated_examples": len(gen_rows),
            "reference_examples": len(ref_rows),
        }
        # Every 0.96 s example is one sample of the Gaussian (audioldm_eval's FAD).
        results.add(("FAD",), lambda: [_frechet(gen_rows, ref_rows, "VGGish examples (0.96 s each)")])
    if backbones.clap is not None:
        scored = [clip for clip in generated.clips if prompts and clip.key in prompts]
        clips["clap_clips"] = len(scored)
        clips["without_prompt"] = [c.key for c in generated.clips if not prompts or c.key not in prompts]

        def compute_clap() -> list[float]:
            if not prompts:
                raise UndefinedMetricError("no prompts were given")
            if not scored:
                raise UndefinedMetricError(
                    f"no generated clip has a prompt: clip keys e.g. {[c.key for c in generated.clips[:3]]}, prompt "
                    f"keys e.g. {list(prompts)[:3]}"
                )
            from datasets_scripts.audio import resample

            rate = backbones.clap.sampling_rate
            audio = backbones.clap.embed_audio([resample(c.audio, c.sampling_rate, rate) for c in scored])
            text = backbones.clap.embed_text([prompts[c.key] for c in scored])
            return [clap_score(audio, text)]

        results.add(("CLAP",), compute_clap)
    clips["embedded"] = embedded
    return {
        "metrics": results.metrics,
        "not_computed": results.not_computed,
        "protocol": protocol(backbones),
        "clips": clips,
    }


def protocol(backbones: Backbones) -> dict[str, Any]:
    """What the numbers of [`evaluate_audio`] mean: the settings and definitions behind each metric."""
    from .panns import CNN14_16K_CONFIG, cnn14_min_samples
    from .vggish import MIN_SAMPLES

    return {
        "sampling_rate": EVAL_SAMPLING_RATE,
        "resampling": "as audioldm_eval's loaders (Cnn14: Tango's copy; VGGish: resampy's kaiser_best filter); "
        "48 kHz for CLAP",
        "FD": "Frechet distance of PANNs Cnn14 (16 kHz: window 512, hop 160, 64 mels, 50-8000 Hz) 2048-d embeddings",
        "IS": f"PANNs Cnn14 logits, softmax, {IS_SPLITS} splits, clips shuffled with seed 2020",
        "KL": "KL(reference || generated) of softmax(Cnn14 logits), paired by key, summed over classes, mean over pairs",
        "FAD": "Frechet distance of VGGish embeddings (16 kHz, 0.96 s examples, no PCA, no final ReLU)",
        "CLAP": "mean cosine of the generated clip's CLAP audio embedding and its prompt's text embedding",
        # The shortest clip each backbone embeds, in samples at 16 kHz; shorter clips are left out of its metrics.
        "min_clip_samples_16khz": {
            "cnn14": cnn14_min_samples(
                backbones.cnn14.config if backbones.cnn14 is not None else CNN14_16K_CONFIG
            ),  # 32 STFT frames for five 2x2 poolings (audioldm_eval would zero-pad such a clip to 2 s)
            "vggish": MIN_SAMPLES,  # one 0.96 s example (audioldm_eval's FAD skips shorter files)
        },
        "silent_peak": "clips with a peak below 1e-4 are kept and listed as silent",
        "backbones": backbones.names or {},
        "implementation": IMPLEMENTATION,
    }


def check_positive(flag: str, value: float | None, what: str = "integer") -> None:
    """
    Refuses a count or a length that is not a positive, finite number (`None`, an option not given, passes).

    Args:
        flag (`str`): the option, for the message.
        value (`int` or `float`, *optional*): its value.
        what (`str`, *optional*, defaults to `"integer"`): what it must be, for the message.

    Raises:
        [`~pipelines.cli.UserError`]: naming `flag` and `value`.
    """
    if value is not None and not (math.isfinite(value) and value > 0):
        raise UserError(f"{flag} {value!r}: must be a positive {what}.")


def check_results_file(path: str | os.PathLike, flag: str = "--output") -> Path:
    """
    Refuses, before any work, an output file that cannot be written, or an existing file that this command did not
    write (a JSON whose `protocol.implementation` is [`IMPLEMENTATION`]); its own earlier results are replaced, and the
    log says so.

    Raises:
        [`~pipelines.cli.UserError`]: naming `flag` and the path.
    """
    path = check_output_file(path, flag)
    if path.exists():
        try:
            ours = json.loads(path.read_text(encoding="utf-8"))["protocol"]["implementation"] == IMPLEMENTATION
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
            ours = False
        if not ours:
            raise UserError(
                f"{flag} {os.fspath(path)!r} exists and is not a results file of this command; move it away or give "
                "another path."
            )
        logger.info(f"{flag} {os.fspath(path)!r} holds earlier results; they will be replaced.")
    return path


def check_cache_folder(folder: str | os.PathLike | None, flag: str = "--cache_dir") -> Path:
    """
    The feature cache's folder, checked before any work. A folder the user names must be new, empty or a cache
    already (it holds the `CACHEDIR.TAG` the cache writes), never a folder of other files; the default folder belongs
    to the cache whatever it holds.

    Raises:
        [`~pipelines.cli.UserError`]: naming `flag` and the folder.
    """
    if folder is not None:
        return check_output_folder(Path(folder).expanduser(), flag, owned_marker=CACHE_TAG_NAME)
    folder = default_cache_folder()
    if folder.is_dir():
        if not os.access(folder, os.W_OK | os.X_OK):
            raise UserError(
                f"The feature cache {os.fspath(folder)!r} is not writable; give --cache_dir or --no_cache."
            )
        return folder
    return check_output_folder(folder, "The feature cache")


def add_backbone_arguments(parser: argparse.ArgumentParser) -> None:
    """The options naming the backbones, the device, batching and the feature cache (shared by both commands)."""
    parser.add_argument("--cnn14", help="PANNs Cnn14 16 kHz folder (converted Cnn14_16k_mAP=0.438.pth).")
    parser.add_argument("--vggish", help="VGGish folder (converted vggish-10086976.pth).")
    parser.add_argument(
        "--clap", help="A transformers CLAP checkpoint (folder or Hub id), e.g. laion/clap-htsat-fused."
    )
    parser.add_argument("--device", default=None, help="Where to run the backbones (default: CUDA when available).")
    parser.add_argument("--cache_dir", help=f"Feature cache folder (default {default_cache_folder()}).")
    parser.add_argument("--no_cache", action="store_true", help="Do not read or write cached features.")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tango-af-evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--generated", required=True, help="Folder of audio files or a dataset.")
    parser.add_argument("--reference", required=True, help="Folder of audio files or a dataset.")
    parser.add_argument("--prompts", help="CSV of clip keys and prompts (for the CLAP score).")
    parser.add_argument("--prompt_key_column", default="file")
    parser.add_argument("--prompt_column", default="caption")
    parser.add_argument("--audio_column", default="audio", help="For datasets.")
    parser.add_argument("--key_column", default=None, help="For datasets: the id that pairs clips (default: row).")
    parser.add_argument("--split", default="test", help="For datasets.")
    add_backbone_arguments(parser)
    parser.add_argument("--batch_size", type=int, default=16, help="Clips per forward pass.")
    parser.add_argument("--output", help="Where to write the JSON (default: print only).")
    add_debug_argument(parser)
    return parser.parse_args(argv)


def configure_logging() -> None:
    """Log lines (warnings about skipped clips and metrics not computed included) on stderr; results on stdout."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


@command_line
def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    configure_logging()
    # Every input first, cheapest first; then the backbones; only then the audio is decoded and embedded.
    check_positive("--batch_size", args.batch_size)
    if not (args.cnn14 or args.vggish or args.clap):
        raise UserError("Name at least one backbone: --cnn14, --vggish or --clap.")
    if args.clap and not args.prompts:
        raise UserError("--clap needs --prompts (the CLAP score compares each clip with its prompt).")
    if args.prompts and not args.clap:
        logger.warning("--prompts is used only for the CLAP score; without --clap it is ignored.")
    output = check_results_file(args.output) if args.output else None
    cache = None if args.no_cache else FeatureCache(check_cache_folder(args.cache_dir))
    dataset_options = {"audio_column": args.audio_column, "key_column": args.key_column, "split": args.split}
    sources = {
        side: open_clip_source(getattr(args, side), **dataset_options, name=f"--{side} {getattr(args, side)!r}")
        for side in ("generated", "reference")
    }
    prompts = read_prompts(args.prompts, args.prompt_key_column, args.prompt_column) if args.clap else None
    if prompts is not None and not any(key in prompts for key in sources["generated"].keys):
        raise UserError(
            f"--prompts {args.prompts!r}: no key matches a generated clip (prompt keys e.g. {list(prompts)[:3]}, "
            f"clip keys e.g. {sources['generated'].keys[:3]}); check --prompt_key_column."
        )
    from ..cli import resolve_device

    device = resolve_device(args.device)
    backbones = load_backbones(args.cnn14, args.vggish, args.clap, device)

    generated, reference = sources["generated"].load(), sources["reference"].load()
    result = evaluate_audio(generated, reference, backbones, prompts, args.batch_size, cache)
    result["protocol"].update(generated=os.fspath(args.generated), reference=os.fspath(args.reference))
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)  # `check_results_file` found it creatable
        write_json(output, result)
        logger.info(f"Wrote {os.fspath(output)}.")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.exit(main())
