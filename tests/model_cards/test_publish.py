"""`tango-af-publish`: each dry-run folder loads offline as users load the real repo, and the Hub calls carry the
right arguments (against a patched `HfApi`)."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from datasets import load_dataset
from diffusers import DiffusionPipeline
from transformers import ClapModel

from datasets_scripts.build import build_af_audioset
from datasets_scripts.debug_models import save_debug_af_audioset_models
from datasets_scripts.sources import clips_from_audio_dir
from model_cards import publish
from pipelines.generate import DEFAULT_MODEL_DIR, save_default_model


def files_of(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory):
    """A pipeline folder as training leaves it: the pipeline, its record, checkpoints, logs and validation audio."""
    folder = save_default_model(tmp_path_factory.mktemp("trained") / "out", model="debug")
    record = {"steps": 8, "data": [{"kind": "af_audioset", "path": "me/AF-AudioSet", "tau": 0.45, "top_k": 3}],
              "base_model": "declare-lab/tango", "unet_from_scratch": "debug", "batch_size": 4, "learning_rate": 1e-4}  # fmt: skip
    (folder / "training_summary.json").write_text(json.dumps(record))
    (folder / "checkpoint-8" / "unet").mkdir(parents=True)
    (folder / "checkpoint-8" / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"x")
    (folder / "logs").mkdir()
    (folder / "logs" / "events.out.tfevents").write_bytes(b"x")
    (folder / "validation" / "step-8").mkdir(parents=True)
    sf.write(folder / "validation" / "step-8" / "0.wav", np.zeros(160, np.float32), 16000)
    return folder


def machine_paths_in(folder: Path, forbidden: list[str]) -> dict[str, list[str]]:
    """Every file of `folder` that reads as UTF-8 text, with the `forbidden` strings it holds."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # weights, shards, images
            continue
        hits = [part for part in forbidden if part in text]
        if hits:
            found[str(path.relative_to(folder))] = hits
    return found


@pytest.fixture(scope="module")
def forbidden(tmp_path_factory) -> list[str]:
    """This machine's paths: pytest's temporary root, the project's folder and the home folder."""
    return [
        str(tmp_path_factory.getbasetemp()),
        str(Path(publish.__file__).resolve().parents[1]),
        str(Path.home()) + os.sep,
    ]


@pytest.fixture(scope="module")
def resaved_folder(trained_folder, tmp_path_factory):
    """`trained_folder` loaded and saved again, as a training or conversion script does: diffusers records where each
    part was loaded from (`_name_or_path`) in every config, and the records name local folders."""
    folder = tmp_path_factory.mktemp("resaved") / "tango-af"
    DiffusionPipeline.from_pretrained(trained_folder, trust_remote_code=True).save_pretrained(folder)
    data = tmp_path_factory.getbasetemp() / "data" / "af-audioset"
    data.mkdir(parents=True, exist_ok=True)
    record = json.loads((trained_folder / "training_summary.json").read_text())
    record["data"][0]["path"] = str(data)
    record["base_model"] = str(trained_folder)
    record["notes"] = f"resumed from {trained_folder}/checkpoint-8 after a crash"
    (folder / "training_summary.json").write_text(json.dumps(record))
    (folder / "generation_defaults.json").write_text(json.dumps({"num_inference_steps": 2}))
    return folder


def generate(pipe, seed=0):
    return pipe(
        "a dog barks", audio_length_in_s=1.0, num_inference_steps=2, generator=torch.Generator().manual_seed(seed)
    ).audios


# ------------------------------------------------------------------------------------------------------- model


def test_model_dry_run_loads_with_remote_code_and_generates_like_the_source(trained_folder, tmp_path):
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"metrics": {"FD": 20.0, "CLAP": 0.4}, "protocol": {"eval_set": "audiocaps"}}))
    staged = tmp_path / "staged"
    code = publish.main(["model", "--folder", str(trained_folder), "--repo-id", "me/tango-af",
                         "--evaluation", f"AudioCaps test={results}", "--dry-run", str(staged)])  # fmt: skip
    assert code == 0
    files = files_of(staged)
    assert "README.md" in files and "pipeline.py" in files and "training_summary.json" in files
    assert not any(f.startswith(("checkpoint-", "logs", "validation")) for f in files)
    assert all(not f.endswith((".bin", ".pt", ".ckpt")) for f in files)

    pipe = DiffusionPipeline.from_pretrained(staged, trust_remote_code=True)
    source = DiffusionPipeline.from_pretrained(trained_folder, trust_remote_code=True)
    np.testing.assert_array_equal(generate(pipe), generate(source))
    readme = (staged / "README.md").read_text()
    assert "model-index" in readme and "value: 20.0" in readme and "AudioCaps test" in readme
    assert 'from_pretrained("me/tango-af", trust_remote_code=True' in readme


def test_a_staged_model_holds_no_path_of_the_build_machine(resaved_folder, trained_folder, tmp_path, forbidden):
    leaks = machine_paths_in(resaved_folder, forbidden)
    assert "model_index.json" in leaks and "unet/config.json" in leaks, "the fixture must start with leaks"

    staged = publish.stage_model(resaved_folder, tmp_path / "staged", "me/tango-af")
    assert machine_paths_in(staged, forbidden) == {}
    for config in staged.rglob("*.json"):
        assert "_name_or_path" not in config.read_text(), config
    # Records keep the names of what they used, not where it lay.
    record = json.loads((staged / "training_summary.json").read_text())
    assert record["data"][0]["path"] == "af-audioset" and record["base_model"] == trained_folder.name
    assert record["notes"] == "resumed from checkpoint-8 after a crash"
    # The rewritten configs still load, into the same pipeline.
    pipe = DiffusionPipeline.from_pretrained(staged, trust_remote_code=True)
    source = DiffusionPipeline.from_pretrained(trained_folder, trust_remote_code=True)
    np.testing.assert_array_equal(generate(pipe), generate(source))
    # The Space's starting settings travel with the model.
    assert json.loads((staged / "generation_defaults.json").read_text()) == {"num_inference_steps": 2}


def test_token_tables_are_never_rewritten(tmp_path):
    tables = {"model": {"vocab": {"/tmp": 5, "/root": 6}, "merges": [["/", "tmp"], ["/tmp", "/"]]}}
    (tmp_path / "tokenizer.json").write_text(json.dumps(tables))
    config = {"_name_or_path": "laion/clap", "cache": "/tmp/x/y", "k": "/tmp"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    before = (tmp_path / "tokenizer.json").read_bytes()
    rewritten = publish.strip_local_paths(tmp_path, publish.machine_paths())
    assert rewritten == [tmp_path / "config.json"]
    assert (tmp_path / "tokenizer.json").read_bytes() == before
    assert json.loads((tmp_path / "config.json").read_text()) == {"cache": "y", "k": "tmp"}
    publish.check_no_local_paths(tmp_path, publish.machine_paths())  # token tables are not mistaken for leaks


def test_model_push_stages_then_uploads_one_folder(trained_folder, fake_hub, tmp_path, capsys):
    dry = publish.publish_model(trained_folder, "me/tango-af", dry_run=tmp_path / "dry")
    url = publish.publish_model(trained_folder, "me/tango-af", private=True)
    (create, repo, create_kwargs), (upload, upload_repo, upload_kwargs) = fake_hub
    assert (create, repo, upload, upload_repo) == ("create_repo", "me/tango-af", "upload_folder", "me/tango-af")
    assert create_kwargs == {"repo_type": "model", "private": True, "exist_ok": True, "space_sdk": None}
    assert upload_kwargs["repo_type"] == "model"
    # Exactly what the dry run wrote.
    assert upload_kwargs["files"] == files_of(dry)
    assert url.endswith("/commit/abc")
    captured = capsys.readouterr()
    assert os.environ["HF_TOKEN"] not in captured.out + captured.err


def test_pickles_and_bad_folders_are_refused_by_name(trained_folder, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(trained_folder, folder)
    torch.save({"w": torch.zeros(1)}, folder / "unet" / "diffusion_pytorch_model.bin")
    with pytest.raises(ValueError, match=r"diffusion_pytorch_model\.bin.*safetensors only"):
        publish.stage_model(folder, tmp_path / "out1", "me/x")
    assert not (tmp_path / "out1").exists()  # no half-staged folder is left behind
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither a pipeline folder"):
        publish.stage_model(tmp_path / "empty", tmp_path / "out2", "me/x")
    shutil.rmtree(folder / "vocoder")
    with pytest.raises(ValueError, match=r"\['vocoder'\]"):
        publish.stage_model(folder, tmp_path / "out3", "me/x")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(ValueError, match="busy.*not empty"):
        publish.stage_model(trained_folder, tmp_path / "busy", "me/x")


def test_cli_names_a_bad_evaluation_file(trained_folder, tmp_path, capsys):
    assert publish.main(["model", "--folder", str(trained_folder), "--repo-id", "me/x",
                         "--evaluation", "nope.json", "--dry-run", str(tmp_path / "d")]) == 2  # fmt: skip
    assert "nope.json" in capsys.readouterr().err


def test_no_token_is_a_clear_error_and_nothing_is_uploaded(trained_folder, fake_hub, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(publish, "get_token", lambda: None)
    assert publish.main(["model", "--folder", str(trained_folder), "--repo-id", "me/x"]) == 2
    assert "HF_TOKEN" in capsys.readouterr().err and fake_hub == []


# ------------------------------------------------------------------------------------------------------- dataset


@pytest.fixture(scope="module")
def af_folder(tmp_path_factory):
    """AF-AudioSet built by the project's builder from tiny debug models over three clips."""
    root = tmp_path_factory.mktemp("af")
    models = save_debug_af_audioset_models(root / "models", seed=0)
    # This random CLAP scores every caption near -0.5; negating its text projection puts them near +0.5, so that the
    # tau0.45 preset keeps some captions and drops others.
    clap = ClapModel.from_pretrained(models["clap"])
    with torch.no_grad():
        clap.text_projection.linear2.weight.neg_()
        clap.text_projection.linear2.bias.neg_()
    clap.save_pretrained(models["clap"])
    clips = root / "clips"
    clips.mkdir()
    t = np.arange(3 * 16000) / 16000
    for name, freq in (("a", 300.0), ("b", 900.0), ("c", 2000.0)):
        sf.write(clips / f"{name}.wav", (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000)
    output = root / "built"
    build_af_audioset(clips_from_audio_dir(clips), output, captioner=models["captioner"], clap=models["clap"],
                      num_captions=6, unit_size=2, batch_size=2, max_new_tokens=5)  # fmt: skip
    (output / "data" / ".unfinished.parquet.tmp").write_bytes(b"partial")
    return output


def test_dataset_dry_run_loads_every_tau_config(af_folder, tmp_path):
    staged = publish.publish_dataset(af_folder, "me/AF-AudioSet", dry_run=tmp_path / "staged")
    assert not any(Path(f).name.startswith(".") for f in files_of(staged))
    everything = load_dataset(str(staged), "all", split="train").to_pandas()
    assert len(everything) == 3 * 6
    kept = load_dataset(str(staged), "tau0.45", split="train").to_pandas()
    expected = everything[(everything["rank"] < 3) & (everything["clap_similarity"] >= 0.45)]
    assert sorted(kept["caption"]) == sorted(expected["caption"])
    assert 0 < len(kept) < 9 and (kept["rank"] < 3).all()
    assert (staged / "assets" / "size_vs_tau.png").is_file() and "tau0.45" in (staged / "README.md").read_text()


def test_a_staged_dataset_holds_no_path_of_the_build_machine(af_folder, tmp_path, forbidden):
    build = json.loads((af_folder / "build_config.json").read_text())
    assert Path(build["captioner"]).is_absolute(), "the fixture must start with leaks"

    staged = publish.stage_dataset(af_folder, tmp_path / "staged")
    assert machine_paths_in(staged, forbidden) == {}
    staged_build = json.loads((staged / "build_config.json").read_text())
    assert staged_build["captioner"] == Path(build["captioner"]).name
    assert staged_build["clap"] == Path(build["clap"]).name


def test_staged_dataset_shards_hold_no_path_of_the_build_machine(af_folder, tmp_path, forbidden):
    staged = publish.stage_dataset(af_folder, tmp_path / "staged")
    for shard in (staged / "data").glob("*.parquet"):
        content = shard.read_bytes()
        assert not [part for part in forbidden if part.encode() in content], shard
    rows = load_dataset(str(staged), "all", split="train")
    assert set(rows["clap"]) == {Path(json.loads((af_folder / "build_config.json").read_text())["clap"]).name}


def test_a_path_that_cannot_be_rewritten_is_refused_by_name(af_folder, tmp_path):
    folder = tmp_path / "af"
    shutil.copytree(af_folder, folder)
    (folder / "excluded_ids.txt").write_text(f"abc\n{tmp_path}/lists/eval_ids.txt\n")
    with pytest.raises(ValueError, match=r"excluded_ids\.txt would publish .*eval_ids\.txt.*path of this machine"):
        publish.stage_dataset(folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unfinished_dataset_is_refused_with_the_missing_units(af_folder, tmp_path):
    folder = tmp_path / "partial"
    shutil.copytree(af_folder, folder)
    (folder / "failures" / "00001.jsonl").unlink()
    with pytest.raises(ValueError, match=r"unfinished: units \[1\] of 2"):
        publish.stage_dataset(folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_dataset_missing_a_shard_is_refused_though_its_failure_list_is_there(af_folder, tmp_path):
    # The resume flaw of issue 15: a unit's done-marker without its shard is not a finished unit.
    folder = tmp_path / "lost_shard"
    shutil.copytree(af_folder, folder)
    shards = sorted((folder / "data").glob("*.parquet"))
    assert len(shards) == 2 and all((folder / "failures" / f"{u:05d}.jsonl").exists() for u in range(2))
    shards[0].unlink()
    with pytest.raises(ValueError, match=r"unfinished: units \[0\] of 2"):
        publish.stage_dataset(folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_dataset_push_is_a_dataset_repo(af_folder, fake_hub):
    publish.publish_dataset(af_folder, "me/AF-AudioSet")
    assert fake_hub[0][2]["repo_type"] == "dataset" and fake_hub[1][2]["repo_type"] == "dataset"
    assert any(f.startswith("data/") and f.endswith(".parquet") for f in fake_hub[1][2]["files"])


# ------------------------------------------------------------------------------------------------------- space


def wait_for_app(url: str, process, timeout: float = 180.0):
    import time

    from gradio_client import Client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the app exited with {process.returncode}: {process.stdout.read()}")
        try:
            return Client(url, verbose=False)
        except Exception:  # not listening yet
            time.sleep(1.0)
    raise AssertionError(f"the app did not start within {timeout} s")


def test_space_dry_run_starts_from_its_folder_and_generates(tmp_path, forbidden):
    import socket
    import subprocess
    import sys

    staged = publish.publish_space("me/tango-af", datasets=["me/AF-AudioSet"], dry_run=tmp_path / "space")
    assert {"app.py", "requirements.txt", "README.md", "model/model_index.json"} <= set(files_of(staged))
    # The embedded default is saved from a folder of this project, which its configs would otherwise name.
    assert machine_paths_in(staged, forbidden) == {}
    assert not (staged / "space_config.json").exists()
    # The embedded default brings its example prompts, in its own vocabulary, for the app to offer.
    if (DEFAULT_MODEL_DIR / "example_prompts.json").is_file():
        assert (staged / "model" / "example_prompts.json").read_text() == (
            DEFAULT_MODEL_DIR / "example_prompts.json"
        ).read_text()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "TANGO_AF_MODEL"}
    process = subprocess.Popen(
        [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)],
        cwd=staged, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        client = wait_for_app(f"http://127.0.0.1:{port}/", process)
        result = client.predict("a bell rings", "", 1.0, 2, 3.0, 5, False, 2, api_name="/generate")
    finally:
        process.terminate()
        process.wait(timeout=30)
    wavs = [item for item in result if isinstance(item, str) and item.endswith(".wav")]
    wavs += [
        item["value"] for item in result if isinstance(item, dict) and str(item.get("value", "")).endswith(".wav")
    ]
    assert len(wavs) == 2
    audio, rate = sf.read(wavs[0])
    assert rate == 16000 and len(audio) == 16000


def test_space_links_a_hub_model_or_embeds_a_folder(trained_folder, resaved_folder, tmp_path, forbidden):
    from huggingface_hub import SpaceCard

    linked = publish.stage_space(tmp_path / "linked", model="me/tango-af", datasets=["me/AF-AudioSet"])
    assert json.loads((linked / "space_config.json").read_text()) == {"model": "me/tango-af"}
    assert not (linked / "model").exists()
    data = SpaceCard.load(linked / "README.md").data
    assert data.models == ["me/tango-af"] and data.datasets == ["me/AF-AudioSet"]

    embedded = publish.stage_space(tmp_path / "embedded", model=str(resaved_folder), models=["me/tango-af"])
    assert machine_paths_in(embedded, forbidden) == {}
    assert not any(f.startswith(("model/checkpoint-", "model/logs")) for f in files_of(embedded))
    pipe = DiffusionPipeline.from_pretrained(embedded / "model", trust_remote_code=True)
    assert pipe.has_clap_scorer
    assert SpaceCard.load(embedded / "README.md").data.models == ["me/tango-af"]
    with pytest.raises(ValueError, match="is a file"):
        publish.stage_space(tmp_path / "bad", model=str(trained_folder / "model_index.json"))


def test_space_push_creates_a_gradio_space(fake_hub, tmp_path):
    dry = publish.publish_space("me/tango-af", model="me/tango", dry_run=tmp_path / "dry")
    publish.publish_space("me/tango-af", model="me/tango")
    (_, repo, create_kwargs), (_, _, upload_kwargs) = fake_hub
    assert repo == "me/tango-af" and create_kwargs["repo_type"] == "space" and create_kwargs["space_sdk"] == "gradio"
    assert upload_kwargs["repo_type"] == "space" and upload_kwargs["files"] == files_of(dry)
