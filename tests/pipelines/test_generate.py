"""Tests of the `tango-af-generate` command line."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from pipelines.generate import load_pipeline, main, output_paths
from pipelines.tango_clap.debug import get_debug_pipeline

FAST = ["--seconds", "0.5", "--steps", "2", "--seed", "3"]


def test_writes_a_wav_of_the_requested_length(tmp_path, capsys):
    out = tmp_path / "a" / "dog.wav"
    assert main(["--prompt", "a dog barks", *FAST, "--out", str(out)]) == 0
    audio, rate = sf.read(out)
    assert rate == 16000 and audio.shape == (8000,)
    assert np.abs(audio).max() > 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "CLAP score" in printed and "steps=2" in printed


def test_candidates_go_to_numbered_files(tmp_path):
    out = tmp_path / "x.wav"
    main(["--prompt", "rain", *FAST, "--num-waveforms", "3", "--out", str(out)])
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["x.wav", "x_1.wav", "x_2.wav"]
    assert output_paths(out, 2) == [out, tmp_path / "x_1.wav"]


def test_a_saved_folder_gives_the_same_audio_as_the_debug_model(tmp_path):
    folder = tmp_path / "model"
    get_debug_pipeline().save_pretrained(folder)
    main(["--model", "debug", "--prompt", "wind", *FAST, "--out", str(tmp_path / "debug.wav")])
    main(["--model", str(folder), "--prompt", "wind", *FAST, "--out", str(tmp_path / "folder.wav")])
    np.testing.assert_allclose(sf.read(tmp_path / "debug.wav")[0], sf.read(tmp_path / "folder.wav")[0], atol=1e-4)


def test_same_seed_same_audio_other_seed_other_audio(tmp_path):
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        main(["--prompt", "birds", "--seconds", "0.5", "--steps", "2", "--seed", seed, "--out", str(tmp_path / f"{name}.wav")])
    a, b, c = (sf.read(tmp_path / f"{n}.wav")[0] for n in "abc")
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--seconds", "-2"], "audio_length_in_s.*-2"),
        (["--steps", "0"], "num_inference_steps.*0"),
        (["--out", "x.mp3"], "must end in .wav.*x.mp3"),
    ],
)
def test_bad_arguments_exit_with_a_message(tmp_path, argv, message):
    argv = ["--prompt", "x", "--out", str(tmp_path / "x.wav"), *argv]
    with pytest.raises(SystemExit, match=message):
        main(argv)


def test_scheduler_swap_keeps_the_noise_schedule():
    pipe = load_pipeline("debug", device="cpu", scheduler="dpmsolver++")
    assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert pipe.scheduler.config.algorithm_type == "dpmsolver++"
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.scheduler.config.beta_schedule == "scaled_linear"
    with pytest.raises(ValueError, match="'euler'"):
        load_pipeline("debug", scheduler="euler")


@pytest.mark.parametrize("source", ["debug", "folder"])
def test_dtype_reaches_the_weights(tmp_path, source):
    import torch

    model = "debug"
    if source == "folder":
        model = str(tmp_path / "model")
        get_debug_pipeline().save_pretrained(model)
    pipe = load_pipeline(model, device="cpu", dtype=torch.bfloat16)
    assert pipe.unet.dtype == torch.bfloat16 and pipe.vae.dtype == torch.bfloat16
