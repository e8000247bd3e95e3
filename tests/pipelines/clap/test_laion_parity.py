"""Parity with the original `laion_clap` code: its own model, holding its own (random) weights in the original
checkpoint layout, against the converted `ClapModel` through the project's CLAP embedding functions.

Clips that fit CLAP's 10 s window involve no randomness, in laion_clap or here: their embeddings are compared as
they are. Clips longer than the window are read at random by laion_clap (one random window for an unfused model,
three random crops for a fused one, drawn from NumPy's global generator) and deterministically here (every window,
averaged; three fixed crops). For those, this test replays laion_clap's draws (the reference seeds NumPy before each
clip) and gives the project's features the same window or crops, so that every path of the front end is still
compared; that the project's own reading of long clips is deterministic and covers the whole clip is tested in
`tests/pipelines/tango_clap/test_pipeline_bad_input.py`.

laion_clap runs in its own environment (`pipelines/clap/laion_env.py`), built on first use and cached. Everything
it loads by name (`roberta-base`) is a tiny folder this test writes into laion_clap's working directory; nothing is
fetched.
"""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from transformers import ClapModel, ClapProcessor, RobertaConfig, RobertaModel

from pipelines.clap import laion_reference
from pipelines.clap.convert_laion_clap import convert_laion_clap_checkpoint
from pipelines.clap.laion_env import ensure_laion_env
from pipelines.tango_clap.debug import build_debug_tokenizer
from pipelines.tango_clap.pipeline_tango_clap import clap_audio_embeddings, clap_audio_features, clap_text_embeddings

SR = 48000
TEXTS = ["a dog barks", "white noise", "a rising tone " * 20, "silence", "rain on a tin roof while thunder rolls"]


def parity_clips() -> list[np.ndarray]:
    """Each path of laion_clap's front end: repeat-padded, exact, clipped and longer (fusion or random crop),
    the just-past-10-s corner case, and a 12 s clip."""
    rng = np.random.default_rng(0)
    t5, t17 = np.arange(5 * SR) / SR, np.arange(17 * SR) / SR
    clips = [
        0.5 * np.sin(2 * np.pi * 440 * t5),
        rng.standard_normal(10 * SR) * 0.3,
        1.5 * np.sin(2 * np.pi * (200 + 30 * t17) * t17),
        rng.standard_normal(10 * SR + 100) * 0.1,
        rng.standard_normal(12 * SR) * 0.2 * np.sin(2 * np.pi * 0.5 * np.arange(12 * SR) / SR),
    ]
    return [clip.astype(np.float32) for clip in clips]


@pytest.fixture(scope="module")
def laion_python() -> Path:
    return ensure_laion_env()


@pytest.fixture(scope="module")
def laion_workdir(tmp_path_factory) -> Path:
    """laion_clap's working directory: a `roberta-base` with roberta-base's settings but 2 layers and a small
    vocabulary, the clips and the texts."""
    workdir = tmp_path_factory.mktemp("laion_clap")
    tokenizer = build_debug_tokenizer("clap", model_max_length=512)
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=768,  # laion_clap's text projection is hard-wired to 768 inputs
        num_hidden_layers=2,
        num_attention_heads=12,
        intermediate_size=256,
        max_position_embeddings=514,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    RobertaModel(config).save_pretrained(workdir / "roberta-base")
    tokenizer.save_pretrained(workdir / "roberta-base")
    save_file({f"audio_{i}": clip for i, clip in enumerate(parity_clips())}, workdir / "inputs.safetensors")
    (workdir / "texts.json").write_text(json.dumps(TEXTS))
    return workdir


def run_reference(python: Path, workdir: Path, amodel: str, fusion: bool, seed: int) -> tuple[dict, Path]:
    name = f"{amodel}-{'fusion' if fusion else 'nofusion'}"
    checkpoint, output = workdir / f"{name}.pt", workdir / f"{name}.safetensors"
    command = [
        str(python),
        laion_reference.__file__,
        "--workdir", str(workdir),
        "--inputs", str(workdir / "inputs.safetensors"),
        "--texts", str(workdir / "texts.json"),
        "--output", str(output),
        "--random", "--checkpoint_out", str(checkpoint),
        "--amodel", amodel,
        "--seed", str(seed),
    ] + (["--fusion"] if fusion else [])  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONNOUSERSITE": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return load_file(output), checkpoint


def laion_draws(clip: np.ndarray, feature_extractor, seed: int) -> int | list[int] | None:
    """
    What laion_clap's `get_audio_features` (`laion_clap/training/data.py`) draws for `clip` after
    `np.random.seed(seed)`: nothing (`None`) for a clip that fits the window, or a fused clip with no mel frame to
    spare; the start sample of its one window (`rand_trunc`); the start frames of its three crops (fusion).
    """
    window, hop = int(feature_extractor.nb_max_samples), int(feature_extractor.hop_length)
    if len(clip) <= window:
        return None
    rng = np.random.RandomState(seed)  # the global generator's algorithm and seeding, without touching it
    if feature_extractor.truncation != "fusion":
        return int(rng.randint(0, len(clip) - window + 1))
    total_frames, chunk_frames = len(clip) // hop + 1, window // hop + 1
    if total_frames == chunk_frames:
        return None
    thirds = np.array_split(list(range(total_frames - chunk_frames + 1)), 3)
    return [int(rng.choice(part if len(part) else [0])) for part in thirds]


@torch.no_grad()
def embed_as_laion_clap(model: ClapModel, feature_extractor, clip: np.ndarray, seed: int) -> torch.Tensor:
    """The project's embedding of `clip`, reading it where laion_clap, seeded with `seed`, reads it."""
    draws = laion_draws(clip, feature_extractor, seed)
    if draws is None:
        return clap_audio_embeddings(model, feature_extractor, [clip])[0]
    if feature_extractor.truncation != "fusion":
        return clap_audio_embeddings(
            model, feature_extractor, [clip[draws : draws + feature_extractor.nb_max_samples]]
        )[0]
    features, is_longer = clap_audio_features(feature_extractor, [clip], fusion_crop_starts=[draws])
    output = model.get_audio_features(input_features=features, is_longer=is_longer)
    return torch.nn.functional.normalize(output.pooler_output, dim=-1)[0]


def project_embeddings(folder: Path, seed: int) -> tuple[np.ndarray, np.ndarray, ClapModel, ClapProcessor]:
    model = ClapModel.from_pretrained(folder).eval()
    processor = ClapProcessor.from_pretrained(folder)
    # The reference seeds NumPy with `seed + index` before each clip.
    audio = [
        embed_as_laion_clap(model, processor.feature_extractor, clip, seed + i)
        for i, clip in enumerate(parity_clips())
    ]
    text = clap_text_embeddings(model, processor.tokenizer, TEXTS)
    return torch.stack(audio).numpy(), text.numpy(), model, processor


def assert_parity(ours: np.ndarray, reference: np.ndarray) -> None:
    cosine = (ours * reference).sum(-1)
    assert cosine.min() > 0.999, cosine
    np.testing.assert_allclose(ours, reference, atol=1e-4)


@pytest.mark.parametrize(
    "amodel, fusion",
    [("HTSAT-tiny", True), ("HTSAT-tiny", False), ("HTSAT-base", False)],
    ids=["630k-fusion-like", "630k-like", "music-like"],
)
def test_converted_clap_matches_laion_clap(laion_python, laion_workdir, tmp_path, amodel, fusion):
    seed = 3
    reference, checkpoint = run_reference(laion_python, laion_workdir, amodel, fusion, seed)
    convert_laion_clap_checkpoint(checkpoint, tmp_path / "converted", tokenizer=laion_workdir / "roberta-base")

    audio, text, model, processor = project_embeddings(tmp_path / "converted", seed)

    assert model.config.audio_config.enable_fusion is fusion
    assert processor.feature_extractor.truncation == ("fusion" if fusion else "rand_trunc")
    assert_parity(audio, reference["audio"])
    assert_parity(text, reference["text"])
    # Long clips were read at laion_clap's random places above: the comparison covered the random paths.
    draws = [laion_draws(clip, processor.feature_extractor, seed + i) for i, clip in enumerate(parity_clips())]
    assert sum(d is not None for d in draws) >= 2, draws
    # The clips are told apart, so agreeing is not trivial.
    between = reference["audio"] @ reference["audio"].T
    assert between[~np.eye(len(between), dtype=bool)].min() < 0.99

    # Mixing up the query and value thirds of one fused `qkv` tensor breaks parity: the comparison can fail.
    with torch.no_grad():
        attention = model.audio_model.audio_encoder.layers[0].blocks[0].attention.self
        query, value = attention.query.weight.clone(), attention.value.weight.clone()
        attention.query.weight.copy_(value)
        attention.value.weight.copy_(query)
    broken = [
        embed_as_laion_clap(model, processor.feature_extractor, clip, seed + i)
        for i, clip in enumerate(parity_clips())
    ]
    assert np.abs(torch.stack(broken).numpy() - reference["audio"]).max() > 1e-3
