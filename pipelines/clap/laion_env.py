"""The separate Python environment that runs the original `laion_clap` package, for parity checks.

`laion_clap` 1.1.7 cannot share this project's environment: its metadata pins `numpy<2`, and installing it beside
the main stack downgrades numpy, after which pyarrow (and so `datasets`) no longer imports. Its code itself runs
with numpy 2. So the parity environment is a virtual environment that sees this project's packages
(`--system-site-packages`: torch, torchaudio, transformers, numpy 2, safetensors) and adds, without their declared
dependencies, exactly the packages `laion_clap` imports ([`LAION_CLAP_PACKAGES`], the `laion-clap` extra of
`pyproject.toml`). Building it takes about a minute (torchvision's wheel is the large part); it is kept under
`~/.cache/tango-af/` and rebuilt only when the pins change. A half-built environment is never used: it is built
in a temporary folder and renamed into place when `import laion_clap` works.

Usage:

```bash
python -m pipelines.clap.laion_env          # builds (or finds) it and prints its python
```
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# What `laion_clap` 1.1.7 imports (hook.py, training/data.py, clap_module/*), pinned to versions seen working with
# torch 2.14.1, transformers 5.23 and numpy 2.4 here. The same list is the `laion-clap` extra in pyproject.toml.
LAION_CLAP_PACKAGES = (
    "laion_clap==1.1.7",
    "torchvision==0.29.1",
    "torchlibrosa==0.1.0",
    "librosa==0.11.0",
    "numba==0.68.1",
    "llvmlite==0.50.0",
    "scikit-learn==1.9.1",
    "soxr==1.1.0",
    "audioread==3.1.0",
    "pooch==1.9.0",
    "lazy-loader==0.6",
    "msgpack==1.2.4",
    "joblib==1.6.0",
    "threadpoolctl==3.8.0",
    "narwhals==2.29.0",
    "cloudpickle==3.1.3",
    "platformdirs==4.14.8",
    "h5py==3.16.0",
    "braceexpand==0.1.7",
    "webdataset==1.0.2",
    "ftfy==6.3.1",
    "wget==3.2",
    "progressbar==2.5",
)

ENV_VARIABLE = "TANGO_AF_LAION_ENV"


def default_env_dir() -> Path:
    """`$TANGO_AF_LAION_ENV`, else a folder under `~/.cache/tango-af/` named after the pins and this Python."""
    if os.environ.get(ENV_VARIABLE):
        return Path(os.environ[ENV_VARIABLE])
    key = hashlib.sha256("\n".join((sys.executable, *LAION_CLAP_PACKAGES)).encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "tango-af" / f"laion-clap-{key}"


def env_python(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def _check_import(python: Path) -> None:
    """Imports laion_clap offline, in an empty folder (it loads tokenizers relative to the working directory)."""
    with tempfile.TemporaryDirectory() as cwd:
        result = subprocess.run(
            [str(python), "-c", "import laion_clap"],
            cwd=cwd,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONNOUSERSITE": "1"},
            capture_output=True,
            text=True,
            timeout=300,
        )
    if result.returncode != 0:
        raise RuntimeError(f"`import laion_clap` fails in {python}:\n{result.stderr[-3000:]}")


def ensure_laion_env(env_dir: str | os.PathLike | None = None) -> Path:
    """
    Builds the `laion_clap` environment if it is not there yet.

    Args:
        env_dir (`str` or `os.PathLike`, *optional*): where; defaults to [`default_env_dir`].

    Returns:
        `Path`: its python executable.

    Raises:
        `RuntimeError`: with pip's output, when the packages cannot be installed (e.g. no package index).
    """
    env_dir = Path(env_dir) if env_dir else default_env_dir()
    python = env_python(env_dir)
    if python.exists():
        return python
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=env_dir.name + ".building-", dir=env_dir.parent))
    try:
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(staging)], check=True)
        pip = subprocess.run(
            [str(env_python(staging)), "-m", "pip", "install", "--quiet", "--no-deps", *LAION_CLAP_PACKAGES],
            capture_output=True,
            text=True,
        )
        if pip.returncode != 0:
            raise RuntimeError(f"Installing laion_clap's packages failed:\n{pip.stdout}\n{pip.stderr}")
        _check_import(env_python(staging))
        # venv writes absolute paths into its scripts and pyvenv.cfg; the interpreter itself finds its
        # site-packages from its own location, which is all `env_python` is used for.
        staging.rename(env_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return python


if __name__ == "__main__":
    print(ensure_laion_env())
