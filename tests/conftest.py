"""Test-wide settings: no Hub at run time, quiet progress bars, one thread per core pair."""

import os

# huggingface_hub reads these when it is imported, so they are set before any test module imports it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
