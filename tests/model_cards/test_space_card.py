"""The Space's README: valid Space metadata, the app's own limits, and the committed file kept in step."""

import gradio
from huggingface_hub import SpaceCard

from model_cards.space_card import load_app_module, space_card, space_folder


def test_committed_space_readme_is_the_rendered_card():
    # The README in spaces/ is what `space_card()` renders with no links; a change of template, limits or gradio
    # version must be re-rendered (`python -c "from model_cards.space_card import *; write_space_card(space_folder())"`).
    assert (space_folder() / "README.md").read_text() == str(space_card())


def test_space_metadata_is_valid_and_names_what_the_hub_needs():
    card = SpaceCard(str(space_card(models=["me/tango"], datasets=["me/AF-AudioSet"], model="me/tango")))
    data = card.data
    assert data.sdk == "gradio" and data.sdk_version == gradio.__version__ and data.python_version == "3.11"
    assert data.app_file == "app.py" and (space_folder() / data.app_file).is_file()
    assert data.models == ["me/tango"] and data.datasets == ["me/AF-AudioSet"]
    assert "https://huggingface.co/datasets/me/AF-AudioSet" in card.text


def test_limits_table_shows_the_apps_limits():
    limits = load_app_module().LIMITS
    text = space_card().text
    assert f"| prompt and negative prompt | at most {limits.max_prompt_chars} characters |" in text
    assert f"| duration | {limits.min_duration_s:g} to {limits.max_duration_s:g} s |" in text
    assert f"| candidates per request | {limits.min_candidates} to {limits.max_candidates} |" in text
    assert f"| requests waiting in the queue | {limits.queue_max_size} |" in text
    assert limits.max_upload_bytes == 1024 and "| file uploads | none taken; refused above 1 KiB |" in text
    assert "embedded in this Space (`model/`)" in text


def test_the_upload_limit_is_shown_in_whole_units_or_bytes():
    import dataclasses

    from model_cards.space_card import limit_rows

    limits = load_app_module().LIMITS
    shown = {
        size: dict(limit_rows(dataclasses.replace(limits, max_upload_bytes=size)))["file uploads"]
        for size in (1, 1000, 1024, 3 * 2**20, 2**30 + 1)
    }
    assert shown == {
        1: "none taken; refused above 1 byte",
        1000: "none taken; refused above 1000 bytes",
        1024: "none taken; refused above 1 KiB",
        3 * 2**20: "none taken; refused above 3 MiB",
        2**30 + 1: f"none taken; refused above {2**30 + 1} bytes",
    }
