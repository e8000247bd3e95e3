"""The evaluation commands end to end: a debug pipeline generates an evaluation set's captions (batched, seeded per
clip, resumable), random-weight Cnn14 / VGGish / CLAP score the clips, and the results reach the JSON and the card."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from pipelines.evaluation import evaluate_audio, evaluate_pipeline
from pipelines.evaluation.evaluate_pipeline import clip_seed
from pipelines.evaluation.panns import CNN14_16K_CONFIG, Cnn14
from pipelines.evaluation.vggish import VGGish
from pipelines.tango_clap.debug import build_debug_clap_scorer, get_debug_pipeline

RATE = 16000
CLIPS = 12  # the inception score needs at least its 10 splits


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import datasets
    from transformers import ClapProcessor

    root = tmp_path_factory.mktemp("evaluation")
    rng = np.random.default_rng(0)
    refs = root / "ref_audio"
    refs.mkdir()
    for i in range(CLIPS):
        t = np.arange(2 * RATE) / RATE
        sf.write(refs / f"yt{i}.wav", (0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t)).astype(np.float32), RATE)
    table = datasets.Dataset.from_dict(
        {
            "audio": [str(refs / f"yt{i}.wav") for i in range(CLIPS)],
            "caption": [f"a tone number {i}" for i in range(CLIPS)],
            "ytid": [f"yt{i}" for i in range(CLIPS)],
        }
    ).cast_column("audio", datasets.Audio())
    table.save_to_disk(str(root / "eval_set"))

    get_debug_pipeline(with_clap_scorer=False).save_pretrained(root / "pipeline")
    torch.manual_seed(0)
    Cnn14(CNN14_16K_CONFIG).save_pretrained(root / "cnn14")
    VGGish().save_pretrained(root / "vggish")
    clap = build_debug_clap_scorer()
    clap["clap_model"].save_pretrained(root / "clap")
    ClapProcessor(feature_extractor=clap["clap_feature_extractor"], tokenizer=clap["clap_tokenizer"]).save_pretrained(
        root / "clap"
    )
    del rng
    return root


def run_pipeline_evaluation(root, output, *extra):
    return evaluate_pipeline.main(
        [
            "--pipeline", str(root / "pipeline"),
            "--eval_set", str(root / "eval_set"),
            "--key_column", "ytid",
            "--output_dir", str(output),
            "--num_inference_steps", "2",
            "--audio_length_in_s", "2.0",
            "--batch_size", "5",
            "--cnn14", str(root / "cnn14"),
            "--vggish", str(root / "vggish"),
            "--clap", str(root / "clap"),
            "--device", "cpu",
            *extra,
        ]
    )  # fmt: skip


def test_generate_and_evaluate_resumes_and_fills_the_card(setup, tmp_path):
    output = tmp_path / "eval"
    card = tmp_path / "README.md"
    results = run_pipeline_evaluation(setup, output, "--model_card", str(card), "--dataset_name", "tiny-caps")

    generated = sorted(p.stem for p in (output / "generated").glob("*.wav"))
    assert generated == sorted(f"yt{i}" for i in range(CLIPS))
    metrics = results["metrics"]
    assert set(metrics) >= {"FD", "FAD", "IS", "IS_std", "KL", "KL_sigmoid", "CLAP"}
    assert all(np.isfinite(v) for v in metrics.values()) and metrics["FD"] > 0 and metrics["IS"] >= 1.0
    assert results["clips"]["kl_pairs"] == CLIPS and results["clips"]["clap_clips"] == CLIPS
    assert json.loads((output / "results.json").read_text())["metrics"] == pytest.approx(metrics)
    assert results["protocol"]["backbones"]["cnn14"] == str(setup / "cnn14")
    card_text = card.read_text()
    assert "model-index" in card_text and "tiny-caps" in card_text and "FD (PANNs)" in card_text

    # Killed after some clips: the rest are generated, the others are not touched.
    stamp = (output / "generated" / "yt0.wav").stat().st_mtime_ns
    (output / "generated" / "yt11.wav").unlink()
    again = run_pipeline_evaluation(setup, output)
    assert (output / "generated" / "yt0.wav").stat().st_mtime_ns == stamp
    assert again["metrics"] == pytest.approx(metrics, rel=1e-5)


def test_clip_seeds_depend_on_the_key_only():
    assert clip_seed(0, "a") == clip_seed(0, "a") != clip_seed(0, "b") != clip_seed(1, "b")


def test_folders_with_prompts_csv(setup, tmp_path):
    generated = tmp_path / "gen"
    generated.mkdir()
    for i in range(CLIPS):
        audio, _ = sf.read(setup / "ref_audio" / f"yt{i}.wav", dtype="float32")
        sf.write(generated / f"yt{i}.flac", np.roll(audio, 50 * i) * 0.9, RATE)  # pairs with yt{i}.wav by stem
    with open(tmp_path / "prompts.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "caption"])
        writer.writerows([[f"yt{i}.flac", f"a tone number {i}"] for i in range(CLIPS)])

    result = evaluate_audio.main(
        [
            "--generated", str(generated), "--reference", str(setup / "ref_audio"),
            "--prompts", str(tmp_path / "prompts.csv"), "--cnn14", str(setup / "cnn14"),
            "--vggish", str(setup / "vggish"), "--clap", str(setup / "clap"),
            "--output", str(tmp_path / "out.json"), "--cache_dir", str(tmp_path / "cache"),
        ]
    )  # fmt: skip

    assert result["clips"]["kl_pairs"] == CLIPS and not result["clips"]["unpaired_reference"]
    # 24 VGGish examples in 128 dimensions: rank-deficient covariances, where the matrix square root (as in
    # audioldm_eval) leaves round-off of order 1e-3 around the true value.
    assert result["metrics"]["FAD"] > -1e-2 and result["metrics"]["FD"] > -1e-2
    # audioldm_eval's 1e-6 inside log(p_gen + 1e-6) biases KL down by about 1e-6 * 527 classes for close pairs.
    assert result["metrics"]["KL"] > -1e-3
    # Identical sets score 0 for FD / FAD / KL.
    same = evaluate_audio.main(
        ["--generated", str(setup / "ref_audio"), "--reference", str(setup / "ref_audio"), "--cnn14",
         str(setup / "cnn14"), "--vggish", str(setup / "vggish"), "--no_cache"]
    )  # fmt: skip
    assert same["metrics"]["FD"] == pytest.approx(0, abs=1e-3)
    assert same["metrics"]["FAD"] == pytest.approx(0, abs=1e-3)
    assert same["metrics"]["KL"] == pytest.approx(-527e-6, abs=1e-5)
