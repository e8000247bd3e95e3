"""Tests of the Space (`spaces/app.py`) through its HTTP API, as a user of the Space would call it, plus its model
resolution, its ZeroGPU decoration and its independence from the rest of the project."""

import ast
import asyncio
import dataclasses
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import types
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError
from PIL import Image

from .conftest import APP_PATH, FAST, free_port, launched, load_app_module, patch_pipeline_call, started, wait_until

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
        "non_finite_candidates": [],
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
HUGE = 10**400  # a 401-digit integer

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
    # Integers past the float range (the sweep's OverflowError), on every numeric input.
    ("duration_s", HUGE, ["Duration", "1000000000", "out of range", "10 s"]),
    ("guidance_scale", HUGE, ["Guidance scale", "1000000000", "out of range", "10"]),
    ("guidance_scale", -HUGE, ["Guidance scale", "-1000000000", "out of range"]),
    ("steps", HUGE, ["Steps", "1000000000", "out of range", "200"]),
    ("candidates", HUGE, ["Candidates", "1000000000", "out of range", "4"]),
    ("seed", HUGE, ["Seed", "1000000000", "out of range", str(MAX_SEED)]),
    ("seed", 1e300, ["Seed", "1e+300", "out of range"]),
    # The seed is checked even when a random one is drawn.
    ("seed", -5, ["Seed", "-5", "out of range"], {"random_seed": True}),
    # Numbers (and non-finite numbers) as text.
    ("steps", "25", ["Steps", "the text '25'", "whole number"]),
    ("duration_s", "nan", ["Duration", "the text 'nan'"]),
    ("guidance_scale", "inf", ["Guidance scale", "the text 'inf'"]),
    ("seed", "7", ["Seed", "the text '7'"]),
    # Booleans, lists and objects.
    ("steps", True, ["Steps", "the boolean True"]),
    ("candidates", False, ["Candidates", "the boolean False"]),
    ("random_seed", 1, ["Random seed", "1", "true or false"]),
    ("duration_s", [5], ["Duration", "a list [5]"]),
    ("prompt", ["a dog"], ["Prompt", "a list ['a dog']"]),
    ("seed", {"value": 1}, ["Seed", "an object {'value': 1}"]),
    ("prompt", None, ["Prompt", "empty"]),
    # Control characters; the messages escape them.
    ("prompt", "a dog\x00barks", ["Prompt", "control character", "'\\x00'", "character 6"]),
    ("negative_prompt", "\x1b[31mred", ["Negative prompt", "control character", "'\\x1b'", "character 1"]),
    ("prompt", "bell\x7f", ["Prompt", "control character", "'\\x7f'"]),
]


# (field, bad value, strings the message must contain, other inputs)
BAD_CASES = [case if len(case) == 4 else (*case, {}) for case in BAD_INPUTS]


@pytest.mark.parametrize(
    "field, value, expected, others", BAD_CASES, ids=[f"{f}={v!r}"[:40] for f, v, *_ in BAD_CASES]
)
def test_out_of_range_or_wrong_type_input_is_refused_with_its_value_and_range(served, field, value, expected, others):
    arguments = {"prompt": "A dog barks", "seed": 0, **others}
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


def test_non_finite_candidates_are_never_written_or_played(served, tiny_pipe, monkeypatch):
    def poison(ranks):
        def wrapper(original, pipe, *args, **kwargs):
            output = original(pipe, *args, **kwargs)
            for rank in ranks:
                output.audios[rank] = np.nan
            return output

        return wrapper

    patch_pipeline_call(monkeypatch, tiny_pipe, poison([1]))
    audios, _, settings = generate(served.client, candidates=2)
    assert settings["non_finite_candidates"] == [2]
    assert audios[0]["visible"] is not False and audios[1]["value"] is None and audios[1]["visible"] is False
    monkeypatch.undo()
    patch_pipeline_call(monkeypatch, tiny_pipe, poison([0, 1]))
    with pytest.raises(AppError, match="non-finite"):
        generate(served.client, candidates=2)


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


# What gradio_client cannot send (httpx encodes JSON with allow_nan=False, as UTF-8): NaN and infinities, and lone
# surrogates, which JSON's "\\ud800" escape makes. (field index, JSON literal, strings the message must contain)
RAW_BAD_INPUTS = [
    (0, r'"a dog \ud800 barks"', ["Prompt", "lone surrogate", "'\\ud800'", "character 7"]),
    (1, r'"\udfff"', ["Negative prompt", "lone surrogate", "'\\udfff'"]),
    (2, "NaN", ["Duration", "finite number", "nan"]),
    (4, "Infinity", ["Guidance scale", "finite number", "inf"]),
    (4, "-Infinity", ["Guidance scale", "finite number", "-inf"]),
    (3, "NaN", ["Steps", "whole number", "nan"]),
    (5, "Infinity", ["Seed", "whole number", "inf"]),
]
RAW_VALID = ['"A dog barks"', '""', "1.0", "2", "3.0", "0", "false", "1"]


def call_raw(url: str, data: list[str]) -> tuple[str, dict]:
    """Calls `/generate` through Gradio's REST API with a hand-written JSON body (`data`: one JSON literal per input);
    returns the stream's last event and its data."""
    body = '{"data": [' + ", ".join(data) + "]}"
    base = url.rstrip("/")
    posted = httpx.post(
        f"{base}/gradio_api/call/generate", content=body.encode("ascii"), headers={"Content-Type": "application/json"}
    )
    assert posted.status_code == 200, posted.text
    stream = httpx.get(f"{base}/gradio_api/call/generate/{posted.json()['event_id']}", timeout=120).text
    event, data = stream.strip().split("\n\n")[-1].split("\n")
    return event.removeprefix("event: "), json.loads(data.removeprefix("data: "))


@pytest.mark.parametrize("index, literal, expected", RAW_BAD_INPUTS, ids=[f"{i}={v}" for i, v, _ in RAW_BAD_INPUTS])
def test_non_finite_numbers_and_lone_surrogates_are_refused_by_name(served, index, literal, expected):
    data = list(RAW_VALID)
    data[index] = literal
    event, message = call_raw(served.url, data)
    assert event == "error" and message["title"] == "Invalid input"
    for part in expected:
        assert part in message["error"], f"{part!r} not in {message['error']!r}"


def test_the_raw_api_takes_a_valid_body(served):
    # What makes the refusals above the values' own, not the hand-written call's.
    event, data = call_raw(served.url, RAW_VALID)
    assert event == "complete" and data[-1]["steps"] == 2 and data[-1]["prompt"] == "A dog barks"


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


# ---------------------------------------------------------------------------------------------------- turns


def test_cancelled_requests_take_turns_and_stop_at_the_next_step(served, instrumented):
    # The sweep's case: submit, cancel, submit again... `/cancel` frees the queue slot at once, so each new request
    # starts while the cancelled one may still be running: they must still take turns on the pipeline.
    asked = 200
    jobs = []
    for index in range(4):
        jobs.append(served.client.submit("A bell rings", "", 1.0, asked, 3.0, index, False, 1, api_name="/generate"))
        wait_until(started(instrumented, index), what=f"request {index} to start")
        jobs[-1].cancel()
    wait_until(lambda: len(instrumented.calls) == 4 and all(c["done"] for c in instrumented.calls), what="the runs")
    assert instrumented.peak == 1
    assert [call["asked"] for call in instrumented.calls] == [asked] * 4
    ran = [call["ran"] for call in instrumented.calls]
    assert all(1 <= steps < asked for steps in ran), ran

    # The app still serves, one request at a time.
    _, _, settings = generate(served.client, seed=4)
    assert settings["seed"] == 4 and instrumented.calls[-1] == {"asked": FAST["steps"], "ran": 2, "done": True}
    assert instrumented.peak == 1


def test_the_pipeline_takes_one_request_at_a_time_whatever_the_queue_allows(app, tiny_pipe, instrumented):
    # Three handlers at once, beside any queue (and the queue itself configured to allow four).
    demo = app.build_demo(tiny_pipe, "tiny-debug", limits=dataclasses.replace(app.LIMITS, concurrency_limit=4))
    handler = next(fn for fn in demo.fns.values() if fn.api_name == "generate").fn

    async def three_at_once():
        return await asyncio.gather(*(handler("A bell rings", "", 1.0, 3, 3.0, seed, False, 1) for seed in range(3)))

    results = asyncio.run(three_at_once())
    assert sorted(result[-1]["seed"] for result in results) == [0, 1, 2]
    assert [call["ran"] for call in instrumented.calls] == [3, 3, 3]
    assert instrumented.peak == 1


def test_a_client_that_disconnects_stops_its_request(served, instrumented):
    # What a closed tab does to the event stream: Gradio notices the disconnection, and the run stops.
    asked = 200
    fn_index = next(index for index, fn in served.demo.fns.items() if fn.api_name == "generate")
    session = uuid.uuid4().hex
    base = served.url.rstrip("/")
    data = ["A bell rings", "", 1.0, asked, 3.0, 0, False, 1]
    joined = httpx.post(
        f"{base}/gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session}
    )
    assert joined.status_code == 200, joined.text
    with httpx.stream("GET", f"{base}/gradio_api/queue/data", params={"session_hash": session}, timeout=60) as events:
        for line in events.iter_lines():
            if '"progress"' in line and started(instrumented, 0)():
                break
    # Leaving the block closed the connection.
    wait_until(lambda: instrumented.calls[0]["done"], what="the run to stop")
    assert instrumented.calls[0]["ran"] < asked


def test_a_closed_session_stops_its_request(served, instrumented):
    # The `unload` event (Gradio's heartbeat stream closing with the tab) stops that session's requests.
    asked = 200
    job = served.client.submit("A bell rings", "", 1.0, asked, 3.0, 0, False, 1, api_name="/generate")
    wait_until(started(instrumented, 0), what="the request to start")
    (unload,) = [fn.fn for fn in served.demo.fns.values() if any(event == "unload" for _, event in fn.targets)]
    unload(types.SimpleNamespace(session_hash="another session"))
    # A stopped run would end after at most one more step: two more show that another session's end left it alone.
    steps = instrumented.calls[0]["ran"]
    wait_until(lambda: instrumented.calls[0]["ran"] >= steps + 2 or instrumented.calls[0]["done"], what="steps")
    assert not instrumented.calls[0]["done"]
    unload(types.SimpleNamespace(session_hash=served.client.session_hash))
    with pytest.raises(AppError, match="cancelled"):
        job.result(timeout=120)
    assert instrumented.calls[0]["done"] and instrumented.calls[0]["ran"] < asked


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
    result = asyncio.run(handler("A cat meows", "", 1.0, 3, 3.0, 0, False, 2))
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


@pytest.fixture
def launches(app, monkeypatch):
    """`main` runs up to `launch`, which records `(demo, kwargs)` instead of serving; the termination handler is
    recorded, not installed in the test process."""
    calls = []
    monkeypatch.setattr(app.gr.Blocks, "launch", lambda self, **kwargs: calls.append((self, kwargs)))
    monkeypatch.setattr(app, "install_termination_handler", lambda demo: calls.append(("handler", demo)))
    return calls


def test_main_loads_the_model_and_launches_on_the_given_address(app, tiny_model_dir, launches):
    app.main(["--model", str(tiny_model_dir), "--host", "127.0.0.1", "--port", "7861"])

    (_, handled), (demo, kwargs) = launches
    assert handled is demo
    assert kwargs["server_name"] == "127.0.0.1" and kwargs["server_port"] == 7861
    # Gradio 6 takes theme and CSS at launch; uploads are bounded there too.
    assert kwargs["theme"] is app.THEME and kwargs["css"] == app.CSS
    assert kwargs["max_file_size"] == app.LIMITS.max_upload_bytes
    assert demo._queue.max_size == app.LIMITS.queue_max_size
    assert any(f"`{tiny_model_dir.name}`" in str(getattr(block, "value", "")) for block in demo.blocks.values())


def _example_samples(demo) -> list[list[str]]:
    (dataset,) = [block for block in demo.blocks.values() if type(block).__name__ == "Dataset"]
    return [list(sample) for sample in dataset.samples]


def test_a_model_folder_brings_its_own_example_prompts(app, tiny_model_dir, tmp_path, launches):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "example_prompts.json").write_text(json.dumps(["A siren wails", " A bell rings "]))
    app.main(["--model", str(folder)])
    assert _example_samples(launches[-1][0]) == [["A siren wails"], ["A bell rings"]]
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


# ---------------------------------------------------------------------------------------------------- defaults

SMALL_DEFAULTS = {
    "audio_length_in_s": 1.5,
    "num_inference_steps": 2,
    "guidance_scale": 2.5,
    "num_waveforms_per_prompt": 2,
}


@pytest.fixture(scope="module")
def model_with_defaults(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny pipeline folder with a `generation_defaults.json`, as training writes it."""
    folder = tmp_path_factory.mktemp("with_defaults") / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "generation_defaults.json").write_text(json.dumps(SMALL_DEFAULTS))
    return folder


def test_a_model_folder_sets_the_defaults_and_the_api_needs_only_the_prompt(
    app, model_with_defaults, launches, monkeypatch
):
    app.main(["--model", str(model_with_defaults)])
    _, (demo, _) = launches
    monkeypatch.undo()  # serve it for real
    values = {getattr(block, "label", None): getattr(block, "value", None) for block in demo.blocks.values()}
    assert values["Duration (s)"] == 1.5 and values["Denoising steps"] == 2
    assert values["Guidance scale"] == 2.5 and values["Candidates (ranked by CLAP)"] == 2

    with launched(demo) as url:
        client = Client(url, verbose=False)
        parameters = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/generate"]
        required = [p["parameter_name"] for p in parameters["parameters"] if not p["parameter_has_default"]]
        assert required == ["prompt"]

        result = client.predict("A bell rings", api_name="/generate")
        expected = {"duration_s": 1.5, "steps": 2, "guidance_scale": 2.5, "candidates": 2, "negative_prompt": None}
        assert {key: result[-1][key] for key in expected} == expected
        assert result[-1]["random_seed"] is True
        assert sf.info(result[0]["value"]).frames == round(1.5 * 16000)

        # `null` (JSON clients) means the default too.
        event, data = call_raw(url, ['"A bell rings"', "null", "null", "null", "null", "7", "false", "null"])
        assert event == "complete", data
        assert {key: data[-1][key] for key in expected} == expected and data[-1]["seed"] == 7


def test_generation_defaults_are_clamped_to_the_limits_and_fill_in_missing_keys(app, tmp_path, caplog):
    limits = app.LIMITS
    (tmp_path / "generation_defaults.json").write_text(
        json.dumps({"audio_length_in_s": 10.24, "num_inference_steps": 1000, "guidance_scale": 0.5, "eta": 0.0})
    )
    with caplog.at_level(logging.WARNING):
        defaults = app.generation_defaults(str(tmp_path))
    assert (defaults.duration_s, defaults.steps, defaults.guidance_scale) == (
        limits.max_duration_s,
        limits.max_steps,
        limits.min_guidance,
    )
    # Keys the file leaves out keep the app's defaults.
    assert defaults.candidates == app.DEFAULTS.candidates and defaults.random_seed is app.DEFAULTS.random_seed
    logged = caplog.text
    for part in ("audio_length_in_s 10.24", "num_inference_steps 1000", "guidance_scale 0.5", "'eta'"):
        assert part in logged, part
    # A folder without the file, or a Hub model without one, keeps them all.
    (tmp_path / "generation_defaults.json").unlink()
    assert app.generation_defaults(str(tmp_path)) == app.DEFAULTS
    assert app.generation_defaults("org/some-model") == app.DEFAULTS


def test_a_mistyped_model_folder_is_named_before_anything_loads(app, tmp_path, launches, capsys):
    missing = str(tmp_path / "no-such-folder")
    with pytest.raises(ValueError, match="no-such-folder.*neither a folder nor a Hub model id"):
        app.generation_defaults(missing)
    with pytest.raises(SystemExit) as exit_info:
        app.main(["--model", missing])
    assert exit_info.value.code == 2 and launches == []
    error = capsys.readouterr().err
    assert "no-such-folder" in error and "Traceback" not in error


@pytest.mark.parametrize(
    "content, named",
    [
        ("{not json", "not valid JSON"),
        ("[2]", "JSON object"),
        (json.dumps({"num_inference_steps": 2.5}), "'num_inference_steps' must be a whole number, got 2.5"),
        (json.dumps({"num_waveforms_per_prompt": True}), "'num_waveforms_per_prompt' must be a whole number"),
        (json.dumps({"guidance_scale": "3"}), "'guidance_scale' must be a finite number, got the text '3'"),
        ('{"audio_length_in_s": NaN}', "'audio_length_in_s' must be a finite number, got nan"),
    ],
)
def test_a_broken_generation_defaults_file_is_named(app, tmp_path, content, named, launches, monkeypatch):
    (tmp_path / "generation_defaults.json").write_text(content)
    with pytest.raises(ValueError, match="generation_defaults.json") as error:
        app.generation_defaults(str(tmp_path))
    assert named in str(error.value)
    # The app refuses to start on it, with that message and no traceback, before loading the model.
    monkeypatch.setattr(app, "load_pipeline", lambda model: pytest.fail("loaded the model"))
    with pytest.raises(SystemExit) as exit_info:
        app.main(["--model", str(tmp_path)])
    assert exit_info.value.code == 2 and launches == []


def test_a_hub_model_brings_its_defaults_and_examples_too(app, tmp_path, monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    (tmp_path / "generation_defaults.json").write_text(json.dumps({"num_inference_steps": 50}))
    asked = []

    def fake_download(repo_id, filename, **kwargs):
        asked.append((repo_id, filename))
        if filename == "generation_defaults.json":
            return str(tmp_path / filename)
        raise LocalEntryNotFoundError(f"no {filename}")

    monkeypatch.setattr(app, "hf_hub_download", fake_download)
    assert app.generation_defaults("org/tango").steps == 50
    assert app.example_prompts("org/tango") == app.EXAMPLE_PROMPTS
    assert asked == [("org/tango", "generation_defaults.json"), ("org/tango", "example_prompts.json")]


# ---------------------------------------------------------------------------------------------------- server


def test_uploads_are_refused_above_the_limit(app, served):
    limit = app.LIMITS.max_upload_bytes
    upload = f"{served.url.rstrip('/')}/gradio_api/upload"
    for size in (limit + 1, 20 << 20):
        response = httpx.post(upload, files={"files": ("big.bin", b"x" * size)}, timeout=60)
        assert response.status_code == 413, (size, response.status_code, response.text[:200])
        assert str(limit) in response.text
    assert httpx.post(upload, files={"files": ("small.bin", b"x" * limit)}, timeout=60).status_code == 200


def test_sigterm_stops_the_app_and_removes_its_temporary_files(tiny_model_dir, tmp_path):
    temp, gradio_temp = tmp_path / "tmp", tmp_path / "gradio"
    temp.mkdir()
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "TANGO_AF_MODEL"}
    env.update(TMPDIR=str(temp), GRADIO_TEMP_DIR=str(gradio_temp))
    command = [sys.executable, str(APP_PATH), "--model", str(tiny_model_dir), "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert process.poll() is None, process.stdout.read()
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                break
            except Exception:  # not listening yet
                assert time.monotonic() < deadline, "the app did not start"
                time.sleep(0.5)
        client.predict("A bell rings", "", 1.0, 1, 3.0, 0, False, 1, api_name="/generate")
        (output_root,) = temp.glob("tango-af-space-*")
        assert list(output_root.rglob("*.wav")) and list(gradio_temp.rglob("*.wav"))

        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert not output_root.exists()
    assert not list(gradio_temp.rglob("*.wav")), "Gradio's copies of the outputs are left behind"


# ---------------------------------------------------------------------------------------------------- self-contained

ALLOWED_THIRD_PARTY = {
    "gradio",
    "torch",
    "diffusers",
    "huggingface_hub",
    "numpy",
    "matplotlib",
    "soundfile",
    "scipy",
    "spaces",
}


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
        assert package.replace("_", "-") in requirements, f"{package} is imported but not in requirements.txt"


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
