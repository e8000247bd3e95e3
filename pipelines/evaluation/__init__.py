"""Evaluation of generated audio as the field computes it: FD, IS and KL on PANNs Cnn14, FAD on VGGish, CLAP score."""
