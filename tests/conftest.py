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
