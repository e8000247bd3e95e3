"""Checks of the AF-AudioSet tools' arguments, run before any work: numbers and their ranges, devices, model and
dataset references, and the shard a process builds (from its arguments or from a launcher's environment).

Every check raises an [`ArgumentError`]: a `ValueError` (the shared command-line wrapper prints it as one line,
exit code 2) that keeps the argument's name apart from the message, so that the library says `top_k 0 must be ...`
and `tango-af-dataset` says `--top-k 0 must be ...` from the same check.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipelines.cli import UserError

# A value left out of the message (e.g. a list of thousands of sources).
NOT_SHOWN = object()


class _Labels(dict):
    """`str.format_map` mapping: an argument named in a message renders as its label, or as its own name."""

    def __missing__(self, key: str) -> str:
        return key


class ArgumentError(UserError):
    """
    A bad argument, named and shown, with what is wrong with it.

    Args:
        argument (`str`):
            The parameter's name (`"top_k"`).
        value (`Any`):
            The bad value, shown with `repr`; `NOT_SHOWN` leaves it out.
        problem (`str`):
            What is wrong, after the name and the value (with no space before it when it starts with ":"). Other
            arguments it mentions are written `{name}` (so that each is shown under its label too); literal braces
            are doubled.
    """

    def __init__(self, argument: str, value: Any, problem: str):
        self.argument = argument
        self.value = value
        self.problem = problem
        super().__init__(self.message())

    def message(self, labels: Mapping[str, str] | None = None) -> str:
        """The message with each argument named by `labels` (e.g. the command line's flags), else by its name."""
        names = _Labels(labels or {})
        shown = "" if self.value is NOT_SHOWN else f" {self.value!r}"
        problem = self.problem.format_map(names)
        return f"{names[self.argument]}{shown}{'' if problem.startswith(':') else ' '}{problem}"


def braces(text: Any) -> str:
    """`text` made literal inside an [`ArgumentError`]'s `problem` (file names may hold braces)."""
    return str(text).replace("{", "{{").replace("}", "}}")


def check_integer(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """`value` as an `int`, refusing booleans, fractions, non-numbers and values outside `[minimum, maximum]`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentError(name, value, "must be a whole number.")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        if minimum is not None and maximum is not None:
            raise ArgumentError(name, value, f"must be at least {minimum} and at most {maximum}.")
        if minimum is not None:
            raise ArgumentError(name, value, f"must be at least {minimum}.")
        raise ArgumentError(name, value, f"must be at most {maximum}.")
    return value


def check_number(name: str, value: Any, minimum: float | None = None, maximum: float | None = None) -> float:
    """`value` as a finite `float` within `[minimum, maximum]`, refusing booleans, strings, NaN and infinities."""
    low = "-inf" if minimum is None else minimum
    high = "inf" if maximum is None else maximum
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ArgumentError(name, value, f"must be a finite number in [{low}, {high}].")
    value = float(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ArgumentError(name, value, f"must be in [{low}, {high}].")
    return value


def check_device(name: str, value: Any, num_proc: int | None = None) -> str | None:
    """
    A device string the builder can run on: `None` or `"auto"` (each worker's GPU, else the CPU), `"cpu"`,
    `"cuda"` / `"cuda:<index>"` with that GPU present, or another `torch.device` type that is available.
    """
    from pipelines.cli import device_problem

    if value is None or value == "auto":
        return value
    if not isinstance(value, str):
        raise ArgumentError(name, value, "must be a device name such as 'cpu', 'cuda' or 'cuda:1'.")
    problem = device_problem(value)
    if problem is not None:
        raise ArgumentError(name, value, problem.replace("{", "{{").replace("}", "}}"))
    return value


def looks_like_local_path(name: str) -> bool:
    """Whether a model or dataset reference can only have meant a local path (it cannot be a Hub repo id)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name:
        return True
    try:
        validate_repo_id(name)
    except HFValidationError:
        return True
    return False


def hub_is_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def check_reference(name: str, value: Any, what: str) -> str:
    """
    A model or dataset reference (a folder, or a Hub repo id): refuses a non-string, a file, and a path that does
    not exist, with a message saying which it looked like, instead of huggingface_hub's "Repo id must be in the
    form 'repo_name' or 'namespace/repo_name'".

    Args:
        name (`str`): the parameter's name.
        value (`Any`): the reference.
        what (`str`): what it should be, for the messages (`"a captioner checkpoint"`).
    """
    if not isinstance(value, (str, os.PathLike)):
        raise ArgumentError(name, value, f"must be a folder or a Hub repo id of {what}.")
    value = os.fspath(value)
    path = Path(value).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ArgumentError(name, value, f"is a file; give the folder of {what}, or a Hub repo id.")
        return value
    if looks_like_local_path(value):
        raise ArgumentError(name, value, f"does not exist: it is not a folder, nor a Hub repo id of {what}.")
    return value


def describe_load_failure(name: str, value: str, what: str, error: BaseException) -> ArgumentError:
    """The [`ArgumentError`] for a reference that passed [`check_reference`] but could not be loaded."""
    detail = braces(" ".join(str(error).split())[:300])
    if Path(value).expanduser().is_dir():
        return ArgumentError(name, value, f"is a folder, but not one of {what}: {detail}")
    why = (
        "the Hub is switched off (HF_HUB_OFFLINE=1) and it is not in the local cache"
        if hub_is_offline()
        else "it could not be loaded from the Hub"
    )
    return ArgumentError(
        name, value, f"is not a folder, and as a Hub repo id of {what} it cannot be loaded: {why} ({detail})"
    )


# ---------------------------------------------------------------------------------------------------- shards

# Launchers whose environment names the shard a process builds, in the order they are read. A Slurm job array
# gives machines (one array task each), torchrun / `accelerate launch` give processes on a machine (one per GPU); when
# both are present (an array of multi-GPU nodes, each running torchrun), they compose: task t's process r builds
# shard t * WORLD_SIZE + r of COUNT * WORLD_SIZE.
SLURM_TASK_ID, SLURM_TASK_MIN, SLURM_TASK_COUNT = (
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_COUNT",
)
TORCH_RANK, TORCH_WORLD_SIZE, TORCH_LOCAL_RANK = "RANK", "WORLD_SIZE", "LOCAL_RANK"


def _environment_integer(environ: Mapping[str, str], key: str) -> int:
    text = environ[key]
    try:
        return int(text)
    except ValueError:
        raise ArgumentError(key, text, "in the environment must be a whole number.") from None


def shard_from_environment(environ: Mapping[str, str] | None = None) -> tuple[int, int, str] | None:
    """
    The `(num_shards, shard_index, where)` a launcher's environment assigns to this process, or `None` when no
    launcher set one.

    - `SLURM_ARRAY_TASK_ID` / `SLURM_ARRAY_TASK_COUNT` (a Slurm job array, `--array=0-(N-1)`; the index counts from
      `SLURM_ARRAY_TASK_MIN`, so `--array=1-N` works too);
    - `RANK` / `WORLD_SIZE` (torchrun, `accelerate launch`);
    - both: they compose, see `SLURM_TASK_ID` above.

    Args:
        environ (`Mapping[str, str]`, *optional*): defaults to `os.environ`.
    """
    environ = os.environ if environ is None else environ
    parts: list[tuple[int, int, str]] = []
    if SLURM_TASK_ID in environ and SLURM_TASK_COUNT in environ:
        task = _environment_integer(environ, SLURM_TASK_ID)
        first = _environment_integer(environ, SLURM_TASK_MIN) if SLURM_TASK_MIN in environ else 0
        count = _environment_integer(environ, SLURM_TASK_COUNT)
        if not 0 <= task - first < count:
            raise ArgumentError(
                SLURM_TASK_ID,
                task,
                f"does not fit an array of {count} tasks from {first}: submit the array as --array=0-{count - 1} (no "
                "gaps or steps), or give --num-shards and --shard-index.",
            )
        parts.append((count, task - first, f"{SLURM_TASK_ID}={task} of {SLURM_TASK_COUNT}={count}"))
    if TORCH_RANK in environ or TORCH_WORLD_SIZE in environ:
        if TORCH_RANK not in environ or TORCH_WORLD_SIZE not in environ:
            missing = TORCH_WORLD_SIZE if TORCH_RANK in environ else TORCH_RANK
            raise ArgumentError(
                missing, NOT_SHOWN, "is missing from the environment, which sets only one of RANK and WORLD_SIZE."
            )
        rank = _environment_integer(environ, TORCH_RANK)
        world = _environment_integer(environ, TORCH_WORLD_SIZE)
        if not 0 <= rank < world:
            raise ArgumentError(TORCH_RANK, rank, f"must be in [0, {world}) with {TORCH_WORLD_SIZE}={world}.")
        parts.append((world, rank, f"{TORCH_RANK}={rank} of {TORCH_WORLD_SIZE}={world}"))
    if not parts:
        return None
    num_shards, shard_index = 1, 0
    for count, index, _ in parts:
        num_shards, shard_index = num_shards * count, shard_index * count + index
    return num_shards, shard_index, ", ".join(where for _, _, where in parts)
