"""The micro study's report is rendered from its JSON: tables, verdicts, plots and the README section."""

import pytest

from training.micro.report import (
    README_END,
    README_START,
    TARGETS,
    budget_notes,
    clap_ladder_table,
    comparisons,
    readme_section,
    render_report,
    runs_table,
    targets_table,
    update_readme,
    write_report,
)
from training.micro.statistics import mean_ci


def _summary(accuracy, recall=0.8):
    metrics = {"event_accuracy": mean_ci(accuracy), "event_recall": mean_ci([recall] * len(accuracy)),
               "FD": mean_ci([10.0, 11.0, 12.0]), "CLAP": mean_ci([0.5, 0.5, 0.5])}  # fmt: skip
    return {"all": metrics, "seen": metrics, "unseen": metrics}


def _report():
    runs = [
        {"name": "captioned-all", "label": "captioned only (whole budget)", "kind": "baseline", "steps": 300,
         "summary": _summary([0.20, 0.22, 0.21])},
        {"name": "pool-truth", "label": "pool with ground-truth captions", "kind": "upper-bound", "steps": 300,
         "summary": _summary([0.60, 0.62, 0.61])},
        {"name": "af-strong-top3", "label": "AF-AudioSet (strong CLAP, top 3)", "kind": "synthetic", "steps": 300,
         "summary": _summary([0.10, 0.40, 0.25])},
    ]  # fmt: skip
    ladder = [{"name": "weak", "parameters": 4e5, "recipe": "steps 100", "text_to_audio_r1": 0.3,
               "audio_to_text_r1": 0.28, "best_of_n_exact": 0.35, "seconds": 60.0}]  # fmt: skip
    reference = {"FD": 1.0, "CLAP": 0.7, "event_accuracy": 0.96, "event_recall": 0.98}
    return {
        "config": {"world_seed": 0, "seeds": [0, 1, 2], "split_sizes": {"pool": 3000, "captioned": 200, "test": 300}},
        "test_prompts": {"all": 300, "seen": 140, "unseen": 160},
        "clap_ladder": ladder,
        "captioner": {"exact": 0.55},
        "references": {"real test audio": reference, "real test audio through the VAE and vocoder": reference},
        "caption_quality_table": "| scorer | tau |\n| --- | --- |",
        "runs": runs,
        "baseline": "captioned-all",
        "best": "af-strong-top3",
        "baseline_label": "captioned only (whole budget)",
        "stage_seconds": {"world": 10.0, "parts/vae": 120.0, "parts/vocoder": 1800.0, "runs/a/seed0": 600.0},
        "seconds": 3600.0,
    }


def test_runs_table_shows_means_with_their_intervals():
    table = runs_table(_report()["runs"])
    row = next(line for line in table.splitlines() if line.startswith("| pool with ground-truth captions"))
    interval = mean_ci([0.60, 0.62, 0.61])["ci95"]
    assert f"61.0% [{interval[0]:.1%}, {interval[1]:.1%}]" in row


def test_verdicts_follow_the_interval_rule():
    lines = comparisons(_report()["runs"], "captioned-all")
    assert lines[0].startswith("- pool with ground-truth captions: all prompts: higher")
    # 0.10-0.40 overlaps 0.20-0.22: no difference may be claimed, whatever the means say.
    assert lines[1] == (
        "- AF-AudioSet (strong CLAP, top 3): all prompts: no difference detected; seen combinations: no difference "
        "detected; unseen combinations: no difference detected"
    )


def test_report_and_plots_are_written(tmp_path):
    path = write_report(_report(), tmp_path)
    text = path.read_text()
    assert text == render_report(_report())
    assert "### Unseen combinations" in text and "Whole run: 60.0 min" in text
    for plot in ("events_right.png", "clap_ladder.png"):
        assert (tmp_path / plot).read_bytes()[:4] == b"\x89PNG"


def test_readme_section_replaces_only_the_marked_text(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n{README_START}\nold numbers\n{README_END}\nafter\n")
    assert update_readme(_report(), readme)
    text = readme.read_text()
    assert text.startswith("# Title\n\nbefore\n") and text.endswith(f"{README_END}\nafter\n")
    assert "old numbers" not in text and readme_section(_report()) in text
    assert not update_readme(_report(), readme)  # nothing left to change
    other = tmp_path / "OTHER.md"
    other.write_text("no markers")
    with pytest.raises(ValueError, match="no micro-study markers"):
        update_readme(_report(), other)
    assert other.read_text() == "no markers"


def test_the_budget_says_what_was_cut_and_where_the_time_went():
    report = _report()
    notes = budget_notes(report)
    assert not any("Cut to fit" in note for note in notes)
    assert notes[-1] == (
        "- Stage time (summed over stages, which run two at a time): world 0 min, parts 32 min, runs 10 min; "
        "the whole run 60 min wall."
    )
    report["config"]["weak_clap_run"] = False
    assert "weakest CLAP's AF-AudioSet run" in budget_notes(report)[0]
    assert budget_notes(report)[0] in render_report(report) and budget_notes(report)[0] in readme_section(report)


def test_the_ladder_shows_the_event_r1_when_it_was_measured():
    rung = _report()["clap_ladder"][0]
    assert clap_ladder_table([rung]).splitlines()[-1].split(" | ")[4] == "nan"
    assert clap_ladder_table([{**rung, "text_to_audio_event_r1": 0.45}]).splitlines()[-1].split(" | ")[4] == "0.45"


def test_the_targets_are_reported_as_measured_met_or_not():
    report = _report()
    table = targets_table(report)
    assert len(table.splitlines()) == 2 + len(TARGETS)
    # Ceiling 96% (met), no event R@1 measured (not met), captioner without a pool rate (not met), best recipe 25%.
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in table.splitlines()[2:]}
    assert rows["real test audio through the VAE + vocoder, events right"] == ["96.0%", ">= 90%", "yes |"]
    assert rows["strongest CLAP, text-to-audio events R@1"] == ["nan", ">= 0.80", "no |"]
    assert rows["best recipe, events right (mean over seeds)"] == ["25.0%", ">= 50%", "no |"]
    report["captioner"]["pool_exact"] = 0.45
    assert "| captioner, sampled pool captions exactly right | 45.0% | 40-70% | yes |" in targets_table(report)
    assert "45.0% of its sampled pool captions and 55.0% of its sampled test captions" in readme_section(report)
