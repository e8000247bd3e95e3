"""Builds AF-AudioSet from a source of audio: caption every 10 s window, score every caption with CLAP, rank.

The work is split into units of a fixed number of clips (sorted by id, so the split is the same on every run and
machine). Each unit is written as one parquet shard, through a temporary name, when it is finished: a killed job
started again redoes only the units whose shard is missing and ends with the same dataset. With several machines,
`num_shards` / `shard_index` give machine `i` the units `u` with `u % num_shards == i`; `merge_shards` then checks
that every unit is there exactly once.

Captioning and scoring run as one `Dataset.map(batched=True, with_rank=True, num_proc=n)`, each worker loading its
models lazily on GPU `rank` (one process on a CPU), the recipe FACTS.md gives for multi-GPU inference.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import soundfile as sf
import torch
from tqdm.auto import tqdm
from transformers.utils import logging

from .audio import ClipError, make_windows
from .captioner import CAPTION_PROMPT, DEFAULT_CAPTIONER, AudioCaptioner
from .schema import (
    AUDIO_SAMPLING_RATE,
    DATA_DIR,
    DEFAULT_TOP_K,
    FAILURES_DIR,
    rank_scores,
    rows_to_table,
    unit_file_name,
    write_table_atomically,
)
from .scorer import DEFAULT_CLAP, ClapScorer
from .sources import ClipSource
from .sources import exclude_ids as split_excluded

logger = logging.get_logger(__name__)

BUILD_CONFIG_NAME = "build_config.json"
SUMMARY_NAME = "build_summary.json"
EXCLUDED_NAME = "excluded_ids.txt"

# Models are loaded once per worker process and kept for every later batch (one model per GPU).
_MODELS: dict[tuple, Any] = {}


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """Everything that decides the content of the dataset; a resumed or merged build must match it exactly."""

    captioner: str
    clap: str
    num_captions: int
    top_k: int
    seed: int
    prompt: str
    max_new_tokens: int
    window_seconds: float
    min_seconds: float
    unit_size: int
    num_units: int
    num_clips: int
    source_fingerprint: str
    embed_audio: bool

    def check_matches(self, other: BuildConfig, where: str) -> None:
        """Raises a `ValueError` naming every field where `other` (read from `where`) differs."""
        mine, theirs = dataclasses.asdict(self), dataclasses.asdict(other)
        diff = {k: (theirs[k], mine[k]) for k in mine if mine[k] != theirs[k]}
        if diff:
            details = ", ".join(f"{k}: {old!r} there vs {new!r} now" for k, (old, new) in diff.items())
            raise ValueError(f"{where} was built with other settings ({details}); use another output folder.")


@dataclasses.dataclass
class BuildSummary:
    """Counts of a build: every clip of the source is captioned, failed (with a reason) or excluded."""

    clips: int = 0
    excluded: int = 0
    captioned_clips: int = 0
    failed_clips: int = 0
    windows: int = 0
    captions: int = 0
    units_done: int = 0
    units_skipped: int = 0
    failures_by_reason: dict[str, int] = dataclasses.field(default_factory=dict)
    # Wall time of the units run now (not the resumed ones), the clips they held and the workers and device used:
    # the measured per-clip cost the dataset card projects to the whole of AudioSet.
    seconds: float = 0.0
    timed_clips: int = 0
    workers: int = 1
    device: str = ""

    @property
    def seconds_per_clip(self) -> float | None:
        return self.seconds / self.timed_clips if self.timed_clips else None

    def add_unit(self, rows: list[dict], failures: list[dict]) -> None:
        self.captioned_clips += len({r["clip_id"] for r in rows})
        self.windows += len({(r["clip_id"], r["window_start"]) for r in rows})
        self.captions += len(rows)
        self.failed_clips += len(failures)
        reasons = Counter(self.failures_by_reason)
        reasons.update(f["reason"] for f in failures)
        self.failures_by_reason = dict(sorted(reasons.items()))

    def __str__(self) -> str:
        reasons = ", ".join(f"{k} {v}" for k, v in self.failures_by_reason.items()) or "none"
        return (
            f"{self.clips} clips: {self.captioned_clips} captioned ({self.windows} windows, {self.captions} captions), "
            f"{self.failed_clips} failed ({reasons}), {self.excluded} excluded; "
            f"{self.units_done} units written, {self.units_skipped} already done"
        )


def source_fingerprint(clip_ids: Sequence[str]) -> str:
    """A hash of the sorted clip ids, so a resumed build can tell it is reading the same source."""
    digest = hashlib.sha256()
    for clip_id in clip_ids:
        digest.update(clip_id.encode("utf-8") + b"\n")
    return digest.hexdigest()


def _device_for(rank: int | None, device: str | None) -> str:
    if device is not None and device != "auto":
        return device
    if torch.cuda.is_available():
        return f"cuda:{(rank or 0) % torch.cuda.device_count()}"
    return "cpu"


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
        if self.captioner is not None and self.scorer is not None:
            return self.captioner, self.scorer
        device = _device_for(rank, self.device)
        config = self.config
        key = (
            config.captioner,
            config.clap,
            device,
            self.dtype,
            config.num_captions,
            config.seed,
            config.max_new_tokens,
            config.prompt,
        )
        if key not in _MODELS:
            logger.info(f"Loading {config.captioner} and {config.clap} on {device}")
            captioner = AudioCaptioner.from_pretrained(
                config.captioner,
                device=device,
                dtype=self.dtype,
                num_captions=config.num_captions,
                max_new_tokens=config.max_new_tokens,
                prompt=config.prompt,
                seed=config.seed,
            )
            scorer = ClapScorer.from_pretrained(config.clap, device=device, dtype=self.dtype)
            _MODELS[key] = (captioner, scorer)
        return _MODELS[key]

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
                self._append(out, clip_id=source.clip_id, origin=source.origin, failure=error.reason, detail=error.detail)
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
            failures.append({"clip_id": record["clip_id"], "origin": record["origin"], "reason": record["failure"], "detail": record["detail"]})
            continue
        row = {
            "clip_id": record["clip_id"],
            "window_start": record["window_start"],
            "caption_index": record["caption_index"],
            "caption": record["caption"],
            "clap_similarity": record["clap_similarity"],
            "rank": record["rank"],
            "captioner": config.captioner,
            "clap": config.clap,
            "prompt": config.prompt,
        }
        if config.embed_audio:
            row["audio"] = {"bytes": record["audio"], "path": f"{record['clip_id']}@{record['window_start']:.2f}.wav"}
        rows.append(row)
    return rows, failures


def _write_failures(failures: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(failure, ensure_ascii=False) + "\n" for failure in failures)
    os.replace(tmp, path)


def _model_name(model: str | AudioCaptioner | ClapScorer) -> str:
    return model if isinstance(model, str) else model.model_id


def build_af_audioset(
    sources: Sequence[ClipSource],
    output_dir: str | os.PathLike,
    captioner: str | AudioCaptioner = DEFAULT_CAPTIONER,
    clap: str | ClapScorer = DEFAULT_CLAP,
    num_captions: int = 20,
    top_k: int = DEFAULT_TOP_K,
    exclude_ids: set[str] | None = None,
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

    Args:
        sources (`Sequence[ClipSource]`):
            The clips, from `datasets_scripts.sources`.
        output_dir (`str` or `os.PathLike`):
            The dataset folder; a folder holding an earlier run with the same settings is resumed.
        captioner (`str` or `AudioCaptioner`, *optional*, defaults to `"nvidia/audio-flamingo-3-hf"`):
            Hub id or folder of an Audio Flamingo 3 or Qwen2-Audio checkpoint, or a loaded captioner.
        clap (`str` or `ClapScorer`, *optional*, defaults to `"laion/clap-htsat-fused"`):
            Hub id or folder of a `ClapModel`, or a loaded scorer.
        num_captions (`int`, *optional*, defaults to 20):
            Sampled captions per window.
        top_k (`int`, *optional*, defaults to 3):
            Captions per window kept by the published configurations (all are stored).
        exclude_ids (`set[str]`, *optional*):
            Clip ids never captioned, e.g. AudioCaps / MusicCaps evaluation clips.
        num_shards (`int`, *optional*, defaults to 1):
            Machines sharing the work.
        shard_index (`int`, *optional*, defaults to 0):
            This machine's index among them.
        unit_size (`int`, *optional*, defaults to 1024):
            Clips per unit of work, i.e. per parquet shard and per resumable step.
        batch_size (`int`, *optional*, defaults to 4):
            Clips per captioning batch (each expands to `num_captions` sequences).
        num_proc (`int`, *optional*):
            Worker processes, one per GPU; `None` runs in this process.
        device (`str`, *optional*):
            Device of the models; defaults to the worker's GPU, else the CPU.
        dtype (`torch.dtype`, *optional*, defaults to `torch.float32`):
            Models' dtype.
        seed (`int`, *optional*, defaults to 0):
            Seed of the caption sampling; each window's captions depend only on it and the window's key.
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
            With a single shard, write the dataset card once every unit is done.

    Returns:
        `BuildSummary`: the counts, also written to `build_summary.json` and logged.
    """
    if num_shards < 1:
        raise ValueError(f"`num_shards` must be at least 1, got {num_shards}.")
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"`shard_index` must be in [0, {num_shards}), got {shard_index}.")
    if unit_size < 1 or batch_size < 1 or num_captions < 1:
        raise ValueError(f"`unit_size`, `batch_size` and `num_captions` must be positive, got {unit_size}, {batch_size}, {num_captions}.")
    if not isinstance(captioner, str) and num_proc and num_proc > 1:
        raise ValueError("Loaded models run in this process only: pass model ids to use `num_proc` workers.")

    output_dir = Path(output_dir)
    ids = [s.clip_id for s in sources]
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    if duplicates:
        raise ValueError(f"Clip ids must be unique; repeated: {duplicates[:5]}")
    kept, excluded_sources = split_excluded(sources, set(exclude_ids or ()))
    kept = sorted(kept, key=lambda s: s.clip_id)
    excluded = sorted(s.clip_id for s in excluded_sources)
    num_units = max(1, -(-len(kept) // unit_size))
    config = BuildConfig(
        captioner=_model_name(captioner),
        clap=_model_name(clap),
        num_captions=num_captions,
        top_k=top_k,
        seed=seed,
        prompt=prompt,
        max_new_tokens=max_new_tokens,
        window_seconds=window_seconds,
        min_seconds=min_seconds,
        unit_size=unit_size,
        num_units=num_units,
        num_clips=len(sources),
        source_fingerprint=source_fingerprint([s.clip_id for s in kept]),
        embed_audio=embed_audio,
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    config_path = output_dir / BUILD_CONFIG_NAME
    if config_path.exists():
        config.check_matches(read_build_config(output_dir), str(output_dir))
    else:
        config_path.write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    (output_dir / EXCLUDED_NAME).write_text("".join(f"{i}\n" for i in excluded))

    # Each machine accounts for the clips of its own units; the excluded ones are counted once, by machine 0, so
    # that the machines' counts add up to the source.
    summary = BuildSummary(
        clips=len(excluded) if shard_index == 0 else 0,
        excluded=len(excluded) if shard_index == 0 else 0,
        workers=num_proc or 1,
        device=_device_for(None, device) if isinstance(captioner, str) else str(captioner.device),
    )
    my_units = [u for u in range(num_units) if u % num_shards == shard_index]
    for unit in tqdm(my_units, desc=f"AF-AudioSet shard {shard_index}/{num_shards}", unit="unit"):
        shard_path = output_dir / DATA_DIR / unit_file_name(unit, num_units)
        failures_path = output_dir / FAILURES_DIR / f"{unit:05d}.jsonl"
        unit_sources = kept[unit * unit_size : (unit + 1) * unit_size]
        summary.clips += len(unit_sources)
        if failures_path.exists():
            summary.units_skipped += 1
            rows, failures = _read_unit(shard_path, failures_path)
        else:
            started = time.perf_counter()
            # One map function per unit: workers receive only this unit's sources. Worker processes (and so
            # their models) live for one unit, which is why units should be large on GPUs.
            function = CaptionAndScore(
                unit_sources,
                config,
                device=device,
                dtype=dtype,
                captioner=None if isinstance(captioner, str) else captioner,
                scorer=None if isinstance(clap, str) else clap,
            )
            rows, failures = run_unit(function, batch_size, num_proc)
            # The failures file is written last: its presence marks the unit as done. A unit whose clips all
            # failed has no shard (an empty parquet file breaks the datasets reader).
            if rows:
                write_table_atomically(rows_to_table(rows, with_audio=embed_audio), shard_path)
            _write_failures(failures, failures_path)
            summary.units_done += 1
            summary.seconds += time.perf_counter() - started
            summary.timed_clips += len(unit_sources)
        summary.add_unit(rows, failures)

    _write_summary(summary, output_dir)
    logger.warning(f"AF-AudioSet build: {summary}")
    if finalize and num_shards == 1:
        from model_cards.dataset_card import write_dataset_card

        write_dataset_card(output_dir)
    return summary


def _write_summary(summary: BuildSummary, output_dir: Path) -> None:
    record = {**dataclasses.asdict(summary), "seconds_per_clip": summary.seconds_per_clip}
    (output_dir / SUMMARY_NAME).write_text(json.dumps(record, indent=2) + "\n")


def _read_unit(shard_path: Path, failures_path: Path) -> tuple[list[dict], list[dict]]:
    import pyarrow.parquet as pq

    rows = pq.read_table(shard_path, columns=["clip_id", "window_start"]).to_pylist() if shard_path.exists() else []
    with open(failures_path, encoding="utf-8") as f:
        failures = [json.loads(line) for line in f if line.strip()]
    return rows, failures


def read_build_config(folder: str | os.PathLike) -> BuildConfig:
    """The `BuildConfig` a dataset folder was built with."""
    path = Path(folder) / BUILD_CONFIG_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: {folder} is not an AF-AudioSet build folder.")
    return BuildConfig(**json.loads(path.read_text()))


def merge_shards(inputs: Sequence[str | os.PathLike], output_dir: str | os.PathLike) -> BuildSummary:
    """
    Gathers the shards that several machines wrote into one dataset folder and writes its card.

    Every input must have been built with the same settings, and every unit of work must be present exactly once
    across them; otherwise a `ValueError` names the missing or repeated units (nothing is written).

    Args:
        inputs (`Sequence[str | os.PathLike]`): the machines' output folders.
        output_dir (`str` or `os.PathLike`): the merged dataset folder (may be one of the inputs).

    Returns:
        `BuildSummary`: the counts over all units.
    """
    import shutil

    if not inputs:
        raise ValueError("Nothing to merge: no input folders.")
    configs = [read_build_config(folder) for folder in inputs]
    for folder, config in zip(inputs[1:], configs[1:]):
        configs[0].check_matches(config, str(folder))
    config = configs[0]
    found: dict[int, list[Path]] = {}
    for folder in inputs:
        for unit in range(config.num_units):
            if (Path(folder) / FAILURES_DIR / f"{unit:05d}.jsonl").exists():
                found.setdefault(unit, []).append(Path(folder))
    missing = [u for u in range(config.num_units) if u not in found]
    repeated = {u: [str(f) for f in folders] for u, folders in found.items() if len(folders) > 1}
    if missing or repeated:
        raise ValueError(f"Cannot merge: missing units {missing[:20]}, units found more than once {repeated}.")

    output_dir = Path(output_dir)
    summary = BuildSummary(clips=config.num_clips)
    for unit, (folder,) in sorted(found.items()):
        shard_name = unit_file_name(unit, config.num_units)
        for relative in (Path(DATA_DIR) / shard_name, Path(FAILURES_DIR) / f"{unit:05d}.jsonl"):
            target = output_dir / relative
            if (folder / relative).exists() and folder.resolve() != output_dir.resolve():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(folder / relative, target)
        summary.add_unit(*_read_unit(output_dir / DATA_DIR / shard_name, output_dir / FAILURES_DIR / f"{unit:05d}.jsonl"))
        summary.units_done += 1
    for folder in inputs:
        path = Path(folder) / SUMMARY_NAME
        if path.exists():
            timing = json.loads(path.read_text())
            summary.seconds += timing.get("seconds", 0.0)
            summary.timed_clips += timing.get("timed_clips", 0)
            summary.device = summary.device or timing.get("device", "")
    summary.workers = len(inputs)
    excluded = sorted({line for folder in inputs for line in (Path(folder) / EXCLUDED_NAME).read_text().split()})
    summary.excluded = len(excluded)
    (output_dir / EXCLUDED_NAME).write_text("".join(f"{i}\n" for i in excluded))
    (output_dir / BUILD_CONFIG_NAME).write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    _write_summary(summary, output_dir)
    from model_cards.dataset_card import write_dataset_card

    write_dataset_card(output_dir)
    logger.warning(f"Merged {len(inputs)} folders: {summary}")
    return summary
