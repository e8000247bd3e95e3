"""The learning-rate schedule every micro part trains with."""

from __future__ import annotations

import math


def warmup_cosine_lr(step: int, steps: int, lr: float, warmup: int) -> float:
    """
    A short linear warm-up (a fresh model's first updates are large), then cosine decay to 10% of `lr`: the usual
    CLIP/CLAP schedule, shortened.

    Args:
        step (`int`): the current step, from 0.
        steps (`int`): all steps of the run.
        lr (`float`): the peak learning rate.
        warmup (`int`): steps of the warm-up (0 for none).
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))
