"""The embedded default model: the trained micro-reproduction model in `pipelines/tango_clap/default_model/`."""

import inspect
import json

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline

from pipelines.generate import DEFAULT_MODEL, DEFAULT_MODEL_DIR, MICRO_MODEL_ID, load_pipeline, main
from pipelines.tango_clap import TangoCLAPPipeline
from pipelines.tango_clap.pipeline_tango_clap import clap_audio_embeddings, clap_text_embeddings

# Prompts of eight different classes of the micro world, in its vocabulary.
PROMPTS = [
    "A loud siren wails",
    "Heavy rain falls",
    "A metronome ticks at a fast pace",
    "A loud church bell rings",
    "A bass drum booms slowly",
    "A diesel engine rumbles",
    "A harsh buzz sounds",
    "A high-pitched whistle blows",
]

pytestmark = pytest.mark.skipif(
    not (DEFAULT_MODEL_DIR / "model_index.json").is_file(), reason="no micro model is installed"
)


@pytest.fixture(scope="module")
def pipe():
    pipe = load_pipeline(MICRO_MODEL_ID, device="cpu", scheduler="dpmsolver++")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_installed_micro_model_is_the_default_and_ships_safetensors_only():
    assert DEFAULT_MODEL == MICRO_MODEL_ID
    files = [p for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file()]
    weights = [p for p in files if p.suffix in (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl")]
    assert weights and all(p.suffix == ".safetensors" for p in weights)
    # "A few MB": small enough to live in the repository.
    assert sum(p.stat().st_size for p in files) < 20 * 2**20
    record = json.loads((DEFAULT_MODEL_DIR / "micro_reproduction.json").read_text())
    assert record["model"] and np.isfinite(record["result"]["FD"])
    assert "## Where this model comes from" in (DEFAULT_MODEL_DIR / "README.md").read_text()


def test_packaging_ships_every_file_of_the_folder_pipeline_py_included():
    """setuptools copies what `[tool.setuptools.package-data]` globs (relative to the package, following links: the
    wheel and the sdist get a copy of the linked source), so every file of the folder must match one pattern."""
    import glob
    import tomllib
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    if not pyproject.is_file():
        pytest.skip("not a source checkout")
    package = pyproject.parent / "pipelines"
    patterns = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]["pipelines"]
    shipped = {Path(path) for pattern in patterns for path in glob.glob(pattern, root_dir=package)}
    files = {p.relative_to(package) for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file()}
    assert (DEFAULT_MODEL_DIR / "pipeline.py").is_file()  # a link that resolves, or a file
    assert files - shipped == set()


def test_the_shipped_folder_loads_both_ways_with_identical_output():
    """Like a Hub repository, the folder holds `pipeline.py` (in a checkout a link to the project's pipeline source, in
    a wheel or sdist a copy of it) beside the `model_index.json` that names it, so that `DiffusionPipeline` loads it
    with `trust_remote_code=True` and generates what `TangoCLAPPipeline` does."""
    index = json.loads((DEFAULT_MODEL_DIR / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline", "TangoCLAPPipeline"]
    source = open(inspect.getsourcefile(TangoCLAPPipeline), encoding="utf-8").read()
    assert (DEFAULT_MODEL_DIR / "pipeline.py").read_text(encoding="utf-8") == source

    local = TangoCLAPPipeline.from_pretrained(DEFAULT_MODEL_DIR)
    remote = DiffusionPipeline.from_pretrained(DEFAULT_MODEL_DIR, trust_remote_code=True)
    assert type(local) is TangoCLAPPipeline
    assert type(remote).__name__ == "TangoCLAPPipeline" and type(remote) is not TangoCLAPPipeline
    outputs = []
    for loaded in (local, remote):
        loaded.set_progress_bar_config(disable=True)
        generator = torch.Generator().manual_seed(0)
        inputs = {"audio_length_in_s": 0.64, "num_inference_steps": 3, "num_waveforms_per_prompt": 2}
        outputs.append(loaded(PROMPTS[0], generator=generator, **inputs))
    # The same weights through the same source and the same CPU kernels: identical, candidates ranked alike.
    np.testing.assert_array_equal(outputs[1].audios, outputs[0].audios)
    torch.testing.assert_close(outputs[1].clap_scores, outputs[0].clap_scores, rtol=0, atol=0)


@torch.no_grad()
def test_the_micro_model_makes_the_prompted_sounds(pipe):
    """Each prompt's clip is closer, by the world's CLAP shipped with the model, to its own prompt than to others."""
    generator = torch.Generator().manual_seed(0)
    out = pipe(PROMPTS, num_inference_steps=25, audio_length_in_s=2.56, guidance_scale=3.0, generator=generator)
    audio_embeds = clap_audio_embeddings(pipe.clap_model, pipe.clap_feature_extractor, list(out.audios))
    text_embeds = clap_text_embeddings(pipe.clap_model, pipe.clap_tokenizer, PROMPTS)
    similarity = (text_embeds @ audio_embeds.T).numpy()
    # A weak model (it makes exactly the prompted events for 15% of the test captions, see its card), but far from
    # chance (1 of 8): measured 4 of 8 clips closest to their own prompt, own-prompt similarity 0.46 vs -0.03.
    matches = int((similarity.argmax(axis=0) == np.arange(len(PROMPTS))).sum())
    assert matches >= 4, similarity.round(2)
    assert np.diag(similarity).mean() > similarity[~np.eye(len(PROMPTS), dtype=bool)].mean() + 0.3


def test_make_demo_command_uses_the_micro_model(tmp_path, capsys):
    out = tmp_path / "demo.wav"
    assert main(["--prompt", PROMPTS[0], "--seconds", "2.56", "--steps", "5", "--out", str(out)]) == 0
    assert f"model={MICRO_MODEL_ID}" in capsys.readouterr().out and out.is_file()
