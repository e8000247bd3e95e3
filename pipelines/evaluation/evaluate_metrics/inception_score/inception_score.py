"""`evaluate` module: inception score of classifier logits (IS on PANNs Cnn14, audioldm_eval's way)."""

import evaluate
import numpy as np

from pipelines.evaluation.evaluate_info import vector_metric_info
from pipelines.evaluation.metrics import IS_SEED, IS_SPLITS, inception_score

_DESCRIPTION = """
Inception score of the generated clips' classifier logits as audioldm_eval computes it on PANNs Cnn14: softmax, clips
shuffled with np.random.RandomState(2020), 10 splits, exp of the mean KL from each split's marginal.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): one logit vector per generated clip (at least `splits` clips).
    splits (`int`, *optional*, defaults to 10), shuffle (`bool`, defaults to True), seed (`int`, defaults to 2020).
Returns:
    inception_score (`float`), inception_score_std (`float`).
"""

_CITATION = """
@inproceedings{salimans2016improved, title={Improved Techniques for Training GANs}, author={Salimans, Tim and
others}, booktitle={NeurIPS}, year={2016}}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class InceptionScore(evaluate.Metric):
    def _info(self):
        return vector_metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, paired=False)

    def _compute(self, predictions, splits=IS_SPLITS, shuffle=True, seed=IS_SEED):
        mean, std = inception_score(np.asarray(predictions), splits=splits, shuffle=shuffle, seed=seed)
        return {"inception_score": mean, "inception_score_std": std}
