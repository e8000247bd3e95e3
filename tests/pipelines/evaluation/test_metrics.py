"""FD, IS, KL and CLAP score against analytic cases, hand-computed distributions and an independent float64 route."""

import numpy as np
import pytest
import torch

from pipelines.evaluation.metrics import (
    UndefinedMetricError,
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
    # Full-rank covariances: audioldm_eval's route (scipy's sqrtm) against symmetric eigendecompositions, both float64
    # and well conditioned here: agreement to a small multiple of dim * eps of the terms summed (the traces).
    scale = np.trace(np.cov(x, rowvar=False)) + np.trace(np.cov(y, rowvar=False))
    assert frechet_distance(x, y) == pytest.approx(reference_frechet(x, y), abs=1e-10 * scale)
    # float32 features: each rounded by at most 2**-24 of its value, which moves the statistics, hence the distance,
    # by about that much of the traces.
    x32 = torch.from_numpy(x).float()
    assert frechet_distance(x32, y) == pytest.approx(reference_frechet(x32.double().numpy(), y), abs=1e-10 * scale)
    assert abs(frechet_distance(x32, y) - frechet_distance(x, y)) <= 16 * 2.0**-24 * scale


def test_frechet_analytic_cases():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, 8))
    scale = 2 * np.trace(np.cov(x, rowvar=False))
    assert abs(frechet_distance(x, x)) <= 1e-12 * scale
    shift = np.arange(8) / 4.0
    assert frechet_distance(x, x + shift) == pytest.approx((shift**2).sum(), abs=1e-12 * scale)
    # Diagonal covariances: sum (sqrt(a) - sqrt(b))^2.
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    value = frechet_distance_from_statistics(np.zeros(3), np.diag(a), np.ones(3), np.diag(b))
    assert value == pytest.approx(3 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum(), rel=1e-12)


def test_frechet_with_fewer_samples_than_dimensions_is_exact():
    # Fewer clips than dimensions (as AudioCaps' ~1000 clips against Cnn14's 2048): singular covariances.
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((5, 32)), rng.standard_normal((6, 32)) + 0.1
    scale = np.trace(np.cov(x, rowvar=False)) + np.trace(np.cov(y, rowvar=False))
    value = frechet_distance(x, y)
    # The independent route takes square roots of eigenvalues that are 0 in exact arithmetic and ~dim * eps * the
    # largest in float64: each adds up to sqrt(dim * eps) of the scale.
    assert value == pytest.approx(reference_frechet(x, y), abs=32 * np.sqrt(32 * np.finfo(float).eps) * scale)
    # A set against itself is 0 to round-off, where sqrtm of the singular product is only approximate.
    assert abs(frechet_distance(x, x)) <= 1e-12 * scale
    # Translation: exactly the squared shift on top.
    shift = np.linspace(-1, 1, 32)
    assert frechet_distance(x, x + shift) == pytest.approx((shift**2).sum(), abs=1e-12 * scale)
    # audioldm_eval's route on the same statistics (sqrtm of the singular product) approximates the same value, with
    # the same sqrt(eps)-sized error per zero eigenvalue as the independent route.
    approximate = frechet_distance_from_statistics(*gaussian_statistics(x), *gaussian_statistics(y))
    assert approximate == pytest.approx(value, abs=32 * np.sqrt(32 * np.finfo(float).eps) * scale)
    # One side with more samples than dimensions, the other fewer: still the exact route, in either order.
    z = rng.standard_normal((200, 32)) * 2
    assert frechet_distance(x, z) == pytest.approx(frechet_distance(z, x), abs=1e-12 * scale)
    assert frechet_distance(x, z) == pytest.approx(
        reference_frechet(x, z), abs=32 * np.sqrt(32 * np.finfo(float).eps) * scale
    )


def test_frechet_bad_input_is_named():
    with pytest.raises(UndefinedMetricError, match="at least 2 samples, got 1"):
        gaussian_statistics(np.zeros((1, 4)))
    with pytest.raises(UndefinedMetricError, match="at least 2 samples, got 1"):
        frechet_distance(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(UndefinedMetricError, match="1 of 2 feature vectors contain NaN or infinity"):
        gaussian_statistics(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"different dimensions") as error:
        frechet_distance(np.random.rand(5, 3), np.random.rand(5, 4))
    assert not isinstance(error.value, UndefinedMetricError)  # a caller's mistake, not a metric left undefined


def test_inception_score_hand_computed():
    # Confident, evenly spread predictions over k classes in every split: IS = k, std 0.
    k, per_split = 4, 8
    logits = np.full((10 * per_split, 6), -50.0)
    for i in range(len(logits)):
        logits[i, i % k] = 50.0
    # Exact up to the exp(-100) mass off the chosen class and float64 round-off of a few terms: 1e-12 relative.
    mean, std = inception_score(logits, shuffle=False)
    assert mean == pytest.approx(k, rel=1e-12) and std == pytest.approx(0, abs=1e-12 * k)
    # Every clip predicts the same distribution: IS = 1.
    assert inception_score(np.tile(np.array([[1.0, 2.0, 3.0]]), (20, 1)))[0] == pytest.approx(1.0, rel=1e-12)
    # Two clips per split, p1 = (1, 0), p2 = (1/2, 1/2): marginal (3/4, 1/4),
    # KL1 = log(4/3), KL2 = 1/2 log(2/3) + 1/2 log 2, IS = exp(mean).
    two = np.log(np.array([[1.0, 1e-30], [0.5, 0.5]]))
    expected = np.exp(0.5 * (np.log(4 / 3) + 0.5 * np.log(2 / 3) + 0.5 * np.log(2)))
    assert inception_score(two, splits=1, shuffle=False)[0] == pytest.approx(expected, rel=1e-12)
    with pytest.raises(UndefinedMetricError, match="at least 10 clips"):
        inception_score(np.zeros((9, 3)))


def kl_with_eps(p_ref: np.ndarray, p_gen: np.ndarray) -> float:
    """audioldm_eval's KL of one pair, written out: sum_c p_ref (log p_ref - log(p_gen + 1e-6))."""
    return float((p_ref * (np.log(p_ref) - np.log(p_gen + 1e-6))).sum())


def test_paired_kl_hand_computed_and_pairing():
    p_ref, p_gen, uniform = np.array([0.8, 0.2]), np.array([0.5, 0.5]), np.array([0.5, 0.5])
    reference = {"a.wav": np.log(p_ref), "b.wav": np.log(p_ref), "only_ref.wav": np.zeros(2)}
    generated = {"a.wav": np.log(p_gen), "b.wav": np.log(p_ref), "only_gen.wav": np.zeros(2)}

    result = paired_kl(generated, reference)

    assert result.pairs == 2
    # float64 softmax and logs of two classes: round-off of a few ulps of the terms, far below 1e-12 of them. The
    # eps makes a distribution's KL with itself about -1e-6 per class, not 0.
    expected = (kl_with_eps(p_ref, p_gen) + kl_with_eps(p_ref, p_ref)) / 2
    assert result.softmax == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert result.unpaired_reference == ["only_ref.wav"] and result.unpaired_generated == ["only_gen.wav"]
    itself = (2 * kl_with_eps(p_ref, p_ref) + kl_with_eps(uniform, uniform)) / 3
    # Each term is a difference of two logs of about 1 that cancel to about 1e-6: ~1e-16 absolute round-off, 1e-10
    # of the result.
    assert paired_kl(reference, reference).softmax == pytest.approx(itself, rel=1e-9) and -2e-6 <= itself < 0
    with pytest.raises(UndefinedMetricError, match=r"no generated clip pairs with a reference clip.*\['x'\].*\['y'\]"):
        paired_kl({"x": np.zeros(2)}, {"y": np.zeros(2)})


def test_clap_score_is_the_mean_cosine():
    audio = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    text = torch.tensor([[1.0, 1.0], [0.0, -1.0]])
    assert clap_score(audio, text) == pytest.approx((np.sqrt(0.5) - 1.0) / 2, rel=1e-12)  # float64 cosines
    with pytest.raises(ValueError, match="one prompt embedding per clip"):
        clap_score(audio, text[:1])
