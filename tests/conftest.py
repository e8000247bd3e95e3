"""Test-wide settings: no Hub at run time, quiet progress bars, one thread per core pair."""

import os

# huggingface_hub reads these when it is imported, so they are set before any test module imports it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


import numpy as np
import pytest

# Two float32 computations of the same values that differ only in the order of their reductions (a batch against one
# clip at a time, another kernel or thread count) agree to a few hundred float32 ulps (eps = 1.2e-7) of the largest
# value compared, on any machine and under any load; a wrong result differs at order one. An absolute tolerance taken
# from one machine's run (e.g. 1e-5 for values of magnitude 1) fails elsewhere.
FLOAT32_REORDERING_RTOL = 1e-4


def assert_float32_close(actual, expected, rtol: float = FLOAT32_REORDERING_RTOL, err_msg: str = "") -> None:
    """Asserts `actual` equals `expected` up to float32 reordering: relative to each value and to the largest one."""
    actual = np.asarray(actual.detach().cpu() if hasattr(actual, "detach") else actual, dtype=np.float64)
    expected = np.asarray(expected.detach().cpu() if hasattr(expected, "detach") else expected, dtype=np.float64)
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    np.testing.assert_allclose(
        actual, expected, rtol=rtol, atol=rtol * max(scale, np.finfo(np.float32).tiny), err_msg=err_msg
    )


@pytest.fixture
def float32_close():
    """[`assert_float32_close`], for tests: `float32_close(batched, one_by_one)`."""
    return assert_float32_close


@pytest.fixture(autouse=True)
def _isolated_datasets_cache(tmp_path_factory, monkeypatch):
    """A fresh `datasets` cache per test: local folders are cached by file mtime alone, so two tests (or two runs)
    writing folders of the same layout could otherwise read each other's cached tables."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("hf_datasets_cache"))


class FakeHfApi:
    """Stands in for `huggingface_hub.HfApi` in `model_cards.publish`: records `create_repo` / `upload_folder` calls
    as `(method, repo_id, kwargs)`, with the files the upload would have sent under `kwargs["files"]`."""

    calls: list = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return type("RepoUrl", (), {"repo_id": repo_id if "/" in repo_id else f"me/{repo_id}"})()

    def upload_folder(self, **kwargs):
        from pathlib import Path

        folder = Path(kwargs["folder_path"])
        files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        self.calls.append(("upload_folder", kwargs["repo_id"], dict(kwargs, files=files)))
        return type("Commit", (), {"commit_url": f"https://huggingface.co/{kwargs['repo_id']}/commit/abc"})()


FAKE_TOKEN = "hf_thisIsNotARealTokenButMustNeverBePrinted"


@pytest.fixture
def fake_hub(monkeypatch):
    """No Hub: publishing goes to a recording fake, with a token in the environment. Yields the list of calls."""
    from model_cards import publish

    FakeHfApi.calls = []
    monkeypatch.setattr(publish, "HfApi", FakeHfApi)
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    return FakeHfApi.calls
