"""The micro mel VAE: Tango's latent shape, training that works, diffusion-ready latents, reloading, the pipeline."""

import json

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from datasets_scripts.micro_world import WorldConfig, generate_clip
from pipelines.tango_clap.debug import build_debug_components
from pipelines.tango_clap.pipeline_tango_clap import TangoCLAPPipeline
from training.micro.autoencoder import (
    TRAINING_RECORD,
    build_micro_vae,
    centre_and_scale_latents,
    evaluate_micro_vae,
    tango_mels,
    train_micro_vae,
)

WORLD = WorldConfig(seed=0)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: these models are small, and on a shared 2-core machine a second thread waiting for a busy
    core makes training many times slower, not faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def clips():
    return [generate_clip(WORLD, "pool", index).audio for index in range(6)]


@pytest.fixture(scope="module")
def trained(clips, tmp_path_factory):
    folder = tmp_path_factory.mktemp("vae")
    train_micro_vae(clips, folder, steps=120, batch_size=4, lr=2e-3, seed=0, eval_fraction=0.0, progress=False)
    return folder


def test_latents_have_tangos_shape_and_the_pipeline_sees_a_x4_vae():
    vae = build_micro_vae()
    mel = torch.randn(2, 1, 256, 64)
    with torch.no_grad():
        latents = vae.encode(mel).latent_dist.sample()
        decoded = vae.decode(latents).sample
    assert latents.shape == (2, 8, 64, 16)
    assert decoded.shape == mel.shape
    components = build_debug_components(with_clap_scorer=False)
    assert TangoCLAPPipeline(**{**components, "vae": vae}).vae_scale_factor == 4
    with pytest.raises(ValueError, match="3 levels"):
        build_micro_vae(block_out_channels=(16, 32))


def test_the_mels_are_the_training_scripts(clips):
    from training.front_end import TangoMelSpectrogram, prepare_waveform

    mel = tango_mels(clips[:1])[0]
    expected = TangoMelSpectrogram()(prepare_waveform(clips[0], 16000, num_samples=len(clips[0])))
    assert mel.shape == (256, 64)
    torch.testing.assert_close(mel, expected)


def test_training_lowers_the_reconstruction_error_substantially(trained, clips):
    record = json.loads((trained / TRAINING_RECORD).read_text())
    # The untrained decoder starts at the clips' mean level (its output bias is set there), so this is also "much
    # better than answering each mel bin's mean": the latents carry the clip, not only its average.
    assert record["after"]["l1"] < 0.6 * record["before"]["l1"], record
    assert record["after"]["l1"] < 0.6 * record["after"]["mean_l1"], record
    # The posterior noise is small against the latents' spread.
    assert record["after"]["posterior_std"] < 0.3 * record["after"]["latent_std"], record


def test_scaled_latents_are_centred_with_unit_std(trained, clips):
    vae = AutoencoderKL.from_pretrained(trained)
    mels = torch.stack(tango_mels(clips))
    with torch.no_grad():
        latents = vae.encode(mels[:, None]).latent_dist.sample(generator=torch.Generator().manual_seed(1))
    scaled = latents * vae.config.scaling_factor
    assert vae.config.scaling_factor != 1.0
    assert 0.85 < float(scaled.std()) < 1.15
    assert float(scaled.mean(dim=(0, 2, 3)).abs().max()) < 0.15


def test_centring_the_latents_leaves_every_decoded_mel_unchanged(clips):
    vae = build_micro_vae(seed=3)
    mels = torch.stack(tango_mels(clips[:2]))
    with torch.no_grad():
        before = vae.decode(vae.encode(mels[:, None]).latent_dist.mode()).sample
        result = centre_and_scale_latents(vae, list(mels))
        means = vae.encode(mels[:, None]).latent_dist.mode()
        after = vae.decode(means).sample
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    assert max(abs(m) for m in result["channel_means"]) > 1e-3  # something was actually moved
    assert float(means.mean(dim=(0, 2, 3)).abs().max()) < 0.05


def test_the_saved_folder_reloads_identically(trained, clips, tmp_path):
    vae = AutoencoderKL.from_pretrained(trained)
    assert any(p.suffix == ".safetensors" for p in trained.iterdir())
    assert not any(p.suffix in (".bin", ".pt", ".pkl") for p in trained.iterdir())
    vae.save_pretrained(tmp_path / "copy")
    again = AutoencoderKL.from_pretrained(tmp_path / "copy")
    mels = torch.stack(tango_mels(clips[:2]))
    with torch.no_grad():
        first = vae.decode(vae.encode(mels[:, None]).latent_dist.mode()).sample
        second = again.decode(again.encode(mels[:, None]).latent_dist.mode()).sample
    assert torch.equal(first, second)
    assert again.config.scaling_factor == vae.config.scaling_factor


def test_training_is_deterministic_with_a_seed(clips, tmp_path):
    def run(name, seed):
        folder = train_micro_vae(clips[:3], tmp_path / name, steps=3, batch_size=2, seed=seed, progress=False)
        return AutoencoderKL.from_pretrained(folder).state_dict()

    first, second, other = run("a", 0), run("b", 0), run("c", 1)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_the_trained_vae_generates_audio_inside_a_tango_clap_pipeline(trained):
    components = build_debug_components(with_clap_scorer=False)
    pipe = TangoCLAPPipeline(**{**components, "vae": AutoencoderKL.from_pretrained(trained)})
    output = pipe(
        "a high tone", audio_length_in_s=1.0, num_inference_steps=2, generator=torch.Generator().manual_seed(0)
    )
    assert output.audios.shape == (1, 16000)
    assert np.isfinite(output.audios).all()


def test_evaluation_refuses_clips_too_short_to_encode():
    with pytest.raises(ValueError, match="4 mel frames"):
        evaluate_micro_vae(build_micro_vae(), [torch.zeros(3, 64)])
