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

import os
from pathlib import Path

from ..reference_env import default_env_dir, ensure_reference_env

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


def ensure_laion_env(env_dir: str | os.PathLike | None = None) -> Path:
    """
    Builds the `laion_clap` environment if it is not there yet (see `pipelines/reference_env.py`).

    Args:
        env_dir (`str` or `os.PathLike`, *optional*): where; defaults to `$TANGO_AF_LAION_ENV`, else a folder under
            `~/.cache/tango-af/` named after the pins.

    Returns:
        `Path`: its python executable.
    """
    env_dir = env_dir or default_env_dir("laion-clap", LAION_CLAP_PACKAGES, ENV_VARIABLE)
    return ensure_reference_env("laion-clap", LAION_CLAP_PACKAGES, "laion_clap", env_dir)


if __name__ == "__main__":
    print(ensure_laion_env())
