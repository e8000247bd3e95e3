"""Reading original (non-diffusers) checkpoints safely: pickles only through `torch.load(weights_only=True)`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

# How many offending keys an error message lists.
KEYS_SHOWN = 8


def load_weights_only(path: str | os.PathLike) -> Any:
    """
    Reads a `.safetensors` file, or a pickle (`.bin`, `.pt`, `.ckpt`) that holds only tensors and plain containers.

    Args:
        path (`str` or `os.PathLike`):
            The file.

    Returns:
        The loaded object, on the CPU: a dict of tensors for safetensors; for a pickle, whatever plain structure
        it holds (e.g. `{"epoch": 45, "state_dict": {...}}`).

    Raises:
        `ValueError`: when the pickle cannot be read with `weights_only=True`; it is never retried without.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint file at {path!r}.")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, ... depending on the content
        raise ValueError(
            f"Refusing to load {path!r}: it cannot be read with `torch.load(weights_only=True)` ({err}). Only "
            "pickles of plain tensors are accepted; convert the file to safetensors in a trusted environment "
            "if you trust its origin."
        ) from err


def check_state_dict(state_dict: Any, source: str) -> dict[str, torch.Tensor]:
    """
    Checks that `state_dict` is a flat mapping of names to tensors.

    Args:
        state_dict: what was read.
        source (`str`): where it was read from, for the error message.

    Raises:
        `ValueError`: naming the first offending entries.
    """
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"{source!r} holds a {type(state_dict).__name__}, not a state dict of tensors.")
    bad = [str(k) for k, v in state_dict.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{source!r} holds entries that are not named tensors: {bad[:KEYS_SHOWN]}.")
    return dict(state_dict)


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """
    Reads a state dict of plain tensors, refusing any pickle that holds something else.

    Args:
        path (`str` or `os.PathLike`):
            A `.safetensors` file, or a `.bin` / `.pt` / `.ckpt` pickle read with `torch.load(weights_only=True)`.

    Returns:
        `dict[str, torch.Tensor]`: the tensors by name, on the CPU.

    Raises:
        `ValueError`: when the file cannot be read as plain tensors (never retried with `weights_only=False`), or
            when it holds something other than a flat mapping of names to tensors.
    """
    return check_state_dict(load_weights_only(path), os.fspath(path))
