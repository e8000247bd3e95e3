"""What the AF-AudioSet tools wrote into a folder, so that they never overwrite anything else.

A tool writes a file only if the file does not exist yet, or if its content is still what the tool recorded writing
(SHA-256 in the folder's `build_manifest.json`, or in a unit's record for the shards, see `datasets_scripts.units`).
A README the user wrote, or a card the user edited after the build, is refused by name instead of replaced.

Every file is written through a temporary name and renamed into place, and the manifest is updated around the
rename so that a job killed at any point leaves files whose content the manifest accepts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from pipelines.cli import UserError

MANIFEST_NAME = "build_manifest.json"
_HASH_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, read in chunks (shards with embedded audio are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def temporary_path(path: str | os.PathLike) -> Path:
    """Where `path` is written before being renamed into place: hidden (readers and `publish` skip dot files) and
    named by process, so that shards writing the same top-level file into one folder never share a temporary."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def remove_stray_temporaries(path: str | os.PathLike) -> list[Path]:
    """Deletes the temporaries of `path` that a killed job left behind; returns them. Call it only while no other
    process can be writing `path`."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stray = sorted(path.parent.glob(f".{path.name}.*tmp"))
    for leftover in stray:
        leftover.unlink(missing_ok=True)
    return stray


def write_atomically(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path` through a temporary file, so that `path` is always either absent, old or complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json_atomically(path: str | os.PathLike, record: object) -> None:
    write_atomically(path, (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


class Manifest:
    """
    The files a tool wrote into `folder`, each with the SHA-256 of the content it wrote (`build_manifest.json`).

    Args:
        folder (`str` or `os.PathLike`): the folder.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / MANIFEST_NAME
        self.files: dict[str, list[str]] = {}
        if self.path.is_file():
            try:
                record = json.loads(self.path.read_text(encoding="utf-8"))
                self.files = {str(k): [str(h) for h in v] for k, v in record["files"].items()}
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                raise UserError(
                    f"{os.fspath(self.path)!r} is damaged ({error}); it records which files of the folder the build "
                    "wrote, so nothing there is overwritten. Move the folder's README.md, stats.json, "
                    "build_summary.json and assets/ away and delete it to let the build write them again."
                ) from error

    def owns(self, relative: str) -> bool:
        """Whether `relative` may be written: it does not exist, or its content is what was recorded."""
        path = self.folder / relative
        if not path.exists():
            return True
        return path.is_file() and file_sha256(path) in self.files.get(relative, ())

    def not_owned(self, relatives: Iterable[str]) -> list[str]:
        """Those of `relatives` that exist with content this manifest did not record (the user's, or edited)."""
        return [relative for relative in relatives if not self.owns(relative)]

    def _save(self) -> None:
        write_json_atomically(self.path, {"files": dict(sorted(self.files.items()))})

    def write_files(self, contents: Mapping[str, bytes]) -> None:
        """
        Writes files (relative path -> bytes) and records them. The new hashes are recorded before the files are
        renamed into place and the old ones forgotten after, so a kill at any point leaves every file owned.

        Raises:
            `UserError`: naming a file that exists with content this manifest did not record.
        """
        refused = self.not_owned(contents)
        if refused:
            raise UserError(
                f"{os.fspath(self.folder / refused[0])!r} was not written by this tool (or was changed since); "
                "move it out of the folder to let the tool write its own."
            )
        new = {relative: hashlib.sha256(data).hexdigest() for relative, data in contents.items()}
        for relative, digest in new.items():
            self.files[relative] = sorted(set(self.files.get(relative, [])) | {digest})
        self._save()
        for relative, data in contents.items():
            remove_stray_temporaries(self.folder / relative)
            write_atomically(self.folder / relative, data)
        for relative, digest in new.items():
            self.files[relative] = [digest]
        self._save()

    def remove(self, relative: str) -> None:
        """Deletes a file this manifest owns (one the tool no longer writes) and forgets it."""
        if not self.owns(relative):
            raise UserError(f"{os.fspath(self.folder / relative)!r} was not written by this tool; not deleting it.")
        (self.folder / relative).unlink(missing_ok=True)
        self.files.pop(relative, None)
        self._save()


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, name: str) -> Iterator[None]:
    """
    Holds an exclusive lock named `name` in `folder` while the block runs, so that one piece of work (a shard, a
    merge) is never run twice at once into one folder. The operating system releases it when the process dies, so a
    killed job never blocks its own resumption. Without `fcntl` (Windows) no lock is taken.

    Raises:
        `UserError`: when another process holds the lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".{name}.lock"
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(
                f"Another process is already running {name.replace('-', ' ')} in {os.fspath(folder)!r} (it holds "
                f"{os.fspath(path)!r}); wait for it to end."
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
