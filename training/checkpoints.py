"""Training checkpoints: `checkpoint-N` folders written whole or not at all, pruning, and resuming."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from accelerate import Accelerator
from accelerate.logging import get_logger

logger = get_logger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
TRAINING_STATE_NAME = "training_state.json"


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete `checkpoint-N` folders, oldest first (a save still being written has a temporary name)."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)]
    found = [p for p in found if p.name[len(CHECKPOINT_PREFIX) :].isdigit() and (p / TRAINING_STATE_NAME).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))


def prune_checkpoints(output_dir: str | os.PathLike, total_limit: int | None) -> list[Path]:
    """Removes the oldest checkpoints so that one more can be saved within `total_limit`."""
    if total_limit is None:
        return []
    checkpoints = list_checkpoints(output_dir)
    removed = checkpoints[: max(0, len(checkpoints) - total_limit + 1)]
    for path in removed:
        logger.info(f"Removing {path} (--checkpoints_total_limit {total_limit})")
        shutil.rmtree(path)
    return removed


def save_checkpoint(
    accelerator: Accelerator, output_dir: str, step: int, state: dict, total_limit: int | None
) -> None:
    """`accelerator.save_state` into a temporary folder renamed to `checkpoint-N` once whole."""
    final = Path(output_dir) / f"{CHECKPOINT_PREFIX}{step}"
    staging = Path(output_dir) / f".{final.name}.partial"
    if accelerator.is_main_process:
        prune_checkpoints(output_dir, total_limit)
        shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    if accelerator.is_main_process:
        (staging / TRAINING_STATE_NAME).write_text(json.dumps(state, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        logger.info(f"Saved {final}")
    accelerator.wait_for_everyone()


def resolve_resume(output_dir: str, resume: str | None) -> Path | None:
    if resume is None:
        return None
    if resume == "latest":
        checkpoints = list_checkpoints(output_dir)
        return checkpoints[-1] if checkpoints else None
    path = Path(resume)
    if not path.is_absolute() and not path.exists():
        path = Path(output_dir) / resume
    if not (path / TRAINING_STATE_NAME).is_file():
        raise ValueError(f"--resume_from_checkpoint {resume!r} is not a complete checkpoint folder.")
    return path
