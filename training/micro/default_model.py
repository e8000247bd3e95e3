"""Installs a micro-reproduction model as the project's embedded default (`pipelines/tango_clap/default_model/`), the
model `make demo`, `tango-af-generate` and the Space use when none is named."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from model_cards.pipeline_card import write_pipeline_card
from model_cards.publish import copy_pipeline_folder
from pipelines.generate import DEFAULT_MODEL_DIR

REPRODUCTION_RECORD = "micro_reproduction.json"
# The pipeline's source is the project's own file: the package loads the folder through `TangoCLAPPipeline`, and
# `save_pretrained` / `tango-af-publish model` write `pipeline.py` again wherever the model leaves the project.
LEFT_OUT = ("pipeline.py",)
CARD_TITLE = "tango-af micro"
SCORER_COMPONENTS = ("clap_model", "clap_tokenizer", "clap_feature_extractor")
# Prompts in the micro world's vocabulary, offered as examples by the Space (`example_prompts.json`).
EXAMPLE_PROMPTS = [
    "A loud siren wails, then a bell rings",
    "Heavy rain falls while a low hum drones",
    "A bass drum booms slowly",
    "A metronome ticks at a fast pace",
    "A rising chirp, followed by a falling chirp",
    "A diesel engine rumbles as a referee's whistle blows in the background",
    "A harsh buzz sounds before a burst of noise",
    "The sound of a high-pitched beep",
]


def reproduction_notes(report: dict[str, Any], name: str) -> str:
    """The model card's account of the study the model comes from (Markdown, `##` headings)."""
    from .reproduce import results_table, sampler_table, selection_text

    config = report["config"]
    sizes = config["split_sizes"]
    quality = report["stages"]["caption_quality"]["table"]
    samplers = ""
    if "samplers" in report:
        chosen = report["chosen_sampler"]
        samplers = (
            f"\n### Samplers\n\nThis model ships with `{chosen['scheduler']}`; use it at "
            f"{chosen['num_inference_steps']} steps, the cheapest setting within {config['fd_tolerance']:.0%} of "
            f"Tango's DDPM-200 in FD and {config['accuracy_tolerance']:.0%} in event accuracy:\n\n"
            f"{sampler_table(report)}\n"
        )
    return f"""## Where this model comes from

This is not a model of real-world audio. It was trained by `python -m training.micro.reproduce`, which runs the
paper's whole method at micro scale on a CPU in a procedural world of 13 synthetic sound-event classes
(`datasets_scripts.micro_world`; tones, chirps, sirens, bells, drums, rain, engines, ...): a tiny CLAP and a tiny
Audio Flamingo 3 captioner were trained on labelled clips; AF-AudioSet was built on an unlabelled pool of
{sizes["pool"]} clips ({config["num_captions"]} sampled captions a clip, CLAP scores, top {config["top_k"]}); a VAE,
a vocoder and TangoCLAP were trained; every model was evaluated on the {sizes["test"]} test captions. This model is
**{name}**, the best of the study by event accuracy. The whole run took {report["seconds"] / 60:.0f} minutes on 2 CPU
cores. It knows only the world's vocabulary: prompts such as "A loud siren wails, then a bell rings" or "Rain falls
while a low hum drones".

### AF-AudioSet captions against the ground truth

{quality}
{selection_text(report["stages"]["caption_quality"]["selection"]) if "selection" in report["stages"]["caption_quality"] else ""}

### The study

FD is computed on the embeddings of an event classifier trained on the world's ground-truth labels (the role PANNs
plays on AudioSet), the CLAP score with the world's CLAP; "events right" is how often that classifier hears exactly
the prompted set of events, "events heard" the share of prompted events it hears.

{results_table(report)}
{samplers}"""


def _replace_scheduler(folder: Path, name: str) -> None:
    """Swaps the folder's scheduler for `name` of `pipelines.generate.SCHEDULERS`, built from the trained one's config."""
    from diffusers import DDPMScheduler

    from pipelines.generate import SCHEDULERS

    if not SCHEDULERS.get(name):
        raise ValueError(f"Unknown scheduler {name!r}; choose one of {[k for k, v in SCHEDULERS.items() if v]}.")
    cls, overrides = SCHEDULERS[name]
    config = DDPMScheduler.load_config(folder / "scheduler")
    shutil.rmtree(folder / "scheduler")
    cls.from_config(config, **overrides).save_pretrained(folder / "scheduler")
    index = json.loads((folder / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", cls.__name__]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def _add_scorer(folder: Path, source: Path) -> None:
    """Copies the CLAP scoring components of the pipeline folder `source` into the pipeline folder `folder`."""
    index = json.loads((folder / "model_index.json").read_text())
    source_index = json.loads((source / "model_index.json").read_text())
    for name in SCORER_COMPONENTS:
        entry = source_index.get(name)
        if not entry or entry[0] is None or not (source / name).is_dir():
            raise ValueError(f"{os.fspath(source)!r} has no {name} to rank candidates with.")
        shutil.rmtree(folder / name, ignore_errors=True)
        shutil.copytree(source / name, folder / name)
        index[name] = entry
    (folder / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def install_default_model(
    model: str | os.PathLike,
    report: dict[str, Any],
    name: str,
    target: str | os.PathLike = DEFAULT_MODEL_DIR,
    scheduler: str | None = None,
    scorer: str | os.PathLike | None = None,
) -> Path:
    """
    Copies a pipeline folder (weights, configs, tokenizers, training record) into `target`, replacing what was there
    only once the copy is whole, with the reproduction's result for it in `micro_reproduction.json` and a model card
    (`README.md`) that reports the study.

    Args:
        model (`str` or `os.PathLike`): the trained pipeline folder.
        report (`dict[str, Any]`): the reproduction's report (`training.micro.reproduce.reproduce`).
        name (`str`): the model's name in the report.
        target (`str` or `os.PathLike`, *optional*): defaults to the embedded default's folder.
        scheduler (`str`, *optional*): a sampler of `pipelines.generate.SCHEDULERS` to ship instead of the trained
            pipeline's (the one `bench/bench_micro_schedulers.py` chose), built `from_config` of it.
        scorer (`str` or `os.PathLike`, *optional*): a pipeline folder whose CLAP scoring parts (`clap_model`,
            `clap_tokenizer`, `clap_feature_extractor`) are added, so that candidates are ranked by CLAP (the
            training script's output leaves them out); the reproduction passes its base pipeline, which holds the
            world's CLAP.

    Returns:
        `Path`: `target`.
    """
    target = Path(target)
    row = next((r for r in report["results"] if r["name"] == name), None)
    if row is None:
        raise ValueError(f"No model named {name!r} in the report; it has {[r['name'] for r in report['results']]}.")
    staging = target.parent / f".{target.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    copy_pipeline_folder(model, staging)
    for leftover in LEFT_OUT:
        (staging / leftover).unlink(missing_ok=True)
    if scheduler is not None:
        _replace_scheduler(staging, scheduler)
    if scorer is not None:
        _add_scorer(staging, Path(scorer))
    record = {
        "model": name,
        "result": row,
        "reference": report["reference"],
        "vocoded": report.get("vocoded"),
        "config": report["config"],
        "seconds": report["seconds"],
        "sampler": report.get("chosen_sampler"),
    }
    (staging / REPRODUCTION_RECORD).write_text(json.dumps(record, indent=2, default=str) + "\n")
    (staging / "example_prompts.json").write_text(json.dumps(EXAMPLE_PROMPTS, indent=2) + "\n")
    # Trained only on procedural audio this project generates, so the project's own licence applies.
    write_pipeline_card(
        staging, repo_id=CARD_TITLE, title=CARD_TITLE, license="apache-2.0", notes=reproduction_notes(report, name)
    )
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    return target
