"""`tango-af-dataset`: build, merge, import and publish AF-AudioSet.

    tango-af-dataset build --audio-dir clips/ --output af-audioset/ [--exclude-ids audiocaps_test.csv]
    tango-af-dataset build --audioset-csv unbalanced_train_segments.csv --audio-dir clips/ --output out/ \
        --num-shards 8 --shard-index 3 --num-proc 8
    tango-af-dataset merge --inputs out-0/ out-1/ ... --output af-audioset/
    tango-af-dataset import-released --json AF-AudioSet.json --output af-audioset-released/ [--audio-dir clips/]
    tango-af-dataset push --folder af-audioset/ --repo-id you/AF-AudioSet

One process per GPU, all writing into one folder, then finishing it:

    torchrun --standalone --nproc-per-node 8 -m datasets_scripts.cli build --audio-dir clips/ --output af/
    tango-af-dataset merge --inputs af/ --output af/

The shard a `build` process works on comes from `--num-shards` / `--shard-index` when they are given (both, or
neither); otherwise from the launcher's environment: a Slurm job array (`SLURM_ARRAY_TASK_ID` of
`SLURM_ARRAY_TASK_COUNT`), torchrun or `accelerate launch` (`RANK` of `WORLD_SIZE`, each process on GPU
`LOCAL_RANK`), or both composed (see `datasets_scripts.validation.shard_from_environment`); otherwise the process
builds everything. `datasets_scripts/slurm/build_af_audioset.sbatch` is a job-array example.

User errors (a bad value, a missing file, a folder the build did not write) are one line naming the flag and the
value, exit code 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
from transformers.utils import logging

from pipelines.cli import UserError, add_debug_argument, command_line

from .build import build_af_audioset, check_build_arguments, merge_shards
from .captioner import DEFAULT_CAPTIONER
from .released import import_released
from .schema import DEFAULT_TOP_K
from .scorer import DEFAULT_CLAP
from .sources import (
    clips_from_audio_dir,
    clips_from_audioset_csv,
    load_hf_source,
    read_id_list,
)
from .validation import ArgumentError, check_reference, shard_from_environment

logger = logging.get_logger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# How the library's parameters are called on this command line, for error messages.
FLAGS = {
    "output_dir": "--output",
    "captioner": "--captioner",
    "clap": "--clap",
    "num_captions": "--num-captions",
    "top_k": "--top-k",
    "exclude_ids": "--exclude-ids",
    "num_shards": "--num-shards",
    "shard_index": "--shard-index",
    "unit_size": "--unit-size",
    "batch_size": "--batch-size",
    "num_proc": "--num-proc",
    "device": "--device",
    "dtype": "--dtype",
    "seed": "--seed",
    "max_new_tokens": "--max-new-tokens",
    "inputs": "--inputs",
    "json_path": "--json",
    "folder": "--folder",
    "name_or_path": "--hf-dataset",
}


def _existing_file(flag: str, value: str) -> Path:
    path = Path(value)
    if not path.exists():
        raise UserError(f"{flag} {value!r} does not exist.")
    if not path.is_file():
        raise UserError(f"{flag} {value!r} is a folder; give a file.")
    return path


def _existing_folder(flag: str, value: str, what: str) -> Path:
    path = Path(value)
    if not path.exists():
        raise UserError(f"{flag} {value!r} does not exist.")
    if not path.is_dir():
        raise UserError(f"{flag} {value!r} is a file, not a folder of {what}.")
    return path


def _output_location(flag: str, value: str) -> None:
    """The checks of an output folder that need no build settings, made before any slow work."""
    if Path(value).exists() and not Path(value).is_dir():
        raise UserError(f"{flag} {value!r} is a file, not a folder.")


def _shard(args: argparse.Namespace) -> tuple[int, int]:
    if (args.num_shards is None) != (args.shard_index is None):
        given = "--num-shards" if args.num_shards is not None else "--shard-index"
        raise UserError(
            f"{given} was given alone: give both --num-shards and --shard-index, or neither (the shard then comes from "
            "a Slurm job array's or torchrun's environment, else everything is built)."
        )
    if args.num_shards is not None:
        return args.num_shards, args.shard_index
    from_environment = shard_from_environment()
    if from_environment is None:
        return 1, 0
    num_shards, shard_index, where = from_environment
    logger.warning(f"Building shard {shard_index} of {num_shards} ({where}).")
    return num_shards, shard_index


def _sources(args: argparse.Namespace) -> tuple[list, str]:
    """The clips, and how the command line named them (for error messages)."""
    given = [bool(args.hf_dataset), bool(args.audioset_csv), bool(args.audio_dir) and not args.audioset_csv]
    if sum(given) != 1:
        raise UserError(
            "give exactly one source: --audio-dir (a folder of clips), --audioset-csv with --audio-dir (its clips), "
            "or --hf-dataset."
        )
    if args.hf_dataset:
        sources = load_hf_source(
            args.hf_dataset, split=args.split, audio_column=args.audio_column, id_column=args.id_column
        )
        return sources, f"--hf-dataset {args.hf_dataset!r} (split {args.split!r})"
    if args.audioset_csv:
        _existing_file("--audioset-csv", args.audioset_csv)
        if not args.audio_dir:
            raise UserError("--audioset-csv needs --audio-dir, the folder of its clips.")
        _existing_folder("--audio-dir", args.audio_dir, "audio files")
        sources = clips_from_audioset_csv(args.audioset_csv, args.audio_dir)
        return sources, f"--audioset-csv {args.audioset_csv!r} with --audio-dir {args.audio_dir!r}"
    _existing_folder("--audio-dir", args.audio_dir, "audio files")
    return clips_from_audio_dir(args.audio_dir), f"--audio-dir {args.audio_dir!r}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tango-af-dataset", description="Build and publish AF-AudioSet.")
    add_debug_argument(parser)
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="Caption, score and rank a source of audio into a dataset folder.")
    build.add_argument("--audio-dir", help="Folder of clips (ids from file names), or the clips of --audioset-csv.")
    build.add_argument("--audioset-csv", help="AudioSet-style CSV of ytids (with --audio-dir).")
    build.add_argument("--hf-dataset", help="A Hugging Face dataset (id or folder) with an Audio column.")
    build.add_argument("--split", default="train")
    build.add_argument("--audio-column", default="audio")
    build.add_argument("--id-column", default=None)
    build.add_argument("--captioner", default=DEFAULT_CAPTIONER, help="Audio Flamingo 3 or Qwen2-Audio checkpoint.")
    build.add_argument("--clap", default=DEFAULT_CLAP, help="ClapModel checkpoint scoring the captions.")
    build.add_argument("--num-captions", type=int, default=20, help="Sampled captions per window (>= 1).")
    build.add_argument(
        "--top-k", type=int, default=DEFAULT_TOP_K, help="Captions per window kept (1..--num-captions)."
    )
    build.add_argument("--exclude-ids", help="File of clip ids never to caption (one per line, or a CSV).")
    build.add_argument("--output", required=True, help="The dataset folder (resumed if it holds an earlier run).")
    build.add_argument(
        "--num-shards",
        type=int,
        default=None,
        help="Machines or processes sharing the work (default: from the environment, else 1).",
    )
    build.add_argument("--shard-index", type=int, default=None, help="This one's index in [0, --num-shards).")
    build.add_argument("--unit-size", type=int, default=1024, help="Clips per parquet shard / resumable unit.")
    build.add_argument("--batch-size", type=int, default=4, help="Clips per captioning batch.")
    build.add_argument("--num-proc", type=int, default=None, help="Worker processes, one per GPU.")
    build.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:N or auto (default: each worker's GPU, else the CPU)."
    )
    build.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    build.add_argument("--seed", type=int, default=0, help="Seed of the caption sampling, in [0, 2**63).")
    build.add_argument("--max-new-tokens", type=int, default=128)
    build.add_argument("--embed-audio", action="store_true", help="Store each window's audio with its captions.")
    add_debug_argument(build)

    merge = commands.add_parser(
        "merge", help="Merge the folders that several shards wrote (or finish the one folder they shared)."
    )
    merge.add_argument("--inputs", nargs="+", required=True)
    merge.add_argument("--output", required=True)
    add_debug_argument(merge)

    released = commands.add_parser("import-released", help="Import NVIDIA's released AF-AudioSet.json.")
    released.add_argument("--json", required=True)
    released.add_argument("--output", required=True)
    released.add_argument("--audio-dir", help="Clips named by ytid; with it, captions are scored with --clap.")
    released.add_argument("--clap", default=DEFAULT_CLAP)
    released.add_argument("--device", default="cpu")
    add_debug_argument(released)

    push = commands.add_parser(
        "push", help="Upload a finished dataset folder to the Hub (same as `tango-af-publish dataset`)."
    )
    push.add_argument("--folder", required=True)
    push.add_argument("--repo-id", required=True)
    push.add_argument("--private", action="store_true")
    add_debug_argument(push)
    return parser


def _build(args: argparse.Namespace, labels: dict[str, str]) -> Any:
    num_shards, shard_index = _shard(args)
    settings = {
        "captioner": args.captioner,
        "clap": args.clap,
        "num_captions": args.num_captions,
        "top_k": args.top_k,
        "num_shards": num_shards,
        "shard_index": shard_index,
        "unit_size": args.unit_size,
        "batch_size": args.batch_size,
        "num_proc": args.num_proc,
        "device": args.device,
        "dtype": DTYPES[args.dtype],
        "seed": args.seed,
        "max_new_tokens": args.max_new_tokens,
    }
    # Every value is checked before the source is listed (which may take minutes on millions of files).
    check_build_arguments(**settings)
    _output_location("--output", args.output)
    exclude = read_id_list(_existing_file("--exclude-ids", args.exclude_ids)) if args.exclude_ids else set()
    sources, labels["sources"] = _sources(args)
    summary = build_af_audioset(sources, args.output, exclude_ids=exclude, embed_audio=args.embed_audio, **settings)
    print(summary)
    return summary


def _import_released(args: argparse.Namespace) -> Any:
    from .build import CLAP_WHAT
    from .scorer import ClapScorer
    from .validation import check_device, describe_load_failure

    _existing_file("--json", args.json)
    _output_location("--output", args.output)
    sources = scorer = None
    if args.audio_dir:
        check_device("device", args.device)
        check_reference("clap", args.clap, CLAP_WHAT)
        sources = clips_from_audio_dir(_existing_folder("--audio-dir", args.audio_dir, "audio files"))
        try:
            scorer = ClapScorer.from_pretrained(args.clap, device=args.device)
        except (OSError, ValueError, KeyError) as error:
            raise describe_load_failure("clap", args.clap, CLAP_WHAT, error) from error
    counts = import_released(args.json, args.output, audio_sources=sources, scorer=scorer)
    print(counts)
    return counts


def _push(args: argparse.Namespace) -> Any:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    from model_cards.publish import publish_dataset

    _existing_folder("--folder", args.folder, "a built dataset")
    try:
        validate_repo_id(args.repo_id)
    except HFValidationError as error:
        raise UserError(
            f"--repo-id {args.repo_id!r} is not a Hub repo id ({' '.join(str(error).split())})."
        ) from error
    result = publish_dataset(args.folder, args.repo_id, private=args.private)
    print(result)
    return result


@command_line
def main(argv: list[str] | None = None) -> Any:
    args = build_parser().parse_args(argv)
    labels = dict(FLAGS)
    try:
        if args.command == "build":
            return _build(args, labels)
        if args.command == "merge":
            summary = merge_shards(args.inputs, args.output)
            print(summary)
            return summary
        if args.command == "import-released":
            return _import_released(args)
        return _push(args)
    except ArgumentError as error:
        raise UserError(error.message(labels)) from error


if __name__ == "__main__":
    sys.exit(main())
