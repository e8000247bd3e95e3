"""`evaluate` module: Frechet distance between two sets of embeddings (FD on PANNs Cnn14, FAD on VGGish)."""

import evaluate
import numpy as np

from pipelines.evaluation.evaluate_info import vector_metric_info
from pipelines.evaluation.metrics import frechet_distance

_DESCRIPTION = """
Frechet distance between the Gaussians fitted to two sets of embeddings, computed as audioldm_eval computes FD
(PANNs Cnn14 2048-d embeddings) and FAD (VGGish embeddings): float64 statistics, scipy's matrix square root, 1e-6 on
the diagonals when the product is singular. Extract the embeddings with `pipelines.evaluation` (or any backbone).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): one embedding per generated clip (or VGGish example).
    reference_embeddings (`list[list[float]]`): one per reference clip; the two sets may differ in size.
Returns:
    frechet_distance (`float`): 0 for identical sets.
Examples:
    >>> fd = evaluate.load("pipelines/evaluation/evaluate_metrics/frechet_distance")
    >>> fd.compute(predictions=generated, reference_embeddings=reference)["frechet_distance"]
"""

_CITATION = """
@inproceedings{heusel2017gans, title={GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium}, author={Heusel, Martin and others}, booktitle={NeurIPS}, year={2017}}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class FrechetDistance(evaluate.Metric):
    def _info(self):
        return vector_metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, paired=False)

    def _compute(self, predictions, reference_embeddings):
        return {"frechet_distance": frechet_distance(np.asarray(predictions), np.asarray(reference_embeddings))}
