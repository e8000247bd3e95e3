"""Evaluation of generated audio as the field computes it: FD, IS and KL on PANNs Cnn14, FAD on VGGish, CLAP score."""

import os

# The `evaluate` modules shipped with this package, by name: `evaluate.load(EVALUATE_MODULES["frechet_distance"])`.
EVALUATE_MODULES = {
    name: os.path.join(os.path.dirname(__file__), "evaluate_metrics", name)
    for name in ("frechet_distance", "inception_score", "kl_divergence", "clap_score")
}
