"""Fixtures for the Space: the app module loaded from its file, a tiny saved pipeline, a launched app, and a
pipeline instrumented to count its concurrent calls and the steps they run."""

import contextlib
import socket
import threading
import time
import types
import uuid
from pathlib import Path

import pytest

from model_cards import space_card

APP_PATH = Path(__file__).resolve().parents[2] / "spaces" / "app.py"

# Small enough for a 2-core CPU: one second of audio, two denoising steps.
FAST = {"duration_s": 1.0, "steps": 2}


def load_app_module(path: Path = APP_PATH, name: str | None = None):
    """Imports `app.py` from its file, as the Space runs it, under a fresh module name unless one is given."""
    return space_card.load_app_module(path, name or f"tango_af_space_app_{uuid.uuid4().hex[:8]}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def launched(demo, **options):
    """Serves `demo` on 127.0.0.1 for the duration of the block, with `options` for `launch()` (the app's own
    `launch_options()` by default); yields its local URL."""
    if not options:
        options = space_card.load_app_module().launch_options()
    _, local_url, _ = demo.launch(
        server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True, **options
    )
    try:
        yield local_url
    finally:
        demo.close()


@pytest.fixture(scope="session")
def app():
    return load_app_module(name="tango_af_space_app")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The embedded untrained debug TangoCLAPPipeline (with CLAP scoring parts), saved as an ordinary folder."""
    from pipelines.generate import save_default_model

    return save_default_model(tmp_path_factory.mktemp("tiny_model"), model="debug")


@pytest.fixture(scope="session")
def tiny_pipe(app, tiny_model_dir):
    return app.load_pipeline(str(tiny_model_dir))


def patch_pipeline_call(monkeypatch, pipe, wrapper):
    """Replaces the pipeline's `__call__` with `wrapper(original, pipe, *args, **kwargs)` for one test."""
    original = type(pipe).__call__

    def patched(self, *args, **kwargs):
        return wrapper(original, self, *args, **kwargs)

    monkeypatch.setattr(type(pipe), "__call__", patched)


def wait_until(condition, timeout: float = 120.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def instrumented(tiny_pipe, monkeypatch):
    """The pipeline counts the calls running at once (`peak`) and records, per call, the steps asked and run; each
    step sleeps a little, so that a run lasts long enough to be cancelled in the middle."""
    record = types.SimpleNamespace(active=0, peak=0, calls=[], lock=threading.Lock(), step_sleep=0.05)

    def counting(original, pipe, *args, **kwargs):
        call = {"asked": kwargs["num_inference_steps"], "ran": 0, "done": False}
        with record.lock:
            record.active += 1
            record.peak = max(record.peak, record.active)
            record.calls.append(call)
        on_step_end = kwargs["callback_on_step_end"]

        def step_end(*step_args):
            call["ran"] += 1
            time.sleep(record.step_sleep)
            return on_step_end(*step_args)

        try:
            return original(pipe, *args, **{**kwargs, "callback_on_step_end": step_end})
        finally:
            with record.lock:
                record.active -= 1
                call["done"] = True

    patch_pipeline_call(monkeypatch, tiny_pipe, counting)
    return record


def started(record, index: int):
    """A condition for `wait_until`: call `index` of the instrumented pipeline has run a step."""
    return lambda: len(record.calls) > index and record.calls[index]["ran"] >= 1
