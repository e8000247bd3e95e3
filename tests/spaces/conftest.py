"""Fixtures for the Space: the app module loaded from its file, a tiny saved pipeline, and a launched app."""

import contextlib
import socket
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
def launched(demo):
    """Serves `demo` on 127.0.0.1 for the duration of the block; yields its local URL."""
    _, local_url, _ = demo.launch(
        server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True
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
