"""The shared command-line behaviour: one line per user error, exit codes, `--debug`, return values."""

import argparse

import pytest
import torch

from pipelines.cli import (
    DEBUG_ENV_VAR,
    EXIT_FAILURE,
    EXIT_USER_ERROR,
    UserError,
    add_debug_argument,
    check_output_file,
    command_line,
    device_problem,
    resolve_device,
)


def _command(raise_what=None, result=None):
    @command_line
    def main(argv=None):
        parser = add_debug_argument(argparse.ArgumentParser())
        parser.add_argument("--x", type=int, default=0)
        parser.parse_args(argv)
        if raise_what is not None:
            raise raise_what
        return result

    return main


@pytest.mark.parametrize(
    "error, expected",
    [
        (
            UserError("--seconds 1e9 is longer than --max-seconds 60"),
            "error: --seconds 1e9 is longer than --max-seconds 60",
        ),
        (ValueError("bad\nvalue  'x'"), "error: bad value 'x'"),
        (
            FileNotFoundError(2, "No such file or directory", "/nowhere/x.wav"),
            "error: No such file or directory: '/nowhere/x.wav'",
        ),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(capsys, monkeypatch, error, expected):
    monkeypatch.delenv(DEBUG_ENV_VAR, raising=False)
    assert _command(error)([]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.strip() == expected
    assert "Traceback" not in err


def test_unexpected_errors_are_one_line_with_exit_code_1_and_point_at_debug(capsys, monkeypatch):
    monkeypatch.delenv(DEBUG_ENV_VAR, raising=False)
    assert _command(RuntimeError("kaput"))([]) == EXIT_FAILURE
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "RuntimeError: kaput" in err and "--debug" in err


def test_debug_flag_and_env_variable_show_the_traceback(monkeypatch):
    monkeypatch.delenv(DEBUG_ENV_VAR, raising=False)
    with pytest.raises(UserError, match="nope"):
        _command(UserError("nope"))(["--debug"])
    monkeypatch.setenv(DEBUG_ENV_VAR, "1")
    with pytest.raises(RuntimeError, match="kaput"):
        _command(RuntimeError("kaput"))([])


@pytest.mark.parametrize("result, code", [(None, 0), ({"FD": 1.0}, 0), (3, 3), (True, 0)])
def test_return_values_become_exit_codes(result, code):
    assert _command(result=result)([]) == code


def test_argparse_errors_keep_their_own_exit(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _command()(["--x", "abc"])
    assert exit_info.value.code == 2
    assert "'abc'" in capsys.readouterr().err


def test_check_output_file(tmp_path):
    assert check_output_file(tmp_path / "new" / "deeper" / "out.wav") == tmp_path / "new" / "deeper" / "out.wav"
    assert not (tmp_path / "new").exists()  # nothing is created
    with pytest.raises(UserError, match="is a folder"):
        check_output_file(tmp_path, "--out")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_output_file(tmp_path / "file" / "out.wav", "--out")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    import os

    if os.access(locked, os.W_OK):  # root ignores permissions: nothing to check then
        pytest.skip("running as a user that can write anywhere")
    with pytest.raises(UserError, match="not writable"):
        check_output_file(locked / "out.wav", "--out")


def test_check_output_folder(tmp_path):
    from pipelines.cli import check_output_folder

    assert check_output_folder(tmp_path / "new") == tmp_path / "new" and not (tmp_path / "new").exists()
    assert check_output_folder(tmp_path / "empty_is_fine") == tmp_path / "empty_is_fine"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "conversion.json").write_text("{}")
    (tmp_path / "mine" / "unet").mkdir()
    assert check_output_folder(tmp_path / "mine", owned_marker="conversion.json") == tmp_path / "mine"
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("the user's")
    with pytest.raises(UserError, match="did not write"):
        check_output_folder(tmp_path / "theirs", owned_marker="conversion.json")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        check_output_folder(tmp_path / "a_file")


@pytest.mark.parametrize("name", ["./missing-folder", "/definitely/not/here", "a/b/c", "not a repo"])
def test_check_model_reference_names_a_missing_path(name):
    from pipelines.cli import check_model_reference

    with pytest.raises(UserError, match=f"--captioner {name!r} does not exist"):
        check_model_reference(name, "--captioner")


def test_check_model_reference_accepts_folders_and_repo_ids(tmp_path):
    from pipelines.cli import check_model_reference

    assert check_model_reference(str(tmp_path)) == str(tmp_path)
    assert check_model_reference("laion/clap-htsat-fused") == "laion/clap-htsat-fused"
    (tmp_path / "weights.bin").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        check_model_reference(str(tmp_path / "weights.bin"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the messages of a machine without a GPU")
@pytest.mark.parametrize(
    "name, problem",
    [
        ("cpu", None),
        ("banana", "is not a device name; expected cpu, cuda, cuda:N or mps."),
        ("cuda", "needs a CUDA GPU, and this machine has none visible"),
        ("cuda:3", "needs a CUDA GPU, and this machine has none visible"),
        ("meta", "needs a meta device, and none is available on this machine."),
    ],
)
def test_one_device_check_for_every_command(name, problem):
    """`tango-af-generate`, the evaluations and the dataset builder word a bad device the same way."""
    from datasets_scripts.validation import ArgumentError, check_device

    found = device_problem(name)
    assert (found is None) if problem is None else (found is not None and found.startswith(problem))
    if problem is None:
        assert resolve_device(name) == torch.device(name)
        assert check_device("device", name) == name
        return
    with pytest.raises(UserError) as info:
        resolve_device(name)
    assert str(info.value).startswith(f"--device {name!r} {problem}")
    with pytest.raises(ArgumentError) as info:
        check_device("device", name)
    assert f"{name!r} {problem}" in str(info.value)
