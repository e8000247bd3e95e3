"""The metrics, computed from features exactly as audioldm_eval (Tango's copy) computes them.

Conventions, read from `audioldm_eval/eval.py` and `audioldm_eval/metrics/{fid,fad,isc,kl}.py` in declare-lab/tango:

- FD: Frechet distance between Gaussians fitted (mean, `np.cov(rowvar=False)`) to the PANNs Cnn14 2048-d
  embeddings of the generated and the reference clips; FAD: the same on VGGish embeddings (every 0.96 s example of
  every clip is one sample). When the matrix square root of the covariance product is not finite, 1e-6 is added to
  both diagonals and it is taken again; a small imaginary part (diagonal within 1e-3 of real) is dropped, a larger
  one is an error. One departure, in how and not in what is computed: when a side has no more samples than
  dimensions, the trace of the square root is computed exactly from the samples (see [`frechet_distance`]) rather
  than approximated by `scipy.linalg.sqrtm` of a singular matrix.
- IS: over the generated clips' Cnn14 logits: softmax, the clips shuffled with `np.random.RandomState(2020)`, 10
  splits, exp of the mean KL of each clip's distribution from its split's marginal; mean and std over splits.
- KL: paired by file name (or id): `sum_c p_ref(c) * (log p_ref(c) - log(p_gen(c) + 1e-6))` with softmax (the
  reported "KL") or sigmoid probabilities of the Cnn14 logits, summed over classes and averaged over pairs.
- CLAP score: mean cosine similarity between each generated clip's CLAP audio embedding and its prompt's text
  embedding (the checkpoint is part of the result: scores of different checkpoints are not comparable).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import torch

logger = logging.getLogger(__name__)

# audioldm_eval's constants (metrics/fid.py and fad.py: eps; eval.py: IS splits and seed; metrics/kl.py: EPS).
FRECHET_EPS = 1e-6
IS_SPLITS = 10
IS_SEED = 2020
KL_EPS = 1e-6


class UndefinedMetricError(ValueError):
    """
    A metric that these inputs do not define: too few samples for a covariance, fewer clips than inception-score
    splits, no clip pair for KL, no prompt for the CLAP score, or a Frechet distance whose matrix square root stays
    singular. The evaluation reports such a metric as not computed, with this message as the reason, and keeps the
    others; a `ValueError` that is not this one is a caller's mistake (wrong shapes) and propagates.
    """


def _checked_features(features: np.ndarray | torch.Tensor) -> np.ndarray:
    """`(samples, dim)` features in float64, with at least 2 samples, all finite."""
    features = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, np.float64)
    if features.ndim != 2:
        raise ValueError(f"Features must be (samples, dim), got shape {features.shape}.")
    if features.shape[0] < 2:
        raise UndefinedMetricError(f"a covariance needs at least 2 samples, got {features.shape[0]}")
    if not np.isfinite(features).all():
        # Finite audio only reaches the backbones (`ClipSet`), so this is a backbone overflowing (e.g. in float16).
        rows = int((~np.isfinite(features).all(axis=1)).sum())
        raise UndefinedMetricError(f"{rows} of {features.shape[0]} feature vectors contain NaN or infinity")
    return features


def gaussian_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """
    Mean and covariance (`np.cov(rowvar=False)`, unbiased) of `(samples, dim)` features, in float64.

    Raises:
        [`UndefinedMetricError`]: for fewer than 2 samples, or features that are not finite.
    """
    features = _checked_features(features)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance_from_statistics(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = FRECHET_EPS
) -> float:
    """
    `||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2))`, with audioldm_eval's handling of singular
    products (see the module docstring).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(
            f"Statistics of different dimensions: means {mu1.shape} and {mu2.shape}, covariances {sigma1.shape} and "
            f"{sigma2.shape}."
        )
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        logger.warning(f"Frechet distance: singular covariance product; adding {eps} to both diagonals.")
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if not np.isfinite(covmean).all():
            raise UndefinedMetricError(
                f"the matrix square root of the covariance product is not finite, even with {eps} added to the "
                "diagonals"
            )
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise UndefinedMetricError(
                f"imaginary component {np.max(np.abs(covmean.imag)):.3g} in sqrt(sigma1 sigma2) (a singular case)"
            )
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def frechet_distance(features_1: np.ndarray | torch.Tensor, features_2: np.ndarray | torch.Tensor) -> float:
    """
    Frechet distance between the Gaussians fitted to two sets of features.

    When a side has no more samples than dimensions (e.g. fewer than 2049 clips for Cnn14's 2048-d embeddings, as
    in AudioCaps' test set), its covariance is singular, and so is the covariance product, whose matrix square root
    `scipy.linalg.sqrtm` then only approximates (the square root of a zero eigenvalue perturbed by round-off is of
    order `sqrt(eps)`; scipy may warn that the result "might be inaccurate"), at the cost of a `dim x dim` Schur
    decomposition (seconds for 2048). The trace of that square root is then computed from the samples instead, to
    float64 round-off: with `A` and `B` the centred samples of the two sides scaled by `1 / sqrt(n - 1)` (so that
    `sigma_1 = A^T A` and `sigma_2 = B^T B`), the non-zero eigenvalues of `sigma_1 sigma_2 = A^T (A B^T) B` are those
    of `(A B^T)(B A^T)` (`XY` and `YX` share them), the squared singular values of `A B^T`; so
    `Tr sqrt(sigma_1 sigma_2)` is the sum of the singular values of the `n1 x n2` matrix `A B^T`. Otherwise the
    statistics go through [`frechet_distance_from_statistics`], as audioldm_eval computes it.

    Args:
        features_1 (`np.ndarray` or `torch.Tensor`): `(n1, dim)`, e.g. the generated clips' embeddings.
        features_2 (`np.ndarray` or `torch.Tensor`): `(n2, dim)`, e.g. the reference clips' embeddings.

    Returns:
        `float`: the distance (0 for identical sets).

    Raises:
        [`UndefinedMetricError`]: for fewer than 2 samples on a side, non-finite features, or a singular case.
        `ValueError`: for features of different dimensions.
    """
    features_1, features_2 = _checked_features(features_1), _checked_features(features_2)
    if features_1.shape[1] != features_2.shape[1]:
        raise ValueError(
            f"Features of different dimensions: {features_1.shape[1]} and {features_2.shape[1]} (shapes "
            f"{features_1.shape} and {features_2.shape})."
        )
    if min(len(features_1), len(features_2)) > features_1.shape[1]:
        return frechet_distance_from_statistics(*gaussian_statistics(features_1), *gaussian_statistics(features_2))
    mean_1, mean_2 = features_1.mean(axis=0), features_2.mean(axis=0)
    scaled_1 = (features_1 - mean_1) / np.sqrt(len(features_1) - 1)
    scaled_2 = (features_2 - mean_2) / np.sqrt(len(features_2) - 1)
    trace_sqrt = np.linalg.svd(scaled_1 @ scaled_2.T, compute_uv=False).sum()
    diff = mean_1 - mean_2
    return float(diff @ diff + (scaled_1**2).sum() + (scaled_2**2).sum() - 2 * trace_sqrt)


def inception_score(
    logits: np.ndarray | torch.Tensor, splits: int = IS_SPLITS, shuffle: bool = True, seed: int = IS_SEED
) -> tuple[float, float]:
    """
    Inception score of classifier logits, audioldm_eval's way.

    Args:
        logits (`np.ndarray` or `torch.Tensor`): `(clips, classes)` pre-softmax scores of the generated clips.
        splits (`int`, *optional*, defaults to 10): number of splits.
        shuffle (`bool`, *optional*, defaults to `True`): shuffle the clips first, with `np.random.RandomState(seed)`.
        seed (`int`, *optional*, defaults to 2020): the shuffle's seed.

    Returns:
        `tuple[float, float]`: mean and standard deviation over the splits.

    Raises:
        [`UndefinedMetricError`]: for fewer clips than splits.
    """
    logits = torch.as_tensor(np.asarray(logits) if not isinstance(logits, torch.Tensor) else logits).double()
    if logits.dim() != 2:
        raise ValueError(f"Logits must be (clips, classes), got shape {tuple(logits.shape)}.")
    n = logits.shape[0]
    if splits < 1:
        raise ValueError(f"splits must be >= 1, got {splits}.")
    if n < splits:
        raise UndefinedMetricError(f"the inception score needs at least {splits} clips (one per split), got {n}")
    if shuffle:
        logits = logits[np.random.RandomState(seed).permutation(n)]
    p, log_p = logits.softmax(dim=1), logits.log_softmax(dim=1)
    scores = []
    for i in range(splits):
        chunk = slice(i * n // splits, (i + 1) * n // splits)
        marginal = p[chunk].mean(dim=0, keepdim=True)
        kl = (p[chunk] * (log_p[chunk] - marginal.log())).sum(dim=1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))


@dataclass
class PairedKL:
    """
    Paired KL divergences of classifier outputs.

    Args:
        softmax (`float`): the reported KL (softmax probabilities).
        sigmoid (`float`): the same with per-class sigmoid probabilities (audioldm_eval reports both).
        pairs (`int`): clips present on both sides.
        unpaired_reference (`list[str]`): reference keys with no generated clip (left out, as audioldm_eval does).
        unpaired_generated (`list[str]`): generated keys with no reference clip.
    """

    softmax: float
    sigmoid: float
    pairs: int
    unpaired_reference: list[str] = field(default_factory=list)
    unpaired_generated: list[str] = field(default_factory=list)


def paired_kl(
    generated_logits: Mapping[str, np.ndarray | torch.Tensor],
    reference_logits: Mapping[str, np.ndarray | torch.Tensor],
    eps: float = KL_EPS,
) -> PairedKL:
    """
    KL(reference || generated) of Cnn14's class distributions, pair by pair, summed over classes, averaged over pairs.

    Args:
        generated_logits (`Mapping[str, array]`): logits by key (file name or id).
        reference_logits (`Mapping[str, array]`): logits of the reference clips by the same keys.
        eps (`float`, *optional*, defaults to 1e-6): added to the generated probabilities before the log.

    Returns:
        [`PairedKL`]

    Raises:
        [`UndefinedMetricError`]: when no key is on both sides.
    """
    keys = [k for k in reference_logits if k in generated_logits]
    if not keys:
        raise UndefinedMetricError(
            f"no generated clip pairs with a reference clip: e.g. generated {list(generated_logits)[:3]}, reference "
            f"{list(reference_logits)[:3]} (KL pairs clips by file name or id)"
        )
    generated = torch.stack([torch.as_tensor(np.asarray(generated_logits[k])) for k in keys]).double()
    reference = torch.stack([torch.as_tensor(np.asarray(reference_logits[k])) for k in keys]).double()

    def kl(p_ref: torch.Tensor, p_gen: torch.Tensor) -> float:
        # torch's kl_div(input=log q, target=p) = sum p (log p - log q), with 0 log 0 = 0.
        return float(torch.nn.functional.kl_div((p_gen + eps).log(), p_ref, reduction="sum") / len(keys))

    return PairedKL(
        softmax=kl(reference.softmax(dim=1), generated.softmax(dim=1)),
        sigmoid=kl(reference.sigmoid(), generated.sigmoid()),
        pairs=len(keys),
        unpaired_reference=[k for k in reference_logits if k not in generated_logits],
        unpaired_generated=[k for k in generated_logits if k not in reference_logits],
    )


def clap_score(audio_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> float:
    """
    Mean cosine similarity of each generated clip's CLAP audio embedding with its prompt's text embedding.

    Args:
        audio_embeddings (`torch.Tensor`): `(clips, dim)`.
        text_embeddings (`torch.Tensor`): `(clips, dim)`, row i the prompt of clip i.

    Raises:
        [`UndefinedMetricError`]: for no clip at all.
    """
    if audio_embeddings.shape != text_embeddings.shape or audio_embeddings.dim() != 2:
        raise ValueError(
            f"Need one prompt embedding per clip: audio {tuple(audio_embeddings.shape)}, text "
            f"{tuple(text_embeddings.shape)}."
        )
    if audio_embeddings.shape[0] == 0:
        raise UndefinedMetricError("the CLAP score needs at least one clip with a prompt, got none")
    audio = torch.nn.functional.normalize(audio_embeddings.double(), dim=-1)
    text = torch.nn.functional.normalize(text_embeddings.double(), dim=-1)
    return float((audio * text).sum(dim=-1).mean())
