"""Generate every caption of an evaluation set with a pipeline, then evaluate the clips against the set's audio.

```bash
tango-af-evaluate-pipeline --pipeline declare-lab/tango-af-ac-ft-ac-diffusers --eval_set ./audiocaps-test \\
    --key_column ytid --caption_column caption --output_dir ./eval-ac --num_inference_steps 200 \\
    --cnn14 ./cnn14-16k --vggish ./vggish --clap laion/clap-htsat-fused --model_card ./my-pipeline/README.md
```

Generation is batched, seeded per clip (the seed of a clip depends on `--seed` and its key only, so a clip is the
same whatever batch it falls in) and resumable: each clip is written as `generated/<key>.wav` under a temporary
name and renamed when whole, and clips already there are not generated again. The results are written to
`results.json` and, with `--model_card`, into the card's `model-index` metadata.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm.auto import tqdm
from transformers.utils import logging

from .evaluate_audio import evaluate_audio, load_backbones
from .features import FeatureCache, load_clip_set

logger = logging.get_logger(__name__)

GENERATED_DIR = "generated"
def clip_seed(seed: int, key: str) -> int:
    """A clip's generation seed: a function of the run's seed and the clip's key only."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "little") % (2**63)


def read_captions(
    eval_set: str, caption_column: str, key_column: str | None, split: str, limit: int | None = None
) -> dict[str, str]:
    """Captions of an evaluation dataset (Hub id or folder) by key (the key column, or the row number)."""
    import datasets

    path = Path(eval_set)
    if (path / "state.json").exists() or (path / "dataset_dict.json").exists():
        table = datasets.load_from_disk(eval_set)
        if isinstance(table, datasets.DatasetDict):
            table = table[split]
    else:
        table = datasets.load_dataset(eval_set, split=split)
    for column in (caption_column, key_column):
        if column is not None and column not in table.column_names:
            raise ValueError(f"{eval_set!r} has no column {column!r}; columns: {table.column_names}.")
    rows = table.select_columns([c for c in (caption_column, key_column) if c])
    keys = [str(k) for k in rows[key_column]] if key_column else [str(i) for i in range(len(rows))]
    captions = dict(zip(keys, rows[caption_column]))
    if len(captions) != len(keys):
        raise ValueError(
            f"{eval_set!r}: the keys of {key_column!r} repeat; generated clips would overwrite each other."
        )
    if limit is not None:
        captions = dict(list(captions.items())[:limit])
    return captions


def generate_clips(
    pipe,
    captions: dict[str, str],
    output_dir: str | os.PathLike,
    seed: int = 0,
    batch_size: int = 8,
    **call_kwargs,
) -> int:
    """
    Generates `<output_dir>/<key>.wav` for every caption not yet there.

    Returns:
        `int`: how many clips were generated in this call.
    """
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    todo = [key for key in captions if not (folder / f"{key}.wav").is_file()]
    if len(todo) < len(captions):
        logger.info(f"{len(captions) - len(todo)} clips already generated in {folder}; generating {len(todo)}.")
    for start in tqdm(range(0, len(todo), batch_size), desc="Generating"):
        keys = todo[start : start + batch_size]
        generators = [torch.Generator(device="cpu").manual_seed(clip_seed(seed, key)) for key in keys]
        audios = pipe([captions[k] for k in keys], generator=generators, output_type="np", **call_kwargs).audios
        for key, audio in zip(keys, audios):
            staging = folder / f".{key}.partial.wav"
            sf.write(staging, np.asarray(audio, dtype=np.float32), pipe.sampling_rate)
            os.replace(staging, folder / f"{key}.wav")
    return len(todo)


def write_model_index(card_path: str | os.PathLike, results: dict, model_name: str, dataset: str) -> None:
    """Adds (or replaces) this evaluation's entries in a model card's `model-index` metadata."""
    from huggingface_hub import ModelCard, ModelCardData

    from model_cards.pipeline_card import eval_results

    path = Path(card_path)
    card = ModelCard.load(path) if path.is_file() else ModelCard(f"---\n---\n# {model_name}\n")
    data = card.data if card.data is not None else ModelCardData()
    existing = [r for r in (data.eval_results or []) if r.dataset_name != dataset]
    data.eval_results = existing + eval_results(results, dataset)
    data.model_name = data.model_name or model_name
    card.data = data
    card.save(path)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cnn14")
    parser.add_argument("--vggish")
    parser.add_argument("--clap")
    parser.add_argument("--model_card", help="A README.md whose model-index gets the results.")
    parser.add_argument("--dataset_name", default=None, help="Name in the model-index (default: --eval_set).")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    from pipelines.tango_clap.pipeline_tango_clap import TangoCLAPPipeline

    captions = read_captions(args.eval_set, args.caption_column, args.key_column, args.split, args.limit)
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[args.dtype]
    pipe = TangoCLAPPipeline.from_pretrained(args.pipeline, dtype=dtype).to(args.device)
    generated_dir = Path(args.output_dir) / GENERATED_DIR
    generate_clips(
        pipe,
        captions,
        generated_dir,
        seed=args.seed,
        batch_size=args.batch_size,
        num_inference_steps=args.num_inference_steps,
        guidance_scale=args.guidance_scale,
        audio_length_in_s=args.audio_length_in_s,
    )
    del pipe
    reference = load_clip_set(args.eval_set, args.audio_column, args.key_column, args.split)
    if args.limit is not None:
        reference.clips = [c for c in reference.clips if c.key in captions]
    generated = load_clip_set(generated_dir)
    backbones = load_backbones(args.cnn14, args.vggish, args.clap, args.device)
    results = evaluate_audio(generated, reference, backbones, captions, args.batch_size, FeatureCache())
    results["protocol"].update(
        pipeline=args.pipeline,
        eval_set=args.eval_set,
        generation={
            "num_inference_steps": args.num_inference_steps,
            "guidance_scale": args.guidance_scale,
            "audio_length_in_s": args.audio_length_in_s,
            "seed": args.seed,
            "dtype": args.dtype,
        },
    )
    (Path(args.output_dir) / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["metrics"], indent=2))
    if args.model_card:
        write_model_index(args.model_card, results, args.pipeline, args.dataset_name or args.eval_set)
    return results


if __name__ == "__main__":
    main()
