"""Test-wide settings: no Hub at run time, quiet progress bars, one thread per core pair."""

import os

# huggingface_hub reads these when it is imported, so they are set before any test module imports it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


import pytest  # noqa: E402


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
    import model_cards.publish as publish

    FakeHfApi.calls = []
    monkeypatch.setattr(publish, "HfApi", FakeHfApi)
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    return FakeHfApi.calls
