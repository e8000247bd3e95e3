"""Reference PANNs Cnn14 features computed by audioldm_eval's own model code, for parity checks.

Runs in a separate environment that adds [`PANNS_REFERENCE_PACKAGES`] to this project's packages (built by the tests
with `pipelines/reference_env.py`); it imports nothing from this project. The Cnn14 class is the PyPI
`audioldm-eval==0.0.3` one, whose `feature_extractors/panns/models.py` is byte for byte Tango's copy (checked). Only
that module is imported, by its file path: the package's `__init__` pulls in the whole evaluation (scikit-image,
ssr_eval, VGGish...).

The original `Cnn14.__init__` downloads both release checkpoints into `./ckpt/` with `wget` unless
`ckpt/Cnn14_mAP=0.431.pth` exists, then loads `ckpt/Cnn14_16k_mAP=0.438.pth` (16 kHz) into itself. So the script works
in `--workdir`: it leaves an empty `ckpt/Cnn14_mAP=0.431.pth` there (and makes `os.system` fail, so that nothing is
fetched), and it gets its weights through that very loading path:

1. with `--random`, a first instance (its own checkpoint load skipped) is seeded, its batch-norm affine parameters and
   running statistics are randomised too (`randomize_batch_norms`), and its state dict is saved as the release files
   are laid out (`{"iteration", "model", "sampler"}`, the sampler state being numpy arrays) at
   `ckpt/Cnn14_16k_mAP=0.438.pth`; with `--checkpoint`, that file is a link to the given one;
2. a second instance is built exactly as `audioldm_eval/eval.py` builds it and loads that file itself.

It then runs the second one in eval mode on each clip alone (batch size 1, as `EvaluationHelper.get_featuresdict`
does) and writes `embedding` (N, 2048, its `"2048"` output), `logits` (N, 527, its `"logits"`) and, per clip,
`log_mel_<i>` (the torchlibrosa front end's output).

Usage:

```bash
python panns_reference.py --workdir DIR --inputs inputs.safetensors --output out.safetensors --random --seed 0
```
"""

import argparse
import hashlib
import importlib
import importlib.util
import os
import sys
import types
from unittest import mock

# audioldm_eval 0.0.3's Cnn14 imports torchlibrosa (0.1.0 is the last release), which imports librosa; the rest is
# what `import librosa` and `librosa.filters.mel` need, at versions seen working with torch 2.14 and numpy 2.4. Their
# declared dependencies are not installed (`pip install --no-deps`): numpy, scipy, soundfile... come from this project.
PANNS_REFERENCE_PACKAGES = (
    "audioldm-eval==0.0.3",
    "torchlibrosa==0.1.0",
    "librosa==0.11.0",
    "lazy-loader==0.6",
    "numba==0.68.1",
    "llvmlite==0.50.0",
    "joblib==1.6.0",
    "msgpack==1.2.4",
    "pooch==1.9.0",
    "platformdirs==4.14.8",
)

# `audioldm_eval/eval.py`, `EvaluationHelper.__init__`, 16 kHz branch.
CNN14_16K_ARGUMENTS = {
    "features_list": ["2048", "logits"],
    "sample_rate": 16000,
    "window_size": 512,
    "hop_size": 160,
    "mel_bins": 64,
    "fmin": 50,
    "fmax": 8000,
    "classes_num": 527,
}
# sha256 of `audioldm_eval/feature_extractors/panns/models.py` in Tango's repository (declare-lab/tango, commit
# 34ecd388), byte for byte the file of the PyPI audioldm-eval 0.0.3 wheel: the reference is Tango's Cnn14.
TANGO_MODELS_SHA256 = "c68430da5fce4ef1e35e45ae0a5f0264c2ed0a0e153bd63ed11c3d9ccad6ac26"
CHECKPOINT_16K = os.path.join("ckpt", "Cnn14_16k_mAP=0.438.pth")
CHECKPOINT_32K = os.path.join("ckpt", "Cnn14_mAP=0.431.pth")


def import_panns_models() -> types.ModuleType:
    """Imports `audioldm_eval.feature_extractors.panns.models` without running the packages' `__init__` files, after
    checking that it is Tango's file."""
    spec = importlib.util.find_spec("audioldm_eval")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("audioldm_eval is not installed in this environment.")
    root = next(iter(spec.submodule_search_locations))
    models_file = os.path.join(root, "feature_extractors", "panns", "models.py")
    with open(models_file, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != TANGO_MODELS_SHA256:
        raise ImportError(f"{models_file} (sha256 {digest}) is not Tango's copy of the PANNs models.")
    for name, folder in (
        ("audioldm_eval", root),
        ("audioldm_eval.feature_extractors", os.path.join(root, "feature_extractors")),
        ("audioldm_eval.feature_extractors.panns", os.path.join(root, "feature_extractors", "panns")),
    ):
        package = types.ModuleType(name)
        package.__path__ = [folder]
        sys.modules[name] = package
    return importlib.import_module("audioldm_eval.feature_extractors.panns.models")


def numpy_array_globals() -> list:
    """What `torch.load(weights_only=True)` must allow for the release files' numpy sampler state."""
    import numpy as np

    multiarray = np._core.multiarray
    return [
        multiarray._reconstruct,
        (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
        *{type(np.dtype(code)) for code in "?bhilqBHILQefdFD"},
    ]


def randomize_batch_norms(model, seed: int) -> None:
    """Random batch-norm affine parameters and running statistics, so that the comparison checks every batch-norm
    tensor. The statistics are first measured on seeded noise (a train-mode pass with cumulative averages), as a
    trained network's are, then perturbed: with arbitrary statistics a random network's output hardly depends on its
    input, and a comparison of near-constant outputs would prove little."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    batch_norms = [module for module in model.modules() if isinstance(module, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for module in batch_norms:
            module.weight.uniform_(0.5, 1.5, generator=generator)
            module.bias.normal_(0.0, 0.2, generator=generator)
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration pass
        model.train()
        model(0.3 * torch.randn(2, 3 * 16000, generator=generator))
        model.eval()
        for module in batch_norms:
            module.momentum = 0.1
            noise = torch.randn(module.num_features, generator=generator)
            module.running_mean += 0.1 * noise * module.running_var.sqrt()
            module.running_var *= torch.empty(module.num_features).uniform_(0.7, 1.4, generator=generator)
        model.fc_audioset.bias.normal_(0.0, 0.5, generator=generator)


def _no_shell(command: str) -> int:
    raise RuntimeError(f"panns_reference.py must not fetch anything, but audioldm_eval ran {command!r}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="Working directory; its ckpt/ holds the checkpoint.")
    parser.add_argument("--inputs", required=True, help="safetensors of float32 16 kHz clips `audio_0`, `audio_1`...")
    parser.add_argument("--output", required=True, help="safetensors to write.")
    parser.add_argument("--random", action="store_true", help="Random weights from --seed, saved in ckpt/.")
    parser.add_argument("--checkpoint", help="An original Cnn14_16k_mAP=0.438.pth to use instead of --random.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.random == bool(args.checkpoint):
        parser.error("give exactly one of --checkpoint and --random.")

    import numpy as np
    import torch
    from safetensors.numpy import load_file, save_file

    inputs = load_file(os.path.abspath(args.inputs))
    output = os.path.abspath(args.output)
    checkpoint = args.checkpoint and os.path.abspath(args.checkpoint)
    os.makedirs(os.path.join(args.workdir, "ckpt"), exist_ok=True)
    os.chdir(args.workdir)
    open(CHECKPOINT_32K, "wb").close()  # only its existence is checked: it stops the download
    models = import_panns_models()
    models.os.system = _no_shell

    if args.random:
        torch.manual_seed(args.seed)
        # The first instance only provides the seeded architecture, so its constructor's checkpoint load is skipped.
        with mock.patch.object(models.torch, "load"), mock.patch.object(models.Cnn14, "load_state_dict"):
            model = models.Cnn14(**CNN14_16K_ARGUMENTS)
        randomize_batch_norms(model, args.seed)
        sampler = {"indexes_per_class": [np.arange(3, dtype=np.int64)], "queue": np.arange(4, dtype=np.int64)}
        torch.save({"iteration": 0, "model": model.state_dict(), "sampler": sampler}, CHECKPOINT_16K)
        del model
    else:
        if os.path.lexists(CHECKPOINT_16K):
            os.remove(CHECKPOINT_16K)
        os.symlink(checkpoint, CHECKPOINT_16K)

    # As audioldm_eval/eval.py builds it; its constructor loads ckpt/Cnn14_16k_mAP=0.438.pth.
    with torch.serialization.safe_globals(numpy_array_globals()):
        model = models.Cnn14(**CNN14_16K_ARGUMENTS)
    model.eval()

    embeddings, logits, outputs = [], [], {}
    with torch.no_grad():
        for index in range(len(inputs)):
            waveform = torch.from_numpy(inputs[f"audio_{index}"]).float()[None]
            features = model(waveform)
            embeddings.append(features["2048"][0].numpy())
            logits.append(features["logits"][0].numpy())
            log_mel = model.logmel_extractor(model.spectrogram_extractor(waveform))
            outputs[f"log_mel_{index}"] = log_mel[0, 0].numpy().astype(np.float32)
    outputs["embedding"] = np.stack(embeddings).astype(np.float32)
    outputs["logits"] = np.stack(logits).astype(np.float32)
    save_file(outputs, output)


if __name__ == "__main__":
    main()
