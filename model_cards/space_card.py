"""The README of the Space (`spaces/`), rendered from `templates/space.md` with huggingface_hub's
`SpaceCard.from_template`: the Space YAML (sdk gradio and its version, python version, app file, the linked models
and datasets) and a page stating the limits the app enforces, read from the app's own `LIMITS`."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import SpaceCard, SpaceCardData

TEMPLATE_PATH = Path(__file__).with_name("templates") / "space.md"
TITLE = "Tango-AF text-to-audio"
PYTHON_VERSION = "3.11"


def _limits() -> tuple[list[tuple[str, Any]], int | None]:
    from spaces import app  # the project's Space app (this package shadows Hugging Face's `spaces` here)

    limits = app.LIMITS
    values = dataclasses.asdict(limits) if dataclasses.is_dataclass(limits) else dict(limits)
    rows = [(name.replace("_", " "), value) for name, value in values.items()]
    return rows, values.get("max_candidates")


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
    limits, max_candidates = _limits()
    return SpaceCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        title=title,
        model=model,
        datasets=list(datasets),
        limits=limits,
        max_candidates=max_candidates,
        sdk_version=gradio.__version__,
    )


def write_space_card(folder: str | os.PathLike, **kwargs: Any) -> SpaceCard:
    """Writes `README.md` into a Space folder; `kwargs` as in [`space_card`]."""
    card = space_card(**kwargs)
    card.save(Path(folder) / "README.md")
    return card
