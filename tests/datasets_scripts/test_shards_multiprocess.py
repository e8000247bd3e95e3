"""Several processes, several machines: shards built by concurrent processes, then merged, give the very table that
one process building everything gives.

The processes are real: `torchrun` starts two copies of `tango-af-dataset build`, which take their shard from
RANK / WORLD_SIZE and write concurrently into one shared folder; `merge` then checks and finishes it. (Shards in a
folder each are merged in `test_build.py`; the Slurm variables are read as `test_cli.py` checks.) The models are the
tiny random checkpoints of `debug_models`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from datasets_scripts.build import build_af_audioset
from datasets_scripts.cli import main as cli_main
from datasets_scripts.sources import clips_from_audio_dir

SLURM_SCRIPT = Path(__file__).parents[2] / "datasets_scripts" / "slurm" / "build_af_audioset.sbatch"
SETTINGS = ["--num-captions", "2", "--top-k", "2", "--max-new-tokens", "3", "--unit-size", "1", "--batch-size", "1"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory, ffmpeg_audio):
    root = tmp_path_factory.mktemp("clips")
    for frequency in (300, 500, 700, 900):
        ffmpeg_audio(
            root / f"tone{frequency}.wav", source=f"sine=frequency={frequency}:duration=1.2:sample_rate=16000"
        )
    return root


@pytest.fixture(scope="module")
def one_process(models, clips, tmp_path_factory):
    """Everything built by this one process: the table the shards must reproduce."""
    output = tmp_path_factory.mktemp("one") / "af"
    build_af_audioset(
        clips_from_audio_dir(clips), output, captioner=models["captioner"], clap=models["clap"], num_captions=2, top_k=2,
        max_new_tokens=3, unit_size=1, batch_size=1,
    )  # fmt: skip
    return output


def read(folder):
    frame = pq.read_table(sorted(Path(folder, "data").glob("*.parquet"))).to_pandas()
    return frame.sort_values(["clip_id", "window_start", "caption_index"]).reset_index(drop=True)


def environment(**variables):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK") and not k.startswith("SLURM_")
    }
    # Two processes on a shared CPU: one thread each, so they do not fight over the cores.
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TANGO_AF_DEBUG="1", **variables)
    return env


def assert_same_table(folder, reference, clap_folder):
    built, expected = read(folder), read(reference)
    key = ["clip_id", "window_start", "caption_index", "caption", "rank", "captioner", "clap", "prompt"]
    assert built[key].equals(expected[key])
    # The scores are float32 cosines of unit vectors, computed with other thread counts in other processes: sums in
    # another order differ by at most (dimension) float32 roundings of values of magnitude <= 1.
    dimension = json.loads((Path(clap_folder) / "config.json").read_text())["projection_dim"]
    tolerance = dimension * np.finfo(np.float32).eps
    np.testing.assert_allclose(
        built["clap_similarity"].astype(np.float64),
        expected["clap_similarity"].astype(np.float64),
        rtol=0,
        atol=tolerance,
    )


def test_torchrun_processes_share_one_folder_then_merge(models, clips, one_process, tmp_path):
    shared = tmp_path / "shared"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "datasets_scripts.cli", "build", "--audio-dir", str(clips), "--output", str(shared),
        "--captioner", models["captioner"], "--clap", models["clap"], *SETTINGS,
    ]  # fmt: skip
    done = subprocess.run(command, check=False, env=environment(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    # Each process built its half (shard i of 2 from RANK / WORLD_SIZE): 2 units each, none twice.
    assert done.stdout.count("2 units written, 0 already done") == 2, done.stdout
    assert not (shared / "README.md").exists()  # a shard never writes the card
    assert cli_main(["merge", "--inputs", str(shared), "--output", str(shared)]) == 0
    assert_same_table(shared, one_process, models["clap"])
    summary = json.loads((shared / "build_summary.json").read_text())
    assert (summary["clips"], summary["captioned_clips"], summary["timed_clips"]) == (4, 4, 4)
    assert "tau0.45" in (shared / "README.md").read_text()


def test_merge_refuses_a_damaged_shard_by_name(models, clips, one_process, tmp_path, capsys):
    shutil.copytree(one_process, tmp_path / "in")
    shard = tmp_path / "in" / "data" / "train-00001-of-00004.parquet"
    shard.write_bytes(shard.read_bytes()[:100])
    assert cli_main(["merge", "--inputs", str(tmp_path / "in"), "--output", str(tmp_path / "merged")]) == 2
    err = capsys.readouterr().err
    assert (
        "--inputs cannot be merged: missing units [1]" in err
        and "train-00001-of-00004.parquet is not the file the unit wrote" in err
    )
    assert not (tmp_path / "merged").exists()


def test_the_slurm_example_is_valid_bash():
    assert shutil.which("bash")
    done = subprocess.run(["bash", "-n", str(SLURM_SCRIPT)], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = SLURM_SCRIPT.read_text()
    assert '--dependency="afterok:${array_job}"' in text and "tango-af-dataset merge" in text
