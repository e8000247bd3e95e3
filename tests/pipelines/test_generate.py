"""Tests of the `tango-af-generate` command line."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import soundfile as sf

from pipelines.generate import load_pipeline, main, output_paths
from pipelines.tango_clap.debug import get_debug_pipeline

FAST = ["--model", "debug", "--seconds", "0.5", "--steps", "2", "--seed", "3"]


def test_writes_a_wav_of_the_requested_length(tmp_path, capsys):
    out = tmp_path / "a" / "dog.wav"
    assert main(["--prompt", "a dog barks", *FAST, "--out", str(out)]) == 0
    audio, rate = sf.read(out)
    assert rate == 16000 and audio.shape == (8000,)
    assert np.abs(audio).max() > 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "CLAP score" in printed and "steps=2" in printed


def test_candidates_go_to_numbered_files_with_a_record(tmp_path):
    out = tmp_path / "x.wav"
    main(["--prompt", "rain", *FAST, "--num-waveforms", "3", "--out", str(out)])
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["x.json", "x.wav", "x_1.wav", "x_2.wav"]
    assert output_paths(out, 2) == [out, tmp_path / "x_1.wav"]
    record = json.loads((tmp_path / "x.json").read_text())
    assert record["written_by"] == "tango-af-generate" and record["prompt"] == "rain" and record["seed"] == 3
    scores = [f["clap_score"] for f in record["files"]]
    assert [f["name"] for f in record["files"]] == ["x.wav", "x_1.wav", "x_2.wav"] and scores == sorted(scores)[::-1]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_a_saved_folder_gives_the_same_audio_as_the_debug_model(tmp_path):
    folder = tmp_path / "model"
    get_debug_pipeline().save_pretrained(folder)
    main([*FAST, "--prompt", "wind", "--out", str(tmp_path / "debug.wav")])
    main([*FAST, "--model", str(folder), "--prompt", "wind", "--out", str(tmp_path / "folder.wav")])
    np.testing.assert_allclose(sf.read(tmp_path / "debug.wav")[0], sf.read(tmp_path / "folder.wav")[0], atol=1e-4)


def test_same_seed_same_audio_other_seed_other_audio(tmp_path):
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        main(
            [
                "--model",
                "debug",
                "--prompt",
                "birds",
                "--seconds",
                "0.5",
                "--steps",
                "2",
                "--seed",
                seed,
                "--out",
                str(tmp_path / f"{name}.wav"),
            ]
        )
    a, b, c = (sf.read(tmp_path / f"{n}.wav")[0] for n in "abc")
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0


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
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # diffusers 0.42 deprecates `torch_dtype=`
        pipe = load_pipeline(model, device="cpu", dtype=torch.bfloat16)
    assert pipe.unet.dtype == torch.bfloat16 and pipe.vae.dtype == torch.bfloat16


def test_settings_left_out_come_from_the_model_folder_then_from_tango(tmp_path):
    folder = tmp_path / "model"
    get_debug_pipeline().save_pretrained(folder)
    (folder / "generation_defaults.json").write_text(
        json.dumps({"audio_length_in_s": 0.32, "num_inference_steps": 2, "num_waveforms_per_prompt": 2})
    )
    assert main(["--model", str(folder), "--prompt", "rain", "--out", str(tmp_path / "a.wav")]) == 0
    record = json.loads((tmp_path / "a.json").read_text())
    assert (record["seconds"], record["steps"], record["num_waveforms"], record["guidance"]) == (0.32, 2, 2, 3.0)
    assert record["settings_from"] == {"seconds": "generation_defaults.json", "steps": "generation_defaults.json",
                                       "guidance": "default", "num_waveforms": "generation_defaults.json"}  # fmt: skip
    assert sf.read(tmp_path / "a.wav")[0].shape == (0.32 * 16000,) and (tmp_path / "a_1.wav").is_file()
    # The command line wins over the folder.
    assert (
        main(["--model", str(folder), "--prompt", "rain", "--seconds", "0.16", "--out", str(tmp_path / "b.wav")]) == 0
    )
    record = json.loads((tmp_path / "b.json").read_text())
    assert record["seconds"] == 0.16 and record["settings_from"]["seconds"] == "command line"


def test_a_bad_generation_defaults_file_is_named(tmp_path, capsys):
    folder = tmp_path / "model"
    get_debug_pipeline().save_pretrained(folder)
    (folder / "generation_defaults.json").write_text(json.dumps({"num_inference_steps": 2.5}))
    assert main(["--model", str(folder), "--prompt", "rain", "--out", str(tmp_path / "a.wav")]) == 2
    error = capsys.readouterr().err
    assert "generation_defaults.json" in error and "num_inference_steps" in error and "2.5" in error
    assert not (tmp_path / "a.wav").exists()


def test_the_shipped_model_generates_its_own_clip_length_by_default():
    from pipelines.generate import DEFAULT_MODEL_DIR, read_generation_defaults

    defaults = read_generation_defaults(str(DEFAULT_MODEL_DIR))
    assert defaults["seconds"] == pytest.approx(2.56) and defaults["steps"] <= 50
