"""The micro vocoder: exact lengths, training that works, the right pitch, reloading, the pipeline."""

import json

import numpy as np
import pytest
import torch
from transformers import SpeechT5HifiGan

from datasets_scripts.micro_world import WorldConfig, generate_clip
from pipelines.tango_clap.debug import build_debug_components
from pipelines.tango_clap.pipeline_tango_clap import TangoCLAPPipeline
from training.micro.vocoder import (
    TRAINING_RECORD,
    build_micro_vocoder,
    multi_resolution_stft_loss,
    resynthesize,
    train_micro_vocoder,
)

SR = 16000


def tone(frequency, seconds=1.0, phase=0.0, seed=0):
    """A steady tone at Tango's training level (peak 0.5) over the micro world's noise floor."""
    t = np.arange(round(seconds * SR)) / SR
    noise = 0.002 * np.random.default_rng(seed).standard_normal(len(t))
    return (0.5 * np.sin(2 * np.pi * frequency * t + phase) + noise).astype(np.float32)


def dominant_frequency(audio):
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / SR)[np.argmax(spectrum)])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: these models are small, and on a shared 2-core machine a second thread waiting for a busy
    core makes training many times slower, not faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tone_vocoder(tmp_path_factory):
    """A vocoder trained on a 1 kHz tone (four clips, different phases), at twice the default rate: 150 steps on one
    sound is a much shorter run than the defaults are made for."""
    clips = [tone(1000.0, phase=phase, seed=i) for i, phase in enumerate((0.0, 1.0, 2.0, 3.0))]
    folder = tmp_path_factory.mktemp("tone_vocoder")
    train_micro_vocoder(clips, folder, steps=150, batch_size=4, lr=4e-3, seed=0, eval_fraction=0.0, progress=False)
    return folder


def test_the_output_has_exactly_160_samples_per_frame():
    vocoder = build_micro_vocoder()
    with torch.no_grad():
        assert vocoder(torch.randn(2, 37, 64)).shape == (2, 37 * 160)
        assert vocoder(torch.randn(5, 64)).shape == (5 * 160,)
    assert vocoder.config.sampling_rate == SR and vocoder.config.model_in_dim == 64
    with pytest.raises(ValueError, match="160"):
        build_micro_vocoder(upsample_rates=(8, 5, 5), upsample_kernel_sizes=(16, 11, 11))
    with pytest.raises(ValueError, match="even"):
        build_micro_vocoder(upsample_kernel_sizes=(11, 8, 7, 4))
    with pytest.raises(ValueError, match="one kernel per upsampling rate"):
        build_micro_vocoder(upsample_kernel_sizes=(16, 10, 8))


def test_a_short_run_on_world_clips_lowers_the_stft_loss(tmp_path):
    world = WorldConfig(seed=0)
    clips = [generate_clip(world, "pool", index).audio for index in range(4)]
    folder = train_micro_vocoder(clips, tmp_path, steps=60, batch_size=4, seed=0, eval_fraction=0.0, progress=False)
    record = json.loads((folder / TRAINING_RECORD).read_text())
    assert record["after"]["stft_loss"] < record["before"]["stft_loss"] - 0.4, record
    assert record["after"]["mel_l1"] < 0.6 * record["before"]["mel_l1"], record


def test_a_trained_tone_comes_back_at_its_pitch_and_level(tone_vocoder):
    vocoder = SpeechT5HifiGan.from_pretrained(tone_vocoder)
    # A phase never seen in training: the vocoder must make the tone from the mel, not recall a waveform.
    original = tone(1000.0, seconds=1.5, phase=0.5, seed=9)
    resynthesised = resynthesize(vocoder, original)
    assert resynthesised.shape == original.shape
    assert abs(dominant_frequency(resynthesised) - 1000.0) <= 20.0
    level_db = 20 * np.log10(resynthesised.std() / original.std())
    assert abs(level_db) < 3.0, level_db
    # The untrained vocoder does not get there: the check above can fail.
    untrained = resynthesize(build_micro_vocoder(), original)
    assert abs(dominant_frequency(untrained) - 1000.0) > 20.0 or abs(20 * np.log10(untrained.std() / 0.354)) > 3.0


def test_a_steady_mel_becomes_a_waveform_periodic_in_the_frame_rate():
    """Why the tone above sits on a multiple of 100 Hz: a HiFi-GAN is convolutional with a x160 upsampling, so a mel
    that does not change from frame to frame gives a waveform that repeats every 160 samples (harmonics of 100 Hz
    only). No phase is in a mel, so no HiFi-GAN can do otherwise; a 440 Hz tone comes back near 400 or 500 Hz."""
    vocoder = build_micro_vocoder(seed=1)
    steady = torch.randn(1, 64).expand(60, 64)
    with torch.no_grad():
        waveform = vocoder(steady)
    interior = waveform[20 * 160 : 40 * 160].reshape(20, 160)
    torch.testing.assert_close(interior, interior[:1].expand(20, 160), atol=1e-5, rtol=1e-4)


def test_the_saved_folder_reloads_identically_with_its_input_statistics(tone_vocoder, tmp_path):
    vocoder = SpeechT5HifiGan.from_pretrained(tone_vocoder)
    assert vocoder.config.normalize_before
    assert not torch.equal(vocoder.mean, torch.zeros(64)) and not torch.equal(vocoder.scale, torch.ones(64))
    assert any(p.suffix == ".safetensors" for p in tone_vocoder.iterdir())
    assert not any(p.suffix in (".bin", ".pt", ".pkl") for p in tone_vocoder.iterdir())
    vocoder.save_pretrained(tmp_path / "copy")
    again = SpeechT5HifiGan.from_pretrained(tmp_path / "copy")
    audio = tone(700.0)
    np.testing.assert_array_equal(resynthesize(vocoder, audio), resynthesize(again, audio))


def test_training_is_deterministic_with_a_seed(tmp_path):
    clips = [tone(500.0, seed=i) for i in range(2)]

    def run(name, seed):
        folder = train_micro_vocoder(clips, tmp_path / name, steps=3, batch_size=2, seed=seed, progress=False)
        return SpeechT5HifiGan.from_pretrained(folder).state_dict()

    first, second, other = run("a", 0), run("b", 0), run("c", 1)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_the_stft_loss_is_zero_for_identical_audio_and_grows_with_a_wrong_pitch():
    reference = torch.from_numpy(tone(1000.0))[None]
    assert float(multi_resolution_stft_loss(reference, reference)) == pytest.approx(0.0, abs=1e-6)
    near = float(multi_resolution_stft_loss(torch.from_numpy(tone(1030.0))[None], reference))
    far = float(multi_resolution_stft_loss(torch.from_numpy(tone(1600.0))[None], reference))
    assert 0 < near < far


def test_the_trained_vocoder_is_the_pipelines_vocoder(tone_vocoder):
    components = build_debug_components(with_clap_scorer=False)
    pipe = TangoCLAPPipeline(**{**components, "vocoder": SpeechT5HifiGan.from_pretrained(tone_vocoder)})
    assert pipe.hop_length == 160 and pipe.sampling_rate == SR
    output = pipe(
        "a steady tone", audio_length_in_s=1.0, num_inference_steps=2, generator=torch.Generator().manual_seed(0)
    )
    assert output.audios.shape == (1, SR)
    assert np.isfinite(output.audios).all()
