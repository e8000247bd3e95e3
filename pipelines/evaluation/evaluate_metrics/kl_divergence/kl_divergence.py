"""`evaluate` module: paired KL divergence of classifier outputs (KL on PANNs Cnn14 logits, audioldm_eval's way)."""

import evaluate
import numpy as np

from pipelines.evaluation.evaluate_info import vector_metric_info
from pipelines.evaluation.metrics import paired_kl

_DESCRIPTION = """
KL(reference || generated) of the softmax (and sigmoid) of PANNs Cnn14 logits, pair by pair, summed over classes and
averaged over pairs, as audioldm_eval computes it. Pairs are given by position: prediction i is the generated clip
of reference i.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): logits of the generated clips.
    references (`list[list[float]]`): logits of their reference clips, in the same order.
Returns:
    kl_softmax (`float`): the reported KL; kl_sigmoid (`float`); pairs (`int`).
"""

_CITATION = """
@inproceedings{liu2023audioldm, title={AudioLDM: Text-to-Audio Generation with Latent Diffusion Models},
author={Liu, Haohe and others}, booktitle={ICML}, year={2023}}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class KLDivergence(evaluate.Metric):
    def _info(self):
        return vector_metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, paired=True)

    def _compute(self, predictions, references):
        keys = [str(i) for i in range(len(predictions))]
        result = paired_kl(dict(zip(keys, np.asarray(predictions))), dict(zip(keys, np.asarray(references))))
        return {"kl_softmax": result.softmax, "kl_sigmoid": result.sigmoid, "pairs": result.pairs}
