"""Separate Python environments for the original packages the project checks itself against.

Some reference implementations cannot share this project's environment (e.g. `laion_clap` pins `numpy<2`, which
breaks pyarrow) or must not (they download weights when imported). Their code still runs with this project's
packages, so a reference environment is a virtual environment that sees them (`--system-site-packages`: torch,
transformers, numpy 2, safetensors) and adds, without their declared dependencies, exactly the pinned packages the
reference imports. It is kept under `~/.cache/tango-af/`, named after the pins and this Python, so it is rebuilt only
when they change; a half-built environment is never used: it is built under a temporary name and renamed into place
once its import check passes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path


def default_env_dir(name: str, packages: Sequence[str], override_variable: str | None = None) -> Path:
    """`$override_variable` if set, else `~/.cache/tango-af/<name>-<hash of the pins and this Python>`."""
    if override_variable and os.environ.get(override_variable):
        return Path(os.environ[override_variable])
    key = hashlib.sha256("\n".join((sys.executable, *packages)).encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "tango-af" / f"{name}-{key}"


def env_python(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def check_import(python: Path, module: str) -> None:
    """Imports `module` offline, in an empty folder (some references load files relative to the working folder)."""
    with tempfile.TemporaryDirectory() as cwd:
        result = subprocess.run(
            [str(python), "-c", f"import {module}"],
            cwd=cwd,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONNOUSERSITE": "1"},
            capture_output=True,
            text=True,
            timeout=300,
        )
    if result.returncode != 0:
        raise RuntimeError(f"`import {module}` fails in {python}:\n{result.stderr[-3000:]}")


def ensure_reference_env(
    name: str, packages: Sequence[str], import_check: str, env_dir: str | os.PathLike | None = None
) -> Path:
    """
    Builds a reference environment if it is not there yet.

    Args:
        name (`str`): names its folder, e.g. `"laion-clap"`.
        packages (`Sequence[str]`): pinned requirements installed with `pip install --no-deps`.
        import_check (`str`): a module that must import in it.
        env_dir (`str` or `os.PathLike`, *optional*): where; defaults to [`default_env_dir`].

    Returns:
        `Path`: its python executable.

    Raises:
        `RuntimeError`: with pip's output when the packages cannot be installed (e.g. no package index), or the
            import error.
    """
    env_dir = Path(env_dir) if env_dir else default_env_dir(name, packages)
    python = env_python(env_dir)
    if python.exists():
        return python
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=env_dir.name + ".building-", dir=env_dir.parent))
    try:
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(staging)], check=True)
        pip = subprocess.run(
            [str(env_python(staging)), "-m", "pip", "install", "--quiet", "--no-deps", *packages],
            capture_output=True,
            text=True,
        )
        if pip.returncode != 0:
            raise RuntimeError(f"Installing {name}'s packages failed:\n{pip.stdout}\n{pip.stderr}")
        check_import(env_python(staging), import_check)
        # The interpreter finds its site-packages from its own location, so the renamed folder works as built.
        staging.rename(env_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return python
