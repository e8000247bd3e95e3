"""The `evaluate` modules load from their local scripts and give the same numbers as the Python functions."""

import evaluate
import numpy as np
import pytest
import torch

from pipelines.evaluation import EVALUATE_MODULES
from pipelines.evaluation.metrics import clap_score, frechet_distance, inception_score, paired_kl


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return {
        "gen": rng.standard_normal((40, 6)),
        "ref": rng.standard_normal((30, 6)) + 0.3,
        "logits_gen": rng.standard_normal((20, 5)) * 3,
        "logits_ref": rng.standard_normal((20, 5)) * 3,
    }


def test_frechet_distance_module(data):
    module = evaluate.load(EVALUATE_MODULES["frechet_distance"])
    out = module.compute(predictions=data["gen"].tolist(), reference_embeddings=data["ref"].tolist())
    # The modules store float64 and call the same functions: the same numbers, to the last few ulps.
    assert out["frechet_distance"] == pytest.approx(frechet_distance(data["gen"], data["ref"]), rel=1e-12)


def test_inception_score_module(data):
    out = evaluate.load(EVALUATE_MODULES["inception_score"]).compute(predictions=data["logits_gen"].tolist())
    mean, std = inception_score(data["logits_gen"])
    assert out["inception_score"] == pytest.approx(mean, rel=1e-12)
    assert out["inception_score_std"] == pytest.approx(std, rel=1e-12)
    assert out["inception_score"] > 1.0


def test_kl_divergence_module(data):
    module = evaluate.load(EVALUATE_MODULES["kl_divergence"])
    out = module.compute(predictions=data["logits_gen"].tolist(), references=data["logits_ref"].tolist())
    keys = [str(i) for i in range(20)]
    want = paired_kl(dict(zip(keys, data["logits_gen"])), dict(zip(keys, data["logits_ref"])))
    assert out["kl_softmax"] == pytest.approx(want.softmax, rel=1e-12) and out["pairs"] == 20 and out["kl_softmax"] > 0


def test_clap_score_module(data):
    module = evaluate.load(EVALUATE_MODULES["clap_score"])
    out = module.compute(predictions=data["gen"][:10].tolist(), references=data["gen"][10:20].tolist())
    want = clap_score(torch.tensor(data["gen"][:10]), torch.tensor(data["gen"][10:20]))
    # The module makes float32 tensors of its float64 inputs (`torch.tensor(list)`): each element rounded by up to
    # 2**-24 of itself, which moves a cosine of unit-normalised vectors by a few times that at most.
    assert out["clap_score"] == pytest.approx(want, abs=8 * 2**-24)
