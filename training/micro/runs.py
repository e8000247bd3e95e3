"""The text-to-audio runs of the micro study, and how they are executed: two at a time, one torch thread each.

Every run trains a TangoCLAP UNet from scratch with the project's training script (`training.train_tango_clap.train`)
on pre-computed latents (`training.precompute_latents`), optionally pretrained on one or more sources first, then
fine-tuned on the captioned set (the study's AudioCaps), and is then evaluated on the test prompts. A run is repeated
for every training seed of the study; every seed of every run sees the same test prompts and the same noise seeds.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

# The data sources every run draws from: folders of pre-computed latents under the study's `latents/`.
CAPTIONED = "captioned"
POOL_TRUTH = "pool-truth"


@dataclass(frozen=True)
class TextToAudioRun:
    """
    One recipe of the study.

    Args:
        name (`str`): folder-safe name, e.g. `"af-strong-tau0.41"`.
        label (`str`): what the report calls it.
        pretraining (`tuple[tuple[str, float], ...]`): latent sources and their mixture weights for the first stage;
            empty for a run trained on the captioned set only.
        pretrain_steps (`int`): steps of the first stage (0 without one).
        finetune_steps (`int`): steps on the captioned set (the whole run when there is no first stage).
        kind (`str`): `"baseline"`, `"synthetic"`, `"mixed"` or `"upper-bound"`, for the report.
    """

    name: str
    label: str
    pretraining: tuple[tuple[str, float], ...]
    pretrain_steps: int
    finetune_steps: int
    kind: str

    @property
    def total_steps(self) -> int:
        return self.pretrain_steps + self.finetune_steps


def study_runs(
    pretrain_steps: int,
    finetune_steps: int,
    strong: str,
    taus: Sequence[float],
    weak: str | None = None,
    mixture_weight: float = 1.0,
    weak_tau: float | None = None,
) -> list[TextToAudioRun]:
    """
    The runs of the study, in report order.

    - captioned only, at the fine-tune budget and at the whole budget (pretraining + fine-tuning);
    - AF-AudioSet scored by the strongest CLAP: top-k unfiltered and at each tau, then fine-tuned;
    - AF-AudioSet (first tau) mixed with the captioned set, then fine-tuned (the paper's best recipe);
    - the pool with its ground-truth captions, then fine-tuned (perfect captions: the upper bound);
    - with `weak`, AF-AudioSet scored by the weakest CLAP at the first tau (does the scorer's strength matter?).

    Args:
        pretrain_steps (`int`), finetune_steps (`int`): the two stages' budgets.
        strong (`str`): name of the strongest CLAP's AF-AudioSet sources (`af-<strong>-top3`, `af-<strong>-tau<t>`).
        taus (`Sequence[float]`): the filtered pretraining sets' thresholds, on the strongest CLAP's scale.
        weak (`str`, *optional*): name of the weakest CLAP's sources, for the scorer-strength run.
        mixture_weight (`float`, *optional*, defaults to 1.0): the captioned set's weight against AF-AudioSet's 1.0
            in the mixed pretraining (equal weights: the small real set is drawn as often as the synthetic one).
        weak_tau (`float`, *optional*): the weakest CLAP's threshold, on its own scale (the same quantile of its
            scores as `taus[0]` is of the strongest's); defaults to `taus[0]`.
    """
    both = pretrain_steps + finetune_steps
    runs = [
        TextToAudioRun("captioned-ft", "captioned only (fine-tune budget)", (), 0, finetune_steps, "baseline"),
        TextToAudioRun("captioned-all", "captioned only (whole budget)", (), 0, both, "baseline"),
        TextToAudioRun(
            f"af-{strong}-top3", f"AF-AudioSet ({strong} CLAP, top 3)", ((f"af-{strong}-top3", 1.0),),
            pretrain_steps, finetune_steps, "synthetic",
        ),
    ]  # fmt: skip
    for tau in taus:
        source = af_source_name(strong, tau)
        runs.append(
            TextToAudioRun(
                source,
                f"AF-AudioSet ({strong} CLAP, tau {tau:.3f})",
                ((source, 1.0),),
                pretrain_steps,
                finetune_steps,
                "synthetic",
            )  # fmt: skip
        )
    first = af_source_name(strong, taus[0])
    runs.append(
        TextToAudioRun(
            f"{first}+captioned",
            f"AF-AudioSet ({strong} CLAP, tau {taus[0]:.3f}) + captioned",
            ((first, 1.0), (CAPTIONED, mixture_weight)),
            pretrain_steps,
            finetune_steps,
            "mixed",
        )  # fmt: skip
    )
    runs.append(
        TextToAudioRun(
            POOL_TRUTH,
            "pool with ground-truth captions",
            ((POOL_TRUTH, 1.0),),
            pretrain_steps,
            finetune_steps,
            "upper-bound",
        )  # fmt: skip
    )
    if weak is not None:
        weak_tau = taus[0] if weak_tau is None else weak_tau
        source = af_source_name(weak, weak_tau)
        runs.append(
            TextToAudioRun(
                source,
                f"AF-AudioSet ({weak} CLAP, tau {weak_tau:.3f} on its own scale)",
                ((source, 1.0),),
                pretrain_steps,
                finetune_steps,
                "synthetic",
            )  # fmt: skip
        )
    return runs


def af_source_name(scorer: str, tau: float | None) -> str:
    """The latent source of AF-AudioSet scored by `scorer`, at `tau` (or top-k only for `None`)."""
    return f"af-{scorer}-top3" if tau is None else f"af-{scorer}-tau{tau:.3f}"


def train_run(
    run: TextToAudioRun,
    seed: int,
    base: Path,
    latents: Path,
    out: Path,
    common: Sequence[str],
    unet_size: str,
) -> dict[str, Any]:
    """
    Trains one seed of `run` into `out` through the project's training script: the first stage (if any) from a
    random UNet into a staging folder beside `out`, then the fine-tuning on the captioned set.

    Args:
        run ([`TextToAudioRun`]): the recipe.
        seed (`int`): the training seed (initialisation, data order, noise).
        base (`Path`): the pipeline folder every run starts from (VAE, vocoder, text encoder, scheduler).
        latents (`Path`): the folder of the study's latent sources.
        out (`Path`): the trained pipeline's folder.
        common (`Sequence[str]`): the training arguments shared by every run (batch, learning rate, ...).
        unet_size (`str`): the from-scratch UNet size.

    Returns:
        `dict[str, Any]`: the steps of each stage.
    """
    from training.train_tango_clap import train

    seed_args = ["--seed", str(seed), *common]
    from_scratch = ["--pretrained_model_name_or_path", str(base), "--unet_from_scratch", unet_size]
    captioned = [str(latents / CAPTIONED)]
    if not run.pretraining:
        train([*from_scratch, "--precomputed_latents", *captioned, "--max_train_steps", str(run.finetune_steps),
               "--output_dir", str(out), *seed_args])  # fmt: skip
        return {"pretrain_steps": 0, "finetune_steps": run.finetune_steps}
    sources = [f"{latents / name}?weight={weight}" for name, weight in run.pretraining]
    pretrained = out.parent / f".{out.name}.pretrained"
    shutil.rmtree(pretrained, ignore_errors=True)
    try:
        train([*from_scratch, "--precomputed_latents", *sources, "--max_train_steps", str(run.pretrain_steps),
               "--output_dir", str(pretrained), *seed_args])  # fmt: skip
        train(["--pretrained_model_name_or_path", str(pretrained), "--precomputed_latents", *captioned,
               "--max_train_steps", str(run.finetune_steps), "--output_dir", str(out), *seed_args])  # fmt: skip
    finally:
        shutil.rmtree(pretrained, ignore_errors=True)
    return {"pretrain_steps": run.pretrain_steps, "finetune_steps": run.finetune_steps}


def _one_thread() -> None:
    """Each worker process gets one core's worth of threads, so that two workers share two cores without fighting.
    torch reads these when it is imported, which in a fresh worker comes after this."""
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"


def run_parallel(
    jobs: Sequence[tuple[str, Callable[..., Any], tuple]],
    workers: int,
    description: str = "jobs",
) -> dict[str, Any]:
    """
    Runs independent jobs, `workers` at a time, each in a fresh spawned process with one torch thread.

    A job is `(key, function, args)`; the function must be importable (a module-level function) and its arguments
    picklable. Jobs are expected to be resumable stages (`run_stage`), so a killed study started again skips what
    finished. The first failure cancels the jobs not yet started and is raised.

    Args:
        jobs (`Sequence[tuple[str, Callable, tuple]]`): the work.
        workers (`int`): processes at a time; 1 runs the jobs here, in order.
        description (`str`, *optional*): the progress bar's label.

    Returns:
        `dict[str, Any]`: each job's return value by key.
    """
    results: dict[str, Any] = {}
    bar = tqdm(total=len(jobs), desc=description)
    if workers <= 1:
        for key, function, args in jobs:
            results[key] = function(*args)
            bar.update()
        bar.close()
        return results
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread, max_tasks_per_child=1) as pool:
        futures = {pool.submit(function, *args): key for key, function, args in jobs}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                error = future.exception()
                if error is not None:
                    for other in pending:
                        other.cancel()
                    bar.close()
                    raise error
                results[futures[future]] = future.result()
                bar.update()
    bar.close()
    return results
