"""Every console script of `pyproject.toml`, run as installed: a user error is one line naming the bad value, exit
code 2, no traceback; and each points at a `command_line`-wrapped `main`, so that a finished run exits 0 whatever
`main` returns (`tests/pipelines/test_cli.py` checks the wrapper itself)."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
MISSING = "/nonexistent/tango-af-input"

# A cheap user error per script: an input that does not exist.
BAD_CALLS = {
    "tango-af-generate": ["--prompt", "rain", "--model", MISSING],
    "tango-af-convert-tango": ["--checkpoint", MISSING, "--output_dir", "{tmp}/converted"],
    "tango-af-dataset": ["build", "--audio-dir", MISSING, "--output", "{tmp}/af"],
    "tango-af-convert-laion-clap": ["--checkpoint", MISSING, "--output_dir", "{tmp}/clap"],
    "tango-af-clap-sanity": ["--model", MISSING],
    "tango-af-evaluate": [
        "--generated",
        MISSING,
        "--reference",
        MISSING,
        "--cnn14",
        MISSING,
        "--output",
        "{tmp}/results.json",
    ],
    "tango-af-evaluate-pipeline": [
        "--pipeline",
        MISSING,
        "--eval_set",
        MISSING,
        "--cnn14",
        MISSING,
        "--output_dir",
        "{tmp}/eval",
    ],
    "tango-af-publish": ["model", "--folder", MISSING, "--repo-id", "me/x", "--dry-run", "{tmp}/staged"],
}


def test_every_script_is_covered_and_wraps_its_main():
    assert set(BAD_CALLS) == set(SCRIPTS)
    for name, target in SCRIPTS.items():
        module, function = target.split(":")
        assert getattr(getattr(importlib.import_module(module), function), "is_command_line", False), name


def run(name: str, tmp: Path) -> subprocess.CompletedProcess:
    executable = shutil.which(name, path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    assert executable, f"{name} is not installed: pip install -e ."
    argv = [a.replace("{tmp}", os.fspath(tmp)) for a in BAD_CALLS[name]]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TANGO_AF_DEBUG": ""}
    return subprocess.run([executable, *argv], capture_output=True, text=True, timeout=300, env=environment, cwd=tmp)


def test_installed_scripts_answer_a_user_error_with_one_line(tmp_path):
    # Two at a time: each start imports torch, diffusers and transformers (a few seconds).
    with ThreadPoolExecutor(2) as pool:
        done = dict(zip(BAD_CALLS, pool.map(lambda name: run(name, tmp_path), BAD_CALLS)))
    for name, result in done.items():
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 2, (name, result.returncode, result.stderr[-2000:])
        assert len(errors) == 1 and MISSING in errors[0], (name, result.stderr[-2000:])
        assert "Traceback" not in result.stderr, (name, result.stderr[-2000:])
    # Nothing was written by a refused run.
    assert sorted(p.name for p in tmp_path.iterdir()) == []
