"""Installs the micro study's best model as the project's embedded default (`pipelines/tango_clap/default_model/`), the
model `make demo`, `tango-af-generate` and the Space use when none is named, and the event classifier it was evaluated
with beside `training.micro.classify`, so that anyone can check what it makes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from model_cards.pipeline_card import write_pipeline_card
from model_cards.publish import copy_pipeline_folder
from pipelines.generate import DEFAULT_MODEL_DIR

from .classify import SHIPPED_CLASSIFIER
from .report import GROUP_LABELS, clap_ladder_table, comparisons, references_table, runs_table

REPRODUCTION_RECORD = "micro_reproduction.json"
# Read by `tango-af-generate` and the Space: the length the model was trained on and the sampler settings it was
# evaluated with, instead of constants meant for Tango's 10 s clips.
GENERATION_DEFAULTS = "generation_defaults.json"
# The pipeline's source is the project's own file: the shipped folder links to it rather than copying it.
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
# Candidates `make demo` and the Space draw by default; the CLAP scorer ranks them.
DEFAULT_CANDIDATES = 2


def reproduction_record(report: dict[str, Any]) -> dict[str, Any]:
    """
    What the shipped model's folder says about the study (`micro_reproduction.json`): the seeds, the number of test
    prompts, the ceiling the VAE and vocoder leave, the shipped recipe's result (mean and 95% interval over seeds of
    each metric, on all, seen and unseen prompts), and caption exactness against the kept fraction per scorer.
    """
    best = next(run for run in report["runs"] if run["name"] == report["best"])
    ceiling = report["references"]["real test audio through the VAE and vocoder"]
    return {
        "recipe": best["name"],
        "recipe_label": best["label"],
        "shipped_seed": report["shipped_seed"],
        "seeds": best["seeds"],
        "test_prompts": report["test_prompts"]["all"],
        "test_prompt_groups": report["test_prompts"],
        "interval": report["interval"],
        "ceiling": {"event_accuracy": ceiling["event_accuracy"], "event_recall": ceiling["event_recall"]},
        "result": {
            key: {"mean": best["summary"]["all"][key]["mean"], "ci95": best["summary"]["all"][key]["ci95"]}
            for key in ("event_accuracy", "event_recall", "FD", "CLAP")
        },
        "result_by_group": {
            group: {key: {"mean": value["mean"], "ci95": value["ci95"]} for key, value in metrics.items()}
            for group, metrics in best["summary"].items()
        },
        "caption_quality": report["caption_quality"],
        "clap_ladder": report["clap_ladder"],
        "runs": {
            run["name"]: {"label": run["label"], "event_accuracy": run["summary"]["all"]["event_accuracy"]}
            for run in report["runs"]
        },
        "sampler": {
            "scheduler": report["config"]["eval_scheduler"],
            "num_inference_steps": report["config"]["eval_steps"],
            "guidance_scale": report["config"]["eval_guidance"],
        },
        "seconds": report["seconds"],
    }


def generation_defaults(report: dict[str, Any]) -> dict[str, Any]:
    """The settings `tango-af-generate` and the Space start from with this model (`generation_defaults.json`)."""
    config = report["config"]
    return {
        "audio_length_in_s": report["clip_seconds"],
        "num_inference_steps": config["eval_steps"],
        "guidance_scale": config["eval_guidance"],
        "num_waveforms_per_prompt": DEFAULT_CANDIDATES,
    }


def reproduction_notes(report: dict[str, Any]) -> str:
    """The model card's account of the study the model comes from (Markdown, `##` headings)."""
    record = reproduction_record(report)
    config = report["config"]
    sizes = config["split_sizes"]
    result = record["result"]
    groups = "\n\n".join(
        f"#### {GROUP_LABELS[group].capitalize()}\n\n{runs_table(report['runs'], group)}"
        for group in ("all", "seen", "unseen")
    )
    return f"""## Where this model comes from

This is not a model of real-world audio. It was trained by `python -m training.micro.reproduce`, which runs the
paper's whole method at micro scale on a CPU in a procedural world of 13 synthetic sound-event classes
(`datasets_scripts.micro_world`; tones, chirps, sirens, bells, drums, rain, engines, ...). It knows only that world's
vocabulary: prompts such as "A loud siren wails, then a bell rings" or "Rain falls while a low hum drones", 2.56 s
long. `python -m training.micro.classify FILE...` names the world's events heard in any file, with the event
classifier every model of the study was evaluated with.

This model is seed {record["shipped_seed"]} of the recipe **{record["recipe_label"]}**, the best of the study by mean
events right over seeds {record["seeds"]} on {record["test_prompts"]} test prompts: events right
{result["event_accuracy"]["mean"]:.1%} (95% interval {result["event_accuracy"]["ci95"][0]:.1%} to
{result["event_accuracy"]["ci95"][1]:.1%}), events heard {result["event_recall"]["mean"]:.1%}
({result["event_recall"]["ci95"][0]:.1%} to {result["event_recall"]["ci95"][1]:.1%}). Real test audio through the VAE
and vocoder alone, the ceiling, scores {record["ceiling"]["event_accuracy"]:.1%} and
{record["ceiling"]["event_recall"]:.1%}. Intervals: {record["interval"]}. It ships with
`{record["sampler"]["scheduler"]}` at {record["sampler"]["num_inference_steps"]} steps and guidance
{record["sampler"]["guidance_scale"]}, the settings it was evaluated with (`{GENERATION_DEFAULTS}`).

### The study

A pool of {sizes["pool"]} clips (the study's AudioSet), a captioned set of {sizes["captioned"]} (its AudioCaps) that
never holds {config["held_out_pairs"]} class pairs the pool does, and {sizes["test"]} test prompts, of which
{record["test_prompt_groups"]["unseen"]} combine such unseen pairs. AF-AudioSet: {config["num_captions"]} sampled
captions a pool clip by a micro Audio Flamingo 3, scored by each CLAP of a ladder and by two controls (an oracle and a
random scorer), top {config["top_k"]} kept, tau applied at load time.

{clap_ladder_table(report["clap_ladder"])}

{references_table(report["references"])}

"Events right": the event classifier (trained on the world's ground truth, the role PANNs plays on AudioSet) hears
exactly the prompted set of events; "events heard": the share of prompted events it hears; FD on its embeddings; CLAP
score with the strongest CLAP.

{groups}

Against {report["baseline_label"]}, events right (a difference is claimed only where the intervals do not overlap):

{chr(10).join(comparisons(report["runs"], report["baseline"]))}
"""


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


def _replace_folder(staging: Path, target: Path) -> None:
    """Puts `staging` in place of `target` once it is whole (what was there goes only then)."""
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)


def install_default_model(
    run: str | os.PathLike,
    report: dict[str, Any],
    target: str | os.PathLike = DEFAULT_MODEL_DIR,
    classifier_target: str | os.PathLike = SHIPPED_CLASSIFIER,
) -> Path:
    """
    Installs the study's best recipe (`report["best"]`, seed `report["shipped_seed"]`) as a pipeline folder with the
    evaluation's sampler, the strongest CLAP as candidate scorer, `micro_reproduction.json`, `generation_defaults.json`,
    example prompts and a card reporting the study; and the study's event classifier at `classifier_target`.

    Args:
        run (`str` or `os.PathLike`): the study's folder (`python -m training.micro.reproduce --output`).
        report (`dict[str, Any]`): its report (`reproduce` returns it; `report.json` holds it).
        target (`str` or `os.PathLike`, *optional*): defaults to the embedded default's folder.
        classifier_target (`str` or `os.PathLike`, *optional*): defaults to `training/micro/event_classifier/`.

    Returns:
        `Path`: `target`.
    """
    run, target, classifier_target = Path(run), Path(target), Path(classifier_target)
    model = run / "models" / report["best"] / f"seed{report['shipped_seed']}"
    if not (model / "model_index.json").is_file():
        raise ValueError(f"The study's best model {os.fspath(model)!r} is missing; was the run finished?")
    staging = target.parent / f".{target.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    copy_pipeline_folder(model, staging)
    for leftover in LEFT_OUT:
        (staging / leftover).unlink(missing_ok=True)
    _replace_scheduler(staging, report["config"]["eval_scheduler"])
    _add_scorer(staging, run / "base")
    (staging / REPRODUCTION_RECORD).write_text(json.dumps(reproduction_record(report), indent=2) + "\n")
    (staging / GENERATION_DEFAULTS).write_text(json.dumps(generation_defaults(report), indent=2) + "\n")
    (staging / "example_prompts.json").write_text(json.dumps(EXAMPLE_PROMPTS, indent=2) + "\n")
    # Trained only on procedural audio this project generates, so the project's own licence applies.
    write_pipeline_card(
        staging, repo_id=CARD_TITLE, title=CARD_TITLE, license="apache-2.0", notes=reproduction_notes(report)
    )
    # The shipped folder links to the project's pipeline source (one copy in git), so it loads with
    # `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` as well.
    os.symlink(os.path.relpath(Path(__file__).resolve().parents[2] / "pipelines" / "tango_clap" / "pipeline_tango_clap.py",
                               target.resolve()), staging / "pipeline.py")  # fmt: skip
    _replace_folder(staging, target)

    classifier_staging = classifier_target.parent / f".{classifier_target.name}.partial"
    shutil.rmtree(classifier_staging, ignore_errors=True)
    shutil.copytree(run / "parts" / "classifier", classifier_staging, ignore=shutil.ignore_patterns("stage.json"))
    _replace_folder(classifier_staging, classifier_target)
    return target
