"""What every tango-af command line shares: user errors as one line, exit codes, and `--debug`.

A command's `main(argv)` is wrapped with [`command_line`]:

    @command_line
    def main(argv: list[str] | None = None) -> int:
        parser = build_parser()
        add_debug_argument(parser)
        args = parser.parse_args(argv)
        ...

- A [`UserError`] (or a `ValueError`, `FileNotFoundError`, `NotADirectoryError`, `IsADirectoryError`,
  `FileExistsError`, `PermissionError`), which by this project's rule names the bad value, is printed as one line,
  `error: ...`, and the command exits with code 2, like argparse's own usage errors.
- Anything else is a bug or an environment failure: one line naming the exception and pointing at `--debug`, exit
  code 1.
- `--debug` anywhere on the command line, or `TANGO_AF_DEBUG=1` in the environment, lets the exception through with
  its traceback.
- Whatever `main` returns that is not an `int` (a summary dict, a path) counts as success: the process exits 0
  rather than handing the object to `sys.exit`, which would print it and exit 1.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEBUG_ENV_VAR = "TANGO_AF_DEBUG"
DEBUG_FLAG = "--debug"

# Exit codes: 2 for a user error (argparse uses 2 for bad arguments too), 1 for anything unexpected, 130 on Ctrl-C.
EXIT_USER_ERROR = 2
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130


class UserError(ValueError):
    """A mistake in what the user asked for; the message names the bad value and says what would be accepted."""


# Exceptions that, raised out of a command, describe the user's input rather than a bug.
USER_ERRORS: tuple[type[BaseException], ...] = (
    UserError,
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    FileExistsError,
    PermissionError,
)


def debug_requested(argv: Sequence[str] | None = None) -> bool:
    """Whether tracebacks were asked for: `--debug` in `argv` (default `sys.argv`) or `TANGO_AF_DEBUG` set to 1."""
    if os.environ.get(DEBUG_ENV_VAR, "").strip().lower() in ("1", "true", "yes"):
        return True
    return DEBUG_FLAG in (sys.argv[1:] if argv is None else argv)


def add_debug_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds `--debug` (show tracebacks) to `parser`, so that it appears in `--help` and parses everywhere."""
    parser.add_argument(
        DEBUG_FLAG,
        action="store_true",
        help=f"Show the full traceback of an error (also: {DEBUG_ENV_VAR}=1).",
    )
    return parser


def one_line(error: BaseException) -> str:
    """The error's message on one line (`FileNotFoundError` and friends keep their file name)."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        message = f"{error.strerror}: {error.filename!r}"
    else:
        message = str(error) or type(error).__name__
    if isinstance(error, KeyError):  # KeyError's str is the repr of the key
        message = f"missing key {message}"
    return " ".join(message.split())


def command_line(main: Callable[..., Any]) -> Callable[..., int]:
    """
    Wraps a command's `main(argv=None)` so that it returns an exit code and reports errors as described in this
    module's docstring.

    Args:
        main (`Callable`): the command; it takes `argv` (`None` for `sys.argv[1:]`) and may return anything.

    Returns:
        `Callable[..., int]`: the wrapped command, to be named by `[project.scripts]` and called by `sys.exit`.
    """

    @functools.wraps(main)
    def wrapped(argv: Sequence[str] | None = None, *args: Any, **kwargs: Any) -> int:
        if debug_requested(argv):
            return _exit_code(main(argv, *args, **kwargs))
        try:
            return _exit_code(main(argv, *args, **kwargs))
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except USER_ERRORS as error:
            print(f"error: {one_line(error)}", file=sys.stderr)
            return EXIT_USER_ERROR
        except SystemExit:
            raise
        except Exception as error:
            logger.debug("unexpected error", exc_info=True)
            print(
                f"error: unexpected {type(error).__name__}: {one_line(error)} "
                f"(run again with {DEBUG_FLAG} or {DEBUG_ENV_VAR}=1 for the traceback)",
                file=sys.stderr,
            )
            return EXIT_FAILURE

    wrapped.is_command_line = True  # what tests check each console script's target for
    return wrapped


def check_output_file(path: str | os.PathLike, flag: str = "--output") -> Path:
    """
    Refuses, before any work is done, an output file that could not be written: an existing folder, a parent that
    is a file, or a place without write permission. Nothing is created.

    Args:
        path (`str` or `os.PathLike`): the file the command will write.
        flag (`str`, *optional*, defaults to `"--output"`): the option that named it, for the message.

    Returns:
        `Path`: `path`.

    Raises:
        [`UserError`]: naming `flag` and the path.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {os.fspath(path)!r} is a folder; give a file name.")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise UserError(f"{flag} {os.fspath(path)!r} exists and is not writable.")
        return path
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(
            f"{flag} {os.fspath(path)!r} cannot be created: {os.fspath(parent)!r} is a file, not a folder."
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {os.fspath(path)!r} cannot be created: {os.fspath(parent)!r} is not writable.")
    return path


def check_output_folder(path: str | os.PathLike, flag: str = "--output_dir", owned_marker: str | None = None) -> Path:
    """
    Refuses, before any work is done, an output folder the command could not or should not write into: a path that
    is a file, an unwritable place, or an existing non-empty folder that an earlier run of the same command did not
    write (recognised by `owned_marker`, a file that command always writes into its folder). Nothing is created.

    Args:
        path (`str` or `os.PathLike`): the folder.
        flag (`str`, *optional*, defaults to `"--output_dir"`): the option that named it, for the message.
        owned_marker (`str`, *optional*): file name whose presence marks the folder as this command's own; without
            it, any non-empty folder is refused.

    Returns:
        `Path`: `path`.

    Raises:
        [`UserError`]: naming `flag` and the path.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {os.fspath(path)!r} is a file, not a folder.")
    if path.is_dir():
        if any(path.iterdir()) and not (owned_marker and (path / owned_marker).is_file()):
            raise UserError(
                f"{flag} {os.fspath(path)!r} is a folder that already holds files this command did not write; "
                "give an empty or new folder."
            )
        if not os.access(path, os.W_OK | os.X_OK):
            raise UserError(f"{flag} {os.fspath(path)!r} is not writable.")
        return path
    check_output_file(path, flag)  # the same rules for the nearest existing parent
    return path


def check_model_reference(name: str, flag: str = "--model") -> str:
    """
    Refuses a model reference that can neither be a local folder nor a Hub repo id, with a message saying which it
    looked like: `from_pretrained` would otherwise answer a mistyped path with huggingface_hub's "Repo id must be in
    the form 'repo_name' or 'namespace/repo_name'".

    Args:
        name (`str`): a folder or a Hub repo id.
        flag (`str`, *optional*, defaults to `"--model"`): the option that named it, for the message.

    Returns:
        `str`: `name`.

    Raises:
        [`UserError`]: naming `flag` and `name`.
    """
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{flag} {name!r} is a file; give a model folder or a Hub repo id.")
        return name
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    # A repo id is `name` or `namespace/name`: anything else that does not exist was meant as a path.
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1
    try:
        validate_repo_id(name)
    except HFValidationError:
        looks_like_path = True
    if looks_like_path:
        raise UserError(f"{flag} {name!r} does not exist (it is neither a folder nor a Hub repo id).")
    return name


def device_problem(name: str) -> str | None:
    """
    What is wrong with a device name on this machine, or `None` when torch can run there. One check for every
    command that takes a device (`tango-af-generate`, the evaluations, the dataset builder).

    Args:
        name (`str`): `"cpu"`, `"cuda"`, `"cuda:1"`, `"mps"`, ...

    Returns:
        `str` or `None`: the problem, worded to follow the option and its value (`--device 'cuda' <problem>`).
    """
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        return "is not a device name; expected cpu, cuda, cuda:N or mps."
    if device.type == "cpu":
        return None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            return f"needs a CUDA GPU, and this machine has none visible (torch {torch.__version__}, {built})."
        if device.index is not None and device.index >= count:
            return f"names GPU {device.index}, but only {count} are visible (cuda:0 to cuda:{count - 1})."
        return None
    backend = torch.backends.mps if device.type == "mps" else getattr(torch, device.type, None)
    if backend is None or not hasattr(backend, "is_available") or not backend.is_available():
        return f"needs a {device.type} device, and none is available on this machine."
    return None


def resolve_device(name: Any, flag: str = "--device") -> Any:
    """
    The `torch.device` to run on, checked with [`device_problem`]: `None` gives CUDA when available, else the CPU.

    Raises:
        [`UserError`]: naming `flag` and the value, for a name torch does not know or a device this machine lacks.
    """
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    problem = device_problem(str(name))
    if problem is not None:
        raise UserError(f"{flag} {str(name)!r} {problem}")
    return torch.device(name)


def _exit_code(result: Any) -> int:
    if isinstance(result, bool) or not isinstance(result, int):
        return 0
    return result
