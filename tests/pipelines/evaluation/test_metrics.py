"""FD, IS, KL and CLAP score against analytic cases, hand-computed distributions and an independent float64 route."""

import numpy as np
import pytest
import torch

from pipelines.evaluation.metrics import (
    clap_score,
    frechet_distance,
    frechet_distance_from_statistics,
    gaussian_statistics,
    inception_score,
    paired_kl,
)


def reference_frechet(x: np.ndarray, y: np.ndarray) -> float:
    """Independent route: Tr sqrt(S1 S2) = Tr sqrt(A S2 A) with A = S1^(1/2), all by symmetric eigendecompositions."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    w, v = np.linalg.eigh(s1)
    root = v @ np.diag(np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root @ s2 @ root)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(inner, 0, None)).sum())


def test_frechet_matches_an_independent_float64_computation():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 16)) @ rng.standard_normal((16, 16))
    y = rng.standard_normal((300, 16)) @ rng.standard_normal((16, 16)) + 0.5
    assert frechet_distance(x, y) == pytest.approx(reference_frechet(x, y), rel=1e-7)
    assert frechet_distance(torch.from_numpy(x).float(), y) == pytest.approx(reference_frechet(x, y), rel=1e-4)


def test_frechet_analytic_cases():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, 8))
    assert abs(frechet_distance(x, x)) < 1e-8
    shift = np.arange(8) / 4.0
    assert frechet_distance(x, x + shift) == pytest.approx((shift**2).sum(), rel=1e-9)
    # Diagonal covariances: sum (sqrt(a) - sqrt(b))^2.
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    value = frechet_distance_from_statistics(np.zeros(3), np.diag(a), np.ones(3), np.diag(b))
    assert value == pytest.approx(3 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())


def test_frechet_with_rank_deficient_covariances_stays_finite():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((5, 32)), rng.standard_normal((6, 32))  # fewer clips than dimensions
    value = frechet_distance(x, y)
    assert np.isfinite(value) and value > 0
    assert value == pytest.approx(reference_frechet(x, y), rel=1e-3)


def test_frechet_bad_input_is_named():
    with pytest.raises(ValueError, match="at least 2 samples, got 1"):
        gaussian_statistics(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="NaN"):
        gaussian_statistics(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"different dimensions"):
        frechet_distance(np.random.rand(5, 3), np.random.rand(5, 4))


def test_inception_score_hand_computed():
    # Confident, evenly spread predictions over k classes in every split: IS = k, std 0.
    k, per_split = 4, 8
    logits = np.full((10 * per_split, 6), -50.0)
    for i in range(len(logits)):
        logits[i, i % k] = 50.0
    mean, std = inception_score(logits, shuffle=False)
    assert mean == pytest.approx(k, rel=1e-6) and std == pytest.approx(0, abs=1e-6)
    # Every clip predicts the same distribution: IS = 1.
    assert inception_score(np.tile(np.array([[1.0, 2.0, 3.0]]), (20, 1)))[0] == pytest.approx(1.0)
    # Two clips per split, p1 = (1, 0), p2 = (1/2, 1/2): marginal (3/4, 1/4),
    # KL1 = log(4/3), KL2 = 1/2 log(2/3) + 1/2 log 2, IS = exp(mean).
    two = np.log(np.array([[1.0, 1e-30], [0.5, 0.5]]))
    expected = np.exp(0.5 * (np.log(4 / 3) + 0.5 * np.log(2 / 3) + 0.5 * np.log(2)))
    assert inception_score(two, splits=1, shuffle=False)[0] == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="at least 10 clips"):
        inception_score(np.zeros((9, 3)))


def test_paired_kl_hand_computed_and_pairing():
    p_ref, p_gen = np.array([0.8, 0.2]), np.array([0.5, 0.5])
    expected = 0.8 * np.log(0.8 / (0.5 + 1e-6)) + 0.2 * np.log(0.2 / (0.5 + 1e-6))
    reference = {"a.wav": np.log(p_ref), "b.wav": np.log(p_ref), "only_ref.wav": np.zeros(2)}
    generated = {"a.wav": np.log(p_gen), "b.wav": np.log(p_ref), "only_gen.wav": np.zeros(2)}

    result = paired_kl(generated, reference)

    assert result.pairs == 2
    assert result.softmax == pytest.approx((expected + 0.0) / 2, abs=1e-5)
    assert result.unpaired_reference == ["only_ref.wav"] and result.unpaired_generated == ["only_gen.wav"]
    assert paired_kl(reference, reference).softmax == pytest.approx(0, abs=1e-5)
    with pytest.raises(ValueError, match="No generated clip pairs"):
        paired_kl({"x": np.zeros(2)}, {"y": np.zeros(2)})


def test_clap_score_is_the_mean_cosine():
    audio = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    text = torch.tensor([[1.0, 1.0], [0.0, -1.0]])
    assert clap_score(audio, text) == pytest.approx((np.sqrt(0.5) - 1.0) / 2)
    with pytest.raises(ValueError, match="one prompt embedding per clip"):
        clap_score(audio, text[:1])
