"""`tango-af-dataset`: build, merge, import and publish AF-AudioSet.

    tango-af-dataset build --audio-dir clips/ --output af-audioset/ [--exclude-ids audiocaps_test.csv]
    tango-af-dataset build --audioset-csv unbalanced_train_segments.csv --audio-dir clips/ --output out/ \
        --num-shards 8 --shard-index 3 --num-proc 8
    tango-af-dataset merge --inputs out-0/ out-1/ ... --output af-audioset/
    tango-af-dataset import-released --json AF-AudioSet.json --output af-audioset-released/ [--audio-dir clips/]
    tango-af-dataset push --folder af-audioset/ --repo-id you/AF-AudioSet
"""

from __future__ import annotations

import argparse
import sys

import torch

from .build import build_af_audioset, merge_shards
from .captioner import DEFAULT_CAPTIONER
from .released import import_released
from .schema import DEFAULT_TOP_K
from .scorer import DEFAULT_CLAP, ClapScorer
from .sources import (
    clips_from_audio_dir,
    clips_from_audioset_csv,
    load_hf_source,
    read_id_list,
)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _sources(args: argparse.Namespace):
    given = [bool(args.hf_dataset), bool(args.audioset_csv), bool(args.audio_dir) and not args.audioset_csv]
    if sum(given) != 1:
        raise SystemExit("error: give exactly one source: --audio-dir, --audioset-csv with --audio-dir, or --hf-dataset.")
    if args.hf_dataset:
        return load_hf_source(args.hf_dataset, split=args.split, audio_column=args.audio_column, id_column=args.id_column)
    if args.audioset_csv:
        if not args.audio_dir:
            raise SystemExit("error: --audioset-csv needs --audio-dir, the folder of its clips.")
        return clips_from_audioset_csv(args.audioset_csv, args.audio_dir)
    return clips_from_audio_dir(args.audio_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tango-af-dataset", description="Build and publish AF-AudioSet.")
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
    build.add_argument("--num-captions", type=int, default=20)
    build.add_argument("--top-k", type=int, default=DEFAULT_TOP_K)
    build.add_argument("--exclude-ids", help="File of clip ids never to caption (one per line, or a CSV).")
    build.add_argument("--output", required=True, help="The dataset folder (resumed if it holds an earlier run).")
    build.add_argument("--num-shards", type=int, default=1, help="Machines sharing the work.")
    build.add_argument("--shard-index", type=int, default=0, help="This machine's index.")
    build.add_argument("--unit-size", type=int, default=1024, help="Clips per parquet shard / resumable unit.")
    build.add_argument("--batch-size", type=int, default=4, help="Clips per captioning batch.")
    build.add_argument("--num-proc", type=int, default=None, help="Worker processes, one per GPU.")
    build.add_argument("--device", default=None)
    build.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--max-new-tokens", type=int, default=128)
    build.add_argument("--embed-audio", action="store_true", help="Store each window's audio with its captions.")

    merge = commands.add_parser("merge", help="Merge the folders that several machines wrote.")
    merge.add_argument("--inputs", nargs="+", required=True)
    merge.add_argument("--output", required=True)

    released = commands.add_parser("import-released", help="Import NVIDIA's released AF-AudioSet.json.")
    released.add_argument("--json", required=True)
    released.add_argument("--output", required=True)
    released.add_argument("--audio-dir", help="Clips named by ytid; with it, captions are scored with --clap.")
    released.add_argument("--clap", default=DEFAULT_CLAP)
    released.add_argument("--device", default="cpu")

    push = commands.add_parser(
        "push", help="Upload a finished dataset folder to the Hub (same as `tango-af-publish dataset`)."
    )
    push.add_argument("--folder", required=True)
    push.add_argument("--repo-id", required=True)
    push.add_argument("--private", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "build":
        exclude = read_id_list(args.exclude_ids) if args.exclude_ids else set()
        summary = build_af_audioset(
            _sources(args),
            args.output,
            captioner=args.captioner,
            clap=args.clap,
            num_captions=args.num_captions,
            top_k=args.top_k,
            exclude_ids=exclude,
            num_shards=args.num_shards,
            shard_index=args.shard_index,
            unit_size=args.unit_size,
            batch_size=args.batch_size,
            num_proc=args.num_proc,
            device=args.device,
            dtype=DTYPES[args.dtype],
            seed=args.seed,
            max_new_tokens=args.max_new_tokens,
            embed_audio=args.embed_audio,
        )
        print(summary)
    elif args.command == "merge":
        print(merge_shards(args.inputs, args.output))
    elif args.command == "import-released":
        sources = clips_from_audio_dir(args.audio_dir) if args.audio_dir else None
        scorer = ClapScorer.from_pretrained(args.clap, device=args.device) if args.audio_dir else None
        print(import_released(args.json, args.output, audio_sources=sources, scorer=scorer))
    elif args.command == "push":
        from model_cards.publish import publish_dataset

        print(publish_dataset(args.folder, args.repo_id, private=args.private))
    return 0


if __name__ == "__main__":
    sys.exit(main())
