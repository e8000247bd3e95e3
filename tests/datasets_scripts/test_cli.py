"""`tango-af-dataset` on bad input: one line naming the flag and the value, exit code 2, no traceback, nothing
written; `--debug` shows the traceback. Also: where a build process takes its shard from, and the `tau` / `top_k`
checks of the loaders."""

from __future__ import annotations

import pytest

from datasets_scripts.cli import _shard, build_parser
from datasets_scripts.cli import main as cli_main
from datasets_scripts.validation import ArgumentError, shard_from_environment
from pipelines.cli import UserError

LAUNCHER_VARIABLES = (
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_COUNT",
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
)


@pytest.fixture(autouse=True)
def no_launcher(monkeypatch):
    """No Slurm array, torchrun or debug setting leaks in from the machine running the tests."""
    for name in LAUNCHER_VARIABLES + ("TANGO_AF_DEBUG",):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def place(tmp_path_factory, ffmpeg_audio):
    """A folder with one clip, a plain file, a folder that is not a build, and a path that does not exist."""
    root = tmp_path_factory.mktemp("place")
    ffmpeg_audio(root / "clips" / "a.wav")
    (root / "file.txt").write_text("not a folder\n")
    (root / "plain").mkdir()
    (root / "texts").mkdir()
    (root / "texts" / "README.txt").write_text("no audio here\n")
    (root / "empty").mkdir()
    return root


def run(argv, capsys):
    """The exit code and the error line (the last line of stderr; progress bars of model loading may come before)."""
    code = cli_main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert sum(line.startswith("error:") for line in lines) == (1 if code else 0)
    return code, lines[-1] if lines else ""


def build_argv(models, place, **flags):
    argv = ["build", "--audio-dir", place / "clips", "--output", place / "out", "--captioner", models["captioner"]]
    argv += ["--clap", models["clap"], "--num-captions", "2", "--top-k", "2", "--max-new-tokens", "3"]
    for flag, value in flags.items():
        flag = "--" + flag.replace("_", "-")
        if flag in argv:
            index = argv.index(flag)
            if value is None:
                del argv[index : index + 2]
            else:
                argv[index + 1] = value
        elif value is not None:
            argv += [flag, value]
    return argv


BUILD_CASES = [
    ({"audio_dir": "{place}/file.txt"}, "--audio-dir '{place}/file.txt' is a file, not a folder of audio files"),
    ({"audio_dir": "{place}/nowhere"}, "--audio-dir '{place}/nowhere' does not exist"),
    ({"output": "{place}/file.txt"}, "--output '{place}/file.txt' is a file, not a folder"),
    (
        {"captioner": "./no/such/folder"},
        "--captioner './no/such/folder' does not exist: it is not a folder, nor a Hub repo id",
    ),
    (
        {"captioner": "nobody/no-such-captioner"},
        (
            "--captioner 'nobody/no-such-captioner' is not a folder, and as a Hub repo id of an audio captioner "
            "checkpoint (Audio Flamingo 3 or Qwen2-Audio) it cannot be loaded: the Hub is switched off "
            "(HF_HUB_OFFLINE=1) and it is not in the local cache"
        ),
    ),
    (
        {"captioner": "{place}/plain"},
        "--captioner '{place}/plain' is a folder, but not one of an audio captioner checkpoint",
    ),
    ({"clap": "{place}/file.txt"}, "--clap '{place}/file.txt' is a file; give the folder of a CLAP checkpoint"),
    (
        {"clap": "nobody/no-such-clap"},
        "--clap 'nobody/no-such-clap' is not a folder, and as a Hub repo id of a CLAP checkpoint",
    ),
    ({"exclude_ids": "{place}/nowhere.csv"}, "--exclude-ids '{place}/nowhere.csv' does not exist"),
    ({"exclude_ids": "{place}/plain"}, "--exclude-ids '{place}/plain' is a folder; give a file"),
    ({"audioset_csv": "{place}/nowhere.csv"}, "--audioset-csv '{place}/nowhere.csv' does not exist"),
    ({"audio_dir": None, "hf_dataset": "./no/such/dataset"}, "--hf-dataset './no/such/dataset' does not exist"),
    (
        {"audio_dir": None, "hf_dataset": "nobody/no-such-dataset"},
        "--hf-dataset 'nobody/no-such-dataset' is not a folder, and as a Hub repo id of a dataset it cannot be loaded: the Hub is switched off",
    ),
    ({"audio_dir": None}, "give exactly one source: --audio-dir"),
    (
        {"audio_dir": "{place}/texts"},
        "--audio-dir '{place}/texts': no audio, none of the 1 entries is an audio clip (not_audio 1",
    ),
    ({"audio_dir": "{place}/empty"}, "--audio-dir '{place}/empty': the source is empty, there is no clip to caption"),
    ({"num_captions": "0"}, "--num-captions 0 must be at least 1"),
    ({"top_k": "3"}, "--top-k 3 is more than --num-captions (2), the captions sampled per window"),
    ({"top_k": "0"}, "--top-k 0 must be at least 1"),
    ({"unit_size": "0"}, "--unit-size 0 must be at least 1"),
    ({"batch_size": "-2"}, "--batch-size -2 must be at least 1"),
    ({"num_shards": "2"}, "--num-shards was given alone: give both --num-shards and --shard-index, or neither"),
    ({"num_shards": "2", "shard_index": "2"}, "--shard-index 2 must be at least 0 and at most 1"),
    ({"num_shards": "0", "shard_index": "0"}, "--num-shards 0 must be at least 1"),
    ({"max_new_tokens": "0"}, "--max-new-tokens 0 must be at least 1"),
    ({"seed": "-1"}, "--seed -1 must be at least 0 and at most 9223372036854775807"),
    ({"seed": str(2**63)}, "--seed 9223372036854775808 must be at least 0 and at most 9223372036854775807"),
    ({"num_proc": "0"}, "--num-proc 0 must be at least 1"),
    ({"device": "banana"}, "--device 'banana' is not a device name"),
]


@pytest.mark.parametrize(
    "flags, expected",
    BUILD_CASES,
    ids=[expected.split(" ")[0] + ":" + expected.split(" ")[1] for _, expected in BUILD_CASES],
)
def test_build_user_errors_are_one_line(models, place, capsys, flags, expected):
    flags = {k: (v.format(place=place) if isinstance(v, str) else v) for k, v in flags.items()}
    code, err = run(build_argv(models, place, **flags), capsys)
    assert code == 2
    assert err.startswith("error: ") and expected.format(place=place) in err
    assert not (place / "out").exists()


def test_a_cuda_device_without_a_gpu(models, place, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, err = run(build_argv(models, place, device="cuda:1"), capsys)
    assert code == 2 and "--device 'cuda:1' needs a CUDA GPU, and this machine has none visible" in err


def test_a_bad_launcher_environment_is_named(models, place, capsys, monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "5")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    code, err = run(build_argv(models, place), capsys)
    assert code == 2 and "SLURM_ARRAY_TASK_ID 5 does not fit an array of 2 tasks from 0" in err


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            ["merge", "--inputs", "{place}/nowhere", "--output", "{place}/out"],
            "--inputs '{place}/nowhere' does not exist",
        ),
        (
            ["merge", "--inputs", "{place}/plain", "--output", "{place}/out"],
            "--inputs '{place}/plain' is not an AF-AudioSet build folder: it has no build_config.json",
        ),
        (
            ["merge", "--inputs", "{place}/file.txt", "--output", "{place}/out"],
            "--inputs '{place}/file.txt' is a file",
        ),
        (
            ["import-released", "--json", "{place}/nowhere.json", "--output", "{place}/out"],
            "--json '{place}/nowhere.json' does not exist",
        ),
        (
            ["import-released", "--json", "{place}/plain", "--output", "{place}/out"],
            "--json '{place}/plain' is a folder; give a file",
        ),
        (
            ["import-released", "--json", "{place}/file.txt", "--output", "{place}/out"],
            "{place}/file.txt, line 1: not JSON",
        ),
        (["push", "--folder", "{place}/nowhere", "--repo-id", "me/x"], "--folder '{place}/nowhere' does not exist"),
        (
            ["push", "--folder", "{place}/file.txt", "--repo-id", "me/x"],
            "--folder '{place}/file.txt' is a file, not a folder of a built dataset",
        ),
        (["push", "--folder", "{place}/plain", "--repo-id", "me/a b"], "--repo-id 'me/a b' is not a Hub repo id"),
    ],
)
def test_other_commands_user_errors_are_one_line(place, capsys, argv, expected):
    code, err = run([a.format(place=place) for a in argv], capsys)
    assert code == 2 and err.startswith("error: ") and expected.format(place=place) in err
    assert not (place / "out").exists()


def test_import_released_with_a_missing_clap(place, capsys, tmp_path):
    released = tmp_path / "AF-AudioSet.json"
    released.write_text('{"ytid": "a", "caption": "A tone."}\n')
    code, err = run(
        [
            "import-released",
            "--json",
            released,
            "--output",
            tmp_path / "out",
            "--audio-dir",
            place / "clips",
            "--clap",
            "./nope",
        ],
        capsys,
    )
    assert code == 2 and "--clap './nope' does not exist" in err and not (tmp_path / "out").exists()


def test_debug_shows_the_traceback(models, place):
    with pytest.raises(UserError, match="--top-k 0 must be at least 1") as info:
        cli_main([str(a) for a in build_argv(models, place, top_k="0")] + ["--debug"])
    # The library's own error is chained, so the traceback shows where the value was checked.
    assert isinstance(info.value.__cause__, ArgumentError) and info.value.__cause__.argument == "top_k"


# ---------------------------------------------------------------------------------------------------- shards


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({}, None),
        ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8"}, (8, 3)),
        # --array=1-8: the index counts from the array's first task.
        ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "8"}, (8, 3)),
        ({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}, (4, 1)),
        # An array of 3 nodes each running 4 processes: task 2's process 1 is shard 2 * 4 + 1 of 12.
        ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "3", "RANK": "1", "WORLD_SIZE": "4"}, (12, 9)),
        # A Slurm job that is not an array sets no task count: it is not a shard.
        ({"SLURM_JOB_ID": "77"}, None),
    ],
)
def test_shard_from_environment(environ, expected):
    found = shard_from_environment(environ)
    assert (found if found is None else found[:2]) == expected


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"RANK": "0"}, "WORLD_SIZE is missing from the environment"),
        ({"RANK": "4", "WORLD_SIZE": "4"}, r"RANK 4 must be in \[0, 4\)"),
        (
            {"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"},
            "SLURM_ARRAY_TASK_ID 'x' in the environment must be a whole number",
        ),
        (
            {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "2"},
            "does not fit an array of 2 tasks from 1",
        ),
    ],
)
def test_bad_launcher_environment(environ, message):
    with pytest.raises(ArgumentError, match=message):
        shard_from_environment(environ)


def test_flags_take_precedence_over_the_environment(monkeypatch):
    parser = build_parser()
    base = ["build", "--audio-dir", "x", "--output", "y"]
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert _shard(parser.parse_args(base)) == (2, 1)
    assert _shard(parser.parse_args(base + ["--num-shards", "3", "--shard-index", "0"])) == (3, 0)
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert _shard(parser.parse_args(base)) == (1, 0)


# ---------------------------------------------------------------------------------------------------- loaders


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tau": "abc"}, r"tau 'abc' must be a finite number in \[-1.0, 1.0\]"),
        ({"tau": float("nan")}, r"tau nan must be a finite number"),
        ({"tau": float("inf")}, r"tau inf must be a finite number"),
        ({"tau": 1.5}, r"tau 1.5 must be in \[-1.0, 1.0\]"),
        ({"tau": True}, r"tau True must be a finite number"),
        ({"top_k": "3"}, r"top_k '3' must be a whole number"),
        ({"top_k": 2.5}, r"top_k 2.5 must be a whole number"),
        ({"top_k": 0}, r"top_k 0 must be at least 1"),
    ],
)
def test_loaders_name_a_bad_tau_or_top_k(tmp_path, kwargs, message):
    from datasets_scripts import AFAudioSet, load_af_audioset

    with pytest.raises(ValueError, match=message):
        load_af_audioset(tmp_path, **kwargs)
    with pytest.raises(ValueError, match=message):
        AFAudioSet(data_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"), **{"tau": 0.45, **kwargs})


def test_load_af_audioset_names_a_missing_folder(tmp_path):
    from datasets_scripts import load_af_audioset

    with pytest.raises(ValueError, match=r"path '.*nowhere' does not exist"):
        load_af_audioset(str(tmp_path / "nowhere"))
