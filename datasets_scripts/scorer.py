"""CLAP similarity between captions and the audio they describe, batched, each distinct text embedded once.

The embedding functions are the pipeline's own (`clap_audio_embeddings`, `clap_text_embeddings`), so the caption
filter, the pipeline's candidate ranking and the evaluation's CLAP score all compute the same number.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel
from transformers.utils import logging

from pipelines.tango_clap.pipeline_tango_clap import (
    clap_audio_embeddings,
    clap_text_embeddings,
)

logger = logging.get_logger(__name__)

# The transformers port of LAION-CLAP's fused HTSAT-tiny, the architecture of `630k-audioset-fusion-best.pt`, the
# checkpoint the paper filters with. Which original checkpoint each Hub port was converted from is checked by
# converting and comparing weights in a later issue; until then this is the closest available port.
DEFAULT_CLAP = "laion/clap-htsat-fused"
CLAP_SAMPLING_RATE = 48000


class ClapScorer:
    """
    Scores captions against audio clips with CLAP cosine similarity.

    Args:
        model ([`~transformers.ClapModel`]):
            The CLAP model.
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]):
            Its tokenizer.
        feature_extractor ([`~transformers.ClapFeatureExtractor`]):
            Its feature extractor; clips are expected at its `sampling_rate` (48 kHz for LAION-CLAP).
        model_id (`str`):
            Name recorded with every score (a Hub id or a folder).
        audio_batch_size (`int`, *optional*, defaults to 16):
            Clips embedded per forward pass.
        text_batch_size (`int`, *optional*, defaults to 256):
            Texts embedded per forward pass.
    """

    def __init__(
        self,
        model: ClapModel,
        tokenizer,
        feature_extractor: ClapFeatureExtractor,
        model_id: str,
        audio_batch_size: int = 16,
        text_batch_size: int = 256,
    ):
        if audio_batch_size < 1 or text_batch_size < 1:
            raise ValueError(f"Batch sizes must be positive, got {audio_batch_size} and {text_batch_size}.")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor
        self.model_id = model_id
        self.audio_batch_size = audio_batch_size
        self.text_batch_size = text_batch_size

    @classmethod
    def from_pretrained(
        cls, model_id: str = DEFAULT_CLAP, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, **kwargs
    ) -> ClapScorer:
        """Loads a `ClapModel` checkpoint (Hub id or folder) with its tokenizer and feature extractor."""
        model = ClapModel.from_pretrained(model_id, dtype=dtype).to(device)
        tokenizer = AutoTokenizer.from_pretrained(model_id)
        feature_extractor = ClapFeatureExtractor.from_pretrained(model_id)
        return cls(model, tokenizer, feature_extractor, model_id, **kwargs)

    @property
    def sampling_rate(self) -> int:
        return int(self.feature_extractor.sampling_rate)

    def embed_audio(self, audios: list[np.ndarray]) -> torch.Tensor:
        """Normalised audio embeddings `(len(audios), dim)`, `audio_batch_size` clips at a time."""
        parts = [
            clap_audio_embeddings(self.model, self.feature_extractor, audios[i : i + self.audio_batch_size])
            for i in range(0, len(audios), self.audio_batch_size)
        ]
        return torch.cat(parts) if parts else torch.empty(0)

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """Normalised text embeddings `(len(texts), dim)`, `text_batch_size` texts at a time."""
        parts = [
            clap_text_embeddings(self.model, self.tokenizer, texts[i : i + self.text_batch_size])
            for i in range(0, len(texts), self.text_batch_size)
        ]
        return torch.cat(parts) if parts else torch.empty(0)

    def score(self, audios: list[np.ndarray], captions: list[list[str]]) -> list[list[float]]:
        """
        Cosine similarity of every caption with its clip.

        Args:
            audios (`list[np.ndarray]`): mono clips at `self.sampling_rate`.
            captions (`list[list[str]]`): the captions of each clip.

        Returns:
            `list[list[float]]`: one similarity per caption, in the captions' order.
        """
        if len(audios) != len(captions):
            raise ValueError(f"Got {len(audios)} clips but {len(captions)} lists of captions.")
        if not audios:
            return []
        audio_embeds = self.embed_audio(audios)
        unique = list(dict.fromkeys(text for clip in captions for text in clip))
        text_embeds = self.embed_text(unique) if unique else torch.empty(0)
        position = {text: i for i, text in enumerate(unique)}
        scores = []
        for clip_index, clip_captions in enumerate(captions):
            if not clip_captions:
                scores.append([])
                continue
            rows = text_embeds[[position[t] for t in clip_captions]]
            scores.append((rows @ audio_embeds[clip_index]).tolist())
        return scores
