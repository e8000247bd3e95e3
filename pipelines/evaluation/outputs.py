"""How the evaluation writes files: whole or not at all, and only where it may.

A file is written under a temporary name beside its destination and renamed over it once complete, so a killed run
leaves either the old file or the new one, never half of one. A folder is written into only when it is new, empty, or
one this code wrote before (recognised by its `config.json`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..cli import UserError, check_output_folder


def write_atomically(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """
    Calls `write(staging_path)` and renames the staging file to `path` once `write` has returned.

    Args:
        path (`str` or `os.PathLike`): the destination; its folder must exist.
        write (`Callable[[Path], Any]`): writes the whole file at the path it is given.

    Returns:
        `Path`: `path`.
    """
    path = Path(path)
    # A hidden name in the same folder: the rename stays on one file system, and globs for the real files skip it.
    staging = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        write(staging)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    return path


def write_json(path: str | os.PathLike, value: Any) -> Path:
    """Writes `value` as indented JSON, atomically (see [`write_atomically`])."""
    text = json.dumps(value, indent=2) + "\n"
    return write_atomically(path, lambda staging: staging.write_text(text, encoding="utf-8"))


def check_model_folder(path: str | os.PathLike, flag: str, model_type: str, config_name: str = "config.json") -> Path:
    """
    Refuses, before any work, a converter's output folder that would mix files: a file, an unwritable place, a
    non-empty folder without `config_name`, or one whose `config_name` describes another kind of model. A folder
    holding the same kind of model, written by an earlier conversion, is replaced file by file.

    Args:
        path (`str` or `os.PathLike`): the folder.
        flag (`str`): the option that named it, for the message.
        model_type (`str`): the `model_type` its `config.json` must have if it has one.
        config_name (`str`, *optional*, defaults to `"config.json"`): the marker file.

    Raises:
        [`~pipelines.cli.UserError`]: naming `flag`, the folder and what is wrong.
    """
    path = check_output_folder(path, flag, owned_marker=config_name)
    config_path = path / config_name
    if config_path.is_file():
        try:
            found = json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            found = None
        if found != model_type:
            raise UserError(
                f"{flag} {os.fspath(path)!r} holds a {config_name} of model_type {found!r}, not {model_type!r}; "
                "give an empty or new folder."
            )
    return path
