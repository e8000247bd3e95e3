"""Tests of the Space (`spaces/app.py`) through its HTTP API, as a user of the Space would call it, plus its model
resolution, its ZeroGPU decoration and its independence from the rest of the project."""

import ast
import dataclasses
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError
from PIL import Image

from .conftest import APP_PATH, FAST, launched, load_app_module

MAX_SLOTS = 4
MEL_BINS = 64  # of the debug pipeline's vocoder


@pytest.fixture(scope="module")
def served(app, tiny_pipe):
    """One launched app for all client tests of this module."""
    demo = app.build_demo(tiny_pipe, "tiny-debug")
    with launched(demo) as url:
        yield types.SimpleNamespace(demo=demo, url=url, client=Client(url, verbose=False))


def generate(
    client,
    prompt="A dog barks as a car passes by",
    negative_prompt="",
    duration_s=FAST["duration_s"],
    steps=FAST["steps"],
    guidance_scale=3.0,
    seed=0,
    random_seed=False,
    candidates=1,
):
    """Calls `/generate`; returns (audio updates, image updates, settings)."""
    result = client.predict(
        prompt,
        negative_prompt,
        duration_s,
        steps,
        guidance_scale,
        seed,
        random_seed,
        candidates,
        api_name="/generate",
    )
    assert len(result) == 2 * MAX_SLOTS + 1
    return list(result[:MAX_SLOTS]), list(result[MAX_SLOTS : 2 * MAX_SLOTS]), result[-1]


def read_audio(update) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(update["value"], dtype="float32")
    return audio, rate


def patch_pipeline_call(monkeypatch, pipe, wrapper):
    """Replaces the pipeline's `__call__` with `wrapper(original, pipe, *args, **kwargs)` for one test."""
    original = type(pipe).__call__

    def patched(self, *args, **kwargs):
        return wrapper(original, self, *args, **kwargs)

    monkeypatch.setattr(type(pipe), "__call__", patched)


# ---------------------------------------------------------------------------------------------------- generation


@pytest.mark.parametrize("candidates, duration_s", [(1, 1.0), (3, 1.5)])
def test_generate_returns_ranked_wavs_mels_and_settings(served, candidates, duration_s):
    audios, images, settings = generate(served.client, duration_s=duration_s, candidates=candidates, seed=11)

    expected_samples = round(duration_s * 16000)
    scores = settings["clap_scores"]
    assert len(scores) == candidates
    assert scores == sorted(scores, reverse=True)
    for rank, (audio, image) in enumerate(zip(audios[:candidates], images[:candidates]), start=1):
        assert audio["visible"] is True and image["visible"] is True
        assert audio["label"] == f"#{rank} · CLAP {scores[rank - 1]:.3f}"
        assert Path(audio["value"]).suffix == ".wav"
        info = sf.info(audio["value"])
        assert (info.format, info.samplerate, info.channels, info.frames) == ("WAV", 16000, 1, expected_samples)
        waveform, _ = read_audio(audio)
        assert np.abs(waveform).max() > 0, "a silent file"
        with Image.open(image["value"]) as picture:
            assert picture.format == "PNG"
            width, height = picture.size
        # The spectrogram is cut to the audio's own frames (hop 160), not the padded latent's.
        frames = math.ceil(expected_samples / 160)
        assert width >= 512 and width % frames == 0
        assert height >= 256 and height % MEL_BINS == 0
    for audio, image in zip(audios[candidates:], images[candidates:]):
        assert audio["visible"] is False and audio["value"] is None
        assert image["visible"] is False and image["value"] is None
    assert settings == {
        "prompt": "A dog barks as a car passes by",
        "negative_prompt": None,
        "duration_s": duration_s,
        "steps": FAST["steps"],
        "guidance_scale": 3.0,
        "seed": 11,
        "random_seed": False,
        "candidates": candidates,
        "model": "tiny-debug",
        "sampling_rate": 16000,
        "clap_scores": scores,
    }


def test_file_names_are_made_by_the_app_not_the_prompt(served):
    audios, _, _ = generate(served.client, prompt="../../etc/passwd; rm -rf ~ <x>.wav", seed=9)
    assert Path(audios[0]["value"]).name == "tango-af_seed9_1.wav"


def test_candidates_are_distinct_clips(served):
    audios, _, _ = generate(served.client, candidates=2, seed=3)
    first, second = read_audio(audios[0])[0], read_audio(audios[1])[0]
    assert not np.array_equal(first, second)


def test_same_seed_reproduces_and_another_seed_differs(served):
    first = read_audio(generate(served.client, seed=7)[0][0])[0]
    again = read_audio(generate(served.client, seed=7)[0][0])[0]
    other = read_audio(generate(served.client, seed=8)[0][0])[0]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_random_seed_is_recorded_and_reproduces(served, app):
    audios, _, settings = generate(served.client, seed=0, random_seed=True)
    drawn = settings["seed"]
    assert settings["random_seed"] is True
    assert isinstance(drawn, int) and app.LIMITS.min_seed <= drawn <= app.LIMITS.max_seed

    replay_audios, _, replay = generate(served.client, seed=drawn, random_seed=False)
    assert replay["seed"] == drawn and replay["random_seed"] is False
    np.testing.assert_array_equal(read_audio(audios[0])[0], read_audio(replay_audios[0])[0])


def test_negative_prompt_reaches_the_pipeline(served):
    plain_audios, _, plain = generate(served.client, seed=5)
    steered_audios, _, steered = generate(served.client, seed=5, negative_prompt="  crowd noise  ")
    assert plain["negative_prompt"] is None
    assert steered["negative_prompt"] == "crowd noise"
    assert not np.array_equal(read_audio(plain_audios[0])[0], read_audio(steered_audios[0])[0])


def test_progress_follows_the_denoising_steps(served, tiny_pipe, monkeypatch):
    def slow_steps(original, pipe, *args, **kwargs):
        callback = kwargs["callback_on_step_end"]

        def slower(*callback_args):
            result = callback(*callback_args)
            time.sleep(0.3)  # longer than Gradio's progress polling, so that every step is seen
            return result

        return original(pipe, *args, **{**kwargs, "callback_on_step_end": slower})

    patch_pipeline_call(monkeypatch, tiny_pipe, slow_steps)
    job = served.client.submit("Rain on a roof", "", 1.0, 4, 3.0, 0, False, 1, api_name="/generate")
    seen = []
    while not job.done():
        for unit in job.status().progress_data or []:
            if (unit.desc, unit.index, unit.length) not in seen:
                seen.append((unit.desc, unit.index, unit.length))
        time.sleep(0.05)
    job.result(timeout=60)
    denoising = [(index, length) for desc, index, length in seen if desc == "Denoising"]
    assert denoising == [(1, 4), (2, 4), (3, 4), (4, 4)]


# ---------------------------------------------------------------------------------------------------- limits


MAX_SEED = 2**31 - 1

# (field, bad value, strings the message must contain)
BAD_INPUTS = [
    ("prompt", "", ["Prompt", "empty"]),
    ("prompt", "   \n ", ["Prompt", "empty"]),
    ("prompt", "x" * 301, ["Prompt", "301", "300"]),
    ("prompt", 42, ["Prompt", "42"]),
    ("negative_prompt", "y" * 301, ["Negative prompt", "301", "300"]),
    ("duration_s", 0.5, ["Duration", "0.5", "1", "10"]),
    ("duration_s", 10.5, ["Duration", "10.5", "1", "10"]),
    ("duration_s", "5", ["Duration", "'5'", "1", "10"]),
    ("steps", 0, ["Steps", "0", "1", "200"]),
    ("steps", 201, ["Steps", "201", "1", "200"]),
    ("steps", 2.5, ["Steps", "2.5", "whole number", "200"]),
    ("guidance_scale", 0.5, ["Guidance", "0.5", "1", "10"]),
    ("guidance_scale", 10.5, ["Guidance", "10.5", "1", "10"]),
    ("guidance_scale", True, ["Guidance", "True", "1", "10"]),
    ("candidates", 0, ["Candidates", "0", "1", "4"]),
    ("candidates", 5, ["Candidates", "5", "1", "4"]),
    ("seed", -1, ["Seed", "-1", "0", str(MAX_SEED)]),
    ("seed", MAX_SEED + 1, ["Seed", str(MAX_SEED + 1), "0", str(MAX_SEED)]),
    ("seed", 1.5, ["Seed", "1.5", "whole number"]),
    ("random_seed", "yes", ["Random seed", "'yes'"]),
]


@pytest.mark.parametrize("field, value, expected", BAD_INPUTS, ids=[f"{f}={v!r}"[:40] for f, v, _ in BAD_INPUTS])
def test_out_of_range_or_wrong_type_input_is_refused_with_its_value_and_range(served, field, value, expected):
    arguments = {"prompt": "A dog barks", "seed": 0}
    arguments[field] = value
    with pytest.raises(AppError) as error:
        generate(served.client, **arguments)
    message = str(error.value)
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"
    assert "Traceback" not in message


def test_limits_are_shown_in_the_ui(app, served):
    limits = app.LIMITS
    components = {getattr(block, "label", None): block for block in served.demo.blocks.values()}
    ranges = {
        "Duration (s)": (limits.min_duration_s, limits.max_duration_s),
        "Denoising steps": (limits.min_steps, limits.max_steps),
        "Guidance scale": (limits.min_guidance, limits.max_guidance),
        "Candidates (ranked by CLAP)": (limits.min_candidates, limits.max_candidates),
        "Seed": (limits.min_seed, limits.max_seed),
    }
    for label, (low, high) in ranges.items():
        assert (components[label].minimum, components[label].maximum) == (low, high), label
    assert components["Prompt"].max_length == limits.max_prompt_chars
    markdown = [block.value for block in served.demo.blocks.values() if type(block).__name__ == "Markdown"]
    assert limits.describe() in markdown
    for number in ("300", "1-10 s", "1-200 steps", "1-4 candidates", str(MAX_SEED)):
        assert number in limits.describe()


def test_unexpected_pipeline_error_is_logged_but_not_shown(served, tiny_pipe, monkeypatch, caplog):
    def explode(original, pipe, *args, **kwargs):
        raise RuntimeError("secret internal detail")

    patch_pipeline_call(monkeypatch, tiny_pipe, explode)
    with caplog.at_level(logging.ERROR), pytest.raises(AppError) as error:
        generate(served.client)
    message = str(error.value)
    assert "failed unexpectedly" in message
    for leak in ("secret internal detail", "RuntimeError", "Traceback", 'File "'):
        assert leak not in message

    logged = [record for record in caplog.records if record.exc_info]
    assert len(logged) == 1
    assert "secret internal detail" in str(logged[0].exc_info[1])
    reference = message.split("reference ")[1].split(")")[0]
    assert reference in logged[0].getMessage()

    # The app is still healthy afterwards.
    monkeypatch.undo()
    _, _, settings = generate(served.client)
    assert settings["candidates"] == 1


def test_unexpected_error_after_generation_is_logged_but_not_shown(served, app, monkeypatch, caplog):
    def broken_disk(*args, **kwargs):
        raise OSError("No space left on /secret/path")

    monkeypatch.setattr(app.sf, "write", broken_disk)
    with caplog.at_level(logging.ERROR), pytest.raises(AppError) as error:
        generate(served.client)
    message = str(error.value)
    assert "failed unexpectedly" in message and "/secret/path" not in message and "OSError" not in message
    assert [str(record.exc_info[1]) for record in caplog.records if record.exc_info] == [
        "No space left on /secret/path"
    ]


# ---------------------------------------------------------------------------------------------------- queue


def test_queue_is_configured_from_limits(app, served):
    assert served.demo._queue.default_concurrency_limit == app.LIMITS.concurrency_limit == 1
    assert served.demo._queue.max_size == app.LIMITS.queue_max_size


def test_requests_run_one_at_a_time(served, tiny_pipe, monkeypatch):
    lock, active, peak = threading.Lock(), [0], [0]

    def counting(original, pipe, *args, **kwargs):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(0.3)
            return original(pipe, *args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    patch_pipeline_call(monkeypatch, tiny_pipe, counting)
    jobs = [
        served.client.submit("A bell rings", "", 1.0, 2, 3.0, seed, False, 1, api_name="/generate")
        for seed in range(3)
    ]
    seeds = [job.result(timeout=120)[-1]["seed"] for job in jobs]
    assert seeds == [0, 1, 2]
    assert peak[0] == 1


def test_queue_refuses_requests_beyond_its_size(app, tiny_pipe, monkeypatch):
    demo = app.build_demo(tiny_pipe, "tiny-debug", limits=dataclasses.replace(app.LIMITS, queue_max_size=1))
    entered, release = threading.Event(), threading.Event()

    def gated(original, pipe, *args, **kwargs):
        entered.set()
        release.wait(60)
        return original(pipe, *args, **kwargs)

    patch_pipeline_call(monkeypatch, tiny_pipe, gated)
    arguments = ("A bell rings", "", 1.0, 2, 3.0, 0, False, 1)
    with launched(demo) as url:
        client = Client(url, verbose=False)
        running = client.submit(*arguments, api_name="/generate")
        assert entered.wait(60)
        waiting = client.submit(*arguments, api_name="/generate")
        deadline = time.time() + 30
        while len(demo._queue) < 1 and time.time() < deadline:
            time.sleep(0.05)
        refused = client.submit(*arguments, api_name="/generate")
        with pytest.raises(QueueError, match="Queue is full"):
            refused.result(timeout=60)
        release.set()
        assert running.result(timeout=60)[-1]["seed"] == 0
        assert waiting.result(timeout=60)[-1]["seed"] == 0


# ---------------------------------------------------------------------------------------------------- ZeroGPU


def test_generation_runs_inside_spaces_gpu_with_an_estimated_duration(tiny_pipe, monkeypatch):
    decorations, calls = [], []

    def fake_gpu(task=None, *, duration=None, **kwargs):
        def decorate(function):
            decorations.append({"function": function, "duration": duration})

            def wrapper(*args, **kwargs):
                calls.append(args)
                return function(*args, **kwargs)

            return wrapper

        return decorate(task) if callable(task) else decorate

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=fake_gpu))
    app = load_app_module()
    assert app.GPU is fake_gpu

    demo = app.build_demo(tiny_pipe, "tiny-debug")
    assert len(decorations) == 1
    duration = decorations[0]["duration"]
    assert callable(duration)

    # The event handler goes through the decorated function, and ZeroGPU gets a duration for that very request.
    handler = next(fn for fn in demo.fns.values() if fn.api_name == "generate").fn
    result = handler("A cat meows", "", 1.0, 3, 3.0, 0, False, 2)
    assert len(calls) == 1
    request, request_id = calls[0][:2]
    assert (request.prompt, request.steps, request.candidates) == ("A cat meows", 3, 2)
    assert isinstance(request_id, str) and request_id
    assert result[0]["label"].startswith("#1 · CLAP ") and result[2]["visible"] is False

    limits = app.LIMITS
    # ZeroGPU calls it with the decorated function's own arguments.
    small = duration(*calls[0])
    large = duration(dataclasses.replace(request, steps=100, candidates=2, duration_s=10.0), request_id)
    largest = duration(
        dataclasses.replace(request, steps=limits.max_steps, candidates=4, duration_s=10.0), request_id, None
    )
    assert all(isinstance(seconds, int) for seconds in (small, large, largest))
    assert limits.gpu_base_s <= small < large <= largest <= limits.max_gpu_s


@pytest.mark.parametrize("shadowing", ["missing", "without_gpu"])
def test_gpu_falls_back_to_a_no_op_decorator(shadowing, monkeypatch):
    # "missing": no HF `spaces` installed; "without_gpu": the project's own package `spaces` shadows HF's.
    monkeypatch.setitem(sys.modules, "spaces", None if shadowing == "missing" else types.ModuleType("spaces"))
    app = load_app_module()

    def task(x):
        return x + 1

    assert app.GPU(task) is task
    assert app.GPU(duration=60)(task) is task
    assert app.GPU()(task) is task


def test_gpu_duration_grows_with_work_and_is_capped(app):
    base = app.GenerationRequest("a", None, 5.0, 100, 3.0, 0, False, 1)
    seconds = [
        app.estimate_gpu_seconds(dataclasses.replace(base, **change))
        for change in (
            {},
            {"steps": 200},
            {"candidates": 4, "steps": 200},
            {"candidates": 4, "steps": 200, "duration_s": 10.0},
        )
    ]
    assert seconds == sorted(seconds) and len(set(seconds)) == len(seconds)
    tight = dataclasses.replace(app.LIMITS, max_gpu_s=20)
    assert app.estimate_gpu_seconds(dataclasses.replace(base, steps=200, candidates=4, duration_s=10.0), tight) == 20


# ---------------------------------------------------------------------------------------------------- rendering


def test_mel_image_has_time_on_x_and_low_frequencies_at_the_bottom(app):
    frames, bins = 100, 64
    mel = np.zeros((frames, bins), dtype=np.float32)
    mel[:, :8] = 1.0  # loud low frequencies, all the time
    mel[:10, :] = 1.0  # loud everywhere during the first 10 frames

    image = app.render_mel(mel)
    height, width, channels = image.shape
    assert (image.dtype, channels) == (np.uint8, 3)
    assert height % bins == 0 and width % frames == 0
    assert height >= app.MEL_IMAGE_MIN_HEIGHT and width >= app.MEL_IMAGE_MIN_WIDTH

    brightness = image.astype(int).sum(axis=2)
    bright, dark = brightness.max(), brightness.min()
    assert bright > dark
    assert (brightness[-1, :] == bright).all(), "low frequencies must be at the bottom"
    assert brightness[0, -1] == dark, "high frequencies, late: quiet, at the top right"
    assert (brightness[:, 0] == bright).all(), "the first frames must be on the left"

    cropped = app.render_mel(mel[None], num_frames=50)  # a leading axis of 1 is accepted
    assert cropped.shape[1] % 50 == 0 and cropped.shape[1] // 50 == math.ceil(app.MEL_IMAGE_MIN_WIDTH / 50)
    with pytest.raises(ValueError, match="frames, mel_bins"):
        app.render_mel(np.zeros(10))


def test_candidate_label(app):
    assert app.candidate_label(1, 0.31234) == "#1 · CLAP 0.312"
    assert app.candidate_label(3, None) == "#3"


# ---------------------------------------------------------------------------------------------------- model choice


@pytest.fixture
def app_copy(tmp_path, monkeypatch):
    """`app.py` alone in a folder, as on the Hub, with no model named anywhere yet."""
    monkeypatch.delenv("TANGO_AF_MODEL", raising=False)
    folder = tmp_path / "space"
    folder.mkdir()
    shutil.copy(APP_PATH, folder / "app.py")
    return types.SimpleNamespace(folder=folder, module=load_app_module(folder / "app.py"))


def test_resolve_model_order(app_copy, monkeypatch):
    resolve, folder = app_copy.module.resolve_model, app_copy.folder
    (folder / "model").mkdir()
    (folder / "configured").mkdir()
    (folder / "space_config.json").write_text(json.dumps({"model": "configured"}))
    monkeypatch.setenv("TANGO_AF_MODEL", "org/from-env")

    assert resolve("org/from-arg") == "org/from-arg"
    assert resolve(None) == "org/from-env"
    assert resolve("") == "org/from-env"

    monkeypatch.delenv("TANGO_AF_MODEL")
    # A relative folder in space_config.json is relative to app.py's folder, not the working directory.
    assert resolve(None) == str(folder / "configured")
    (folder / "space_config.json").write_text(json.dumps({"model": "org/from-config"}))
    assert resolve(None) == "org/from-config"

    (folder / "space_config.json").unlink()
    assert resolve(None) == str(folder / "model")


def test_resolve_model_without_any_model_names_all_four_places(app_copy):
    with pytest.raises(app_copy.module.ModelNotFoundError) as error:
        app_copy.module.resolve_model(None)
    for place in ("--model", "TANGO_AF_MODEL", "space_config.json", "model/"):
        assert place in str(error.value)


@pytest.mark.parametrize("content", ["{not json", json.dumps({"models": "x"}), json.dumps({"model": ""}), "[]"])
def test_resolve_model_rejects_a_broken_space_config(app_copy, content):
    (app_copy.folder / "model").mkdir()  # present, but a broken config must not be silently skipped
    (app_copy.folder / "space_config.json").write_text(content)
    with pytest.raises(app_copy.module.ModelNotFoundError, match="space_config.json"):
        app_copy.module.resolve_model(None)


def test_main_loads_the_model_and_launches_on_the_given_address(app, tiny_model_dir, monkeypatch):
    launches = []
    monkeypatch.setattr(app.gr.Blocks, "launch", lambda self, **kwargs: launches.append((self, kwargs)))
    app.main(["--model", str(tiny_model_dir), "--host", "127.0.0.1", "--port", "7861"])

    ((demo, kwargs),) = launches
    assert kwargs["server_name"] == "127.0.0.1" and kwargs["server_port"] == 7861
    # Gradio 6 takes theme and CSS at launch.
    assert kwargs["theme"] is app.THEME and kwargs["css"] == app.CSS
    assert demo._queue.max_size == app.LIMITS.queue_max_size
    assert any(f"`{tiny_model_dir.name}`" in str(getattr(block, "value", "")) for block in demo.blocks.values())


def _example_samples(demo) -> list[list[str]]:
    (dataset,) = [block for block in demo.blocks.values() if type(block).__name__ == "Dataset"]
    return [list(sample) for sample in dataset.samples]


def test_a_model_folder_brings_its_own_example_prompts(app, tiny_model_dir, tmp_path, monkeypatch):
    launches = []
    monkeypatch.setattr(app.gr.Blocks, "launch", lambda self, **kwargs: launches.append(self))
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "example_prompts.json").write_text(json.dumps(["A siren wails", " A bell rings "]))
    app.main(["--model", str(folder)])
    assert _example_samples(launches[-1]) == [["A siren wails"], ["A bell rings"]]
    # Without the file (or for a Hub id), the AudioCaps-style prompts.
    assert app.example_prompts(str(tiny_model_dir)) == app.EXAMPLE_PROMPTS
    assert app.example_prompts("org/some-model") == app.EXAMPLE_PROMPTS


@pytest.mark.parametrize("content", ["{not json", "[]", json.dumps(["ok", ""]), json.dumps({"prompts": ["a"]})])
def test_a_broken_example_prompts_file_is_named(app, tmp_path, content):
    (tmp_path / "example_prompts.json").write_text(content)
    with pytest.raises(ValueError, match="example_prompts.json"):
        app.example_prompts(str(tmp_path))


def test_host_and_port_default_to_the_spaces_environment(app, monkeypatch):
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    args = app.build_parser().parse_args([])
    assert (args.model, args.host, args.port) == (None, "0.0.0.0", 7860)

    monkeypatch.setenv("GRADIO_SERVER_NAME", "127.0.0.2")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "9001")
    args = app.build_parser().parse_args([])
    assert (args.host, args.port) == ("127.0.0.2", 9001)


# ---------------------------------------------------------------------------------------------------- self-contained

ALLOWED_THIRD_PARTY = {"gradio", "torch", "diffusers", "numpy", "matplotlib", "soundfile", "scipy", "spaces"}


def test_app_imports_only_the_space_requirements():
    tree = ast.parse(APP_PATH.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative imports do not exist in a Space repo"
            imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names)
    assert third_party <= ALLOWED_THIRD_PARTY, third_party - ALLOWED_THIRD_PARTY

    requirements = (APP_PATH.parent / "requirements.txt").read_text().lower()
    for package in third_party - {"gradio"}:  # the Space's SDK provides gradio
        assert package in requirements, f"{package} is imported but not in requirements.txt"


def test_app_runs_alone_and_exits_clearly_without_a_model(tmp_path):
    folder = tmp_path / "space"
    folder.mkdir()
    shutil.copy(APP_PATH, folder / "app.py")
    # The project's packages are made unimportable, as they are on the Hub.
    blocker = (
        "import runpy, sys\n"
        "for name in ('pipelines', 'training', 'datasets_scripts', 'model_cards'):\n"
        "    sys.modules[name] = None\n"
        "sys.argv = ['app.py']\n"
        "runpy.run_path('app.py', run_name='__main__')\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "TANGO_AF_MODEL"}
    completed = subprocess.run(
        [sys.executable, "-c", blocker], check=False, cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 2, completed.stderr[-2000:]
    for place in ("--model", "TANGO_AF_MODEL", "space_config.json", "model/"):
        assert place in completed.stderr
    assert "Traceback" not in completed.stderr
