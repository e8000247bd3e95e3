"""`evaluate` module: CLAP score, the mean cosine between generated clips' and their prompts' CLAP embeddings."""

import evaluate
import torch

from pipelines.evaluation.evaluate_info import vector_metric_info
from pipelines.evaluation.metrics import clap_score

_DESCRIPTION = """
Mean cosine similarity between each generated clip's CLAP audio embedding and its prompt's CLAP text embedding.
Name the CLAP checkpoint with the number: scores of different checkpoints are not comparable. Embed with
`datasets_scripts.scorer.ClapScorer` (laion_clap's preprocessing) for LAION-CLAP numbers.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): audio embeddings of the generated clips.
    references (`list[list[float]]`): text embeddings of their prompts, in the same order.
Returns:
    clap_score (`float`).
"""

_CITATION = """
@inproceedings{wu2023large, title={Large-scale Contrastive Language-Audio Pretraining with Feature Fusion and
Keyword-to-Caption Augmentation}, author={Wu, Yusong and others}, booktitle={ICASSP}, year={2023}}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ClapScore(evaluate.Metric):
    def _info(self):
        return vector_metric_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, paired=True)

    def _compute(self, predictions, references):
        return {"clap_score": clap_score(torch.tensor(predictions), torch.tensor(references))}
