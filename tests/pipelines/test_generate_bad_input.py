"""What `tango-af-generate` does with bad input: one line naming the bad value, exit code 2, no traceback, nothing
loaded and nothing written; and how it writes (all or nothing, never over a file it did not write, stale candidates of
its own removed). Most cases run `main` in-process with the debug model; one runs the installed script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from pipelines import generate
from pipelines.cli import UserError
from pipelines.generate import (
    MAX_SECONDS,
    estimate_memory,
    latent_shape,
    main,
    read_model_configs,
)
from pipelines.tango_clap.debug import get_debug_pipeline

FAST = ["--model", "debug", "--prompt", "rain", "--seconds", "0.32", "--steps", "1"]


class Loaded(Exception):
    """Raised instead of loading the pipeline: reaching it means every check before loading passed."""


@pytest.fixture
def no_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise Loaded

    monkeypatch.setattr(generate, "load_pipeline", refuse)


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    """Exit code 2 and one `error:` line, the last one (progress bars of loading may come before it)."""
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert code == 2, err
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


# ---------------------------------------------------------------------------------------------- refused before loading


@pytest.mark.parametrize(
    "argv,fragments",
    [
        (["--seconds", "-2"], ["--seconds -2.0", "positive number of seconds"]),
        (["--seconds", "nan"], ["--seconds nan"]),
        (["--seconds", "inf"], ["--seconds inf"]),
        (["--steps", "0"], ["--steps 0", "positive integer"]),
        (["--guidance", "-1"], ["--guidance -1.0"]),
        (["--guidance", "nan"], ["--guidance nan"]),
        (["--num-waveforms", "0"], ["--num-waveforms 0"]),
        (["--seed", str(2**70)], [f"--seed {2**70}", "[0, 2**64-1]"]),
        (["--seed", "-1"], ["--seed -1", "[0, 2**64-1]"]),
        (["--max-seconds", "0"], ["--max-seconds 0.0"]),
        (["--max-waveforms", "0"], ["--max-waveforms 0"]),
        (["--device", "foo"], ["--device 'foo'", "not a device name"]),
        (["--device", "meta"], ["--device 'meta'", "needs a meta device"]),
        (["--steps", "1001"], ["--steps 1001", "DDPMScheduler", "at most 1000"]),
        (["--scheduler", "ddim", "--steps", "100000"], ["--steps 100000", "DDIMScheduler", "at most 1000"]),
        (
            ["--scheduler", "dpmsolver++", "--steps", "1000"],
            ["--steps 1000", "DPMSolverMultistepScheduler", "repeated 1000 times"],
        ),
        (["--seconds", "100000"], [f"--seconds 100000 is over the limit of {MAX_SECONDS:g} s (--max-seconds)", "GB"]),
        (["--num-waveforms", "100000"], ["--num-waveforms 100000 is over the limit", "--max-waveforms", "GB"]),
        (["--seconds", "0.64", "--max-seconds", "0.5"], ["--seconds 0.64 is over the limit of 0.5 s", "UNet batch 2"]),
    ],
)
def test_bad_values_are_named_before_loading(tmp_path, capsys, no_loading, argv, fragments):
    code, _, err = run([*FAST, "--out", str(tmp_path / "x.wav"), *argv], capsys)
    assert_one_line_error(code, err, *fragments)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_cpu_machine_is_named(tmp_path, capsys, no_loading):
    code, _, err = run([*FAST, "--out", str(tmp_path / "x.wav"), "--device", "cuda"], capsys)
    assert_one_line_error(code, err, "--device 'cuda'", "needs a CUDA GPU")


def test_limits_can_be_lifted(tmp_path, no_loading):
    base = [*FAST, "--out", str(tmp_path / "x.wav"), "--seconds", "0.64", "--num-waveforms", "3", "--debug"]
    for lift in (["--max-seconds", "1"], ["--max-seconds", "0.5", "--max-waveforms", "2", "--no-limits"]):
        with pytest.raises(Loaded):
            main([*base, *lift])


def test_memory_estimate_uses_the_pipelines_latent_shape():
    configs = read_model_configs("debug")
    pipe = get_debug_pipeline()
    for seconds in (0.04, 0.32, 2.37, 10.0, 61.3):
        frames = pipe.num_frames(seconds)
        latents = pipe.prepare_latents(
            2, pipe.unet.config.in_channels, frames, torch.float32, "cpu", torch.Generator()
        )
        assert latent_shape(configs, seconds, 2) == tuple(latents.shape)
    # Every part grows with the batch; guidance doubles the UNet's batch.
    one = estimate_memory(configs, 10.0, 1, 3.0, torch.float32)
    four = estimate_memory(configs, 10.0, 4, 3.0, torch.float32)
    unguided = estimate_memory(configs, 10.0, 1, 1.0, torch.float32)
    assert four.parts == {name: 4 * size for name, size in one.parts.items()}
    assert one.unet_batch == 2 and unguided.unet_batch == 1 and unguided.parts["UNet"] * 2 == one.parts["UNet"]
    assert estimate_memory(configs, 10.0, 1, 3.0, torch.float16).parts["UNet"] * 2 == one.parts["UNet"]


@pytest.mark.parametrize("case", ["missing folder", "empty folder", "other pipeline", "offline hub id", "file"])
def test_bad_models_are_named(tmp_path, capsys, no_loading, case):
    model = tmp_path / "model"
    if case == "empty folder":
        model.mkdir()
    elif case == "other pipeline":
        model.mkdir()
        (model / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    elif case == "file":
        model.write_text("not a model")
    model = "someone-who-does-not-exist/no-such-tango" if case == "offline hub id" else str(model)
    expected = {
        "missing folder": "does not exist",
        "empty folder": "is not a pipeline folder: it has no model_index.json",
        "other pipeline": "is a StableDiffusionPipeline pipeline, not a TangoCLAPPipeline",
        "offline hub id": "HF_HUB_OFFLINE is set",
        "file": "is a file",
    }[case]
    out = tmp_path / "out" / "x.wav"
    code, _, err = run([*FAST, "--model", model, "--out", str(out)], capsys)
    assert_one_line_error(code, err, f"--model {model!r}", expected)
    assert not out.parent.exists()


def test_a_folder_missing_weights_is_named_when_loading(tmp_path, capsys):
    folder = tmp_path / "model"
    get_debug_pipeline().save_pretrained(folder)
    next((folder / "unet").glob("*.safetensors")).unlink()
    code, _, err = run([*FAST, "--model", str(folder), "--out", str(tmp_path / "x.wav")], capsys)
    assert_one_line_error(code, err, f"--model {str(folder)!r} could not be loaded", "diffusion_pytorch_model")
    assert "HF_HUB_OFFLINE" not in err  # a local folder: the Hub plays no part
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.parametrize("case", ["folder", "parent is a file", "mp3", "manifest is a folder"])
def test_unwritable_outputs_are_refused_before_loading(tmp_path, capsys, no_loading, case):
    if case == "folder":
        out = tmp_path / "x.wav"
        out.mkdir()
        expected = "is a folder"
    elif case == "parent is a file":
        (tmp_path / "file").write_text("")
        out = tmp_path / "file" / "x.wav"
        expected = "is a file, not a folder"
    elif case == "mp3":
        out = tmp_path / "x.mp3"
        expected = "must end in .wav"
    else:
        out = tmp_path / "x.wav"
        (tmp_path / "x.json").mkdir()
        expected = "x.json' is a folder"
    code, _, err = run([*FAST, "--out", str(out)], capsys)
    assert_one_line_error(code, err, "--out", expected)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_folder_is_refused(tmp_path, capsys, no_loading):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        code, _, err = run([*FAST, "--out", str(folder / "x.wav")], capsys)
    finally:
        folder.chmod(0o700)
    assert_one_line_error(code, err, "--out", "is not writable")


def test_debug_flag_shows_the_exception(tmp_path):
    with pytest.raises(UserError, match="--device 'foo'"):
        main([*FAST, "--out", str(tmp_path / "x.wav"), "--device", "foo", "--debug"])


def test_installed_script_reports_one_line_and_exit_code_2(tmp_path):
    script = shutil.which("tango-af-generate")
    if script is None:
        pytest.skip("tango-af-generate is not installed")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("TANGO_AF_DEBUG", None)
    result = subprocess.run(
        [script, *FAST, "--seed", str(2**70), "--out", str(tmp_path / "x.wav")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"error: --seed {2**70}: must be an integer in [0, 2**64-1]."
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- non-finite audio


def test_non_finite_candidate_is_never_written(tmp_path, capsys, monkeypatch):
    """A float16 overflow in the VAE decoder of the second candidate: nothing is written, the candidate is named."""
    load = generate.load_pipeline

    def load_overflowing(*args, **kwargs):
        pipe = load(*args, **kwargs)

        def overflow(module, inputs, output):
            output = output.clone()
            output[1] = output[1] * 1e5 + 7e4  # past float16's 65504: inf, then NaN through the decoder's norms
            return output

        pipe.vae.decoder.conv_in.register_forward_hook(overflow)
        return pipe

    monkeypatch.setattr(generate, "load_pipeline", load_overflowing)
    out = tmp_path / "x.wav"
    code, _, err = run([*FAST, "--num-waveforms", "2", "--dtype", "float16", "--out", str(out)], capsys)
    assert_one_line_error(code, err, f"candidate 1 (for {str(tmp_path / 'x_1.wav')!r}) came out non-finite", "float16")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- writing


def test_fewer_candidates_later_removes_the_earlier_runs_extra_files(tmp_path, capsys):
    out = tmp_path / "x.wav"
    assert main([*FAST, "--num-waveforms", "3", "--out", str(out)]) == 0
    (tmp_path / "x_5.wav").write_bytes(b"a file this tool did not write")
    capsys.readouterr()
    assert main([*FAST, "--prompt", "wind", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "x.wav", "x_5.wav"]
    assert f"removed {tmp_path / 'x_1.wav'}" in printed and f"removed {tmp_path / 'x_2.wav'}" in printed
    assert f"wrote {out}" in printed and "replacing an earlier run's file" in printed
    record = json.loads((tmp_path / "x.json").read_text())
    assert record["prompt"] == "wind" and [f["name"] for f in record["files"]] == ["x.wav"]
    assert (tmp_path / "x_5.wav").read_bytes() == b"a file this tool did not write"


def test_a_candidate_changed_since_is_kept(tmp_path, capsys):
    out = tmp_path / "x.wav"
    main([*FAST, "--num-waveforms", "2", "--out", str(out)])
    audio, rate = sf.read(tmp_path / "x_1.wav")
    sf.write(tmp_path / "x_1.wav", audio * 0.5, rate)  # the user edited it
    capsys.readouterr()
    assert main([*FAST, "--out", str(out)]) == 0
    assert f"kept {tmp_path / 'x_1.wav'}" in capsys.readouterr().out
    np.testing.assert_allclose(sf.read(tmp_path / "x_1.wav")[0], audio * 0.5, atol=1 / 32767)


def test_files_the_tool_did_not_write_are_replaced_only_with_overwrite(tmp_path, capsys):
    out = tmp_path / "x.wav"
    out.write_bytes(b"mine")
    code, _, err = run([*FAST, "--out", str(out)], capsys)
    assert_one_line_error(code, err, f"--out {str(out)!r} exists and was not written by", "--overwrite")
    assert out.read_bytes() == b"mine"

    (tmp_path / "y.json").write_text('{"my": "notes"}')
    code, _, err = run([*FAST, "--out", str(tmp_path / "y.wav")], capsys)
    assert_one_line_error(code, err, "y.json' exists and is not a record written by tango-af-generate")
    assert (tmp_path / "y.json").read_text() == '{"my": "notes"}'

    code, printed, _ = run([*FAST, "--out", str(out), "--overwrite"], capsys)
    assert code == 0 and "replacing an earlier run's file" in printed
    assert sf.read(out)[0].shape == (round(0.32 * 16000),)


def test_a_failed_write_leaves_everything_as_it_was(tmp_path, capsys, monkeypatch):
    out = tmp_path / "x.wav"
    main([*FAST, "--num-waveforms", "2", "--out", str(out)])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    write = sf.write
    calls = []

    def fail_on_second(file, *args, **kwargs):
        calls.append(file)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", str(file))
        return write(file, *args, **kwargs)

    monkeypatch.setattr(generate.sf, "write", fail_on_second)
    code, _, err = run([*FAST, "--prompt", "wind", "--num-waveforms", "2", "--out", str(out)], capsys)
    assert code != 0 and "No space left on device" in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temporary file left either
