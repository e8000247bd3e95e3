"""The README of the Space (`spaces/`), rendered from `templates/space.md` with huggingface_hub's
`SpaceCard.from_template`: the Space YAML (sdk gradio and its version, python version, app file, the linked models
and datasets) and a page stating the limits the app enforces, read from the app's own `LIMITS`."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from huggingface_hub import SpaceCard, SpaceCardData

TEMPLATE_PATH = Path(__file__).with_name("templates") / "space.md"
TITLE = "Tango-AF text-to-audio"
PYTHON_VERSION = "3.11"


def space_folder() -> Path:
    """The Space repo folder of this installation (`spaces/`: `app.py`, `requirements.txt`, `README.md`)."""
    return Path(__file__).resolve().parents[1] / "spaces"


def load_app_module(path: str | os.PathLike | None = None, name: str = "tango_af_space_app") -> ModuleType:
    """
    Imports a Space `app.py` from its file, as the Space itself runs it. (`import spaces.app` would depend on which of
    two packages named `spaces` wins: this project's, or Hugging Face's ZeroGPU helpers.)

    Args:
        path (`str` or `os.PathLike`, *optional*):
            The file; defaults to this installation's `spaces/app.py`. A copy elsewhere sees its own folder as the
            Space (its `APP_DIR`).
        name (`str`, *optional*, defaults to `"tango_af_space_app"`):
            The module's name; a module already imported under it is returned as it is.

    Returns:
        `ModuleType`: the app module.
    """
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(path) if path else space_folder() / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it, so that its dataclasses can find their module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def limit_rows(limits: Any) -> list[tuple[str, str]]:
    """The app's `LIMITS` as the rows of the README's table."""
    return [
        ("prompt and negative prompt", f"at most {limits.max_prompt_chars} characters"),
        ("duration", f"{limits.min_duration_s:g} to {limits.max_duration_s:g} s"),
        ("denoising steps", f"{limits.min_steps} to {limits.max_steps}"),
        ("guidance scale", f"{limits.min_guidance:g} to {limits.max_guidance:g}"),
        ("candidates per request", f"{limits.min_candidates} to {limits.max_candidates}"),
        ("seed", f"{limits.min_seed} to {limits.max_seed}"),
        ("requests generating at once", str(limits.concurrency_limit)),
        ("requests waiting in the queue", str(limits.queue_max_size)),
        ("file uploads", f"none taken; refused above {_size(limits.max_upload_bytes)}"),
    ]


def _size(num_bytes: int) -> str:
    """`1024` -> `"1 KiB"`; whole units only, else bytes."""
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if num_bytes >= factor and num_bytes % factor == 0:
            return f"{num_bytes // factor} {unit}"
    return "1 byte" if num_bytes == 1 else f"{num_bytes} bytes"


def space_card(
    models: Sequence[str] = (),
    datasets: Sequence[str] = (),
    model: str | None = None,
    title: str = TITLE,
    license: str = "apache-2.0",
) -> SpaceCard:
    """
    The Space's README as a card.

    Args:
        models (`Sequence[str]`, *optional*):
            Model repos the Space links to (its `models` metadata).
        datasets (`Sequence[str]`, *optional*):
            Dataset repos the Space links to (its `datasets` metadata).
        model (`str`, *optional*):
            The Hub model the app loads; `None` for the folder embedded in the Space.
        title (`str`, *optional*, defaults to `"Tango-AF text-to-audio"`):
            The Space's title.
        license (`str`, *optional*, defaults to `"apache-2.0"`):
            The licence of the Space's code (the project's); the model's own licence applies to its outputs.

    Returns:
        `SpaceCard`: the card.
    """
    import gradio

    card_data = SpaceCardData(
        title=title,
        sdk="gradio",
        sdk_version=gradio.__version__,
        python_version=PYTHON_VERSION,
        app_file="app.py",
        license=license,
        models=list(models) or None,
        datasets=list(datasets) or None,
        tags=["text-to-audio", "audio", "tango", "tango-af", "diffusers"],
        emoji="🔊",
        colorFrom="indigo",
        colorTo="green",
        pinned=False,
        short_description="Text-to-audio with Tango-AF, candidates ranked by CLAP",
    )
    limits = load_app_module().LIMITS
    return SpaceCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        title=title,
        model=model,
        datasets=list(datasets),
        limits=limit_rows(limits),
        max_candidates=limits.max_candidates,
        sdk_version=gradio.__version__,
    )


def write_space_card(folder: str | os.PathLike, **kwargs: Any) -> SpaceCard:
    """Writes `README.md` into a Space folder; `kwargs` as in [`space_card`]."""
    card = space_card(**kwargs)
    card.save(Path(folder) / "README.md")
    return card
