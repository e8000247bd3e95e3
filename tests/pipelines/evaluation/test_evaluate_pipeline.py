"""The evaluation commands end to end: a debug pipeline generates an evaluation set's captions (batched, seeded per
clip, resumable), random-weight Cnn14 / VGGish / CLAP score the clips, and the results reach the JSON and the card.
The first run of each command is the installed script's (`conftest.py`); these tests read what it wrote."""

import json
import math
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file

from pipelines.evaluation import evaluate_audio, evaluate_pipeline
from pipelines.evaluation.evaluate_pipeline import clip_seed
from pipelines.evaluation.metrics import KL_EPS

METRICS = {"FD", "FAD", "IS", "IS_std", "KL", "KL_sigmoid", "CLAP"}
CLASSES = 527  # AudioSet's, Cnn14's logits
# Gibbs' inequality with q = p_gen + eps (which sums to 1 + 527 eps): sum p log(p / q) >= -log(sum q). audioldm_eval's
# eps inside the log can make KL negative, never below this.
KL_FLOOR = -math.log1p(CLASSES * KL_EPS)


def test_generate_and_evaluate_resumes_and_fills_the_card(
    evaluation_root, clip_keys, pipeline_run, pipeline_argv, command, feature_cache, tmp_path, capsys
):
    assert pipeline_run.process.returncode == 0, pipeline_run.process.stderr[-3000:]
    output, card = pipeline_run.extra["output_dir"], pipeline_run.extra["card"]
    results = pipeline_run.results()

    generated = sorted(p.stem for p in (output / "generated").glob("*.wav"))
    assert generated == sorted(clip_keys)
    metrics = results["metrics"]
    assert set(metrics) == METRICS and results["not_computed"] == {}
    assert all(np.isfinite(v) for v in metrics.values())
    # Noise from random weights against tones: distinct sets. IS = exp(mean KL) >= 1.
    assert metrics["FD"] > 0 and metrics["FAD"] > 0 and metrics["IS"] >= 1.0 and metrics["KL"] >= KL_FLOOR
    assert results["clips"]["kl_pairs"] == len(clip_keys) and results["clips"]["clap_clips"] == len(clip_keys)
    assert results["clips"]["generated"]["skipped"] == {} and results["clips"]["generated"]["clips"] == len(clip_keys)
    assert results["protocol"]["backbones"]["cnn14"] == str(evaluation_root / "cnn14")
    assert results["protocol"]["generation"]["num_inference_steps"] == 2
    card_text = card.read_text()
    assert "model-index" in card_text and "tiny-caps" in card_text and "FD (PANNs)" in card_text

    # Killed during the last batch (yt8 and yt9, with --batch_size 4): a resume, in a copy of the folder, generates
    # that batch again and touches nothing else. The same prompts in the same batch with the same per-clip seeds give
    # the same samples, hence the same cached features and the same numbers, exactly.
    resumed = tmp_path / "eval"
    shutil.copytree(output, resumed)
    first = {key: (resumed / "generated" / f"{key}.wav").read_bytes() for key in clip_keys[-2:]}
    untouched = (resumed / "generated" / "yt0.wav").stat().st_mtime_ns
    for key in first:
        (resumed / "generated" / f"{key}.wav").unlink()
    again = command("tango-af-evaluate-pipeline", *pipeline_argv(resumed), "--cache_dir", str(feature_cache))

    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{len(clip_keys) - 2} clips already generated" in again.stderr and "generating 2." in again.stderr
    assert (resumed / "generated" / "yt0.wav").stat().st_mtime_ns == untouched
    for key, content in first.items():
        assert (resumed / "generated" / f"{key}.wav").read_bytes() == content, key
    assert json.loads((resumed / "results.json").read_text())["metrics"] == metrics

    # Other generation settings do not resume into this folder: its clips would mix two configurations.
    code = evaluate_pipeline.main([*pipeline_argv(resumed), "--num_inference_steps", "3", "--no_cache"])
    assert code == 2 and "num_inference_steps 2 there, 3 now" in capsys.readouterr().err


def test_clip_seeds_depend_on_the_key_only():
    assert clip_seed(0, "a") == clip_seed(0, "a") != clip_seed(0, "b") != clip_seed(1, "b")


def cached_features(cache) -> tuple[list[dict], list[dict]]:
    """The feature files of a cache folder: Cnn14's (with logits) and VGGish's."""
    files = [load_file(path) for path in sorted(cache.rglob("*.safetensors"))]
    return [f for f in files if "logits" in f], [f for f in files if "logits" not in f]


def total_variance(rows: np.ndarray) -> float:
    return float(np.trace(np.atleast_2d(np.cov(rows.astype(np.float64), rowvar=False))))


def test_folders_with_prompts_csv(evaluation_root, clip_keys, audio_run, tmp_path):
    assert audio_run.process.returncode == 0, audio_run.process.stderr[-3000:]
    result = audio_run.results()
    assert set(result["metrics"]) == METRICS and result["not_computed"] == {}
    assert result["clips"]["kl_pairs"] == len(clip_keys) and not result["clips"]["unpaired_reference"]
    assert result["clips"]["clap_clips"] == len(clip_keys) and result["clips"]["without_prompt"] == []
    # Shifted, quieter copies: distinct sets, so positive distances (round-off is ~1e-15 of the total variance).
    assert result["metrics"]["FAD"] > 0 and result["metrics"]["FD"] > 0
    assert result["metrics"]["KL"] >= KL_FLOOR

    # Identical sets: FD, FAD and KL of a set with itself.
    cache = tmp_path / "cache"
    same = tmp_path / "same.json"
    code = evaluate_audio.main(
        ["--generated", str(evaluation_root / "ref_audio"), "--reference", str(evaluation_root / "ref_audio"),
         "--cnn14", str(evaluation_root / "cnn14"), "--vggish", str(evaluation_root / "vggish"),
         "--cache_dir", str(cache), "--output", str(same)]
    )  # fmt: skip
    assert code == 0
    metrics = json.loads(same.read_text())["metrics"]
    cnn14, vggish = cached_features(cache)
    # Each clip embedded once by each backbone: the other side's features came from the cache.
    assert len(cnn14) == len(vggish) == len(clip_keys)
    embeddings = np.stack([f["embedding"] for f in cnn14])
    examples = np.concatenate([f["embedding"] for f in vggish])
    # Exact arithmetic gives 0; the float64 sums and singular values of this handful of rows err by a few ulps of
    # the total variance.
    assert abs(metrics["FD"]) <= 1e-12 * total_variance(embeddings)
    assert abs(metrics["FAD"]) <= 1e-12 * total_variance(examples)
    # KL of p with itself, with audioldm_eval's eps: mean over clips of sum_c p log(p / (p + eps)), in float64.
    logits = np.stack([f["logits"] for f in cnn14]).astype(np.float64)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    expected = float((p * (np.log(p) - np.log(p + KL_EPS))).sum(axis=1).mean())
    assert metrics["KL"] == pytest.approx(expected, rel=1e-9) and KL_FLOOR <= expected < 0
