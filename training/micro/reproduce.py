"""The paper's whole method at micro scale, end to end on a CPU, through the project's own code:

1. a procedural audio world (`datasets_scripts.micro_world`): an unlabelled pool, a small captioned set, a test set;
2. a tiny CLAP and a tiny Audio Flamingo 3 captioner trained on the captioned set;
3. AF-AudioSet built on the pool by `build_af_audioset` (20 sampled captions a clip, CLAP scores, top 3), and how
   caption accuracy against the ground truth moves with tau;
4. a tiny VAE and vocoder trained on the world's mels, and a ground-truth event classifier for evaluation;
5. TangoCLAP (the CLAP text tower as text encoder) trained by `training/train_tango_clap.py`: (a) on the captioned set
   only, (b) pretrained on AF-AudioSet at several tau then fine-tuned, (c) pretrained on AF-AudioSet mixed with the
   captioned set then fine-tuned;
6. every model evaluated on the test captions: FD on the classifier's embeddings, CLAP score with the world's CLAP
   (`pipelines.evaluation.evaluate_audio`), and how often the classifier hears exactly the prompted events.

Every stage writes its own folder under `--output`, under a temporary name renamed when whole, so a killed run
started again redoes only the unfinished stages. `--install-default` copies the best model into the project as the
embedded default (`pipelines/tango_clap/default_model/`).

    python -m training.micro.reproduce --output runs/micro [--preset fast] [--install-default]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from datasets_scripts.micro_world import WorldConfig, generate_clip, write_world

logger = logging.getLogger(__name__)

STAGE_RECORD = "stage.json"


@dataclass
class ReproductionConfig:
    """
    Sizes and budgets of a reproduction. `PRESETS["full"]` is the documented run; `"fast"` is the same code at a size
    the test suite can afford.

    Args:
        world_seed (`int`): the world's seed.
        split_sizes (`dict[str, int]`): clips in `pool`, `captioned` and `test`.
        clap_steps / captioner_epochs / vae_steps / vocoder_steps / classifier_epochs (`int`): training budgets.
        labelled_clips (`int`): labelled clips the CLAP and the captioner learn from: the `captioned` split extended
            with more clips of its distribution (`clap.world_training_clips`), standing in for the external corpora
            LAION-CLAP and Audio Flamingo were trained on; never `pool` or `test` clips.
        captions_per_clip (`int`): reference wordings per labelled clip for the CLAP and the captioner.
        num_captions (`int`): sampled captions per pool clip (the paper: 20).
        top_k (`int`): captions kept per clip before tau (the paper: 3).
        tau_quantiles (`tuple[float, ...]`): the pretraining taus, as quantiles of the top-k similarities (a tiny
            CLAP's scale is not LAION-CLAP's, so the paper's 0.35-0.50 mean nothing here).
        pretrain_steps / finetune_steps (`int`): TangoCLAP steps of each stage; the captioned-only baseline trains
            `pretrain_steps + finetune_steps` on the captioned set, the same compute.
        batch_size (`int`): TangoCLAP batch size.
        unet_size (`str`): a key of `TANGO_UNET_SIZES`.
        eval_steps (`int`) / eval_guidance (`float`): DPM-Solver++ steps and guidance of the evaluation.
        sampler_settings (`tuple[tuple[str, int], ...]`): the samplers and step counts the best model is swept over
            (the first is the baseline: Tango's DDPM at 200 steps); the shipped default is the cheapest one whose
            FD is within `fd_tolerance` (relative) and event accuracy within `accuracy_tolerance` (absolute) of
            the baseline's.
        seed (`int`): seed of every training run.
    """

    world_seed: int = 0
    split_sizes: dict[str, int] = field(default_factory=lambda: {"pool": 1000, "captioned": 200, "test": 100})
    clap_steps: int = 400
    captioner_epochs: int = 18
    labelled_clips: int = 1200
    captions_per_clip: int = 3
    vae_steps: int = 600
    vocoder_steps: int = 800
    classifier_epochs: int = 15
    num_captions: int = 20
    top_k: int = 3
    tau_quantiles: tuple[float, ...] = (0.0, 0.67)
    pretrain_steps: int = 400
    finetune_steps: int = 200
    batch_size: int = 16
    learning_rate: float = 1e-3
    unet_size: str = "micro"
    eval_steps: int = 25
    eval_guidance: float = 3.0
    sampler_settings: tuple[tuple[str, int], ...] = (
        ("ddpm", 200),
        ("ddim", 10),
        ("ddim", 25),
        ("ddim", 50),
        ("dpmsolver++", 10),
        ("dpmsolver++", 25),
        ("dpmsolver++", 50),
    )
    fd_tolerance: float = 0.1
    accuracy_tolerance: float = 0.05
    seed: int = 0


PRESETS: dict[str, dict[str, Any]] = {
    "full": {},
    "fast": {
        "split_sizes": {"pool": 24, "captioned": 16, "test": 8},
        "clap_steps": 4,
        "captioner_epochs": 1,
        "labelled_clips": 16,
        "captions_per_clip": 2,
        "vae_steps": 4,
        "vocoder_steps": 4,
        "classifier_epochs": 1,
        "num_captions": 4,
        "tau_quantiles": (0.0, 0.5),
        "pretrain_steps": 2,
        "finetune_steps": 1,
        "batch_size": 4,
        "eval_steps": 2,
        "sampler_settings": (("ddpm", 4), ("dpmsolver++", 2)),
    },
}


# ---------------------------------------------------------------------------------------------------- stages


def run_stage(root: Path, name: str, build: Callable[[Path], dict[str, Any] | None]) -> dict[str, Any]:
    """
    Runs one stage into `root/name` unless it finished before; returns its record (with `seconds`).

    The stage writes into `root/.name.partial` (emptied first), which is renamed when `build` returns: a folder with
    the stage's name is always a finished stage.
    """
    final = root / name
    if (final / STAGE_RECORD).is_file():
        logger.info(f"Stage {name}: done before, kept.")
        return json.loads((final / STAGE_RECORD).read_text())
    partial = final.parent / f".{final.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    started = time.perf_counter()
    record = dict(build(partial) or {})
    record["seconds"] = round(time.perf_counter() - started, 1)
    (partial / STAGE_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    logger.info(f"Stage {name}: {record['seconds']} s.")
    return record


def world_clips(config: ReproductionConfig, split: str) -> list:
    world = WorldConfig(seed=config.world_seed, split_sizes=config.split_sizes)
    return [generate_clip(world, split, i) for i in range(world.split_size(split))]


def stage_world(config: ReproductionConfig, out: Path) -> dict[str, Any]:
    write_world(WorldConfig(seed=config.world_seed, split_sizes=config.split_sizes), out)
    return {"split_sizes": config.split_sizes}


def stage_clap(config: ReproductionConfig, out: Path) -> dict[str, Any]:
    from .clap import evaluate_micro_clap, train_micro_clap, world_training_clips

    train = world_training_clips(config.world_seed, config.labelled_clips, captions_per_clip=config.captions_per_clip)
    train_micro_clap(train, out, steps=config.clap_steps, seed=config.seed)
    test = [(c.audio, c.caption) for c in world_clips(config, "test")]
    return {"test": evaluate_micro_clap(out, test)}


def stage_captioner(config: ReproductionConfig, out: Path) -> dict[str, Any]:
    from .captioner import evaluate_micro_captioner, train_micro_captioner
    from .clap import world_training_clips

    train = world_training_clips(config.world_seed, config.labelled_clips, captions_per_clip=config.captions_per_clip)
    train_micro_captioner(train, out, epochs=config.captioner_epochs, seed=config.seed)
    test = world_clips(config, "test")
    return {"test": evaluate_micro_captioner(out, test, num_samples=4)}


def stage_af_audioset(config: ReproductionConfig, root: Path, out: Path) -> dict[str, Any]:
    from datasets_scripts.build import build_af_audioset
    from datasets_scripts.sources import clips_from_audio_dir

    summary = build_af_audioset(
        clips_from_audio_dir(root / "world" / "pool" / "audio"),
        out,
        captioner=str(root / "captioner"),
        clap=str(root / "clap"),
        num_captions=config.num_captions,
        top_k=config.top_k,
        seed=config.seed,
        batch_size=8,
        max_new_tokens=48,
        embed_audio=False,
    )
    return {"summary": dataclasses.asdict(summary) if dataclasses.is_dataclass(summary) else str(summary)}


def stage_caption_quality(config: ReproductionConfig, root: Path, out: Path) -> dict[str, Any]:
    from .caption_quality import caption_table, quality_vs_tau, selection_diagnostics, tau_grid, write_quality_report

    truth = {c.clip_id: c.classes for c in world_clips(config, "pool")}
    captions = caption_table(root / "af_audioset", truth)
    grid = tau_grid(captions["similarity"], captions["rank"], config.top_k, (0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 0.9))
    pretrain = tau_grid(captions["similarity"], captions["rank"], config.top_k, config.tau_quantiles)
    rows = quality_vs_tau(captions, [-1.0, *grid], config.top_k)
    table = write_quality_report(rows, out, total_clips=len(truth))
    return {"rows": rows, "table": table, "pretraining_taus": pretrain, "selection": selection_diagnostics(captions)}


def stage_vae(config: ReproductionConfig, out: Path) -> dict[str, Any]:
    from .autoencoder import train_micro_vae

    audios = [c.audio for split in ("pool", "captioned") for c in world_clips(config, split)]
    train_micro_vae(audios, out, steps=config.vae_steps, seed=config.seed)
    return {"metrics": _held_out_metrics(out)}


def stage_vocoder(config: ReproductionConfig, out: Path) -> dict[str, Any]:
    from .vocoder import train_micro_vocoder

    audios = [c.audio for split in ("pool", "captioned") for c in world_clips(config, split)]
    train_micro_vocoder(audios, out, steps=config.vocoder_steps, seed=config.seed)
    return {"metrics": _held_out_metrics(out)}


def _held_out_metrics(folder: Path) -> dict[str, float]:
    """A VAE's or vocoder's held-out reconstruction errors after training, from its `micro_training.json`."""
    return json.loads((folder / "micro_training.json").read_text())["after"]


def stage_classifier(config: ReproductionConfig, out: Path) -> dict[str, Any]:
    from .classifier import evaluate_micro_classifier, train_micro_classifier

    # The evaluator's own model: trained on ground-truth labels (never on the test split), like PANNs on AudioSet.
    train = [(c.audio, c.classes) for split in ("pool", "captioned") for c in world_clips(config, split)]
    train_micro_classifier(train, out, epochs=config.classifier_epochs, seed=config.seed)
    test = [(c.audio, c.classes) for c in world_clips(config, "test")]
    return {"test": evaluate_micro_classifier(out, test)}


def stage_base_pipeline(config: ReproductionConfig, root: Path, out: Path) -> dict[str, Any]:
    """The pipeline every TangoCLAP run starts from: trained VAE, vocoder and CLAP (text tower and scorer)."""
    from diffusers import AutoencoderKL
    from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel, SpeechT5HifiGan

    from pipelines.tango_clap.architectures import TANGO_UNET_SIZES, build_scheduler, build_unet
    from pipelines.tango_clap.pipeline_tango_clap import TangoCLAPPipeline
    from training.components import load_text_encoder, text_width

    text_encoder, tokenizer = load_text_encoder(str(root / "clap"))
    vae = AutoencoderKL.from_pretrained(root / "vae")
    sizes = {**TANGO_UNET_SIZES[config.unet_size], "in_channels": vae.config.latent_channels}
    sizes["out_channels"] = vae.config.latent_channels
    pipe = TangoCLAPPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=build_unet(text_width(text_encoder), **sizes),  # replaced by every run's --unet_from_scratch
        scheduler=build_scheduler(),
        vocoder=SpeechT5HifiGan.from_pretrained(root / "vocoder"),
        clap_model=ClapModel.from_pretrained(root / "clap"),
        clap_tokenizer=AutoTokenizer.from_pretrained(root / "clap"),
        clap_feature_extractor=ClapFeatureExtractor.from_pretrained(root / "clap"),
    )
    pipe.save_pretrained(out)
    return {}


# ---------------------------------------------------------------------------------------------------- TangoCLAP


def tango_runs(config: ReproductionConfig, taus: list[float]) -> list[dict[str, Any]]:
    """The models of the study: name, pretraining data (or none) and the tau it was filtered at."""
    runs: list[dict[str, Any]] = [{"name": "captioned-only", "pretraining": None, "tau": None}]
    runs += [{"name": f"af-tau{tau:.3f}", "pretraining": "af_audioset", "tau": tau} for tau in taus]
    best_tau = taus[len(taus) // 2]
    runs.append({"name": f"af-tau{best_tau:.3f}+captioned", "pretraining": "mixed", "tau": best_tau})
    return runs


def _train(argv: list[str]) -> None:
    from training.train_tango_clap import main as train_main

    train_main(argv)


def train_run(config: ReproductionConfig, root: Path, run: dict[str, Any], out: Path) -> dict[str, Any]:
    """One model of the study, through the project's training script (pretraining stage, then fine-tuning)."""
    captioned = f"hf:{root / 'world' / 'captioned'}"
    af = f"af_audioset:{root / 'af_audioset'}?tau={run['tau']}&audio_dir={root / 'world' / 'pool' / 'audio'}"
    common = [
        "--audio_length_in_s", "2.56",
        "--train_batch_size", str(config.batch_size),
        "--learning_rate", str(config.learning_rate),
        "--lr_scheduler", "constant",
        "--snr_gamma", "5",
        "--seed", str(config.seed),
        "--report_to", "none",
        "--checkpointing_steps", "100000",
        "--cpu",
    ]  # fmt: skip
    from_scratch = ["--pretrained_model_name_or_path", str(root / "base"), "--unet_from_scratch", config.unet_size]
    if run["pretraining"] is None:
        steps = config.pretrain_steps + config.finetune_steps
        _train(
            [
                *from_scratch,
                "--train_data",
                captioned,
                "--max_train_steps",
                str(steps),
                "--output_dir",
                str(out),
                *common,
            ]
        )
        return {"steps": steps}
    sources = [af] if run["pretraining"] == "af_audioset" else [af, captioned]
    pretrained = out.parent / f".{out.name}.pretrained"
    shutil.rmtree(pretrained, ignore_errors=True)
    _train([*from_scratch, "--train_data", *sources, "--max_train_steps", str(config.pretrain_steps),
            "--output_dir", str(pretrained), *common])  # fmt: skip
    _train(["--pretrained_model_name_or_path", str(pretrained), "--train_data", captioned,
            "--max_train_steps", str(config.finetune_steps), "--output_dir", str(out), *common])  # fmt: skip
    shutil.rmtree(pretrained, ignore_errors=True)
    return {"steps": config.pretrain_steps + config.finetune_steps}


def evaluate_run(
    config: ReproductionConfig,
    root: Path,
    model: Path,
    out: Path,
    scheduler: str = "dpmsolver++",
    steps: int | None = None,
) -> dict[str, Any]:
    """One model on every test caption (one clip each, seeded per clip) with the world's backbones."""
    from .evaluation import evaluate_micro_pipeline

    test = world_clips(config, "test")
    return evaluate_micro_pipeline(
        model,
        test,
        classifier=root / "classifier",
        clap=root / "clap",
        output_dir=out,
        num_inference_steps=config.eval_steps if steps is None else steps,
        guidance_scale=config.eval_guidance,
        seed=config.seed,
        scheduler=scheduler,
    )


def best_model(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The study's best model: most test captions whose events the classifier hears exactly, then CLAP score."""
    return max(results, key=lambda r: (r["event_accuracy"], r["CLAP"]))


def sampler_sweep(config: ReproductionConfig, root: Path, name: str) -> list[dict[str, Any]]:
    """Every sampler setting of `config` on model `name`, each a resumable stage under `samplers/<name>/`."""
    rows = []
    for scheduler, steps in config.sampler_settings:
        record = run_stage(
            root,
            f"samplers/{name}/{scheduler}-{steps}",
            lambda out, s=scheduler, n=steps: evaluate_run(config, root, root / "models" / name, out, s, n),
        )
        rows.append({**record, "scheduler": scheduler, "num_inference_steps": steps})
    return rows


def choose_sampler(rows: list[dict[str, Any]], fd_tolerance: float, accuracy_tolerance: float) -> dict[str, Any]:
    """
    The cheapest setting (fewest steps, then fastest) whose FD is at most `(1 + fd_tolerance)` times the baseline's
    (the first row) and whose event accuracy is at most `accuracy_tolerance` below it; the baseline if none is.
    """
    base = rows[0]
    good = [
        r
        for r in rows
        if r["FD"] <= base["FD"] * (1 + fd_tolerance)
        and r["event_accuracy"] >= base["event_accuracy"] - accuracy_tolerance
    ]
    return min(good or [base], key=lambda r: (r["num_inference_steps"], r["generate_seconds"]))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


# ---------------------------------------------------------------------------------------------------- main


def reproduce(config: ReproductionConfig, output: str | os.PathLike) -> dict[str, Any]:
    """
    Runs (or resumes) every stage; returns the report (also written to `output/report.json` and `report.md`).

    Args:
        config ([`ReproductionConfig`]): sizes and budgets.
        output (`str` or `os.PathLike`): the run's folder.
    """
    root = Path(output)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    started = time.perf_counter()
    records: dict[str, Any] = {}
    steps: list[tuple[str, Callable[[Path], dict[str, Any] | None]]] = [
        ("world", lambda out: stage_world(config, out)),
        ("clap", lambda out: stage_clap(config, out)),
        ("captioner", lambda out: stage_captioner(config, out)),
        ("af_audioset", lambda out: stage_af_audioset(config, root, out)),
        ("caption_quality", lambda out: stage_caption_quality(config, root, out)),
        ("vae", lambda out: stage_vae(config, out)),
        ("vocoder", lambda out: stage_vocoder(config, out)),
        ("classifier", lambda out: stage_classifier(config, out)),
        ("base", lambda out: stage_base_pipeline(config, root, out)),
    ]
    progress = tqdm(total=len(steps) + 2 * (len(config.tau_quantiles) + 2) + 2, desc="micro reproduction")
    for name, build in steps:
        progress.set_postfix_str(name)
        records[name] = run_stage(root, name, build)
        progress.update()
    taus = records["caption_quality"]["pretraining_taus"]
    results = []
    for run in tango_runs(config, taus):
        progress.set_postfix_str(run["name"])
        trained = run_stage(root, f"models/{run['name']}", lambda out, run=run: train_run(config, root, run, out))
        progress.update()
        model = root / "models" / run["name"]
        evaluated = run_stage(root, f"eval/{run['name']}", lambda out, m=model: evaluate_run(config, root, m, out))
        progress.update()
        results.append({**run, "train_seconds": trained["seconds"], **evaluated})
    reference = run_stage(root, "eval/real-test-audio", lambda out: evaluate_reference(config, root, out))
    vocoded = run_stage(root, "eval/vocoded-test-audio", lambda out: evaluate_reconstruction(config, root, out))
    progress.update()
    best = best_model(results)["name"]
    progress.set_postfix_str(f"samplers of {best}")
    samplers = sampler_sweep(config, root, best)
    chosen = choose_sampler(samplers, config.fd_tolerance, config.accuracy_tolerance)
    progress.update()
    progress.close()
    report = {
        "config": dataclasses.asdict(config),
        "stages": {k: v for k, v in records.items()},
        "results": results,
        "reference": reference,
        "vocoded": vocoded,
        "best": best,
        "samplers": samplers,
        "chosen_sampler": {k: chosen[k] for k in ("scheduler", "num_inference_steps")},
        "seconds": round(time.perf_counter() - started, 1),
    }
    (root / "report.json").write_text(json.dumps(_jsonable(report), indent=2) + "\n")
    (root / "report.md").write_text(render_report(report))
    return report


def evaluate_reference(config: ReproductionConfig, root: Path, out: Path) -> dict[str, Any]:
    """The real test audio: the ceiling of event accuracy and CLAP score, and (against the captioned set's real audio)
    the FD between two real samples of the world, the floor a model can hope for."""
    from .evaluation import evaluate_micro_audio

    test = world_clips(config, "test")
    reference = [c.audio for c in world_clips(config, "captioned")]
    return evaluate_micro_audio(
        [c.audio for c in test], test, classifier=root / "classifier", clap=root / "clap", reference=reference
    )


def evaluate_reconstruction(config: ReproductionConfig, root: Path, out: Path) -> dict[str, Any]:
    """The real test audio sent through the generated audio's path without the diffusion: log-mel, VAE encode (the
    posterior's mode) and decode, vocoder. What a model whose latents were perfect would score: the ceiling the VAE
    and vocoder leave the TangoCLAP models."""
    import torch
    from diffusers import AutoencoderKL
    from transformers import SpeechT5HifiGan

    from .autoencoder import tango_mels
    from .evaluation import evaluate_micro_audio

    test = world_clips(config, "test")
    vae = AutoencoderKL.from_pretrained(root / "vae").eval()
    vocoder = SpeechT5HifiGan.from_pretrained(root / "vocoder").eval()
    audios = []
    with torch.no_grad():
        for clip, mel in zip(test, tango_mels([c.audio for c in test])):
            frames = mel.shape[0] // 4 * 4  # whole VAE latent frames
            decoded = vae.decode(vae.encode(mel[None, None, :frames]).latent_dist.mode()).sample[:, 0]
            audio = vocoder(decoded).squeeze(0).numpy()
            audios.append(np.pad(audio, (0, max(0, len(clip.audio) - len(audio))))[: len(clip.audio)])
    return evaluate_micro_audio(audios, test, classifier=root / "classifier", clap=root / "clap")


MODEL_DATA = {None: "none (captioned set only)", "af_audioset": "AF-AudioSet", "mixed": "AF-AudioSet + captioned"}


def results_table(report: dict[str, Any]) -> str:
    """The study's table in Markdown: one row per TangoCLAP model, then the real test audio as the ceiling."""
    lines = [
        "| model | pretraining data | tau | FD (classifier) | CLAP score | events right | events heard | train s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["results"]:
        tau = "" if r["tau"] is None else f"{r['tau']:.3f}"
        lines.append(
            f"| {r['name']} | {MODEL_DATA[r['pretraining']]} | {tau} | {r['FD']:.2f} | {r['CLAP']:.3f} | "
            f"{r['event_accuracy']:.1%} | {r['event_recall']:.1%} | {r['train_seconds']:.0f} |"
        )
    ref = report["reference"]
    lines.append(
        f"| real test audio | | | {ref['FD']:.2f} | {ref['CLAP']:.3f} | {ref['event_accuracy']:.1%} | "
        f"{ref['event_recall']:.1%} | |"
    )
    if "vocoded" in report:
        voc = report["vocoded"]
        lines.append(
            f"| real test audio through the VAE and vocoder | | | {voc['FD']:.2f} | {voc['CLAP']:.3f} | "
            f"{voc['event_accuracy']:.1%} | {voc['event_recall']:.1%} | |"
        )
    return "\n".join(lines)


def selection_text(selection: dict[str, Any]) -> str:
    """One paragraph on how CLAP's ranking relates to caption correctness within a clip."""
    return (
        f"Within a clip, CLAP's ranking and correctness: of all sampled captions {selection['sampled_correct']:.1%} "
        f"name exactly the clip's classes, of each clip's best-scored caption {selection['rank0_correct']:.1%}. "
        f"In the {selection['mixed_clips']} clips with both right and wrong captions, the right ones score "
        f"{selection['within_clip_gap']:+.3f} higher on average (higher in {selection['within_clip_gap_positive']:.0%} "
        "of those clips)."
    )


def sampler_table(report: dict[str, Any]) -> str:
    """Quality against time of the sampler sweep, ratios against its first row (Tango's DDPM at 200 steps)."""
    rows, chosen = report["samplers"], report["chosen_sampler"]
    base = rows[0]
    clips = report["config"]["split_sizes"]["test"]
    lines = [
        f"| sampler | FD (classifier) | CLAP score | events right | time ({clips} clips) | speed-up | |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        mark = (
            "chosen"
            if (r["scheduler"], r["num_inference_steps"]) == (chosen["scheduler"], chosen["num_inference_steps"])
            else ""
        )
        lines.append(
            f"| {r['scheduler']} {r['num_inference_steps']} | {r['FD']:.2f} | {r['CLAP']:.3f} | "
            f"{r['event_accuracy']:.1%} | {r['generate_seconds']:.1f} s | "
            f"{base['generate_seconds'] / max(r['generate_seconds'], 1e-9):.1f}x | {mark} |"
        )
    return "\n".join(lines)


def render_report(report: dict[str, Any]) -> str:
    """The whole report in Markdown (`report.md`)."""
    quality = report["stages"]["caption_quality"]
    stages = report["stages"]
    lines = ["# Micro-scale reproduction", ""]
    lines += ["## AF-AudioSet captions against the ground truth", "", quality["table"], ""]
    if "selection" in quality:
        lines += [selection_text(quality["selection"]), ""]
    lines += ["## TangoCLAP", "", results_table(report), ""]
    if "samplers" in report:
        lines += [f"## Samplers ({report['best']})", "", sampler_table(report), ""]
    lines += ["## Stages", "", "| stage | seconds | result |", "| --- | ---: | --- |"]
    for name, record in stages.items():
        result = record.get("test") or record.get("metrics") or {}
        shown = (
            ", ".join(f"{k} {v:.3g}" for k, v in result.items() if isinstance(v, float))
            if isinstance(result, dict)
            else ""
        )
        lines.append(f"| {name} | {record['seconds']:.0f} | {shown} |")
    lines += ["", f"Whole run: {report['seconds'] / 60:.1f} min.", ""]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Reproduce the paper's method at micro scale on a CPU.")
    parser.add_argument("--output", required=True, help="The run's folder (resumed if it exists).")
    parser.add_argument("--preset", default="full", choices=sorted(PRESETS))
    parser.add_argument("--world-seed", type=int, default=None)
    parser.add_argument("--install-default", action="store_true", help="Make the best model the embedded default.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = ReproductionConfig(**PRESETS[args.preset])
    if args.world_seed is not None:
        config.world_seed = args.world_seed
    report = reproduce(config, args.output)
    print(render_report(report))
    if args.install_default:
        from .default_model import install_default_model

        install_default_model(
            Path(args.output) / "models" / report["best"],
            report,
            report["best"],
            scheduler=report["chosen_sampler"]["scheduler"],
            scorer=Path(args.output) / "base",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
