"""The training objective: condition dropout to the pipeline's "" encoding, Min-SNR weights for both targets, and
per-step random draws that depend on nothing but (seed, step, process)."""

import pytest
import torch
from diffusers.training_utils import compute_snr

from pipelines.tango_clap.architectures import build_scheduler
from pipelines.tango_clap.debug import get_debug_pipeline
from training.objective import diffusion_loss, drop_conditions, sample_latents, step_generator


class ZeroUNet(torch.nn.Module):
    """Predicts zeros and records its inputs: the loss is then the weighted mean square of the target."""

    def forward(self, sample, timesteps, hidden, encoder_attention_mask=None, return_dict=False):
        self.timesteps, self.hidden, self.mask = timesteps, hidden, encoder_attention_mask
        return (torch.zeros_like(sample),)


def test_dropped_rows_get_the_pipelines_empty_prompt_encoding():
    pipe = get_debug_pipeline(with_clap_scorer=False)
    hidden, mask = pipe.encode_text(["a dog barks loudly in the rain", "wind"])
    empty_hidden, empty_mask = pipe.encode_text([""])
    drop = torch.tensor([False, True])

    out_hidden, out_mask = drop_conditions(hidden, mask, empty_hidden, empty_mask, drop)

    torch.testing.assert_close(out_hidden[0], hidden[0])
    torch.testing.assert_close(out_mask[0], mask[0])
    n = empty_hidden.shape[1]
    torch.testing.assert_close(out_hidden[1, :n], empty_hidden[0])
    assert out_hidden[1, n:].abs().sum() == 0 and out_mask[1].tolist() == empty_mask[0].tolist() + [0] * (
        hidden.shape[1] - n
    )
    # What the pipeline feeds the UNet as its unconditional half for the same prompt.
    _, _, uncond, uncond_mask = pipe.encode_prompt("wind", torch.device("cpu"), 1, True)
    torch.testing.assert_close(uncond[0, :n], empty_hidden[0])
    assert uncond_mask[0, :n].tolist() == empty_mask[0].tolist()


def test_nothing_dropped_is_the_identity():
    hidden, mask = torch.randn(2, 4, 8), torch.ones(2, 4, dtype=torch.long)
    out = drop_conditions(
        hidden, mask, torch.randn(1, 2, 8), torch.ones(1, 2, dtype=torch.long), torch.tensor([0, 0]) > 0
    )
    assert out[0] is hidden and out[1] is mask


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_min_snr_weights(prediction_type):
    scheduler = build_scheduler(prediction_type=prediction_type)
    latents = torch.randn(64, 8, 4, 4, generator=torch.manual_seed(0))
    unet = ZeroUNet()
    hidden, mask = torch.randn(64, 3, 8), torch.ones(64, 3, dtype=torch.long)

    weighted = diffusion_loss(unet, scheduler, latents, hidden, mask, step_generator(1, 2, 0), snr_gamma=5.0)
    plain = diffusion_loss(unet, scheduler, latents, hidden, mask, step_generator(1, 2, 0))

    # Rebuild the same draws and the targets to check the weights independently.
    generator = step_generator(1, 2, 0)
    noise = torch.randn(latents.shape, generator=generator)
    timesteps = torch.randint(0, 1000, (64,), generator=generator)
    torch.testing.assert_close(unet.timesteps, timesteps)
    target = noise if prediction_type == "epsilon" else scheduler.get_velocity(latents, noise, timesteps)
    per_sample = target.pow(2).mean(dim=[1, 2, 3])
    snr = compute_snr(scheduler, timesteps)
    denominator = snr if prediction_type == "epsilon" else snr + 1
    expected = (per_sample * torch.clamp(snr, max=5.0) / denominator).mean()
    torch.testing.assert_close(weighted, expected)
    torch.testing.assert_close(plain, per_sample.mean())
    # With v-prediction the weights stay below 1 at every step, as the epsilon ones do for snr > gamma.
    assert (torch.clamp(snr, max=5.0) / denominator <= 1.0 + 1e-6).all()


def test_step_draws_depend_only_on_seed_step_and_process():
    a = torch.randn(5, generator=step_generator(3, 10, 0))
    assert torch.equal(a, torch.randn(5, generator=step_generator(3, 10, 0)))
    for other in (step_generator(4, 10, 0), step_generator(3, 11, 0), step_generator(3, 10, 1)):
        assert not torch.equal(a, torch.randn(5, generator=other))


def test_posterior_sample_is_scaled_and_follows_the_moments():
    mean, logvar = torch.full((4000,), 2.0), torch.full((4000,), float(torch.log(torch.tensor(0.25))))
    draws = sample_latents(mean, logvar, 0.5, step_generator(0, 0, 0))
    assert abs(draws.mean().item() - 1.0) < 0.02 and abs(draws.std().item() - 0.25) < 0.02
