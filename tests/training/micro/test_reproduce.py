"""The micro reproduction's own parts: resumable stages, caption quality against tau, the run list."""

import json

import numpy as np
import pytest

from datasets_scripts.schema import rows_to_table, write_table_atomically
from training.micro.caption_quality import (
    caption_table,
    quality_vs_tau,
    selection_diagnostics,
    tau_grid,
    write_quality_report,
)
from training.micro.reproduce import PRESETS, ReproductionConfig, run_stage, tango_runs


def test_a_stage_runs_once_and_a_failed_one_leaves_nothing(tmp_path):
    calls = []

    def build(out):
        calls.append(out)
        (out / "weights.safetensors").write_bytes(b"w")
        return {"value": 1}

    first = run_stage(tmp_path, "stage", build)
    again = run_stage(tmp_path, "stage", build)
    assert len(calls) == 1 and first["value"] == again["value"] == 1 and "seconds" in first
    assert (tmp_path / "stage" / "weights.safetensors").is_file()

    def dies(out):
        (out / "half").write_bytes(b"x")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run_stage(tmp_path, "models/broken", dies)
    assert not (tmp_path / "models" / "broken").exists()
    # Started again, it begins from an empty folder, not from the half-written one.
    seen = run_stage(tmp_path, "models/broken", lambda out: {"files": sorted(p.name for p in out.iterdir())})
    assert seen["files"] == []


def af_folder(tmp_path, rows):
    table_rows = [
        {"clip_id": clip, "window_start": 0.0, "caption_index": i, "caption": caption, "clap_similarity": sim,
         "rank": rank, "captioner": "c", "clap": "s", "prompt": "p"}
        for i, (clip, caption, sim, rank) in enumerate(rows)
    ]  # fmt: skip
    write_table_atomically(rows_to_table(table_rows), tmp_path / "data" / "train-00000-of-00001.parquet")
    return tmp_path


def test_caption_quality_rises_with_tau_while_the_kept_set_shrinks(tmp_path):
    rows = [
        ("pool-00000", "A siren wails", 0.9, 0),
        ("pool-00000", "A bell rings", 0.5, 1),
        ("pool-00000", "A siren wails, then a bell rings", 0.1, 2),
        ("pool-00000", "A drum beats", 0.0, 3),  # beyond the top 3: never kept
        ("pool-00001", "Rain falls while an engine rumbles", 0.7, 0),
        ("pool-00001", "Rain falls", 0.3, 1),
        ("pool-00001", "Gibberish", 0.2, 2),
    ]
    truth = {"pool-00000": ["siren"], "pool-00001": ["rain", "engine"]}
    captions = caption_table(af_folder(tmp_path, rows), truth)
    assert captions["correct"].tolist() == [True, False, False, False, True, False, False]
    assert captions["partly_correct"].tolist() == [True, False, False, False, True, True, False]

    top_k_only, middle, strict = quality_vs_tau(captions, [-1.0, 0.4, 0.8], top_k=3)
    assert (top_k_only["captions"], top_k_only["clips"], top_k_only["correct"]) == (6, 2, pytest.approx(2 / 6))
    assert (middle["captions"], middle["correct"]) == (3, pytest.approx(2 / 3))
    assert (strict["captions"], strict["clips"], strict["correct"]) == (1, 1, 1.0)
    assert top_k_only["baseline_correct"] == pytest.approx(2 / 7)

    selection = selection_diagnostics(captions)
    assert selection["rank0_correct"] == 1.0 and selection["sampled_correct"] == pytest.approx(2 / 7)
    # pool-00000: right 0.9 vs wrong (0.5, 0.1, 0.0); pool-00001: right 0.7 vs wrong (0.3, 0.2).
    assert selection["mixed_clips"] == 2 and selection["within_clip_gap_positive"] == 1.0
    assert selection["within_clip_gap"] == pytest.approx(((0.9 - 0.2) + (0.7 - 0.25)) / 2)
    table = write_quality_report([top_k_only, middle, strict], tmp_path / "report", total_clips=2)
    assert "| 0.800 | 1 | 1 / 2 | 100.0% |" in table
    assert json.loads((tmp_path / "report" / "caption_quality.json").read_text())[2]["captions"] == 1
    assert (tmp_path / "report" / "caption_quality.png").read_bytes()[:4] == b"\x89PNG"


def test_caption_table_refuses_clips_without_ground_truth(tmp_path):
    folder = af_folder(tmp_path, [("pool-00009", "A bell rings", 0.5, 0)])
    with pytest.raises(ValueError, match="pool-00009"):
        caption_table(folder, {"pool-00000": ["bell"]})


def test_pretraining_taus_are_quantiles_of_the_top_k_similarities():
    similarity = np.array([0.1, 0.2, 0.3, 0.4, 0.9])
    rank = np.array([0, 1, 2, 0, 5])  # the 0.9 caption is not in the top 3
    assert tau_grid(similarity, rank, 3, (0.0, 1.0)) == [0.1, 0.4]


def test_the_study_has_a_baseline_each_tau_and_a_mixture():
    runs = tango_runs(ReproductionConfig(), [0.1, 0.2, 0.3])
    assert [r["name"] for r in runs] == [
        "captioned-only", "af-tau0.100", "af-tau0.200", "af-tau0.300", "af-tau0.200+captioned",
    ]  # fmt: skip
    assert runs[0]["pretraining"] is None and runs[-1]["pretraining"] == "mixed"


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    from training.micro.reproduce import reproduce

    root = tmp_path_factory.mktemp("micro_run")
    return root, reproduce(ReproductionConfig(**PRESETS["fast"]), root)


def test_the_fast_preset_runs_the_whole_method_end_to_end(fast_run):
    root, report = fast_run
    config = ReproductionConfig(**PRESETS["fast"])
    # Every stage left a finished folder, and AF-AudioSet was built on the whole pool with every sampled caption.
    for stage in ("world", "clap", "captioner", "af_audioset", "caption_quality", "vae", "vocoder", "classifier"):
        assert (root / stage / "stage.json").is_file(), stage
    quality = report["stages"]["caption_quality"]["rows"]
    assert quality[0]["captions"] == config.split_sizes["pool"] * config.top_k
    assert [row["captions"] for row in quality] == sorted((row["captions"] for row in quality), reverse=True)
    assert (root / "caption_quality" / "caption_quality.png").read_bytes()[:4] == b"\x89PNG"
    # The study: a baseline, one model per pretraining tau and a mixture, each evaluated on every test caption.
    names = [r["name"] for r in report["results"]]
    assert names[0] == "captioned-only" and names[-1].endswith("+captioned") and len(names) == 2 + len(config.tau_quantiles)
    for result in report["results"]:
        assert np.isfinite([result["FD"], result["CLAP"], result["event_accuracy"]]).all(), result
        generated = sorted((root / "eval" / result["name"] / "generated").glob("*.wav"))
        assert len(generated) == config.split_sizes["test"]
    summary = json.loads((root / "models" / names[1] / "training_summary.json").read_text())
    # A pretrained model records its AF-AudioSet stage (with the tau) under the fine-tune on the captioned set.
    assert "af_audioset" in json.dumps(summary["base_training"]) and f"{report['results'][1]['tau']}" in json.dumps(
        summary["base_training"]
    )
    markdown = (root / "report.md").read_text()
    assert "| captioned-only | none (captioned set only) |" in markdown and "real test audio" in markdown
    # The best model is swept over the samplers, and one of them is chosen for it.
    assert [(r["scheduler"], r["num_inference_steps"]) for r in report["samplers"]] == [("ddpm", 4), ("dpmsolver++", 2)]
    assert tuple(report["chosen_sampler"].values()) in {("ddpm", 4), ("dpmsolver++", 2)}
    assert f"## Samplers ({report['best']})" in markdown and "| chosen |" in markdown
    # The ceiling the VAE and vocoder leave: the real test audio through them, without diffusion.
    assert np.isfinite(report["vocoded"]["FD"]) and "through the VAE and vocoder" in markdown


def test_a_rerun_resumes_and_redoes_only_what_is_missing(fast_run, monkeypatch):
    import shutil

    import training.micro.reproduce as reproduce_module

    root, report = fast_run
    name = report["results"][0]["name"]
    shutil.rmtree(root / "eval" / name)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished model was trained again")

    monkeypatch.setattr(reproduce_module, "train_run", no_training)
    again = reproduce_module.reproduce(ReproductionConfig(**PRESETS["fast"]), root)
    # The evaluation was redone (seeded per clip), everything else was read back.
    assert again["results"][0]["FD"] == pytest.approx(report["results"][0]["FD"], rel=1e-4)
    assert again["stages"]["clap"]["seconds"] == report["stages"]["clap"]["seconds"]


def test_the_best_model_installs_as_a_loadable_default(fast_run, tmp_path):
    from pipelines.generate import load_pipeline
    from training.micro.default_model import REPRODUCTION_RECORD, install_default_model

    root, report = fast_run
    name = report["results"][-1]["name"]
    target = install_default_model(
        root / "models" / name,
        report,
        name,
        target=tmp_path / "default_model",
        scheduler="dpmsolver++",
        scorer=root / "base",
    )
    assert (target / "model_index.json").is_file() and not (target / "pipeline.py").exists()
    assert json.loads((target / REPRODUCTION_RECORD).read_text())["model"] == name
    assert json.loads((target / "example_prompts.json").read_text())[0] == "A loud siren wails, then a bell rings"
    card = (target / "README.md").read_text()
    assert f"**{name}**" in card and "| captioned-only |" in card and "license: apache-2.0" in card
    pipe = load_pipeline(str(target), device="cpu")
    assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert pipe.scheduler.config.prediction_type == json.loads(
        (root / "models" / name / "scheduler" / "scheduler_config.json").read_text()
    )["prediction_type"]
    out = pipe("A siren wails", num_inference_steps=2, audio_length_in_s=1.28, num_waveforms_per_prompt=2)
    assert out.audios.shape == (2, 1.28 * 16000)
    # The world's CLAP came along, so the candidates are ranked.
    assert out.clap_scores.shape == (1, 2) and out.clap_scores[0, 0] >= out.clap_scores[0, 1]


def test_the_cheapest_sampler_within_tolerance_of_ddpm_200_is_chosen():
    from training.micro.reproduce import choose_sampler

    def row(scheduler, steps, fd, accuracy, seconds):
        return {"scheduler": scheduler, "num_inference_steps": steps, "FD": fd, "event_accuracy": accuracy,
                "generate_seconds": seconds}  # fmt: skip

    base = row("ddpm", 200, 10.0, 0.50, 100.0)
    too_blurry = row("dpmsolver++", 10, 11.5, 0.50, 5.0)  # FD 15% worse
    too_wrong = row("ddim", 10, 9.0, 0.40, 5.0)  # 10 points of accuracy lost
    good = row("dpmsolver++", 25, 10.9, 0.46, 12.0)
    slower = row("ddim", 25, 9.0, 0.55, 13.0)
    assert choose_sampler([base, too_blurry, too_wrong, good, slower], 0.1, 0.05) is good
    assert choose_sampler([base, too_blurry, too_wrong], 0.1, 0.05) is base
