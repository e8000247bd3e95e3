"""End-to-end tests of the AF-AudioSet builder on tiny captioner / CLAP checkpoints and generated audio."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch
from datasets import load_dataset

from datasets_scripts import AFAudioSet, build_models, load_af_audioset
from datasets_scripts import build as build_module
from datasets_scripts.build import build_af_audioset, merge_shards
from datasets_scripts.cli import main as cli_main
from datasets_scripts.released import import_released, read_released_captions
from datasets_scripts.schema import TAU_PRESETS, config_name
from datasets_scripts.scorer import ClapScorer
from datasets_scripts.sources import clips_from_audio_dir

NUM_CAPTIONS = 4


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    """Tones, noise, silence, a corrupt file, stereo 44.1 kHz, 3 s, 12 s and 25 s clips, and a too-short one."""
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)

    def tone(freq, seconds, rate):
        t = np.arange(int(seconds * rate)) / rate
        return 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)

    sf.write(root / "a_tone3s.wav", tone(440, 3, 16000), 16000)
    sf.write(root / "b_noise25s.flac", (0.1 * rng.standard_normal(((25 * 44100), 2))).astype(np.float32), 44100)
    sf.write(root / "c_tone12s48k.wav", tone(1000, 12, 48000), 48000)
    sf.write(root / "d_silence.wav", np.zeros(16000 * 4, dtype=np.float32), 16000)
    (root / "e_corrupt.wav").write_bytes(
        b"RIFF not really a wav file" + bytes(rng.integers(0, 255, 200, dtype=np.uint8))
    )
    sf.write(root / "f_short.wav", tone(300, 0.4, 16000), 16000)
    sf.write(
        root / "g_chirp5s.wav",
        (0.2 * np.sin(2 * np.pi * np.cumsum(np.linspace(200, 4000, 80000)) / 16000)).astype(np.float32),
        16000,
    )
    return root


def build(models, audio_dir, output, **kwargs):
    options = {
        "captioner": models["captioner"],
        "clap": models["clap"],
        "num_captions": NUM_CAPTIONS,
        "unit_size": 3,
        "batch_size": 2,
        "max_new_tokens": 6,
    }
    options.update(kwargs)
    return build_af_audioset(clips_from_audio_dir(audio_dir), output, **options)


def read_all(folder):
    table = load_dataset(str(folder), "all", split="train").to_pandas()
    return table.sort_values(["clip_id", "window_start", "caption_index"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def built(models, audio_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("built") / "af"
    summary = build(models, audio_dir, output, exclude_ids={"g_chirp5s"})
    return output, summary


def test_every_clip_is_accounted_for(built):
    output, summary = built
    assert summary.clips == 7 and summary.excluded == 1
    assert summary.captioned_clips + summary.failed_clips + summary.excluded == summary.clips
    assert summary.failures_by_reason == {"silent": 1, "too_short": 1, "unreadable": 1}
    failures = [
        json.loads(line)
        for path in sorted((output / "failures").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    assert {f["clip_id"]: f["reason"] for f in failures} == {
        "d_silence": "silent",
        "e_corrupt": "unreadable",
        "f_short": "too_short",
    }
    assert (output / "excluded_ids.txt").read_text() == "g_chirp5s\n"


def test_windows_captions_and_ranks(built):
    output, summary = built
    table = read_all(output)
    windows = table.groupby(["clip_id", "window_start"])
    assert sorted(table["clip_id"].unique()) == ["a_tone3s", "b_noise25s", "c_tone12s48k"]
    starts = table.groupby("clip_id")["window_start"].unique()
    assert sorted(starts["b_noise25s"]) == [0.0, 10.0, 20.0] and sorted(starts["c_tone12s48k"]) == [0.0, 10.0]
    assert summary.windows == len(windows) == 6 and summary.captions == len(table) == 6 * NUM_CAPTIONS
    for _, window in windows:
        assert sorted(window["caption_index"]) == list(range(NUM_CAPTIONS))
        assert sorted(window["rank"]) == list(range(NUM_CAPTIONS))
        by_rank = window.sort_values("rank")["clap_similarity"].to_numpy()
        assert np.all(by_rank[:-1] >= by_rank[1:])
    assert set(table["prompt"]) == {"Can you briefly describe what you hear in this audio?"}
    # A local model folder is named by its own name in the rows (they are published as they are), never by its path.
    captioner = json.loads((output / "build_config.json").read_text())["captioner"]
    assert os.path.isdir(captioner) and set(table["captioner"]) == {os.path.basename(captioner)}


def test_similarities_equal_a_direct_clap_computation(built, models, audio_dir, float32_close):
    from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

    output, _ = built
    table = read_all(output)
    window = table[(table["clip_id"] == "c_tone12s48k") & (table["window_start"] == 0.0)]
    model = ClapModel.from_pretrained(models["clap"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(models["clap"])
    extractor = ClapFeatureExtractor.from_pretrained(models["clap"])
    audio, rate = sf.read(audio_dir / "c_tone12s48k.wav", dtype="float32")
    # laion_clap quantises every clip to int16 and back before embedding it.
    audio = ((np.clip(audio[: 10 * rate], -1, 1) * 32767.0).astype(np.int16) / 32767.0).astype(np.float32)
    features = extractor([audio], sampling_rate=rate, return_tensors="pt")
    tokens = tokenizer(list(window["caption"]), padding=True, return_tensors="pt")
    with torch.no_grad():
        audio_embeds = model.get_audio_features(**features).pooler_output
        text_embeds = model.get_text_features(**tokens).pooler_output
    expected = torch.nn.functional.cosine_similarity(text_embeds, audio_embeds, dim=-1).numpy()
    float32_close(window["clap_similarity"].to_numpy(), expected)


def test_tau_configs_return_exactly_the_filtered_rows(built):
    output, _ = built
    table = read_all(output)
    # The random CLAP's scores sit wherever they sit: a tau between them makes the check non-trivial.
    tau = float(np.median(table["clap_similarity"]))
    for loaded in (
        load_af_audioset(output, tau=tau, top_k=3).to_pandas(),
        load_dataset(
            str(output), "all", split="train", filters=[("rank", "<", 3), ("clap_similarity", ">=", tau)]
        ).to_pandas(),
    ):
        expected = table[(table["rank"] < 3) & (table["clap_similarity"] >= np.float32(tau))]
        assert 0 < len(loaded) < len(table)
        key = ["clip_id", "window_start", "caption_index"]
        assert sorted(map(tuple, loaded[key].to_numpy())) == sorted(map(tuple, expected[key].to_numpy()))

    builder = AFAudioSet(data_dir=str(output), tau=tau, top_k=2, cache_dir=str(output.parent / "cache"))
    builder.download_and_prepare()
    from_builder = builder.as_dataset(split="train").to_pandas()
    assert len(from_builder) == ((table["rank"] < 2) & (table["clap_similarity"] >= np.float32(tau))).sum()
    with pytest.raises(ValueError, match="1.5"):
        load_af_audioset(output, tau=1.5)


def test_preset_configs_filter_exactly(tmp_path):
    from datasets_scripts.schema import rows_to_table, write_table_atomically
    from model_cards.dataset_card import write_dataset_card

    rng = np.random.default_rng(0)
    rows = []
    for clip in range(30):
        scores = rng.uniform(0.25, 0.6, 5).astype(np.float32)
        order = np.argsort(-scores, kind="stable")
        for index, score in enumerate(scores):
            rank = int(np.where(order == index)[0][0])
            rows.append(
                {
                    "clip_id": f"c{clip:02d}",
                    "window_start": 0.0,
                    "caption_index": index,
                    "caption": f"caption {clip} {index}",
                    "clap_similarity": float(score),
                    "rank": rank,
                    "captioner": "x",
                    "clap": "y",
                    "prompt": "p",
                }
            )
    write_table_atomically(rows_to_table(rows[:75]), tmp_path / "data" / "train-00000-of-00002.parquet")
    write_table_atomically(rows_to_table(rows[75:]), tmp_path / "data" / "train-00001-of-00002.parquet")
    write_dataset_card(tmp_path, top_k=3)
    readme = (tmp_path / "README.md").read_text()
    stats = json.loads((tmp_path / "stats.json").read_text())
    for tau in TAU_PRESETS:
        assert f"config_name: {config_name(tau)}" in readme
        loaded = load_dataset(str(tmp_path), config_name(tau), split="train").to_pandas()
        expected = {
            (r["clip_id"], r["caption_index"])
            for r in rows
            if r["rank"] < 3 and np.float32(r["clap_similarity"]) >= np.float32(tau)
        }
        assert 0 < len(expected) < 90
        assert set(zip(loaded["clip_id"], loaded["caption_index"])) == expected and len(loaded) == len(expected)
        assert stats["presets"][config_name(tau)]["captions"] == len(expected)
    assert len(load_af_audioset(tmp_path, tau=0.99)) == 0


def test_a_folder_rewritten_in_place_never_loads_stale_rows(tmp_path):
    # datasets 5.2 caches a folder with card `configs` by its name and patterns only; the loader must see new files.
    from datasets_scripts.schema import rows_to_table, write_table_atomically
    from model_cards.dataset_card import write_dataset_card

    def write(folder, count):
        rows = [{"clip_id": f"c{i:02d}", "window_start": 0.0, "caption_index": 0, "caption": f"caption {i}",
                 "clap_similarity": 0.5, "rank": 0, "captioner": "x", "clap": "y", "prompt": "p"} for i in range(count)]  # fmt: skip
        write_table_atomically(rows_to_table(rows), folder / "data" / "train-00000-of-00001.parquet")
        write_dataset_card(folder, top_k=3)

    first, second = tmp_path / "a" / "same_name", tmp_path / "b" / "same_name"
    write(first, 12)
    assert len(load_af_audioset(first, tau=None)) == 12
    write(first, 5)  # rebuilt in place
    assert len(load_af_audioset(first, tau=None)) == 5
    write(second, 7)  # another folder of the same name
    assert len(load_af_audioset(second, tau=None)) == 7
    assert len(load_af_audioset(first, tau=None)) == 5


def test_card_and_plots(built):
    output, _ = built
    readme = (output / "README.md").read_text()
    assert "dataset_info" in readme and "filters" in readme and "non-commercial" in readme
    assert "assets/clap_similarity_histogram.png" in readme and "assets/size_vs_tau.png" in readme
    for png in ("clap_similarity_histogram.png", "size_vs_tau.png"):
        assert (output / "assets" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stats = json.loads((output / "stats.json").read_text())
    assert stats["all"]["captions"] == 6 * NUM_CAPTIONS and stats["all"]["clips"] == 3


def test_rerun_is_identical_and_resume_after_kill(models, audio_dir, built, tmp_path, monkeypatch):
    reference = read_all(built[0])
    calls = {"n": 0}
    original = build_module.run_unit

    def dies_on_second_unit(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated kill")
        return original(*args, **kwargs)

    monkeypatch.setattr(build_module, "run_unit", dies_on_second_unit)
    with pytest.raises(KeyboardInterrupt):
        build(models, audio_dir, tmp_path / "out", exclude_ids={"g_chirp5s"})
    assert len(list((tmp_path / "out" / "data").glob("*.parquet"))) == 1
    monkeypatch.setattr(build_module, "run_unit", original)
    summary = build(models, audio_dir, tmp_path / "out", exclude_ids={"g_chirp5s"})
    assert summary.units_skipped == 1 and summary.units_done == 1
    assert summary.captioned_clips + summary.failed_clips + summary.excluded == summary.clips
    resumed = read_all(tmp_path / "out")
    assert resumed.equals(reference)


def test_resume_with_other_settings_is_refused(models, audio_dir, built, tmp_path):
    shutil.copytree(built[0], tmp_path / "copy")
    with pytest.raises(ValueError, match=r"num_captions: 4 there vs 2 now"):
        build(models, audio_dir, tmp_path / "copy", exclude_ids={"g_chirp5s"}, num_captions=2, top_k=2)


def test_machines_split_then_merge(models, audio_dir, built, tmp_path):
    parts = [
        build(models, audio_dir, tmp_path / f"m{index}", exclude_ids={"g_chirp5s"}, num_shards=2, shard_index=index)
        for index in range(2)
    ]
    for part in parts:
        assert part.captioned_clips + part.failed_clips + part.excluded == part.clips
    assert sum(part.clips for part in parts) == 7
    assert not (tmp_path / "m0" / "README.md").exists()
    with pytest.raises(ValueError, match=r"missing units \[1\]"):
        merge_shards([tmp_path / "m0"], tmp_path / "merged")
    shutil.copytree(tmp_path / "m0", tmp_path / "m0copy")
    with pytest.raises(ValueError, match="more than once"):
        merge_shards([tmp_path / "m0", tmp_path / "m0copy", tmp_path / "m1"], tmp_path / "merged")
    # A folder holding the user's own README is refused as the merge's output, before anything is copied.
    (tmp_path / "users").mkdir()
    (tmp_path / "users" / "README.md").write_text("mine")
    with pytest.raises(ValueError, match=r"holds README\.md, which this builder did not write"):
        merge_shards([tmp_path / "m0", tmp_path / "m1"], tmp_path / "users")
    assert sorted(p.name for p in (tmp_path / "users").iterdir()) == ["README.md"]
    summary = merge_shards([tmp_path / "m0", tmp_path / "m1"], tmp_path / "merged")
    assert summary.captioned_clips + summary.failed_clips + summary.excluded == summary.clips == 7
    # The merged summary keeps every shard's measured time: the sum of the units' records.
    records = [
        json.loads(p.read_text()) for folder in ("m0", "m1") for p in (tmp_path / folder / "units").glob("*.json")
    ]
    assert summary.timed_clips == 7 - 1 and summary.seconds == pytest.approx(
        sum(r["seconds"] for r in records), rel=1e-12
    )
    assert read_all(tmp_path / "merged").equals(read_all(built[0]))


def test_embedded_audio_is_the_window(models, audio_dir, tmp_path):
    sources = [s for s in clips_from_audio_dir(audio_dir) if s.clip_id == "a_tone3s"]
    build_af_audioset(
        sources,
        tmp_path / "out",
        captioner=models["captioner"],
        clap=models["clap"],
        num_captions=2,
        top_k=2,
        max_new_tokens=4,
        embed_audio=True,
    )
    rows = load_dataset(str(tmp_path / "out"), "all", split="train")
    audio = rows[0]["audio"].get_all_samples()
    assert audio.sample_rate == 16000 and audio.data.shape[-1] == 3 * 16000
    original, _ = sf.read(audio_dir / "a_tone3s.wav", dtype="float32")
    np.testing.assert_allclose(audio.data[0].numpy(), original, atol=1e-4)


def test_released_import(models, audio_dir, tmp_path):
    released = tmp_path / "AF-AudioSet.json"
    lines = [
        {"ytid": "a_tone3s", "caption": "A steady tone."},
        {"ytid": "a_tone3s", "caption": "A steady tone. "},
        {"ytid": "a_tone3s", "caption": "A beep."},
        {"ytid": "zz_missing", "caption": "Birds sing."},
        {"ytid": "d_silence", "caption": "Nothing."},
    ]
    released.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    assert read_released_captions(released) == {
        "a_tone3s": ["A steady tone.", "A beep."],
        "d_silence": ["Nothing."],
        "zz_missing": ["Birds sing."],
    }

    counts = import_released(released, tmp_path / "plain")
    plain = read_all(tmp_path / "plain")
    assert counts["captions"] == len(plain) == 4 and plain["clap_similarity"].isna().all()

    scorer = ClapScorer.from_pretrained(models["clap"])
    counts = import_released(
        released, tmp_path / "scored", audio_sources=clips_from_audio_dir(audio_dir), scorer=scorer
    )
    scored = read_all(tmp_path / "scored")
    assert counts == {"ytids": 3, "captions": 4, "scored_clips": 1, "audio_failures": 1, "no_audio": 1}
    tone = scored[scored["clip_id"] == "a_tone3s"]
    assert tone["clap_similarity"].notna().all() and sorted(tone["rank"]) == [0, 1]
    assert scored[scored["clip_id"] != "a_tone3s"]["clap_similarity"].isna().all()
    assert json.loads((tmp_path / "scored" / "failures.jsonl").read_text())["reason"] == "silent"


def test_released_import_never_overwrites_and_leaves_no_stale_shard(built, tmp_path):
    released = tmp_path / "AF-AudioSet.json"
    released.write_text("".join(json.dumps({"ytid": f"y{i}", "caption": f"Caption {i}."}) + "\n" for i in range(5)))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("mine")
    with pytest.raises(ValueError, match=r"holds README\.md, which no import of the released captions wrote"):
        import_released(released, mine)
    assert sorted(p.name for p in mine.iterdir()) == ["README.md"]
    # A build's folder is not an import's either: its settings file is refused by name.
    with pytest.raises(ValueError, match=r"holds build_config\.json, which no import"):
        import_released(released, built[0])
    import_released(released, tmp_path / "out", unit_size=2)
    assert len(list((tmp_path / "out" / "data").glob("*.parquet"))) == 3
    # Imported again in one shard: the three earlier shards would be read as data, so they are deleted.
    import_released(released, tmp_path / "out", unit_size=10)
    assert [p.name for p in (tmp_path / "out" / "data").glob("*.parquet")] == ["train-00000-of-00001.parquet"]
    assert sorted(read_all(tmp_path / "out")["caption"]) == [f"Caption {i}." for i in range(5)]


def test_cli_build(models, audio_dir, built, tmp_path, capsys):
    exclude = tmp_path / "audiocaps_test.csv"
    exclude.write_text(
        "audiocap_id,youtube_id,start_time,caption\n1,b_noise25s,0,noise\n2,c_tone12s48k,0,tone\n3,g_chirp5s,0,x\n"
    )
    argv = [
        "build",
        "--audio-dir",
        str(audio_dir),
        "--output",
        str(tmp_path / "cli"),
        "--captioner",
        models["captioner"],
        "--clap",
        models["clap"],
    ]
    argv += ["--num-captions", "2", "--top-k", "2", "--max-new-tokens", "4", "--exclude-ids", str(exclude)]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "7 clips: 1 captioned" in printed and "3 excluded" in printed
    assert pq.read_table(tmp_path / "cli" / "data" / "train-00000-of-00001.parquet").num_rows == 2
    # A build with other settings in the same process must not reuse the models (and limits) of an earlier one.
    loaded = [model for key, model in build_models._MODELS.items() if key[0] == "captioner"]
    assert any(c.max_new_tokens == 4 for c in loaded) and any(c.max_new_tokens == 6 for c in loaded)
    assert cli_main(["build", "--output", str(tmp_path / "x")]) == 2
    assert "exactly one source" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_worker_processes_give_the_same_dataset(models, audio_dir, built, tmp_path):
    # Two workers, each loading its own models lazily (on the CPU here, one GPU each on a GPU machine).
    build(models, audio_dir, tmp_path / "procs", exclude_ids={"g_chirp5s"}, num_proc=2)
    assert read_all(tmp_path / "procs").equals(read_all(built[0]))


def test_hugging_face_dataset_source(models, audio_dir, tmp_path):
    from datasets import Audio, Dataset

    from datasets_scripts.sources import load_hf_source

    files = [audio_dir / "a_tone3s.wav", audio_dir / "e_corrupt.wav"]
    dataset = Dataset.from_dict({"audio": [str(f) for f in files], "ytid": ["tone", "broken"]})
    dataset.cast_column("audio", Audio()).save_to_disk(tmp_path / "hf")
    argv = ["build", "--hf-dataset", str(tmp_path / "hf"), "--id-column", "ytid", "--output", str(tmp_path / "out")]
    argv += [
        "--captioner",
        models["captioner"],
        "--clap",
        models["clap"],
        "--num-captions",
        "2",
        "--top-k",
        "2",
        "--max-new-tokens",
        "4",
    ]
    assert cli_main(argv) == 0
    table = read_all(tmp_path / "out")
    assert set(table["clip_id"]) == {"tone"} and len(table) == 2
    failures = (tmp_path / "out" / "failures" / "00000.jsonl").read_text()
    assert '"clip_id": "broken"' in failures and '"unreadable"' in failures
    assert {s.clip_id for s in load_hf_source(str(tmp_path / "hf"), id_column="ytid")} == {"broken", "tone"}


def test_push_uploads_the_folder_as_a_dataset_repo(built, fake_hub):
    assert cli_main(["push", "--folder", str(built[0]), "--repo-id", "me/AF-AudioSet"]) == 0
    (_, repo, create), (_, _, upload) = fake_hub
    assert repo == "me/AF-AudioSet" and create["repo_type"] == "dataset" and upload["repo_type"] == "dataset"
    shards = {str(p.relative_to(built[0])) for p in (built[0] / "data").glob("*.parquet")}
    assert shards and shards <= set(upload["files"]) and "README.md" in upload["files"]
