"""Builds AF-AudioSet from a source of audio: caption every 10 s window, score every caption with CLAP, rank.

The work is split into units of a fixed number of clips (sorted by id, so the split is the same on every run and
machine). Each unit is written as one parquet shard and one failures list, then a record saying it is done (see
`datasets_scripts.units`): a killed job started again redoes every unit whose outputs are not all there with
exactly the recorded content, and ends with the same dataset. With several machines or processes,
`num_shards` / `shard_index` give shard `i` the units `u` with `u % num_shards == i`; the shards write into one
shared folder or into one folder each, and `merge_shards` then checks that every unit is there exactly once and
writes the card.

Before anything is written, every argument is checked, the models are loaded (or, for worker processes, their
checkpoints are checked), and the output folder is checked: a file the build did not write (a README of the user's,
a card edited after the build) is refused by name, never replaced (see `datasets_scripts.ownership`).

Captioning and scoring run as one `Dataset.map(batched=True, with_rank=True, num_proc=n)`, each worker loading its
models lazily on GPU `rank` (one process on a CPU), the recipe FACTS.md gives for multi-GPU inference.
"""

from __future__ import annotations

import dataclasses
import io
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import soundfile as sf
import torch
from tqdm.auto import tqdm
from transformers.utils import logging

from .audio import ClipError, make_windows
from .build_folder import (
    BUILD_CONFIG_NAME,
    EXCLUDED_NAME,
    SUMMARY_NAME,
    BuildConfig,
    BuildSummary,
    check_output_dir,
    finalize_folder,
    merge_shards,
    read_build_config,
    source_fingerprint,
    unfinished_units,
    write_setup,
)
from .build_models import (
    CAPTIONER_WHAT,
    CLAP_WHAT,
    check_captioner_checkpoint,
    check_clap_checkpoint,
    describe_device,
    device_for,
    load_captioner,
    load_scorer,
)
from .captioner import CAPTION_PROMPT, DEFAULT_CAPTIONER, AudioCaptioner
from .ownership import (
    folder_lock,
)
from .schema import AUDIO_SAMPLING_RATE, DEFAULT_TOP_K, rank_scores
from .scorer import DEFAULT_CLAP, ClapScorer
from .sources import ClipSource
from .sources import exclude_ids as split_excluded
from .units import (
    unit_status,
    write_unit,
)
from .validation import (
    NOT_SHOWN,
    ArgumentError,
    braces,
    check_device,
    check_integer,
    check_number,
    check_reference,
)

logger = logging.get_logger(__name__)

__all__ = [
    "BUILD_CONFIG_NAME",
    "EXCLUDED_NAME",
    "SUMMARY_NAME",
    "BuildConfig",
    "BuildSummary",
    "CaptionAndScore",
    "build_af_audioset",
    "check_build_arguments",
    "finalize_folder",
    "merge_shards",
    "read_build_config",
    "run_unit",
    "unfinished_units",
]

# The seed is hashed with each window's key (`captioner.row_seed`); it is kept to what a signed 64-bit integer holds
# so that it survives every tool that reads the build's settings (JSON readers, parquet, shell arithmetic).
MAX_SEED = 2**63 - 1


def _wav_bytes(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, AUDIO_SAMPLING_RATE, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


class CaptionAndScore:
    """
    The `Dataset.map` function: decodes a batch of clips, captions their windows and scores the captions.

    Picklable (it holds only the sources and settings), so it runs in `num_proc` worker processes; each worker
    loads its captioner and CLAP on the device of its rank the first time it is called.
    """

    def __init__(
        self,
        sources: Sequence[ClipSource],
        config: BuildConfig,
        device: str | None = None,
        dtype: torch.dtype = torch.float32,
        captioner: AudioCaptioner | None = None,
        scorer: ClapScorer | None = None,
    ):
        self.sources = list(sources)
        self.config = config
        self.device = device
        self.dtype = dtype
        self.captioner = captioner
        self.scorer = scorer

    def models(self, rank: int | None) -> tuple[AudioCaptioner, ClapScorer]:
        captioner = self.captioner or load_captioner(self.config, self.device, self.dtype, rank)
        scorer = self.scorer or load_scorer(self.config, self.device, self.dtype, rank)
        return captioner, scorer

    def __call__(self, batch: dict[str, list], rank: int | None = None) -> dict[str, list]:
        captioner, scorer = self.models(rank)
        out: dict[str, list] = {name: [] for name in OUTPUT_FEATURES}
        windows = []
        for index in batch["source_index"]:
            source = self.sources[index]
            try:
                waveform, rate = source.load()
                windows.extend(
                    make_windows(
                        source.clip_id,
                        waveform,
                        rate,
                        window_seconds=self.config.window_seconds,
                        min_seconds=self.config.min_seconds,
                    )
                )
            except ClipError as error:
                self._append(
                    out, clip_id=source.clip_id, origin=source.origin, failure=error.reason, detail=error.detail
                )
        if not windows:
            return out
        captions = captioner.caption([w.window_key for w in windows], [w.audio_16k for w in windows])
        scores = scorer.score([w.audio_48k for w in windows], captions)
        origins = {self.sources[i].clip_id: self.sources[i].origin for i in batch["source_index"]}
        for window, window_captions, window_scores in zip(windows, captions, scores):
            audio = _wav_bytes(window.audio_16k) if self.config.embed_audio else None
            for caption_index, (caption, score, caption_rank) in enumerate(
                zip(window_captions, window_scores, rank_scores(window_scores))
            ):
                self._append(
                    out,
                    clip_id=window.clip_id,
                    origin=origins[window.clip_id],
                    window_start=window.window_start,
                    caption_index=caption_index,
                    caption=caption,
                    clap_similarity=score,
                    rank=caption_rank,
                    audio=audio,
                )
        return out

    @staticmethod
    def _append(out: dict[str, list], **values: Any) -> None:
        for name in OUTPUT_FEATURES:
            out[name].append(values.get(name))


# What the map returns: caption rows and failure rows in one table (failure rows have `failure` set).
OUTPUT_FEATURES = datasets.Features(
    {
        "clip_id": datasets.Value("string"),
        "origin": datasets.Value("string"),
        "window_start": datasets.Value("float32"),
        "caption_index": datasets.Value("int32"),
        "caption": datasets.Value("string"),
        "clap_similarity": datasets.Value("float32"),
        "rank": datasets.Value("int32"),
        "failure": datasets.Value("string"),
        "detail": datasets.Value("string"),
        "audio": datasets.Value("binary"),
    }
)


def run_unit(function: CaptionAndScore, batch_size: int, num_proc: int | None) -> tuple[list[dict], list[dict]]:
    """Captions and scores the clips of one unit (those of `function`); returns caption rows and failures."""
    if num_proc and num_proc > 1:
        import multiprocess

        # Workers are spawned, never forked: CUDA cannot be re-initialised in a forked child, and a child forked
        # after torch has used its OpenMP thread pool can deadlock on the CPU.
        multiprocess.set_start_method("spawn", force=True)
    table = datasets.Dataset.from_dict({"source_index": list(range(len(function.sources)))})
    mapped = table.map(
        function,
        batched=True,
        batch_size=batch_size,
        with_rank=True,
        num_proc=num_proc if num_proc and num_proc > 1 else None,
        remove_columns=["source_index"],
        features=OUTPUT_FEATURES,
        load_from_cache_file=False,
        desc="caption + score",
    )
    rows, failures = [], []
    config = function.config
    for record in mapped:
        if record["failure"] is not None:
            failures.append(
                {
                    "clip_id": record["clip_id"],
                    "origin": record["origin"],
                    "reason": record["failure"],
                    "detail": record["detail"],
                }
            )
            continue
        row = {
            "clip_id": record["clip_id"],
            "window_start": record["window_start"],
            "caption_index": record["caption_index"],
            "caption": record["caption"],
            "clap_similarity": record["clap_similarity"],
            "rank": record["rank"],
            "captioner": published_model_name(config.captioner),
            "clap": published_model_name(config.clap),
            "prompt": config.prompt,
        }
        if config.embed_audio:
            row["audio"] = {"bytes": record["audio"], "path": f"{record['clip_id']}@{record['window_start']:.2f}.wav"}
        rows.append(row)
    return rows, failures


def published_model_name(model: str) -> str:
    """
    How a row names the model that made it: a Hub id as given, a local folder by its own name only. Rows are data,
    published as they are, so they must not carry the build machine's paths (`model_cards.publish` names local
    folders the same way when it stages `build_config.json`).
    """
    return Path(model).name if os.path.isdir(os.path.expanduser(model)) else model


def _model_name(model: str | os.PathLike | AudioCaptioner | ClapScorer) -> str:
    return os.fspath(model) if isinstance(model, (str, os.PathLike)) else model.model_id


def check_build_arguments(
    *,
    captioner: Any,
    clap: Any,
    num_captions: Any,
    top_k: Any,
    num_shards: Any,
    shard_index: Any,
    unit_size: Any,
    batch_size: Any,
    num_proc: Any,
    device: Any,
    seed: Any,
    max_new_tokens: Any,
    dtype: Any = torch.float32,
    prompt: Any = CAPTION_PROMPT,
    window_seconds: Any = 10.0,
    min_seconds: Any = 1.0,
) -> None:
    """
    Checks every argument of [`build_af_audioset`] (types, ranges and how they relate), before any work.

    Raises:
        [`ArgumentError`]: naming the first bad argument and its value.
    """
    num_captions = check_integer("num_captions", num_captions, minimum=1)
    top_k = check_integer("top_k", top_k, minimum=1)
    if top_k > num_captions:
        raise ArgumentError(
            "top_k", top_k, f"is more than {{num_captions}} ({num_captions}), the captions sampled per window."
        )
    num_shards = check_integer("num_shards", num_shards, minimum=1)
    check_integer("shard_index", shard_index, minimum=0, maximum=num_shards - 1)
    check_integer("unit_size", unit_size, minimum=1)
    check_integer("batch_size", batch_size, minimum=1)
    check_integer("max_new_tokens", max_new_tokens, minimum=1)
    check_integer("seed", seed, minimum=0, maximum=MAX_SEED)
    window_seconds = check_number("window_seconds", window_seconds, minimum=0.0)
    if window_seconds == 0:
        raise ArgumentError("window_seconds", window_seconds, "must be more than 0.")
    min_seconds = check_number("min_seconds", min_seconds, minimum=0.0, maximum=window_seconds)
    if min_seconds == 0:
        raise ArgumentError("min_seconds", min_seconds, "must be more than 0.")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ArgumentError("prompt", prompt, "must be a non-empty string.")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ArgumentError(
            "dtype", dtype, "must be a floating-point torch.dtype (torch.float32, torch.bfloat16, ...)."
        )
    if num_proc is not None:
        num_proc = check_integer("num_proc", num_proc, minimum=1)
    check_device("device", device)
    resolved = device_for(None, device)
    gpus = torch.cuda.device_count() if resolved.startswith("cuda") and device in (None, "auto") else None
    if num_proc and gpus is not None and num_proc > gpus:
        raise ArgumentError(
            "num_proc", num_proc, f"is more than the {gpus} visible GPUs (one worker process per GPU)."
        )
    for name, model, what in (("captioner", captioner, CAPTIONER_WHAT), ("clap", clap, CLAP_WHAT)):
        if isinstance(model, (str, os.PathLike)):
            check_reference(name, model, what)
        elif num_proc and num_proc > 1:
            raise ArgumentError(
                name,
                NOT_SHOWN,
                "is a loaded model, which runs in this process only: pass model ids to use {num_proc} workers.",
            )
        elif not hasattr(model, "model_id"):
            raise ArgumentError(name, model, f"must be a folder or Hub repo id of {what}, or a loaded one.")
    # A loaded captioner samples with its own settings: they must be the ones the build records.
    if not isinstance(captioner, (str, os.PathLike)):
        for name, expected in (
            ("num_captions", num_captions),
            ("seed", seed),
            ("max_new_tokens", max_new_tokens),
            ("prompt", prompt),
        ):
            actual = getattr(captioner, name, expected)
            if actual != expected:
                raise ArgumentError(
                    "captioner",
                    NOT_SHOWN,
                    f"was loaded with {name}={braces(repr(actual))}, but the build asks for {{{name}}} {braces(repr(expected))}.",
                )


@dataclasses.dataclass
class _Plan:
    """The source split into units: what a build (or a check of its folder) needs before any work."""

    config: BuildConfig
    units: list[list[ClipSource]]
    excluded: list[str]

    @property
    def excluded_text(self) -> str:
        return "".join(f"{clip_id}\n" for clip_id in self.excluded)


def _plan(sources: Sequence[ClipSource], exclude_ids: Iterable[str] | None, unit_size: int, **settings: Any) -> _Plan:
    if isinstance(exclude_ids, str) or (exclude_ids is not None and not isinstance(exclude_ids, Iterable)):
        raise ArgumentError("exclude_ids", exclude_ids, "must be a collection of clip ids (a set or list of strings).")
    if isinstance(sources, (str, os.PathLike)) or not isinstance(sources, Iterable):
        raise ArgumentError("sources", sources, "must be a sequence of ClipSource (see datasets_scripts.sources).")
    sources = list(sources)
    if not sources:
        raise ArgumentError("sources", NOT_SHOWN, ": the source is empty, there is no clip to caption.")
    ids = [s.clip_id for s in sources]
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    if duplicates:
        raise ArgumentError(
            "sources", NOT_SHOWN, f": clip ids must be unique, and these repeat: {braces(duplicates[:5])}."
        )
    kept, excluded_sources = split_excluded(sources, set(exclude_ids or ()))
    kept = sorted(kept, key=lambda s: s.clip_id)
    excluded = sorted(s.clip_id for s in excluded_sources)
    if not kept:
        raise ArgumentError(
            "sources", NOT_SHOWN, f": no clip is left to caption, all {len(sources)} are excluded by {{exclude_ids}}."
        )
    known = Counter(getattr(s, "listing_failure", None) for s in kept)
    if known.get(None, 0) == 0:
        examples = ", ".join(s.origin for s in kept[:3])
        reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(known.items()))
        raise ArgumentError(
            "sources",
            NOT_SHOWN,
            f": no audio, none of the {len(kept)} entries is an audio clip ({reasons}; e.g. {braces(examples)}).",
        )
    num_units = -(-len(kept) // unit_size)
    config = BuildConfig(
        unit_size=unit_size,
        num_units=num_units,
        num_clips=len(sources),
        source_fingerprint=source_fingerprint([s.clip_id for s in kept], excluded),
        **settings,
    )
    units = [kept[u * unit_size : (u + 1) * unit_size] for u in range(num_units)]
    return _Plan(config=config, units=units, excluded=excluded)


def build_af_audioset(
    sources: Sequence[ClipSource],
    output_dir: str | os.PathLike,
    captioner: str | AudioCaptioner = DEFAULT_CAPTIONER,
    clap: str | ClapScorer = DEFAULT_CLAP,
    num_captions: int = 20,
    top_k: int = DEFAULT_TOP_K,
    exclude_ids: Iterable[str] | None = None,
    num_shards: int = 1,
    shard_index: int = 0,
    unit_size: int = 1024,
    batch_size: int = 4,
    num_proc: int | None = None,
    device: str | None = None,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    prompt: str = CAPTION_PROMPT,
    max_new_tokens: int = 128,
    window_seconds: float = 10.0,
    min_seconds: float = 1.0,
    embed_audio: bool = False,
    finalize: bool = True,
) -> BuildSummary:
    """
    Captions, scores and ranks every window of `sources` into a dataset folder (see the module docstring).

    Nothing is written before every argument is checked, the models are loaded (with `num_proc > 1`, their
    checkpoints are checked and each worker loads them) and the output folder is found fit.

    Args:
        sources (`Sequence[ClipSource]`):
            The clips, from `datasets_scripts.sources`; at least one must be audio.
        output_dir (`str` or `os.PathLike`):
            The dataset folder: new, empty, holding none of the files a build writes, or holding an earlier run with
            the same settings (resumed: the units already done are verified and kept).
        captioner (`str` or `AudioCaptioner`, *optional*, defaults to `"nvidia/audio-flamingo-3-hf"`):
            Hub id or folder of an Audio Flamingo 3 or Qwen2-Audio checkpoint, or a loaded captioner (whose
            `num_captions`, `seed`, `max_new_tokens` and `prompt` must be the ones given here).
        clap (`str` or `ClapScorer`, *optional*, defaults to `"laion/clap-htsat-fused"`):
            Hub id or folder of a `ClapModel`, or a loaded scorer.
        num_captions (`int`, *optional*, defaults to 20):
            Sampled captions per window, at least 1.
        top_k (`int`, *optional*, defaults to 3):
            Captions per window kept by the published configurations (all are stored); 1 to `num_captions`.
        exclude_ids (`Iterable[str]`, *optional*):
            Clip ids never captioned, e.g. AudioCaps / MusicCaps evaluation clips.
        num_shards (`int`, *optional*, defaults to 1):
            Machines or processes sharing the work.
        shard_index (`int`, *optional*, defaults to 0):
            This one's index among them, in `[0, num_shards)`.
        unit_size (`int`, *optional*, defaults to 1024):
            Clips per unit of work, i.e. per parquet shard and per resumable step.
        batch_size (`int`, *optional*, defaults to 4):
            Clips per captioning batch (each expands to `num_captions` sequences).
        num_proc (`int`, *optional*):
            Worker processes, one per GPU; `None` runs in this process.
        device (`str`, *optional*):
            Device of the models; defaults to the worker's GPU (or, in this process, the GPU `LOCAL_RANK` names
            under torchrun), else the CPU.
        dtype (`torch.dtype`, *optional*, defaults to `torch.float32`):
            Models' dtype.
        seed (`int`, *optional*, defaults to 0):
            Seed of the caption sampling, in `[0, 2**63)`; each window's captions depend only on it and the window's
            key.
        prompt (`str`, *optional*, defaults to the paper's prompt):
            The instruction given to the captioner.
        max_new_tokens (`int`, *optional*, defaults to 128):
            Longest caption in tokens.
        window_seconds (`float`, *optional*, defaults to 10.0):
            Length of the windows long clips are cut into.
        min_seconds (`float`, *optional*, defaults to 1.0):
            Shorter clips (and last windows) are not captioned; such clips are listed as failures.
        embed_audio (`bool`, *optional*, defaults to `False`):
            Store each window's 16 kHz audio with its captions (off for AudioSet: it repeats per caption).
        finalize (`bool`, *optional*, defaults to `True`):
            With a single shard, write `build_summary.json` and the dataset card once every unit is done.

    Returns:
        `BuildSummary`: the counts of this shard's units (and, on shard 0, of the excluded clips), with the
        measured time of every one of them, including those an earlier run did.

    Raises:
        [`ArgumentError`] (a `ValueError`): a bad argument, a source with no audio, a checkpoint that cannot be
        loaded, or an output folder holding files the build did not write; nothing is written then.
    """
    check_build_arguments(
        captioner=captioner,
        clap=clap,
        num_captions=num_captions,
        top_k=top_k,
        num_shards=num_shards,
        shard_index=shard_index,
        unit_size=unit_size,
        batch_size=batch_size,
        num_proc=num_proc,
        device=device,
        dtype=dtype,
        seed=seed,
        prompt=prompt,
        max_new_tokens=max_new_tokens,
        window_seconds=window_seconds,
        min_seconds=min_seconds,
    )
    plan = _plan(
        sources,
        exclude_ids,
        unit_size,
        captioner=_model_name(captioner),
        clap=_model_name(clap),
        num_captions=num_captions,
        top_k=top_k,
        seed=seed,
        prompt=prompt,
        max_new_tokens=max_new_tokens,
        window_seconds=float(window_seconds),
        min_seconds=float(min_seconds),
        embed_audio=bool(embed_audio),
    )
    config = plan.config
    finalize = finalize and num_shards == 1
    replace_setup = check_output_dir(output_dir, config, plan.excluded_text, finalize)

    # Every model is loaded (in this process) or its checkpoint checked (for workers) before anything is written.
    in_process = not (num_proc and num_proc > 1)
    loaded_captioner = None if isinstance(captioner, (str, os.PathLike)) else captioner
    loaded_scorer = None if isinstance(clap, (str, os.PathLike)) else clap
    if in_process:
        loaded_captioner = loaded_captioner or load_captioner(config, device, dtype)
        loaded_scorer = loaded_scorer or load_scorer(config, device, dtype)
        device_name = describe_device(str(getattr(loaded_captioner, "device", device_for(None, device))))
    else:
        check_captioner_checkpoint(config.captioner)
        check_clap_checkpoint(config.clap)
        device_name = describe_device(device_for(0, device).split(":")[0] if device in (None, "auto") else device)

    my_units = [u for u in range(config.num_units) if u % num_shards == shard_index]
    if not my_units:
        logger.warning(
            f"Shard {shard_index} of {num_shards} has no unit: the source makes {config.num_units} unit(s) of "
            f"{unit_size} clips. Nothing to do."
        )

    folder = Path(output_dir)
    config_sha = config.sha256()
    summary = BuildSummary(workers=num_proc or 1)
    if shard_index == 0:
        # The excluded clips are counted once, by shard 0, so that the shards' counts add up to the source.
        summary.clips = summary.excluded = len(plan.excluded)
    with folder_lock(folder, f"build-shard-{shard_index:05d}-of-{num_shards:05d}"):
        if replace_setup:
            logger.warning(
                f"{os.fspath(folder)} holds the settings of a build that finished no unit; starting again with these."
            )
        write_setup(folder, config, plan.excluded_text, replace=replace_setup)
        for unit in tqdm(my_units, desc=f"AF-AudioSet shard {shard_index}/{num_shards}", unit="unit"):
            unit_sources = plan.units[unit]
            clip_ids = [s.clip_id for s in unit_sources]
            record, why_not = unit_status(folder, unit, config.num_units, config_sha, clip_ids)
            if record is not None:
                summary.units_skipped += 1
                summary.add_record(record)
                continue
            if why_not:
                logger.warning(f"Unit {unit} is redone: {why_not}.")
            started = time.perf_counter()
            # One map function per unit: workers receive only this unit's sources. Worker processes (and so
            # their models) live for one unit, which is why units should be large on GPUs.
            function = CaptionAndScore(
                unit_sources, config, device=device, dtype=dtype, captioner=loaded_captioner, scorer=loaded_scorer
            )
            rows, failures = run_unit(function, batch_size, num_proc)
            record = write_unit(
                folder,
                unit,
                config.num_units,
                config_sha,
                clip_ids,
                rows,
                failures,
                with_audio=config.embed_audio,
                seconds=time.perf_counter() - started,
                workers=num_proc or 1,
                device=device_name,
            )
            summary.units_done += 1
            summary.add_record(record)

    logger.warning(f"AF-AudioSet build: {summary}")
    if finalize:
        finalize_folder(folder, config)
    return summary
