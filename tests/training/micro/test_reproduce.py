"""The micro reproduction end to end at its `fast` preset: resumable stages, the controls, the seeds and intervals,
and the default model it installs."""

import json
import shutil

import numpy as np
import pytest

from training.micro.reproduce import PRESETS, ReproductionConfig, best_run, run_stage, shipped_seed, summarise


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


def seed_result(accuracy, recall=0.5, fd=1.0, clap=0.1):
    return {"event_accuracy": accuracy, "event_recall": recall, "FD": fd, "CLAP": clap,
            "groups": {"unseen": {"event_accuracy": accuracy / 2, "event_recall": recall, "FD": fd, "CLAP": clap}}}  # fmt: skip


def test_summaries_are_means_over_seeds_and_the_shipped_seed_is_the_median():
    per_seed = {"0": seed_result(0.2), "1": seed_result(0.4), "2": seed_result(0.3)}
    summary = summarise(per_seed)
    assert summary["all"]["event_accuracy"]["mean"] == pytest.approx(0.3)
    low, high = summary["all"]["event_accuracy"]["ci95"]
    assert low < 0.3 < high and summary["unseen"]["event_accuracy"]["mean"] == pytest.approx(0.15)
    run = {"seeds": [0, 1, 2], "per_seed": per_seed}
    assert shipped_seed(run) == 2  # 0.2, 0.3, 0.4: the middle one, not the best
    runs = [
        {"name": "a", "kind": "baseline", "summary": summarise(per_seed)},
        {"name": "b", "kind": "mixed", "summary": summarise({s: seed_result(0.5) for s in "012"})},
        {"name": "truth", "kind": "upper-bound", "summary": summarise({s: seed_result(0.9) for s in "012"})},
    ]
    assert best_run(runs)["name"] == "b"  # the ground-truth upper bound is never the recipe shipped


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    from training.micro.reproduce import reproduce

    root = tmp_path_factory.mktemp("micro_run")
    return root, reproduce(ReproductionConfig(**PRESETS["fast"]), root)


def test_the_fast_preset_runs_the_whole_study(fast_run):
    root, report = fast_run
    config = ReproductionConfig(**PRESETS["fast"])
    # Every scorer ranked the very same captions (replayed), so the curves differ only by the ranking.
    assert list(report["caption_quality"]) == ["random", "weak", "strong", "oracle"]
    for rows in report["caption_quality"].values():
        assert rows[0]["kept_fraction"] == 1.0 and rows[0]["captions"] == config.split_sizes["pool"] * config.top_k
        assert all(row["exact_ci95"][0] <= row["exact"] <= row["exact_ci95"][1] for row in rows if row["captions"])
    # The oracle's best-scored caption is exact wherever any caption is: no scorer can do better.
    selection = json.loads((root / "caption_quality" / "caption_quality.json").read_text())["selection"]
    assert len({record["sampled_exact"] for record in selection.values()}) == 1
    oracle = selection["oracle"]
    assert oracle["best_of_n_exact"] == pytest.approx(oracle["oracle_best_of_n_exact"])
    assert all(record["best_of_n_exact"] <= oracle["best_of_n_exact"] for record in selection.values())
    # The CLAP ladder is measured, the captioner's exact rate is reported.
    assert [rung["name"] for rung in report["clap_ladder"]] == ["weak", "strong"]
    assert all(0 <= rung["text_to_audio_r1"] <= 1 for rung in report["clap_ladder"])
    assert 0 <= report["captioner"]["exact"] <= 1
    # Every run, for every seed, on every test prompt, with a mean and an interval; seen and unseen apart.
    names = [run["name"] for run in report["runs"]]
    assert names[:2] == ["captioned-ft", "captioned-all"] and "pool-truth" in names
    assert any(name.endswith("+captioned") for name in names) and names[-1].startswith("af-weak-tau")
    for run in report["runs"]:
        assert sorted(run["per_seed"]) == [str(s) for s in config.seeds]
        accuracy = run["summary"]["all"]["event_accuracy"]
        assert accuracy["ci95"][0] <= accuracy["mean"] <= accuracy["ci95"][1]
        for seed in config.seeds:
            generated = sorted((root / "eval" / run["name"] / f"seed{seed}" / "generated").glob("*.wav"))
            assert len(generated) == config.split_sizes["test"]
    assert report["test_prompts"]["all"] == config.split_sizes["test"]
    assert report["test_prompts"]["seen"] + report["test_prompts"]["unseen"] == config.split_sizes["test"]
    assert report["best"] != "pool-truth" and report["shipped_seed"] in config.seeds
    # The ceiling the VAE and vocoder leave: the real test audio through them, without diffusion.
    ceiling = report["references"]["real test audio through the VAE and vocoder"]
    assert 0 <= ceiling["event_accuracy"] <= 1 and np.isfinite(ceiling["FD"])
    # The report is generated from the JSON, with its plots and the wall time of every stage.
    markdown = (root / "report.md").read_text()
    assert "captioned only (whole budget)" in markdown and "no difference detected" in markdown
    assert (root / "caption_quality" / "caption_quality.png").read_bytes()[:4] == b"\x89PNG"
    assert {"world", "latents", "references"} <= set(report["stage_seconds"])
    assert json.loads((root / "report.json").read_text())["best"] == report["best"]


def test_a_rerun_resumes_and_redoes_only_what_is_missing(fast_run, monkeypatch):
    import training.micro.reproduce as reproduce_module

    root, report = fast_run
    name = report["runs"][0]["name"]
    shutil.rmtree(root / "eval" / name / "seed0")

    def no_training(*args, **kwargs):
        raise AssertionError("a finished model was trained again")

    monkeypatch.setattr(reproduce_module, "train_run", no_training)
    again = reproduce_module.reproduce(ReproductionConfig(**PRESETS["fast"]), root)
    # The evaluation was redone (seeded per prompt), everything else was read back.
    before, after = report["runs"][0]["per_seed"]["0"], again["runs"][0]["per_seed"]["0"]
    assert after["event_accuracy"] == before["event_accuracy"]
    assert after["CLAP"] == pytest.approx(before["CLAP"], rel=1e-4, abs=1e-6)
    assert again["stage_seconds"]["parts/clap-strong"] == report["stage_seconds"]["parts/clap-strong"]
    # A run can stop at a milestone (e.g. to commit the parts' results) and be resumed; here everything is done.
    # (with another number of workers: it changes no result, so it is no other setting)
    config = ReproductionConfig(**{**PRESETS["fast"], "workers": 2})
    progress = reproduce_module.reproduce(config, root, stop_after="caption_quality")
    assert progress["stopped_after"] == "caption_quality" and "oracle" in progress["caption_quality"]["curves"]
    assert json.loads((root / "progress.json").read_text())["stopped_after"] == "caption_quality"
    # Every call is on record, and the report's wall time is their sum, not the last call's.
    calls = json.loads((root / "invocations.json").read_text())
    assert [call["outcome"] for call in calls] == ["finished", "finished", "stopped after caption_quality"]
    assert [call["workers"] for call in calls] == [1, 1, 2]
    assert again["invocations"] == 2
    assert calls[0]["seconds"] < again["seconds"] <= calls[0]["seconds"] + calls[1]["seconds"]
    # Other settings in the same folder are refused rather than mixed in, and leave no record of a call.
    with pytest.raises(ValueError, match="other settings"):
        reproduce_module.reproduce(ReproductionConfig(**{**PRESETS["fast"], "seeds": (0, 1, 2)}), root)
    assert json.loads((root / "invocations.json").read_text()) == calls


def test_the_best_model_installs_as_a_default_that_loads_both_ways(fast_run, tmp_path):
    from diffusers import DiffusionPipeline

    from pipelines.generate import load_pipeline
    from training.micro.default_model import GENERATION_DEFAULTS, REPRODUCTION_RECORD, install_default_model

    root, report = fast_run
    target = install_default_model(
        root, report, target=tmp_path / "default_model", classifier_target=tmp_path / "classifier"
    )
    record = json.loads((target / REPRODUCTION_RECORD).read_text())
    assert record["recipe"] == report["best"] and record["seeds"] == list(PRESETS["fast"]["seeds"])
    assert record["test_prompts"] == PRESETS["fast"]["split_sizes"]["test"]
    assert set(record["ceiling"]) == {"event_accuracy", "event_recall"}
    for key in ("event_accuracy", "event_recall", "FD", "CLAP"):
        assert set(record["result"][key]) == {"mean", "ci95"} and len(record["result"][key]["ci95"]) == 2
    assert {"oracle", "strong", "weak"} <= set(record["caption_quality"])
    assert {"tau", "kept_fraction", "exact"} <= set(record["caption_quality"]["oracle"][0])
    defaults = json.loads((target / GENERATION_DEFAULTS).read_text())
    assert defaults["audio_length_in_s"] == pytest.approx(ReproductionConfig(**PRESETS["fast"]).world.clip_seconds)
    assert (tmp_path / "classifier" / "config.json").is_file()
    card = (target / "README.md").read_text()
    assert report["runs"][0]["label"] in card and "license: apache-2.0" in card
    # Through the project's loader and through diffusers' remote-code path alike.
    pipe = load_pipeline(str(target), device="cpu")
    remote = DiffusionPipeline.from_pretrained(str(target), trust_remote_code=True)
    assert type(remote).__name__ == "TangoCLAPPipeline" and type(pipe.scheduler) is type(remote.scheduler)
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"
    out = pipe("A siren wails", num_inference_steps=2, audio_length_in_s=1.28, num_waveforms_per_prompt=2)
    assert out.audios.shape == (2, 1.28 * 16000)
    # The study's strongest CLAP came along, so the candidates are ranked.
    assert out.clap_scores.shape == (1, 2) and out.clap_scores[0, 0] >= out.clap_scores[0, 1]
