"""The paper's whole method at micro scale, end to end on a CPU, through the project's own code, with the controls,
seeds and confidence intervals that let it tell something:

1. a procedural audio world (`datasets_scripts.micro_world`): an unlabelled pool (the study's AudioSet), a captioned
   set 15 times smaller (its AudioCaps) that never holds some class pairs the pool does, and test prompts of which
   half combine such "unseen" pairs;
2. the parts, trained once for every run: a ladder of CLAPs of different strengths, an imperfect Audio Flamingo 3
   captioner, a VAE and a HiFi-GAN vocoder, and the event classifier that plays PANNs' role in the evaluation;
3. AF-AudioSet built on the pool by `build_af_audioset` (20 sampled captions a clip, top 3), once with each CLAP and
   with two controls plugged in where CLAP goes, an oracle and a random scorer, all on the same captions; caption
   exactness against the kept fraction, one curve per scorer;
4. TangoCLAP runs, each from scratch and for every training seed, through `training/train_tango_clap.py` on
   pre-computed latents (`training.precompute_latents`, every clip and caption encoded once): captioned only at two
   budgets, AF-AudioSet top 3 and at two tau, AF-AudioSet mixed with the captioned set, the pool with its
   ground-truth captions (the upper bound), and the weakest CLAP's AF-AudioSet, each but the first fine-tuned on
   the captioned set;
5. every model on every test prompt (the same noise seeds for all): events right and heard by the classifier, FD
   on its embeddings, CLAP score, on all, seen and unseen prompts, as means over seeds with 95% intervals.

Every stage writes its own folder under `--output`, under a temporary name renamed when whole, so a killed run started
again redoes only the unfinished stages; independent stages run two at a time, one torch thread each.
`--install-default` installs the best recipe's model (one seed's weights) as the embedded default
(`pipelines/tango_clap/default_model/`) with the shipped event classifier.

    python -m training.micro.reproduce --output runs/micro [--preset fast] [--install-default]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datasets_scripts.micro_world import WorldConfig, combination, generate_clip, write_world
from pipelines.cli import add_debug_argument, check_output_folder, command_line

from .runs import CAPTIONED, POOL_TRUTH, TextToAudioRun, af_source_name, run_parallel, study_runs, train_run
from .statistics import INTERVAL_KIND, mean_ci

logger = logging.getLogger(__name__)

STAGE_RECORD = "stage.json"
REPORT_NAME = "report.json"
METRIC_KEYS = ("event_accuracy", "event_recall", "FD", "CLAP")


@dataclass
class ReproductionConfig:
    """
    Sizes and budgets of a reproduction. `PRESETS["full"]` is the documented run; `"fast"` is the same code at a size
    the test suite can afford.

    Args:
        world_seed (`int`): the world's seed.
        split_sizes (`dict[str, int]`): clips in `pool`, `captioned` and `test`.
        held_out_pairs (`int`): class pairs the captioned set never holds (`WorldConfig.held_out_pairs`).
        labelled_clips (`int`): labelled clips of the captioned distribution the CLAPs and the captioner learn from
            (standing in for the external corpora LAION-CLAP and Audio Flamingo were trained on; never pool or test).
        captions_per_clip (`int`): reference wordings per labelled clip.
        clap_ladder (`tuple[dict, ...]`): the CLAPs, weakest first: `name` plus the training settings of
            `training.micro.clap.train_micro_clap`; the last is the study's scorer and text encoder.
        captioner_epochs / vae_steps / vocoder_steps / classifier_epochs (`int`): the other parts' budgets.
        num_captions (`int`): sampled captions per pool clip (the paper: 20).
        top_k (`int`): captions kept per clip before tau (the paper: 3).
        tau_quantiles (`tuple[float, ...]`): the filtered pretraining sets' taus, as quantiles of the strongest
            CLAP's top-k similarities (a tiny CLAP's scale is not LAION-CLAP's, so 0.35-0.50 mean nothing here).
        seeds (`tuple[int, ...]`): the training seeds of every text-to-audio run.
        pretrain_steps / finetune_steps (`int`): TangoCLAP steps of each stage.
        batch_size (`int`) / learning_rate (`float`) / unet_size (`str`): TangoCLAP training.
        mixture_weight (`float`): the captioned set's weight in the mixed pretraining (AF-AudioSet's is 1).
        weak_clap_run (`bool`): add the weakest CLAP's AF-AudioSet run.
        eval_scheduler (`str`) / eval_steps (`int`) / eval_guidance (`float`): the evaluation's sampler.
        workers (`int`): stages run at a time (one torch thread each).
        parts_seed (`int`): seed of the parts and of the caption sampling.
    """

    world_seed: int = 0
    split_sizes: dict[str, int] = field(default_factory=lambda: {"pool": 3000, "captioned": 200, "test": 300})
    held_out_pairs: int = 26
    labelled_clips: int = 1200
    captions_per_clip: int = 3
    clap_ladder: tuple[dict[str, Any], ...] = (
        {"name": "weak", "steps": 150},
        {"name": "mid", "steps": 400},
        {"name": "strong", "steps": 1200, "hard_negatives": 32},
    )
    captioner_epochs: int = 18
    vae_steps: int = 600
    # 3,000 steps: 40% of real test clips' events survive the VAE + vocoder, 31% after 800 (results/parts-2026-12-04).
    vocoder_steps: int = 3000
    classifier_epochs: int = 15
    num_captions: int = 20
    top_k: int = 3
    tau_quantiles: tuple[float, ...] = (0.33, 0.67)
    seeds: tuple[int, ...] = (0, 1, 2)
    # A micro UNet step (batch 16) takes 0.6-0.9 s on one core, backward two thirds of it (measured 2026-12-04): 21
    # runs of 600 steps plus their evaluations took 71 min on two cores; 3,000-step runs would take 8 hours.
    pretrain_steps: int = 400
    finetune_steps: int = 200
    batch_size: int = 16
    learning_rate: float = 1e-3
    unet_size: str = "micro"
    mixture_weight: float = 1.0
    # The optional scorer-strength run (3 seeds, 30 min of one core) is cut to fit the 2-hour budget.
    weak_clap_run: bool = False
    eval_scheduler: str = "ddim"
    eval_steps: int = 10
    eval_guidance: float = 3.0
    workers: int = 2
    parts_seed: int = 0

    @property
    def world(self) -> WorldConfig:
        return WorldConfig(seed=self.world_seed, split_sizes=self.split_sizes, held_out_pairs=self.held_out_pairs)

    @property
    def strong(self) -> str:
        return self.clap_ladder[-1]["name"]

    @property
    def weak(self) -> str:
        return self.clap_ladder[0]["name"]


PRESETS: dict[str, dict[str, Any]] = {
    "full": {},
    "fast": {
        "split_sizes": {"pool": 24, "captioned": 16, "test": 8},
        "held_out_pairs": 20,
        "labelled_clips": 16,
        "captions_per_clip": 2,
        "clap_ladder": ({"name": "weak", "steps": 2}, {"name": "strong", "steps": 4}),
        "captioner_epochs": 1,
        "vae_steps": 4,
        "vocoder_steps": 4,
        "classifier_epochs": 1,
        "num_captions": 4,
        "tau_quantiles": (0.5,),
        "seeds": (0, 1),
        "pretrain_steps": 2,
        "finetune_steps": 1,
        "batch_size": 4,
        "eval_steps": 2,
        # The full preset cuts this run for time; the test keeps its code exercised.
        "weak_clap_run": True,
        "workers": 1,
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
    (partial / STAGE_RECORD).write_text(json.dumps(_jsonable(record), indent=2) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    logger.info(f"Stage {name}: {record['seconds']} s.")
    return record


def world_clips(config: ReproductionConfig, split: str) -> list:
    world = config.world
    return [generate_clip(world, split, i) for i in range(world.split_size(split))]


def test_groups(config: ReproductionConfig) -> dict[str, list[int]]:
    """Test prompts whose class combination the captioned set holds (`seen`) or never holds (`unseen`)."""
    captioned = {combination(c.classes) for c in world_clips(config, "captioned")}
    test = world_clips(config, "test")
    seen = [i for i, c in enumerate(test) if combination(c.classes) in captioned]
    return {"seen": seen, "unseen": [i for i in range(len(test)) if i not in set(seen)]}


def stage_world(config: ReproductionConfig, out: Path) -> dict[str, Any]:
    write_world(config.world, out)
    groups = test_groups(config)
    pool = {combination(c.classes) for c in world_clips(config, "pool")}
    test = world_clips(config, "test")
    unseen_in_pool = sum(combination(test[i].classes) in pool for i in groups["unseen"])
    return {
        "split_sizes": config.split_sizes,
        "test_prompts": {"all": len(test), "seen": len(groups["seen"]), "unseen": len(groups["unseen"]),
                         "unseen_in_pool": unseen_in_pool},
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------------- parts
# Module-level functions so that `run_parallel` can send them to worker processes.


def part_clap(config: ReproductionConfig, root: Path, rung: dict[str, Any]) -> dict[str, Any]:
    def build(out: Path) -> dict[str, Any]:
        from .clap import evaluate_micro_clap, train_micro_clap, world_training_clips

        settings = {k: v for k, v in rung.items() if k != "name"}
        train = world_training_clips(config.world, config.labelled_clips, captions_per_clip=config.captions_per_clip)
        train_micro_clap(train, out, seed=config.parts_seed, progress=False, **settings)
        # With the clips' labels, the event R@1 (whose ceiling is 1) is measured beside the exact-clip R@1.
        test = world_clips(config, "test")
        return {"name": rung["name"], "recipe": settings, "test": evaluate_micro_clap(out, test)}

    return run_stage(root, f"parts/clap-{rung['name']}", build)


def part_captioner(config: ReproductionConfig, root: Path) -> dict[str, Any]:
    def build(out: Path) -> dict[str, Any]:
        from .captioner import evaluate_micro_captioner, train_micro_captioner
        from .clap import world_training_clips

        train = world_training_clips(config.world, config.labelled_clips, captions_per_clip=config.captions_per_clip)
        train_micro_captioner(train, out, epochs=config.captioner_epochs, seed=config.parts_seed, progress=False)
        return {"test": evaluate_micro_captioner(out, world_clips(config, "test"), num_samples=4)}

    return run_stage(root, "parts/captioner", build)


def part_vae(config: ReproductionConfig, root: Path) -> dict[str, Any]:
    def build(out: Path) -> dict[str, Any]:
        from .autoencoder import train_micro_vae

        audios = [c.audio for split in ("pool", "captioned") for c in world_clips(config, split)]
        train_micro_vae(audios, out, steps=config.vae_steps, seed=config.parts_seed, progress=False)
        return {"metrics": json.loads((out / "micro_training.json").read_text()).get("after", {})}

    return run_stage(root, "parts/vae", build)


def part_vocoder(config: ReproductionConfig, root: Path) -> dict[str, Any]:
    def build(out: Path) -> dict[str, Any]:
        from .vocoder import train_micro_vocoder

        audios = [c.audio for split in ("pool", "captioned") for c in world_clips(config, split)]
        train_micro_vocoder(audios, out, steps=config.vocoder_steps, seed=config.parts_seed, progress=False)
        return {"metrics": json.loads((out / "micro_training.json").read_text()).get("after", {})}

    return run_stage(root, "parts/vocoder", build)


def part_classifier(config: ReproductionConfig, root: Path) -> dict[str, Any]:
    def build(out: Path) -> dict[str, Any]:
        from .classifier import evaluate_micro_classifier, train_micro_classifier

        # The evaluator's own model: trained on ground-truth labels of real audio (never the test split, never
        # generated audio), like PANNs on AudioSet.
        train = [(c.audio, c.classes) for split in ("pool", "captioned") for c in world_clips(config, split)]
        train_micro_classifier(train, out, epochs=config.classifier_epochs, seed=config.parts_seed, progress=False)
        test = [(c.audio, c.classes) for c in world_clips(config, "test")]
        return {"test": evaluate_micro_classifier(out, test)}

    return run_stage(root, "parts/classifier", build)


def stage_base_pipeline(config: ReproductionConfig, root: Path, out: Path) -> dict[str, Any]:
    """The pipeline every TangoCLAP run starts from: trained VAE and vocoder, the strongest CLAP's text tower as the
    text encoder (one text encoder for every run) and that CLAP as the candidate scorer."""
    from diffusers import AutoencoderKL
    from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel, SpeechT5HifiGan

    from pipelines.tango_clap.architectures import TANGO_UNET_SIZES, build_scheduler, build_unet
    from pipelines.tango_clap.pipeline_tango_clap import TangoCLAPPipeline
    from training.components import load_text_encoder, text_width

    clap = root / "parts" / f"clap-{config.strong}"
    text_encoder, tokenizer = load_text_encoder(str(clap))
    vae = AutoencoderKL.from_pretrained(root / "parts" / "vae")
    sizes = {**TANGO_UNET_SIZES[config.unet_size], "in_channels": vae.config.latent_channels}
    sizes["out_channels"] = vae.config.latent_channels
    pipe = TangoCLAPPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=build_unet(text_width(text_encoder), **sizes),  # replaced by every run's --unet_from_scratch
        scheduler=build_scheduler(),
        vocoder=SpeechT5HifiGan.from_pretrained(root / "parts" / "vocoder"),
        clap_model=ClapModel.from_pretrained(clap),
        clap_tokenizer=AutoTokenizer.from_pretrained(clap),
        clap_feature_extractor=ClapFeatureExtractor.from_pretrained(clap),
    )
    pipe.save_pretrained(out)
    return {"text_encoder": f"clap-{config.strong}"}


# ---------------------------------------------------------------------------------------------------- AF-AudioSet


def scorer_names(config: ReproductionConfig) -> list[str]:
    """Every scorer AF-AudioSet is built with: the CLAPs, strongest first (it captions), then the two controls."""
    return [rung["name"] for rung in reversed(config.clap_ladder)] + ["oracle", "random"]


def stage_af_audioset(config: ReproductionConfig, root: Path, scorer: str, out: Path) -> dict[str, Any]:
    """AF-AudioSet on the pool with `scorer` where CLAP goes. The strongest CLAP's build captions the pool; every other
    build replays those captions (`ReplayCaptioner`), so all scorers rank the very same captions."""
    from datasets_scripts.build import build_af_audioset
    from datasets_scripts.sources import clips_from_audio_dir

    from .scorers import OracleScorer, RandomScorer, ReplayCaptioner

    if scorer == "oracle":
        clap: Any = OracleScorer(world_clips(config, "pool"), seed=config.parts_seed)
    elif scorer == "random":
        clap = RandomScorer(seed=config.parts_seed)
    else:
        clap = str(root / "parts" / f"clap-{scorer}")
    captioner: Any = str(root / "parts" / "captioner")
    if scorer != config.strong:
        captioner = ReplayCaptioner(root / "af" / config.strong)
    summary = build_af_audioset(
        clips_from_audio_dir(root / "world" / "pool" / "audio"),
        out,
        captioner=captioner,
        clap=clap,
        num_captions=config.num_captions,
        top_k=config.top_k,
        seed=config.parts_seed,
        batch_size=8,
        max_new_tokens=48,
        embed_audio=False,
    )
    return {"summary": dataclasses.asdict(summary) if dataclasses.is_dataclass(summary) else str(summary)}


def stage_caption_quality(config: ReproductionConfig, root: Path, out: Path) -> dict[str, Any]:
    """Caption exactness against the kept fraction, a curve per scorer; and the pretraining taus (quantiles of the
    strongest CLAP's top-k similarities)."""
    from .caption_quality import caption_table, scorer_quality_report, tau_grid

    truth = {c.clip_id: c.classes for c in world_clips(config, "pool")}
    # The table's and the plot's order: the random control, the CLAPs weakest first, the oracle.
    order = ["random", *(rung["name"] for rung in config.clap_ladder), "oracle"]
    report = scorer_quality_report({name: root / "af" / name for name in order}, truth, out, top_k=config.top_k)
    strong = caption_table(root / "af" / config.strong, truth)
    taus = tau_grid(strong["similarity"], strong["rank"], config.top_k, config.tau_quantiles)
    weak = caption_table(root / "af" / config.weak, truth)
    weak_taus = tau_grid(weak["similarity"], weak["rank"], config.top_k, config.tau_quantiles)
    return {**report, "pretraining_taus": taus, "weak_taus": weak_taus}


# ---------------------------------------------------------------------------------------------------- latents


def stage_latents(config: ReproductionConfig, root: Path, sources: dict[str, str], out: Path) -> dict[str, Any]:
    """Every latent source of the study, through `precompute_latents` with one shared encoding cache: each pool clip is
    encoded once however many sources and captions hold it, each caption once."""
    from training.components import build_pipeline, frames_for
    from training.data import AudioCaptionDataset, parse_source
    from training.precompute_latents import EncodingCache, precompute_latents

    pipe = build_pipeline(str(root / "base"))
    num_samples, frames = frames_for(pipe, config.world.clip_seconds)
    cache = EncodingCache()
    counts = {}
    for name, spec in sources.items():
        dataset = AudioCaptionDataset([parse_source(spec)], num_samples=num_samples, random_crop=False, seed=0)
        info = precompute_latents(
            pipe, dataset, out / name, frames=frames, batch_size=32, shard_size=3200, cache=cache
        )
        counts[name] = {"rows": info["clips"], "skipped": info["skipped"]}
    return {"sources": counts, "encoded_clips": len(cache.moments), "encoded_captions": len(cache.texts)}


def latent_sources(
    config: ReproductionConfig, root: Path, taus: list[float], weak_taus: list[float]
) -> dict[str, str]:
    """The data of every run, as `--train_data` specs: the captioned set, the pool with its ground truth, and
    AF-AudioSet by scorer and tau (the weakest CLAP at its own first quantile, the same share of its captions)."""
    audio = root / "world" / "pool" / "audio"
    sources = {CAPTIONED: f"hf:{root / 'world' / 'captioned'}", POOL_TRUTH: f"hf:{root / 'world' / 'pool'}"}
    strong_af = root / "af" / config.strong
    sources[af_source_name(config.strong, None)] = (
        f"af_audioset:{strong_af}?tau=-1&top_k={config.top_k}&audio_dir={audio}"
    )
    for tau in taus:
        sources[af_source_name(config.strong, tau)] = (
            f"af_audioset:{strong_af}?tau={tau}&top_k={config.top_k}&audio_dir={audio}"
        )
    if config.weak_clap_run and len(config.clap_ladder) > 1:
        weak_af = root / "af" / config.weak
        sources[af_source_name(config.weak, weak_taus[0])] = (
            f"af_audioset:{weak_af}?tau={weak_taus[0]}&top_k={config.top_k}&audio_dir={audio}"
        )
    return sources


# ---------------------------------------------------------------------------------------------------- runs


def training_arguments(config: ReproductionConfig) -> list[str]:
    return [
        "--audio_length_in_s", str(config.world.clip_seconds),
        "--train_batch_size", str(config.batch_size),
        "--learning_rate", str(config.learning_rate),
        "--lr_scheduler", "constant",
        "--snr_gamma", "5",
        "--report_to", "none",
        "--checkpointing_steps", "100000",
        "--cpu",
    ]  # fmt: skip


def run_job(config: ReproductionConfig, root: Path, run: TextToAudioRun, seed: int) -> dict[str, Any]:
    """One seed of one run: trained, then evaluated on every test prompt; both resumable stages."""
    model = root / "models" / run.name / f"seed{seed}"
    trained = run_stage(
        root,
        f"models/{run.name}/seed{seed}",
        lambda out: train_run(
            run, seed, root / "base", root / "latents", out, training_arguments(config), config.unet_size
        ),
    )
    evaluated = run_stage(root, f"eval/{run.name}/seed{seed}", lambda out: evaluate_model(config, root, model, out))
    return {"train_seconds": trained["seconds"], **evaluated}


def evaluate_model(config: ReproductionConfig, root: Path, model: Path, out: Path) -> dict[str, Any]:
    """A model on every test prompt (one clip each, the same noise seeds for every model), with the world's
    classifier and the strongest CLAP, on all, seen and unseen prompts."""
    from .evaluation import evaluate_micro_pipeline

    return evaluate_micro_pipeline(
        model,
        world_clips(config, "test"),
        classifier=root / "parts" / "classifier",
        clap=root / "parts" / f"clap-{config.strong}",
        output_dir=out,
        num_inference_steps=config.eval_steps,
        guidance_scale=config.eval_guidance,
        seed=0,
        scheduler=config.eval_scheduler,
        groups=test_groups(config),
    )


def evaluate_references(config: ReproductionConfig, root: Path, out: Path) -> dict[str, Any]:
    """The real test audio (what the classifier can tell at best) and the same audio through the generated audio's
    path without diffusion: log-mel, VAE encode (the posterior's mode) and decode, vocoder. The second is the ceiling
    the VAE and vocoder leave every TangoCLAP model."""
    import torch
    from diffusers import AutoencoderKL
    from transformers import SpeechT5HifiGan

    from .autoencoder import tango_mels
    from .evaluation import evaluate_micro_audio

    test = world_clips(config, "test")
    groups = test_groups(config)
    common = {"classifier": root / "parts" / "classifier", "clap": root / "parts" / f"clap-{config.strong}"}
    real = evaluate_micro_audio([c.audio for c in test], test, groups=groups, **common)
    vae = AutoencoderKL.from_pretrained(root / "parts" / "vae").eval()
    vocoder = SpeechT5HifiGan.from_pretrained(root / "parts" / "vocoder").eval()
    multiple = 2 ** (len(vae.config.block_out_channels) - 1)
    audios = []
    with torch.no_grad():
        for clip, mel in zip(test, tango_mels([c.audio for c in test])):
            frames = mel.shape[0] // multiple * multiple  # whole VAE latent frames
            decoded = vae.decode(vae.encode(mel[None, None, :frames]).latent_dist.mode()).sample[:, 0]
            audio = vocoder(decoded).squeeze(0).numpy()
            audios.append(np.pad(audio, (0, max(0, len(clip.audio) - len(audio))))[: len(clip.audio)])
    vocoded = evaluate_micro_audio(audios, test, groups=groups, **common)
    return {"real test audio": real, "real test audio through the VAE and vocoder": vocoded}


def summarise(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Means over seeds with 95% intervals, for every metric, on all prompts and per group."""
    seeds = sorted(results)
    summary: dict[str, dict[str, Any]] = {"all": {}}
    for key in METRIC_KEYS:
        summary["all"][key] = mean_ci([results[s][key] for s in seeds])
    for group in results[seeds[0]].get("groups", {}):
        summary[group] = {key: mean_ci([results[s]["groups"][group][key] for s in seeds]) for key in METRIC_KEYS}
    return summary


def best_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The recipe to ship: the highest mean events right over seeds (then CLAP score), among the recipes a user could
    follow (the ground-truth upper bound needs labels nobody has)."""
    candidates = [run for run in runs if run["kind"] != "upper-bound"]
    return max(
        candidates, key=lambda r: (r["summary"]["all"]["event_accuracy"]["mean"], r["summary"]["all"]["CLAP"]["mean"])
    )


def shipped_seed(run: dict[str, Any]) -> int:
    """The seed whose weights ship: the one whose events right is the median of the recipe's seeds (a
    representative model, chosen by a rule fixed before looking, not the luckiest)."""
    ordered = sorted(run["seeds"], key=lambda s: (run["per_seed"][str(s)]["event_accuracy"], s))
    return ordered[len(ordered) // 2]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


# ---------------------------------------------------------------------------------------------------- main


# Every call of `reproduce` on a run folder, with its wall time and how it ended: a study resumed over several calls
# (or sessions) reports the sum, not the last call's time.
INVOCATIONS = "invocations.json"


def read_invocations(root: Path) -> list[dict[str, Any]]:
    path = root / INVOCATIONS
    return json.loads(path.read_text()) if path.is_file() else []


def record_invocation(root: Path, started_at: str, seconds: float, outcome: str, workers: int) -> None:
    """Appends one call's record to `root/invocations.json` (written whole, then renamed)."""
    from pipelines.evaluation.outputs import write_json

    records = read_invocations(root)
    records.append({"started": started_at, "seconds": round(seconds, 1), "workers": workers, "outcome": outcome})
    write_json(root / INVOCATIONS, records)


# Points where a run can stop (`--stop-after`) to be resumed later, e.g. by the next session on another machine.
MILESTONES = ("parts", "caption_quality", "latents", "runs")


def reproduce(config: ReproductionConfig, output: str | os.PathLike, stop_after: str | None = None) -> dict[str, Any]:
    """
    Runs (or resumes) every stage; returns the report (also written to `output/report.json` and `report.md`, with
    its plots). Each call's wall time and outcome is added to `output/invocations.json`; the report's `seconds` is
    the sum over every call that worked on the run.

    Args:
        config ([`ReproductionConfig`]): sizes and budgets.
        output (`str` or `os.PathLike`): the run's folder.
        stop_after (`str`, *optional*): one of `MILESTONES`: stop there and return what is done so far (also written
            to `output/progress.json`); the same call without it resumes from there.
    """
    if stop_after is not None and stop_after not in MILESTONES:
        raise ValueError(f"`stop_after` must be one of {MILESTONES}, got {stop_after!r}.")
    started_at, started = time.strftime("%Y-%m-%dT%H:%M:%S"), time.perf_counter()
    root = Path(output)
    root.mkdir(parents=True, exist_ok=True)
    config_path = root / "config.json"
    # How many stages run at a time changes no result: a run may be resumed with other `workers`.
    settings = {key: value for key, value in dataclasses.asdict(config).items() if key != "workers"}
    config_record = json.dumps(_jsonable(settings), indent=2) + "\n"
    if config_path.is_file() and config_path.read_text() != config_record:
        raise ValueError(
            f"{os.fspath(root)!r} holds a run with other settings ({config_path}); resume it with the same preset, "
            "or give another --output."
        )
    config_path.write_text(config_record)
    try:
        result = _reproduce(config, root, stop_after, started)
        outcome = "finished" if stop_after is None else f"stopped after {stop_after}"
        return result
    except BaseException as error:
        outcome = f"failed: {type(error).__name__}"
        raise
    finally:
        record_invocation(root, started_at, time.perf_counter() - started, outcome, config.workers)


def _reproduce(config: ReproductionConfig, root: Path, stop_after: str | None, started: float) -> dict[str, Any]:
    from .report import write_report

    seconds: dict[str, float] = {}

    def timed(name: str, record: dict[str, Any]) -> dict[str, Any]:
        seconds[name] = record.get("seconds", 0.0)
        return record

    world = timed("world", run_stage(root, "world", lambda out: stage_world(config, out)))
    part_jobs = [(f"clap-{rung['name']}", part_clap, (config, root, rung)) for rung in config.clap_ladder]
    part_jobs += [
        ("captioner", part_captioner, (config, root)),
        ("vae", part_vae, (config, root)),
        ("vocoder", part_vocoder, (config, root)),
        ("classifier", part_classifier, (config, root)),
    ]
    parts = run_parallel(part_jobs, config.workers, "parts")
    for name, record in parts.items():
        timed(f"parts/{name}", record)

    def progress(milestone: str, **records: Any) -> dict[str, Any]:
        done = _jsonable({"stopped_after": milestone, "parts": parts, **records, "stage_seconds": seconds})
        (root / "progress.json").write_text(json.dumps(done, indent=2) + "\n")
        return done

    if stop_after == "parts":
        return progress("parts")
    timed("base", run_stage(root, "base", lambda out: stage_base_pipeline(config, root, out)))
    for scorer in scorer_names(config):  # the strongest CLAP first: it captions, the others replay
        timed(
            f"af/{scorer}",
            run_stage(root, f"af/{scorer}", lambda out, s=scorer: stage_af_audioset(config, root, s, out)),
        )
    quality = timed(
        "caption_quality", run_stage(root, "caption_quality", lambda out: stage_caption_quality(config, root, out))
    )
    if stop_after == "caption_quality":
        return progress("caption_quality", caption_quality=quality)
    taus, weak_taus = quality["pretraining_taus"], quality["weak_taus"]
    sources = latent_sources(config, root, taus, weak_taus)
    timed("latents", run_stage(root, "latents", lambda out: stage_latents(config, root, sources, out)))
    if stop_after == "latents":
        return progress("latents", caption_quality=quality)

    weak = config.weak if config.weak_clap_run and len(config.clap_ladder) > 1 else None
    # The weak CLAP's run is filtered at the same quantile of its own scores.
    runs = study_runs(config.pretrain_steps, config.finetune_steps, config.strong, taus, weak, config.mixture_weight,
                      weak_tau=weak_taus[0])  # fmt: skip
    jobs = [(f"{run.name}/seed{seed}", run_job, (config, root, run, seed)) for run in runs for seed in config.seeds]
    finished = run_parallel(jobs, config.workers, "text-to-audio runs")
    if stop_after == "runs":
        return progress("runs", caption_quality=quality, runs=finished)
    references = timed(
        "references", run_stage(root, "eval/references", lambda out: evaluate_references(config, root, out))
    )
    references = {k: v for k, v in references.items() if k != "seconds"}

    run_records = []
    for run in runs:
        per_seed = {str(seed): finished[f"{run.name}/seed{seed}"] for seed in config.seeds}
        for seed, record in per_seed.items():
            seconds[f"runs/{run.name}/seed{seed}"] = record["train_seconds"] + record["seconds"]
        run_records.append(
            {
                **dataclasses.asdict(run),
                "steps": run.total_steps,
                "seeds": list(config.seeds),
                "per_seed": {s: {k: r[k] for k in (*METRIC_KEYS, "groups")} for s, r in per_seed.items()},
                "summary": summarise({s: r for s, r in per_seed.items()}),
            }
        )
    best = best_run(run_records)
    ladder = [
        {"name": rung["name"], "recipe": parts[f"clap-{rung['name']}"]["recipe"], **parts[f"clap-{rung['name']}"]["test"],
         "best_of_n_exact": quality["best_of_n_exact"][rung["name"]], "seconds": parts[f"clap-{rung['name']}"]["seconds"]}
        for rung in config.clap_ladder
    ]  # fmt: skip
    earlier_calls = read_invocations(root)
    report = {
        "config": dataclasses.asdict(config),
        "test_prompts": world["test_prompts"],
        "clip_seconds": config.world.clip_seconds,
        "interval": INTERVAL_KIND,
        "clap_ladder": ladder,
        "captioner": {
            "exact": parts["captioner"]["test"]["exact_class_rate"],
            # The rate that matters to AF-AudioSet: its sampled captions of the pool clips it captions.
            "pool_exact": quality["sampled_exact"],
            **parts["captioner"]["test"],
        },
        "parts": {name: {k: v for k, v in record.items() if k != "seconds"} for name, record in parts.items()},
        "caption_quality": quality["curves"],
        "caption_quality_table": quality["table"],
        "pretraining_taus": taus,
        "references": references,
        "runs": run_records,
        "baseline": "captioned-all",
        "baseline_label": next(r["label"] for r in run_records if r["name"] == "captioned-all"),
        "best": best["name"],
        "shipped_seed": shipped_seed(best),
        "stage_seconds": seconds,
        # Every call that worked on the run, this one included.
        "seconds": round(sum(call["seconds"] for call in earlier_calls) + time.perf_counter() - started, 1),
        "invocations": len(earlier_calls) + 1,
    }
    report = _jsonable(report)
    (root / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
    write_report(report, root)
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Reproduce the paper's method at micro scale on a CPU.")
    parser.add_argument("--output", required=True, help="The run's folder (resumed if it holds a run).")
    parser.add_argument("--preset", default="full", choices=sorted(PRESETS))
    parser.add_argument("--world-seed", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None, help="Stages at a time (default: the preset's).")
    parser.add_argument("--install-default", action="store_true", help="Make the best model the embedded default.")
    parser.add_argument(
        "--stop-after",
        default=None,
        choices=MILESTONES,
        help="Stop after this stage (resume by running again without it).",
    )
    add_debug_argument(parser)
    return parser


@command_line
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = ReproductionConfig(**PRESETS[args.preset])
    if args.world_seed is not None:
        config.world_seed = args.world_seed
    if args.workers is not None:
        if args.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {args.workers}.")
        config.workers = args.workers
    check_output_folder(args.output, "--output", owned_marker="config.json")
    report = reproduce(config, args.output, stop_after=args.stop_after)
    if args.stop_after is not None:
        print(f"Stopped after {args.stop_after}: {os.fspath(Path(args.output) / 'progress.json')}")
        return 0
    print((Path(args.output) / "report.md").read_text())
    if args.install_default:
        from .default_model import install_default_model

        install_default_model(Path(args.output), report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
