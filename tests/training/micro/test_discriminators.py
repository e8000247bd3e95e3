"""The micro vocoder's discriminators and GAN losses: shapes, the losses' fixed points, and that they learn."""

import pytest
import torch

from training.micro.discriminators import (
    MicroHifiGanDiscriminator,
    PeriodDiscriminator,
    ResolutionDiscriminator,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)

SR = 16000


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: these models are small, and on a shared 2-core machine a second thread waiting for a busy
    core makes training many times slower, not faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_discriminator(seed=0):
    torch.manual_seed(seed)
    return MicroHifiGanDiscriminator(
        periods=(2, 3), period_channels=(4, 8), resolutions=((128, 32),), resolution_channels=4
    )


def test_every_sub_discriminator_scores_positions_and_returns_its_activations():
    discriminator = tiny_discriminator()
    # 2,501 samples: not a whole number of rows for either period, which are padded.
    logits, features = discriminator(torch.randn(3, 2501))
    assert len(logits) == len(features) == 3
    for scores, activations in zip(logits, features):
        assert scores.dim() == 2 and scores.shape[0] == 3 and scores.shape[1] > 1
        # Every layer's activation, the last one being the logits themselves.
        assert all(a.shape[0] == 3 for a in activations)
        torch.testing.assert_close(activations[-1].flatten(1), scores)
    assert len(features[0]) == 4  # two strided layers, the stride-1 layer, the output layer
    assert len(features[2]) == 5  # four spectrogram layers, the output layer
    with pytest.raises(ValueError, match="batch, samples"):
        discriminator(torch.randn(2501))
    with pytest.raises(ValueError, match="at least one"):
        MicroHifiGanDiscriminator(periods=(), resolutions=())


def test_a_period_discriminator_sees_the_waveform_folded_by_its_period():
    """A period-p discriminator's first layer only mixes samples p apart: changing samples in one column (phase)
    leaves the other columns' activations alone."""
    discriminator = PeriodDiscriminator(3, channels=(4,))
    waveform = torch.randn(1, 300)
    changed = waveform.clone()
    changed[:, 1::3] += 1.0  # column 1 only
    with torch.no_grad():
        first = discriminator.convs[0](waveform.reshape(1, 1, 100, 3))
        second = discriminator.convs[0](changed.reshape(1, 1, 100, 3))
    difference = (first - second).abs().amax(dim=(0, 1, 2))
    assert difference[1] > 0 and difference[0] == 0 and difference[2] == 0


def test_the_losses_vanish_at_their_targets_and_grow_away_from_them():
    ones, zeros = [torch.ones(2, 5), torch.ones(2, 7)], [torch.zeros(2, 5), torch.zeros(2, 7)]
    assert float(discriminator_loss(ones, zeros)) == 0.0
    assert float(generator_adversarial_loss(ones)) == 0.0
    # Least squares, summed over sub-discriminators: (1 - 0)^2 for each of two.
    assert float(generator_adversarial_loss(zeros)) == pytest.approx(2.0)
    assert float(discriminator_loss(zeros, ones)) == pytest.approx(4.0)
    features = [[torch.randn(2, 3, 4), torch.randn(2, 5)]]
    assert float(feature_matching_loss(features, features)) == 0.0
    shifted = [[f + 0.5 for f in layers] for layers in features]
    # The L1 averaged within each of the two layers, then summed.
    assert float(feature_matching_loss(features, shifted)) == pytest.approx(1.0)


def test_feature_matching_moves_only_the_generated_side():
    real = torch.randn(2, 8, requires_grad=True)
    fake = torch.randn(2, 8, requires_grad=True)
    feature_matching_loss([[real]], [[fake]]).backward()
    assert real.grad is None and fake.grad is not None and float(fake.grad.abs().sum()) > 0


def test_a_few_updates_teach_the_discriminators_to_tell_a_tone_from_noise():
    """The least-squares objective is 0.5 per sub-discriminator at the start (every score near 0); a few Adam steps
    on "real" tones against "generated" noise bring it well below that."""
    discriminator = tiny_discriminator(seed=1)
    t = torch.arange(2048) / SR
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=2e-3, betas=(0.8, 0.99))

    def batch():
        frequency = 300 + 700 * torch.rand(4, 1, generator=generator)
        real = 0.5 * torch.sin(2 * torch.pi * frequency * t)
        fake = 0.3 * torch.randn(4, 2048, generator=generator)
        return real, fake

    def loss(real, fake):
        return discriminator_loss(discriminator(real)[0], discriminator(fake)[0])

    with torch.no_grad():
        before = float(loss(*batch()))
    for _ in range(30):
        optimizer.zero_grad()
        loss(*batch()).backward()
        optimizer.step()
    with torch.no_grad():
        after = float(loss(*batch()))
    assert after < 0.5 * before, (before, after)


def test_a_resolution_discriminator_looks_at_its_own_stft():
    discriminator = ResolutionDiscriminator(256, 64, channels=4, num_layers=2)
    logits, features = discriminator(torch.randn(2, 6400))
    # 101 frames (centred STFT of 6,400 samples, hop 64) by 129 bins halved twice: 33.
    assert features[0].shape == (2, 4, 101, 65)
    assert logits.shape == (2, 101 * 33)
