"""What the evaluation tests share, built once per session: a tiny evaluation set, random-weight backbones and a debug
pipeline on disk, and one run of each installed command on them (the end-to-end tests read their results, the
command-line tests their exit codes and streams). Helpers are fixtures, so that no test module imports this file.
"""

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

# One thread per core pair (the test suite's rule), here and in the commands the tests run: with a thread per core,
# OpenMP's threads wait on each other whenever another process holds a core, which made the backbones and the
# pipeline about 20 times slower on the shared 2-core test machine. No result depends on it: tolerances allow for
# float32 reordering.
THREADS = max(1, (os.cpu_count() or 2) // 2)
RATE = 16000
CLIPS = 10  # the inception score needs at least its 10 splits
SECONDS = 1.0  # one VGGish example (0.975 s) per clip; Cnn14 pads clips to 2 s


def tone(index: int, seconds: float = SECONDS) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * (200 + 150 * index) * t)).astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def _one_thread_per_core_pair():
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def evaluation_root(tmp_path_factory) -> Path:
    """`ref_audio/yt{i}.wav` (1 s tones), `eval_set` (a saved `Dataset`: audio, caption, ytid), `eval_splits` (a saved
    `DatasetDict` with a `test` split only), and `pipeline`, `cnn14`, `vggish`, `clap` folders of random weights."""
    import datasets
    from transformers import ClapProcessor

    from pipelines.evaluation.panns import CNN14_16K_CONFIG, Cnn14
    from pipelines.evaluation.vggish import VGGish
    from pipelines.tango_clap.debug import build_debug_clap_scorer, get_debug_pipeline

    root = tmp_path_factory.mktemp("evaluation")
    refs = root / "ref_audio"
    refs.mkdir()
    for i in range(CLIPS):
        sf.write(refs / f"yt{i}.wav", tone(i), RATE)
    table = datasets.Dataset.from_dict(
        {
            "audio": [str(refs / f"yt{i}.wav") for i in range(CLIPS)],
            "caption": [f"a tone number {i}" for i in range(CLIPS)],
            "ytid": [f"yt{i}" for i in range(CLIPS)],
        }
    ).cast_column("audio", datasets.Audio())
    table.save_to_disk(str(root / "eval_set"))
    datasets.DatasetDict({"test": table.select(range(2))}).save_to_disk(str(root / "eval_splits"))

    get_debug_pipeline(with_clap_scorer=False).save_pretrained(root / "pipeline")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        Cnn14(CNN14_16K_CONFIG).save_pretrained(root / "cnn14")
        VGGish().save_pretrained(root / "vggish")
    clap = build_debug_clap_scorer()
    clap["clap_model"].save_pretrained(root / "clap")
    ClapProcessor(feature_extractor=clap["clap_feature_extractor"], tokenizer=clap["clap_tokenizer"]).save_pretrained(
        root / "clap"
    )
    return root


@pytest.fixture(scope="session")
def clip_keys(evaluation_root) -> list[str]:
    """The keys of the evaluation set, `yt0` to `yt9`."""
    return [f"yt{i}" for i in range(CLIPS)]


def installed(script: str) -> str:
    """The console script `pip install` put on the PATH (what a user runs)."""
    path = shutil.which(script)
    assert path is not None, f"{script} is not installed: run `pip install -e .` in the repository."
    return path


def run_installed(script: str, *args: str) -> subprocess.CompletedProcess:
    """Runs an installed command offline, with no debug switch inherited, on `THREADS` threads."""
    env = {key: value for key, value in os.environ.items() if key != "TANGO_AF_DEBUG"}
    env["HF_HUB_OFFLINE"] = "1"
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(THREADS)
    return subprocess.run(
        [installed(script), *args], capture_output=True, text=True, env=env, timeout=600, check=False
    )


@pytest.fixture(scope="session")
def command():
    """Runs an installed command (see `run_installed`)."""
    return run_installed


@dataclass
class Run:
    """One run of an installed command: its process and where it wrote."""

    process: subprocess.CompletedProcess
    output: Path
    extra: dict

    def results(self) -> dict:
        return json.loads(self.output.read_text())


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory) -> Path:
    """The feature cache of the installed commands' runs: the reference clips are embedded once for all of them."""
    return tmp_path_factory.mktemp("feature_cache") / "cache"


@pytest.fixture(scope="session")
def pipeline_run(evaluation_root, feature_cache, tmp_path_factory) -> Run:
    """`tango-af-evaluate-pipeline` on the evaluation set with every backbone, filling a model card."""
    root, work = evaluation_root, tmp_path_factory.mktemp("pipeline_run")
    output, card = work / "eval", work / "README.md"
    process = run_installed(
        "tango-af-evaluate-pipeline",
        *pipeline_arguments(root, output),
        "--cache_dir", str(feature_cache),
        "--model_card", str(card),
        "--dataset_name", "tiny-caps",
    )  # fmt: skip
    return Run(process, output / "results.json", {"output_dir": output, "card": card})


@pytest.fixture(scope="session")
def pipeline_argv(evaluation_root):
    """The arguments of `pipeline_run` for another `--output_dir` (a resume must repeat them)."""
    return lambda output: pipeline_arguments(evaluation_root, output)


def pipeline_arguments(root: Path, output: Path) -> list[str]:
    """The generation settings of `pipeline_run` (a resume must repeat them)."""
    return [
        "--pipeline", str(root / "pipeline"),
        "--eval_set", str(root / "eval_set"),
        "--key_column", "ytid",
        "--output_dir", str(output),
        "--num_inference_steps", "2",
        "--audio_length_in_s", str(SECONDS),
        "--batch_size", "4",
        "--cnn14", str(root / "cnn14"),
        "--vggish", str(root / "vggish"),
        "--clap", str(root / "clap"),
        "--device", "cpu",
    ]  # fmt: skip


@pytest.fixture(scope="session")
def audio_run(evaluation_root, feature_cache, pipeline_run, tmp_path_factory) -> Run:
    """`tango-af-evaluate` of shifted, quieter copies of the reference tones (`.flac`, paired with the `.wav`
    references by file name) against the references, with prompts and every backbone. After `pipeline_run`, whose
    features of the same reference clips it finds in the cache."""
    root, work = evaluation_root, tmp_path_factory.mktemp("audio_run")
    generated = work / "gen"
    generated.mkdir()
    for i in range(CLIPS):
        sf.write(generated / f"yt{i}.flac", np.roll(tone(i), 50 * i) * 0.9, RATE)
    prompts = work / "prompts.csv"
    prompts.write_text("file,caption\n" + "".join(f"yt{i}.flac,a tone number {i}\n" for i in range(CLIPS)))
    process = run_installed(
        "tango-af-evaluate",
        "--generated", str(generated), "--reference", str(root / "ref_audio"),
        "--prompts", str(prompts), "--cnn14", str(root / "cnn14"),
        "--vggish", str(root / "vggish"), "--clap", str(root / "clap"),
        "--output", str(work / "out.json"), "--cache_dir", str(feature_cache),
    )  # fmt: skip
    return Run(process, work / "out.json", {"generated": generated, "prompts": prompts})
