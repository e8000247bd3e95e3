"""The micro parts' learning-rate schedule."""

import pytest

from training.micro.schedules import warmup_cosine_lr


def test_linear_warmup_then_cosine_decay_to_a_tenth():
    rates = [warmup_cosine_lr(step, 100, 1.0, 10) for step in range(100)]
    assert rates[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert rates[10] == pytest.approx(1.0) and rates[55] == pytest.approx(0.55, rel=0.02)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:])) and rates[-1] == pytest.approx(0.1, rel=0.01)
    assert warmup_cosine_lr(0, 5, 2.0, 0) == pytest.approx(2.0)
