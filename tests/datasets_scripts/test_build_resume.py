"""Resuming, re-running and refusing: the AF-AudioSet builder never loses a unit, a measurement or a user's file.

One reference build (unit size 1: one clip per unit, so that a single unit can be damaged) is made once per module;
each test copies it and damages or extends the copy. Each clip lasts 1.2 s (one window) and gets 2 captions.

What is tested here is the bookkeeping around the models, so most builds caption and score with deterministic
stand-ins (`EchoCaptioner`, `LevelScorer`, as loaded models are passed to the builder); the tests that are about
the models (loading them, a unit redone with them) use the tiny random checkpoints of `debug_models`.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from datasets_scripts import units as units_module
from datasets_scripts.build import build_af_audioset, finalize_folder, unfinished_units
from datasets_scripts.captioner import CAPTION_PROMPT
from datasets_scripts.sources import clips_from_audio_dir
from datasets_scripts.validation import ArgumentError

NUM_CAPTIONS = 2
# Sorted by id: README.txt (not audio), a300, b500, c700, d_silent (fails: silent) -> units 0..4.
UNIT_OF = {"README.txt": 0, "a300": 1, "b500": 2, "c700": 3, "d_silent": 4}


@pytest.fixture(scope="module")
def clips(tmp_path_factory, ffmpeg_audio):
    root = tmp_path_factory.mktemp("clips")
    for name, frequency in (("a300", 300), ("b500", 500), ("c700", 700)):
        ffmpeg_audio(root / f"{name}.wav", source=f"sine=frequency={frequency}:duration=1.2:sample_rate=16000")
    ffmpeg_audio(root / "d_silent.wav", "-t", "1.2", source="anullsrc=r=16000:cl=mono")
    (root / "README.txt").write_text("Clips for the tests.\n")
    return root


class EchoCaptioner:
    """Captions that name the window and its level: deterministic, instant, and different for every window."""

    model_id = "test/echo-captioner"
    num_captions, seed, max_new_tokens, prompt, device = NUM_CAPTIONS, 0, 3, CAPTION_PROMPT, "cpu"

    def caption(self, keys, audios):
        return [
            [f"{key} sample {j} level {np.abs(audio).max():.4f}" for j in range(NUM_CAPTIONS)]
            for key, audio in zip(keys, audios)
        ]


class LevelScorer:
    """Scores from the audio's level and the caption's sample number, so that every caption has its own rank."""

    model_id = "test/level-scorer"

    def score(self, audios, captions):
        return [
            [float(np.abs(audio).max()) - 0.1 * j for j in range(len(texts))] for audio, texts in zip(audios, captions)
        ]


def build(models, clips, output, real_models=False, **kwargs):
    options = {
        "captioner": models["captioner"] if real_models else EchoCaptioner(),
        "clap": models["clap"] if real_models else LevelScorer(),
        "num_captions": NUM_CAPTIONS,
        "top_k": NUM_CAPTIONS,
        "unit_size": 1,
        "batch_size": 1,
        "max_new_tokens": 3,
    }
    options.update(kwargs)
    return build_af_audioset(clips_from_audio_dir(clips), output, **options)


@pytest.fixture(scope="module")
def reference(models, clips, tmp_path_factory):
    output = tmp_path_factory.mktemp("reference") / "af"
    summary = build(models, clips, output)
    return output, summary


def table(folder):
    frame = pq.read_table(sorted(Path(folder, "data").glob("*.parquet"))).to_pandas()
    return frame.sort_values(["clip_id", "window_start", "caption_index"]).reset_index(drop=True)


def shard(folder, clip_id):
    return Path(folder, "data", f"train-{UNIT_OF[clip_id]:05d}-of-00005.parquet")


@pytest.fixture
def copy(reference, tmp_path):
    target = tmp_path / "af"
    shutil.copytree(reference[0], target)
    return target


def test_reference_accounts_for_every_file(reference):
    output, summary = reference
    assert (summary.clips, summary.captioned_clips, summary.failed_clips) == (5, 3, 2)
    assert summary.failures_by_reason == {"not_audio": 1, "silent": 1}
    assert summary.captions == len(table(output)) == 3 * NUM_CAPTIONS
    failures = {
        json.loads(line)["clip_id"]: json.loads(line)["reason"]
        for path in sorted((output / "failures").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    }
    assert failures == {"README.txt": "not_audio", "d_silent": "silent"}
    # A unit whose only clip failed has no shard (an empty parquet file breaks the datasets reader).
    assert not shard(output, "d_silent").exists() and not shard(output, "README.txt").exists()
    assert unfinished_units(output) == {}


def test_deleted_shard_is_redone_not_trusted(models, clips, reference, copy):
    shard(copy, "b500").unlink()
    assert unfinished_units(copy) == {UNIT_OF["b500"]: "data/train-00002-of-00005.parquet is missing"}
    summary = build(models, clips, copy)
    assert (summary.units_done, summary.units_skipped, summary.captions) == (1, 4, 3 * NUM_CAPTIONS)
    assert table(copy).equals(table(reference[0]))
    stats = json.loads((copy / "stats.json").read_text())
    assert stats["all"]["captions"] == 3 * NUM_CAPTIONS
    assert json.loads((copy / "build_summary.json").read_text())["captions"] == 3 * NUM_CAPTIONS


def test_single_unit_build_with_its_shard_deleted_is_redone(models, clips, tmp_path):
    # The real (tiny) models: the unit redone must give back the very captions and scores.
    sources = [s for s in clips_from_audio_dir(clips) if s.clip_id == "a300"]
    options = {
        "captioner": models["captioner"],
        "clap": models["clap"],
        "num_captions": NUM_CAPTIONS,
        "top_k": NUM_CAPTIONS,
        "max_new_tokens": 3,
    }
    first = build_af_audioset(sources, tmp_path / "one", **options)
    expected = table(tmp_path / "one")
    (tmp_path / "one" / "data" / "train-00000-of-00001.parquet").unlink()
    again = build_af_audioset(sources, tmp_path / "one", **options)
    assert (again.units_done, again.captioned_clips) == (1, 1) and first.captions == again.captions == NUM_CAPTIONS
    assert table(tmp_path / "one").equals(expected)
    summary = json.loads((tmp_path / "one" / "build_summary.json").read_text())
    assert (summary["captioned_clips"], summary["captions"]) == (1, NUM_CAPTIONS)
    # Both runs' measurements are kept: the first unit's record was replaced by the second's, nothing is summed twice.
    assert summary["timed_clips"] == 1 and summary["device_seconds"] > 0


@pytest.mark.parametrize(
    "damage, named",
    [
        ("truncate", "data/train-00002-of-00005.parquet"),
        ("flip_a_byte", "data/train-00002-of-00005.parquet"),
        ("other_units_shard", "data/train-00002-of-00005.parquet"),
        ("failures_edited", "failures/00002.jsonl"),
    ],
)
def test_damaged_unit_is_redone(models, clips, reference, copy, damage, named, caplog):
    path = shard(copy, "b500")
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip_a_byte":
        # Same size, one byte changed in the middle (a page of data): only the hash can tell.
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
    elif damage == "other_units_shard":
        # A valid shard, of another unit: its rows disagree with this unit's failures list and record.
        shutil.copyfile(shard(copy, "c700"), path)
    else:
        # The shard says b500 was captioned; a failures list that says it failed disagrees with it.
        (copy / "failures" / "00002.jsonl").write_text('{"clip_id": "b500", "reason": "silent"}\n')
    with caplog.at_level(logging.WARNING, logger="datasets_scripts.build"):
        summary = build(models, clips, copy)
    assert any(f"Unit 2 is redone: {named} is not the file the unit wrote" in r.message for r in caplog.records)
    assert (summary.units_done, summary.units_skipped) == (1, 4)
    assert table(copy).equals(table(reference[0]))
    assert (copy / "failures" / "00002.jsonl").read_text() == ""


def test_stale_shard_of_a_unit_without_captions_is_removed(models, clips, reference, copy):
    # d_silent's unit has no shard; one appearing there would be read as data.
    shutil.copyfile(shard(copy, "a300"), shard(copy, "d_silent"))
    assert "exists but the unit has no captions" in unfinished_units(copy)[UNIT_OF["d_silent"]]
    summary = build(models, clips, copy)
    assert summary.units_done == 1 and not shard(copy, "d_silent").exists()
    assert table(copy).equals(table(reference[0]))


def test_killed_between_shard_and_record_leaves_a_redone_unit(models, clips, reference, copy, monkeypatch):
    # A killed job: unit 2's shard and failures are written, its record is not, and a temporary file is left.
    record = copy / "units" / "00002.json"
    record.unlink()
    stray = copy / "data" / ".train-00002-of-00005.parquet.4242.tmp"
    stray.write_bytes(b"half a shard")
    summary = build(models, clips, copy)
    assert (summary.units_done, summary.units_skipped) == (1, 4)
    assert record.is_file() and not stray.exists()
    assert table(copy).equals(table(reference[0]))


def test_kill_while_writing_a_unit_then_resume(models, clips, reference, tmp_path, monkeypatch):
    original = units_module.write_json_atomically
    calls = {"n": 0}

    def killed_on_the_second_record(path, record):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated kill after the shard, before the record")
        return original(path, record)

    monkeypatch.setattr(units_module, "write_json_atomically", killed_on_the_second_record)
    with pytest.raises(KeyboardInterrupt):
        build(models, clips, tmp_path / "out")
    monkeypatch.setattr(units_module, "write_json_atomically", original)
    assert shard(tmp_path / "out", "a300").exists() and not (tmp_path / "out" / "units" / "00001.json").exists()
    assert not (tmp_path / "out" / "README.md").exists() and not (tmp_path / "out" / "build_summary.json").exists()
    summary = build(models, clips, tmp_path / "out")
    assert (summary.units_done, summary.units_skipped) == (4, 1)
    assert table(tmp_path / "out").equals(table(reference[0]))


def test_unit_written_with_other_settings_is_redone(models, clips, reference, copy, caplog):
    record_path = copy / "units" / "00003.json"
    record = json.loads(record_path.read_text())
    record["config_sha256"] = "0" * 64
    record_path.write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING, logger="datasets_scripts.build"):
        summary = build(models, clips, copy)
    assert summary.units_done == 1 and any("other build settings" in r.message for r in caplog.records)
    assert table(copy).equals(table(reference[0]))


# ---------------------------------------------------------------------------------------------------- item 5


def test_rerun_of_a_finished_build_keeps_its_measurements_and_card(models, clips, reference, copy):
    before = json.loads((copy / "build_summary.json").read_text())
    readme = (copy / "README.md").read_bytes()
    summary = build(models, clips, copy)
    assert (summary.units_done, summary.units_skipped) == (0, 5)
    after = json.loads((copy / "build_summary.json").read_text())
    # The cost is the sum of the units' records, measured when each unit was built: a rerun that builds nothing
    # keeps it (the same numbers, summed in the same order).
    assert after["device_seconds_per_clip"] == before["device_seconds_per_clip"] > 0
    assert after["timed_clips"] == before["timed_clips"] == 5
    assert "device-hours" in (copy / "README.md").read_text() and (copy / "README.md").read_bytes() == readme


def test_resumed_build_merges_old_and_new_measurements(models, clips, reference, copy):
    records = {path.name: json.loads(path.read_text()) for path in (copy / "units").glob("*.json")}
    kept_seconds = sum(r["seconds"] for name, r in records.items() if name != "00002.json")
    shard(copy, "b500").unlink()
    build(models, clips, copy)
    redone = json.loads((copy / "units" / "00002.json").read_text())["seconds"]
    after = json.loads((copy / "build_summary.json").read_text())
    assert after["timed_clips"] == 5
    # float64 sums of five positive terms in another order: they agree to a few ulps of the total.
    assert after["seconds"] == pytest.approx(kept_seconds + redone, rel=8 * np.finfo(np.float64).eps)


def test_the_users_own_readme_is_never_replaced(models, clips, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "README.md").write_text("# My notes\n")
    with pytest.raises(ArgumentError, match=r"holds README\.md, which this builder did not write"):
        build(models, clips, folder)
    assert (folder / "README.md").read_text() == "# My notes\n"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md"]


def test_a_card_edited_after_the_build_is_refused_before_any_work(models, clips, copy):
    (copy / "README.md").write_text((copy / "README.md").read_text() + "\nMy addition.\n")
    shard(copy, "b500").unlink()
    with pytest.raises(
        ArgumentError, match=r"holds README\.md, which this build did not write \(or which was changed since\)"
    ):
        build(models, clips, copy)
    assert "My addition." in (copy / "README.md").read_text()
    assert not shard(copy, "b500").exists()  # refused before any unit was redone


def test_foreign_files_in_the_data_folder_are_refused(models, clips, copy):
    shutil.copyfile(shard(copy, "a300"), copy / "data" / "extra.parquet")
    with pytest.raises(ArgumentError, match=r"holds data/extra\.parquet"):
        build(models, clips, copy)


def test_other_files_of_the_user_are_left_alone(models, clips, reference, tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    build(models, clips, folder)
    assert (folder / "notes.txt").read_text() == "mine"
    assert table(folder).equals(table(reference[0]))


def test_a_source_whose_clips_all_fail_is_accounted_for_without_a_card(clips, tmp_path):
    sources = [s for s in clips_from_audio_dir(clips) if s.clip_id in ("README.txt", "d_silent")]
    summary = build_af_audioset(
        sources,
        tmp_path / "out",
        captioner=EchoCaptioner(),
        clap=LevelScorer(),
        num_captions=2,
        top_k=2,
        max_new_tokens=3,
    )
    assert (summary.captions, summary.failures_by_reason) == (0, {"not_audio": 1, "silent": 1})
    assert json.loads((tmp_path / "out" / "build_summary.json").read_text())["failed_clips"] == 2
    assert not (tmp_path / "out" / "README.md").exists() and not (tmp_path / "out" / "data").exists()


def test_finalize_refuses_an_unfinished_folder(copy):
    (copy / "units" / "00001.json").unlink()
    with pytest.raises(ArgumentError, match=r"is unfinished: 1 of 5 units are not done: 1 \(not built\)"):
        finalize_folder(copy)


# ---------------------------------------------------------------------------------------------------- item 6


def test_a_failed_start_writes_nothing_and_the_corrected_run_builds(models, clips, tmp_path):
    sources = [s for s in clips_from_audio_dir(clips) if s.clip_id == "a300"]
    options = {"num_captions": NUM_CAPTIONS, "top_k": NUM_CAPTIONS, "max_new_tokens": 3}
    output = tmp_path / "out"
    with pytest.raises(ArgumentError, match=r"captioner '.*nope' does not exist"):
        build_af_audioset(sources, output, captioner=str(tmp_path / "nope"), clap=models["clap"], **options)
    # Folders that exist but hold the other model: refused when loading, before anything is written.
    with pytest.raises(ArgumentError, match=r"captioner '.*clap' is a folder, but not one of an audio captioner"):
        build_af_audioset(sources, output, captioner=models["clap"], clap=models["clap"], **options)
    with pytest.raises(ArgumentError, match=r"clap '.*af3' is a folder, but not one of a CLAP checkpoint"):
        build_af_audioset(sources, output, captioner=models["captioner"], clap=models["captioner"], **options)
    with pytest.raises(ArgumentError, match=r"top_k 0 must be at least 1"):
        build_af_audioset(
            sources, output, captioner=models["captioner"], clap=models["clap"], **{**options, "top_k": 0}
        )
    assert not output.exists()
    summary = build_af_audioset(sources, output, captioner=models["captioner"], clap=models["clap"], **options)
    assert summary.captions == NUM_CAPTIONS and len(table(output)) == NUM_CAPTIONS


def test_a_build_that_finished_no_unit_can_start_again_with_other_settings(models, clips, tmp_path, monkeypatch):
    from datasets_scripts import build as build_module

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed during the first unit")

    monkeypatch.setattr(build_module, "run_unit", killed)
    with pytest.raises(KeyboardInterrupt):
        build(models, clips, tmp_path / "out")
    monkeypatch.undo()
    assert json.loads((tmp_path / "out" / "build_config.json").read_text())["top_k"] == NUM_CAPTIONS
    build(models, clips, tmp_path / "out", top_k=1)
    assert json.loads((tmp_path / "out" / "build_config.json").read_text())["top_k"] == 1
    # Once a unit is done, the settings are the folder's: other ones are refused, naming the difference.
    with pytest.raises(ArgumentError, match=r"was built with other settings \(top_k: 1 there vs 2 now\)"):
        build(models, clips, tmp_path / "out")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"top_k": 3}, r"top_k 3 is more than num_captions \(2\)"),
        ({"num_captions": 0}, r"num_captions 0 must be at least 1"),
        ({"num_captions": True}, r"num_captions True must be a whole number"),
        ({"unit_size": 0}, r"unit_size 0 must be at least 1"),
        ({"batch_size": -1}, r"batch_size -1 must be at least 1"),
        ({"num_shards": 0}, r"num_shards 0 must be at least 1"),
        ({"num_shards": 2, "shard_index": 2}, r"shard_index 2 must be at least 0 and at most 1"),
        ({"seed": -1}, r"seed -1 must be at least 0 and at most 9223372036854775807"),
        ({"seed": 2**63}, r"seed 9223372036854775808 must be at least 0 and at most 9223372036854775807"),
        ({"max_new_tokens": 0}, r"max_new_tokens 0 must be at least 1"),
        ({"num_proc": 0}, r"num_proc 0 must be at least 1"),
        ({"device": "banana"}, r"device 'banana' is not a device name"),
        ({"window_seconds": float("nan")}, r"window_seconds nan must be a finite number"),
        ({"min_seconds": 20.0}, r"min_seconds 20.0 must be in \[0.0, 10.0\]"),
        ({"prompt": "  "}, r"prompt '  ' must be a non-empty string"),
        ({"exclude_ids": "a300"}, r"exclude_ids 'a300' must be a collection of clip ids"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(models, clips, tmp_path, overrides, message):
    with pytest.raises(ArgumentError, match=message):
        build(models, clips, tmp_path / "out", **overrides)
    assert not (tmp_path / "out").exists()


def test_a_cuda_device_without_a_gpu_is_refused(models, clips, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ArgumentError, match=r"device 'cuda:0' needs a CUDA GPU"):
        build(models, clips, tmp_path / "out", device="cuda:0")


def test_sources_without_audio_are_refused_up_front(models, clips, tmp_path):
    with pytest.raises(ArgumentError, match=r"sources: the source is empty, there is no clip to caption"):
        build_af_audioset(
            [], tmp_path / "out", captioner=models["captioner"], clap=models["clap"], num_captions=2, top_k=2
        )
    only_text = tmp_path / "texts"
    only_text.mkdir()
    (only_text / "README.txt").write_text("no audio here")
    with pytest.raises(
        ArgumentError, match=r"sources: no audio, none of the 1 entries is an audio clip \(not_audio 1"
    ):
        build(models, only_text, tmp_path / "out")
    everything = {s.clip_id for s in clips_from_audio_dir(clips)}
    with pytest.raises(ArgumentError, match=r"sources: no clip is left to caption, all 5 are excluded by exclude_ids"):
        build(models, clips, tmp_path / "out", exclude_ids=everything)
    assert not (tmp_path / "out").exists()


def test_a_loaded_captioner_must_sample_what_the_build_records(models, clips, tmp_path):
    captioner = EchoCaptioner()
    captioner.num_captions = 5
    with pytest.raises(
        ArgumentError, match=r"captioner was loaded with num_captions=5, but the build asks for num_captions 2"
    ):
        build(models, clips, tmp_path / "out", captioner=captioner)


def test_output_that_is_a_file_is_refused(models, clips, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArgumentError, match=r"output_dir '.*file' is a file, not a folder"):
        build(models, clips, tmp_path / "file")
