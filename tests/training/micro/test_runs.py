"""The micro study's run list and its parallel execution."""

import math

import pytest

from training.micro.runs import CAPTIONED, POOL_TRUTH, af_source_name, run_parallel, study_runs


def test_the_study_has_both_baselines_every_filter_the_mixture_the_upper_bound_and_the_weak_scorer():
    runs = study_runs(200, 100, "strong", [0.25, 0.5], weak="weak", mixture_weight=1.0)
    assert [r.name for r in runs] == [
        "captioned-ft", "captioned-all", "af-strong-top3", "af-strong-tau0.250", "af-strong-tau0.500",
        "af-strong-tau0.250+captioned", POOL_TRUTH, "af-weak-tau0.250",
    ]  # fmt: skip
    by_name = {r.name: r for r in runs}
    # The fine-tune budget alone, and the same total budget as every pretrained run.
    assert by_name["captioned-ft"].total_steps == 100 and by_name["captioned-all"].total_steps == 300
    assert all(r.total_steps == 300 for r in runs if r.pretraining)
    assert all(not r.pretraining for r in runs if r.kind == "baseline")
    assert by_name["af-strong-tau0.250+captioned"].pretraining == (("af-strong-tau0.250", 1.0), (CAPTIONED, 1.0))
    assert by_name[POOL_TRUTH].kind == "upper-bound"
    assert [r.name for r in study_runs(2, 1, "s", [0.5])][-1] == POOL_TRUTH  # no weak scorer asked for
    assert af_source_name("mid", None) == "af-mid-top3"
    # The weak scorer is filtered on its own scale.
    weak_run = study_runs(2, 1, "s", [0.5], weak="w", weak_tau=0.125)[-1]
    assert weak_run.name == "af-w-tau0.125" and weak_run.pretraining == (("af-w-tau0.125", 1.0),)
    assert "0.125" in weak_run.label


def test_jobs_run_in_separate_processes_and_a_failure_is_raised():
    jobs = [(f"f{n}", math.factorial, (n,)) for n in range(3)]
    assert run_parallel(jobs, workers=2, description="test") == {f"f{n}": math.factorial(n) for n in range(3)}
    assert run_parallel(jobs[:2], workers=1) == {"f0": 1, "f1": 1}
    with pytest.raises(ValueError, match="math domain error"):
        run_parallel([("ok", math.sqrt, (4.0,)), ("bad", math.sqrt, (-1.0,))], workers=2)
