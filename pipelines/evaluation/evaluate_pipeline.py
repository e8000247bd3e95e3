"""Generate every caption of an evaluation set with a pipeline, then evaluate the clips against the set's audio.

```bash
tango-af-evaluate-pipeline --pipeline declare-lab/tango-af-ac-ft-ac-diffusers --eval_set ./audiocaps-test \\
    --key_column ytid --caption_column caption --output_dir ./eval-ac --num_inference_steps 200 \\
    --cnn14 ./cnn14-16k --vggish ./vggish --clap laion/clap-htsat-fused --model_card ./my-pipeline/README.md
```

Every input is checked, and the pipeline and every backbone loaded, before anything is written or generated.
Generation is batched, seeded per clip (the seed of a clip depends on `--seed` and its key only, so a clip is the
same whatever batch it falls in) and resumable: each clip is written as `generated/<key>.wav` under a temporary
name and renamed when whole, and clips already there are not generated again. The generation settings are recorded
in `generation.json`; a run with other settings refuses to resume into the same `--output_dir`, so the clips of one
folder always come from one configuration. A clip whose audio holds NaN or infinity is not written, and is counted
as skipped (`non_finite`). The results are written to `results.json` and, with `--model_card`, into the card's
`model-index` metadata (its other entries and its text are kept).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from tqdm.auto import tqdm

from ..cli import (
    UserError,
    add_debug_argument,
    check_model_reference,
    check_output_file,
    check_output_folder,
    command_line,
    one_line,
)
from .evaluate_audio import (
    add_backbone_arguments,
    check_cache_folder,
    check_positive,
    configure_logging,
    evaluate_audio,
    load_backbones,
)
from .features import NON_FINITE, ClipSet, FeatureCache, check_columns, open_clip_source, open_dataset
from .outputs import write_atomically, write_json

logger = logging.getLogger(__name__)

GENERATED_DIR = "generated"
# Written before the first clip: marks the folder as this command's, and holds the settings its clips come from.
GENERATION_FILE = "generation.json"
RESULTS_FILE = "results.json"
# Settings that change the generated audio: resuming with another value of any of them would mix configurations.
GENERATION_SETTINGS = (
    "pipeline",
    "eval_set",
    "split",
    "key_column",
    "caption_column",
    "num_inference_steps",
    "guidance_scale",
    "audio_length_in_s",
    "seed",
    "dtype",
)


def clip_seed(seed: int, key: str) -> int:
    """A clip's generation seed: a function of the run's seed and the clip's key only."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "little") % (2**63)


def check_clip_key(key: str) -> str | None:
    """Why `key` cannot name a file `<key>.wav` in the generated folder, or `None` when it can."""
    if not key.strip():
        return "it is empty"
    if "/" in key or "\\" in key or "\0" in key:
        return "it holds a path separator or a NUL character"
    if key.startswith("."):
        return "it starts with '.' (hidden and partial files are ignored)"
    if len(key.encode()) > 200:
        return "it is longer than 200 bytes"
    return None


def read_captions(
    eval_set: str,
    caption_column: str,
    key_column: str | None,
    split: str,
    limit: int | None = None,
    audio_column: str | None = None,
) -> dict[str, str]:
    """
    Captions of an evaluation dataset (Hub id or folder) by key (the key column, or the row number), the first
    `limit` rows only when given.

    Raises:
        [`~pipelines.cli.UserError`]: naming the option and the value: a dataset that is not there, a missing column,
            a key that repeats or cannot be a file name, or a row without a caption.
    """
    name = f"--eval_set {eval_set!r}"
    table = open_dataset(eval_set, split, name)
    check_columns(
        table, name, {"--caption_column": caption_column, "--key_column": key_column, "--audio_column": audio_column}
    )
    if limit is not None:
        table = table.select(range(min(limit, len(table))))
    rows = table.select_columns([c for c in (caption_column, key_column) if c])
    keys = [str(k) for k in rows[key_column]] if key_column else [str(i) for i in range(len(rows))]
    captions: dict[str, str] = {}
    rows_of: dict[str, int] = {}
    for row, (key, caption) in enumerate(zip(keys, rows[caption_column])):
        problem = check_clip_key(key)
        if problem is not None:
            raise UserError(
                f"{name}, row {row}: key {key!r} (--key_column {key_column!r}) cannot name a file: {problem}."
            )
        if key in captions:
            raise UserError(
                f"{name}: key {key!r} (--key_column {key_column!r}) is on rows {rows_of[key]} and {row}; generated "
                "clips would overwrite each other."
            )
        if not isinstance(caption, str) or not caption.strip():
            raise UserError(f"{name}, row {row} (key {key!r}): no caption in --caption_column {caption_column!r}.")
        captions[key], rows_of[key] = caption, row
    return captions


@dataclass
class GeneratedClips:
    """
    What [`generate_clips`] did.

    Args:
        generated (`int`): clips generated and written by this call.
        non_finite (`list[str]`): keys whose audio held NaN or infinity: not written.
    """

    generated: int = 0
    non_finite: list[str] = field(default_factory=list)


def generate_clips(
    pipe: Any,
    captions: dict[str, str],
    output_dir: str | os.PathLike,
    seed: int = 0,
    batch_size: int = 8,
    **call_kwargs: Any,
) -> GeneratedClips:
    """
    Generates `<output_dir>/<key>.wav` for every caption not yet there. Each file is written under a hidden
    temporary name and renamed when whole; a clip whose audio holds NaN or infinity is never written.

    Args:
        pipe: the pipeline; called with a list of prompts, one generator per prompt and `output_type="np"`.
        captions (`dict[str, str]`): the caption of each key.
        output_dir (`str` or `os.PathLike`): the folder of the clips.
        seed (`int`, *optional*, defaults to 0): the run's seed (see [`clip_seed`]).
        batch_size (`int`, *optional*, defaults to 8): prompts per pipeline call.
        **call_kwargs: passed to the pipeline.

    Returns:
        [`GeneratedClips`]
    """
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    todo = [key for key in captions if not (folder / f"{key}.wav").is_file()]
    if len(todo) < len(captions):
        logger.info(f"{len(captions) - len(todo)} clips already generated in {folder}; generating {len(todo)}.")
    done = GeneratedClips()
    for start in tqdm(range(0, len(todo), batch_size), desc="Generating"):
        keys = todo[start : start + batch_size]
        generators = [torch.Generator(device="cpu").manual_seed(clip_seed(seed, key)) for key in keys]
        audios = pipe([captions[k] for k in keys], generator=generators, output_type="np", **call_kwargs).audios
        for key, audio in zip(keys, audios):
            audio = np.asarray(audio, dtype=np.float32)
            if not np.isfinite(audio).all():
                logger.warning(f"Clip {key!r} ({captions[key]!r}) holds NaN or infinity: not written, not scored.")
                done.non_finite.append(key)
                continue
            write_atomically(
                folder / f"{key}.wav",
                lambda path, audio=audio: sf.write(path, audio, pipe.sampling_rate, format="WAV"),
            )
            done.generated += 1
    return done


def check_model_card(path: str | os.PathLike) -> Path:
    """`--model_card`, checked before any work: writable, and when it exists, a model card `huggingface_hub` reads."""
    from huggingface_hub import ModelCard

    path = check_output_file(path, "--model_card")
    if path.exists():
        try:
            ModelCard.load(path)
        except Exception as error:  # huggingface_hub raises ValueError for bad YAML metadata, OSError, ...
            raise UserError(
                f"--model_card {os.fspath(path)!r} is not a readable model card: {one_line(error)}"
            ) from error
    return path


def write_model_index(card_path: str | os.PathLike, results: dict, model_name: str, dataset: str) -> None:
    """Adds (or replaces) this evaluation's entries in a model card's `model-index` metadata, keeping the rest."""
    from huggingface_hub import ModelCard, ModelCardData

    from model_cards.pipeline_card import eval_results

    path = Path(card_path)
    card = ModelCard.load(path) if path.is_file() else ModelCard(f"---\n---\n# {model_name}\n")
    data = card.data if card.data is not None else ModelCardData()
    existing = [r for r in (data.eval_results or []) if r.dataset_name != dataset]
    data.eval_results = existing + eval_results(results, dataset)
    data.model_name = data.model_name or model_name
    card.data = data
    path.parent.mkdir(parents=True, exist_ok=True)  # `check_model_card` found it creatable
    write_atomically(path, lambda staging: card.save(staging))


def check_resume(output_dir: Path, settings: dict[str, Any]) -> None:
    """Refuses to resume into a folder whose clips were generated with other settings, naming them."""
    path = output_dir / GENERATION_FILE
    if not path.is_file():
        return
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UserError(
            f"--output_dir {os.fspath(output_dir)!r}: {GENERATION_FILE} cannot be read ({one_line(error)})."
        ) from error
    differing = {
        key: (recorded.get(key), settings[key]) for key in GENERATION_SETTINGS if recorded.get(key) != settings[key]
    }
    if differing:
        described = ", ".join(f"{key} {old!r} there, {new!r} now" for key, (old, new) in differing.items())
        raise UserError(
            f"--output_dir {os.fspath(output_dir)!r} holds clips generated with other settings ({described}); give "
            "another --output_dir, or the same settings to resume."
        )
    logger.info(f"Resuming into {os.fspath(output_dir)}: the settings match {GENERATION_FILE}.")


def load_tango_pipeline(name: str, dtype: torch.dtype, device: torch.device) -> Any:
    """Loads `--pipeline` (safetensors only), with one-line errors naming it."""
    from pipelines.tango_clap.pipeline_tango_clap import TangoCLAPPipeline

    location = check_model_reference(name, "--pipeline")
    try:
        # `use_safetensors=True`: never fall back to unpickling a `.bin` (as pipelines/generate.py loads).
        pipe = TangoCLAPPipeline.from_pretrained(location, dtype=dtype, use_safetensors=True)
    except Exception as error:  # a missing file, another pipeline class, a damaged checkpoint, the Hub out of reach
        raise UserError(f"--pipeline {name!r} could not be loaded: {one_line(error)}") from error
    return pipe.to(device)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tango-af-evaluate-pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", required=True, help="TangoCLAPPipeline folder or Hub id.")
    parser.add_argument("--eval_set", required=True, help="Dataset (Hub id or folder) with captions and audio.")
    parser.add_argument("--caption_column", default="caption")
    parser.add_argument("--audio_column", default="audio")
    parser.add_argument("--key_column", default=None, help="Id column pairing generated and reference clips.")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="Only the first N captions (smoke runs).")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--num_inference_steps", type=int, default=200)
    parser.add_argument("--guidance_scale", type=float, default=3.0)
    parser.add_argument("--audio_length_in_s", type=float, default=10.0)
    parser.add_argument("--batch_size", type=int, default=8, help="Prompts per pipeline call, clips per forward pass.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    add_backbone_arguments(parser)
    parser.add_argument("--model_card", help="A README.md whose model-index gets the results.")
    parser.add_argument("--dataset_name", default=None, help="Name in the model-index (default: --eval_set).")
    add_debug_argument(parser)
    return parser.parse_args(argv)


@command_line
def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    configure_logging()
    # Every input first, cheapest first; then the backbones and the pipeline. Nothing is written before all pass.
    for flag in ("--limit", "--num_inference_steps", "--batch_size"):
        check_positive(flag, getattr(args, flag[2:]))
    check_positive("--audio_length_in_s", args.audio_length_in_s, "number of seconds")
    if not math.isfinite(args.guidance_scale):
        raise UserError(f"--guidance_scale {args.guidance_scale!r}: must be a finite number.")
    if not (args.cnn14 or args.vggish or args.clap):
        raise UserError("Name at least one backbone: --cnn14, --vggish or --clap.")
    check_model_reference(args.pipeline, "--pipeline")
    output_dir = check_output_folder(args.output_dir, "--output_dir", owned_marker=GENERATION_FILE)
    settings = {key: getattr(args, key) for key in GENERATION_SETTINGS}
    check_resume(output_dir, settings)
    card = check_model_card(args.model_card) if args.model_card else None
    cache = None if args.no_cache else FeatureCache(check_cache_folder(args.cache_dir))
    captions = read_captions(
        args.eval_set, args.caption_column, args.key_column, args.split, args.limit, audio_column=args.audio_column
    )
    reference_source = open_clip_source(
        args.eval_set, args.audio_column, args.key_column, args.split, name=f"--eval_set {args.eval_set!r}"
    ).only(captions)
    from ..cli import resolve_device

    device = resolve_device(args.device)
    # On the CPU while the pipeline generates; loaded now so that a bad backbone costs no generation.
    backbones = load_backbones(args.cnn14, args.vggish, args.clap, "cpu")
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[args.dtype]
    pipe = load_tango_pipeline(args.pipeline, dtype, device)
    call_kwargs = {
        "num_inference_steps": args.num_inference_steps,
        "guidance_scale": args.guidance_scale,
        "audio_length_in_s": args.audio_length_in_s,
    }
    try:
        pipe.check_inputs(prompt=next(iter(captions.values())), num_waveforms_per_prompt=1, **call_kwargs)
    except ValueError as error:
        raise UserError(f"The pipeline refuses the generation settings: {one_line(error)}") from error

    output_dir.mkdir(parents=True, exist_ok=True)
    write_json(output_dir / GENERATION_FILE, settings)
    generated_dir = output_dir / GENERATED_DIR
    generation = generate_clips(
        pipe, captions, generated_dir, seed=args.seed, batch_size=args.batch_size, **call_kwargs
    )
    del pipe
    if device.type == "cuda":
        torch.cuda.empty_cache()
    backbones.to(device)

    reference = reference_source.load()
    written = [key for key in captions if (generated_dir / f"{key}.wav").is_file()]
    generated = (
        open_clip_source(generated_dir, name=f"{GENERATED_DIR}/ of --output_dir").only(written).load(allow_empty=True)
        if written
        else ClipSet([])
    )
    for key in generation.non_finite:
        generated.skip(key, NON_FINITE)
    results = evaluate_audio(generated, reference, backbones, captions, args.batch_size, cache)
    results["protocol"].update(
        pipeline=args.pipeline,
        eval_set=args.eval_set,
        generation={
            key: settings[key]
            for key in ("num_inference_steps", "guidance_scale", "audio_length_in_s", "seed", "dtype")
        },
    )
    write_json(output_dir / RESULTS_FILE, results)
    print(json.dumps(results["metrics"], indent=2))
    if card is not None:
        write_model_index(card, results, args.pipeline, args.dataset_name or args.eval_set)
        logger.info(f"Updated the model-index of {os.fspath(card)} (its other entries and its text are kept).")
    return results


if __name__ == "__main__":
    sys.exit(main())
