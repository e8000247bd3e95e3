"""Evaluation of micro-world text-to-audio models with the world's own backbones, through the project's evaluation
code (`pipelines.evaluation`): FD on the ground-truth event classifier's embeddings (the role PANNs plays on
AudioSet), the CLAP score with the world's CLAP, and how often the classifier hears exactly the prompted events."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from pipelines.evaluation.metrics import clap_score, frechet_distance

from .classifier import MicroEventClassifier

GENERATED_DIR = "generated"


def _metrics(
    embeddings: np.ndarray,
    reference_embeddings: np.ndarray,
    heard: list[set[str]],
    prompted: list[set[str]],
    audio_embeds: Any,
    text_embeds: Any,
) -> dict[str, float]:
    fd = frechet_distance(embeddings, reference_embeddings) if len(embeddings) > 1 else float("nan")
    return {
        "FD": float(fd),
        "CLAP": float(clap_score(audio_embeds, text_embeds)),
        "event_accuracy": float(np.mean([h == p for h, p in zip(heard, prompted)])),
        "event_recall": float(np.mean([len(h & p) / len(p) for h, p in zip(heard, prompted)])),
        "clips": len(prompted),
    }


def evaluate_micro_audio(
    audios: Sequence[np.ndarray],
    clips: Sequence[Any],
    classifier: str | os.PathLike,
    clap: str | os.PathLike,
    reference: Sequence[np.ndarray] | None = None,
    groups: dict[str, Sequence[int]] | None = None,
) -> dict[str, Any]:
    """
    Metrics of audio made for the captions of `clips` (world `MicroClip`s, in the same order).

    Args:
        audios (`Sequence[np.ndarray]`): one 16 kHz clip per test clip, made from its caption.
        clips (`Sequence[MicroClip]`): the test clips (captions, ground truth, real audio).
        classifier (`str` or `os.PathLike`): a `MicroEventClassifier` folder.
        clap (`str` or `os.PathLike`): the world's CLAP folder.
        reference (`Sequence[np.ndarray]`, *optional*): the audio FD compares against; the test clips' own audio by
            default.
        groups (`dict[str, Sequence[int]]`, *optional*): subsets of the clips (indices), e.g. the prompts whose class
            combination the captioned set holds (`"seen"`) or not (`"unseen"`); each gets the same metrics, its FD
            against the same subset of the reference.

    Returns:
        `dict[str, Any]`: `FD`, `CLAP`, `event_accuracy` (the classifier's set of events equals the prompted one),
        `event_recall` (prompted events heard) and `clips`; `groups` with the same per group; and `per_clip`, for each
        clip the classes heard.
    """
    from datasets_scripts.micro_world import CLASSES
    from datasets_scripts.scorer import ClapScorer

    if len(audios) != len(clips):
        raise ValueError(f"Got {len(audios)} clips of audio for {len(clips)} captions.")
    model = MicroEventClassifier.from_pretrained(classifier)
    # Against the test clips' own audio, a group is compared with the same clips' real audio.
    paired_reference = reference is None
    reference = [c.audio for c in clips] if reference is None else reference
    with torch.no_grad():
        embeddings = np.asarray(model.embed(list(audios)))
        reference_embeddings = np.asarray(model.embed(list(reference)))
        probabilities = np.asarray(model.predict_proba(list(audios)))
    heard = [{CLASSES[i] for i in np.flatnonzero(p >= 0.5)} for p in probabilities]
    prompted = [set(c.classes) for c in clips]
    scorer = ClapScorer.from_pretrained(str(clap))
    audio_embeds = scorer.embed_audio(list(audios))
    text_embeds = scorer.embed_text([c.caption for c in clips])
    result: dict[str, Any] = _metrics(embeddings, reference_embeddings, heard, prompted, audio_embeds, text_embeds)
    result["groups"] = {}
    for name, indices in (groups or {}).items():
        indices = list(indices)
        if not indices:
            continue
        result["groups"][name] = _metrics(
            embeddings[indices],
            reference_embeddings[indices] if paired_reference else reference_embeddings,
            [heard[i] for i in indices],
            [prompted[i] for i in indices],
            audio_embeds[indices],
            text_embeds[indices],
        )
    result["per_clip"] = {c.clip_id: sorted(h) for c, h in zip(clips, heard)}
    return result


def evaluate_micro_pipeline(
    model: str | os.PathLike,
    clips: Sequence[Any],
    classifier: str | os.PathLike,
    clap: str | os.PathLike,
    output_dir: str | os.PathLike,
    num_inference_steps: int = 25,
    guidance_scale: float = 3.0,
    seed: int = 0,
    scheduler: str = "dpmsolver++",
    batch_size: int = 16,
    groups: dict[str, Sequence[int]] | None = None,
) -> dict[str, Any]:
    """
    Generates one clip per test caption (seeded per clip, resumable, `pipelines.evaluation.evaluate_pipeline`) and
    evaluates them with [`evaluate_micro_audio`].

    Args:
        model (`str` or `os.PathLike`): a TangoCLAPPipeline folder.
        clips (`Sequence[MicroClip]`): the test clips.
        classifier, clap (`str` or `os.PathLike`): the world's backbones.
        output_dir (`str` or `os.PathLike`): where `generated/<clip_id>.wav` go.
        num_inference_steps (`int`, *optional*, defaults to 25): sampler steps.
        guidance_scale (`float`, *optional*, defaults to 3.0): classifier-free guidance.
        seed (`int`, *optional*, defaults to 0): seed of every clip's noise.
        scheduler (`str`, *optional*, defaults to `"dpmsolver++"`): a sampler of `pipelines.generate.SCHEDULERS`.
        batch_size (`int`, *optional*, defaults to 16): captions per pipeline call.
        groups (`dict[str, Sequence[int]]`, *optional*): subsets of the clips to report apart (see
            [`evaluate_micro_audio`]).

    Returns:
        `dict[str, Any]`: the metrics, the sampler settings and `generate_seconds`.
    """
    import time

    from pipelines.evaluation.evaluate_pipeline import generate_clips
    from pipelines.generate import load_pipeline

    pipe = load_pipeline(str(model), device="cpu", scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    folder = Path(output_dir) / GENERATED_DIR
    started = time.perf_counter()
    seconds = len(clips[0].audio) / clips[0].sampling_rate
    generate_clips(
        pipe,
        {c.clip_id: c.caption for c in clips},
        folder,
        seed=seed,
        batch_size=batch_size,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        audio_length_in_s=seconds,
    )
    elapsed = time.perf_counter() - started
    # `generate_clips` never writes a non-finite clip. Such a generation failed: it is scored as silence (no event
    # heard, so never "right") and counted, rather than left out, which would flatter the model.
    audios, non_finite = [], []
    for clip in clips:
        path = folder / f"{clip.clip_id}.wav"
        if path.is_file():
            audios.append(sf.read(path, dtype="float32")[0])
        else:
            non_finite.append(clip.clip_id)
            audios.append(np.zeros(round(seconds * clip.sampling_rate), dtype=np.float32))
    metrics = evaluate_micro_audio(audios, clips, classifier, clap, groups=groups)
    return {
        **metrics,
        "non_finite_generations": non_finite,
        "scheduler": scheduler,
        "num_inference_steps": num_inference_steps,
        "guidance_scale": guidance_scale,
        "generate_seconds": round(elapsed, 1),
    }
