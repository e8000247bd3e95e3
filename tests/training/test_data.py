"""Tests of training.data: source parsing, the three kinds of source, skipping and counting bad clips through a real
DataLoader, deterministic random crops and the weighted mixture sampler.

All audio is generated here with NumPy and written with soundfile into temporary folders; the AF-AudioSet folders
are written with the project's own schema and card helpers (no captioner or CLAP run).
"""

import io
import json
import pickle
from collections import Counter

import datasets
import numpy as np
import pytest
import soundfile as sf
import torch

from model_cards.dataset_card import write_dataset_card
from datasets_scripts.schema import rank_scores, rows_to_table, write_table_atomically
from training.data import (
    AudioCaptionDataset,
    DataSourceSpec,
    MixtureSampler,
    collate_audio_captions,
    parse_source,
)
from training.front_end import TARGET_SAMPLES, prepare_waveform


def tone(frequency, seconds, rate, amplitude=0.3):
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def dominant_frequency(waveform: torch.Tensor, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(waveform.numpy()))
    return float(np.argmax(spectrum) * rate / len(waveform))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Tones and noise at 16 / 22.05 / 44.1 kHz, a corrupt, a zero-byte and a silent file, and a 20 s clip whose
    second half is another tone (named by clip id, for AF-AudioSet)."""
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    sf.write(root / "tone16k.wav", tone(440, 3, 16000), 16000)
    sf.write(root / "noise22k.flac", (0.2 * rng.standard_normal(12 * 22050)).astype(np.float32), 22050)
    sf.write(root / "stereo44k.wav", np.stack([tone(1000, 5, 44100)] * 2, 1), 44100)
    (root / "corrupt.wav").write_bytes(b"RIFF not a wav" + rng.bytes(500))
    (root / "empty.wav").touch()
    sf.write(root / "silent.wav", np.zeros(2 * 16000, dtype=np.float32), 16000)
    sf.write(root / "clipA.wav", np.concatenate([tone(500, 10, 16000), tone(2000, 10, 16000)]), 16000)
    sf.write(root / "clipB.flac", tone(1000, 3, 22050), 22050)
    return root


GOOD = ["tone16k.wav", "noise22k.flac", "stereo44k.wav"]
BAD = {"corrupt.wav": "unreadable", "empty.wav": "empty", "silent.wav": "silent"}


@pytest.fixture(scope="module")
def hf_saved(clips, tmp_path_factory):
    names = GOOD + list(BAD) + ["tone16k.wav"]
    captions = [f"Caption of {name}" for name in names[:-1]] + [""]
    dataset = datasets.Dataset.from_dict(
        {"audio": [str(clips / name) for name in names], "caption": captions, "extra": list(range(len(names)))}
    ).cast_column("audio", datasets.Audio())
    path = tmp_path_factory.mktemp("hf") / "saved"
    dataset.save_to_disk(str(path))
    return str(path)


# AF-AudioSet rows: (clip_id, window_start, CLAP similarities of its captions).
AF_WINDOWS = [
    ("clipA", 0.0, [0.60, 0.50, 0.30, 0.20]),
    ("clipA", 10.0, [0.55, 0.44, 0.46, 0.10]),
    ("clipB", 0.0, [0.50, 0.48, 0.47, 0.46]),
    ("clipZ", 0.0, [0.70, 0.20, 0.15, 0.10]),  # listed but its audio was never downloaded
]


def af_rows(audio_for=None):
    rows = []
    for clip_id, start, scores in AF_WINDOWS:
        for index, (score, rank) in enumerate(zip(scores, rank_scores(scores))):
            row = {
                "clip_id": clip_id,
                "window_start": start,
                "caption_index": index,
                "caption": f"{clip_id}@{start:g} caption {index}",
                "clap_similarity": score,
                "rank": rank,
                "captioner": "af3",
                "clap": "clap",
                "prompt": "p",
            }
            if audio_for is not None:
                row["audio"] = {"bytes": audio_for(clip_id, start), "path": None}
            rows.append(row)
    return rows


def expected_af_rows(tau, top_k):
    return sum(
        1
        for _, _, scores in AF_WINDOWS
        for score, rank in zip(scores, rank_scores(scores))
        if (top_k is None or rank < top_k) and (tau is None or np.float32(score) >= np.float32(tau))
    )


@pytest.fixture(scope="module")
def af_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("af")
    rows = af_rows()
    write_table_atomically(rows_to_table(rows[:8]), root / "data" / "train-00000-of-00002.parquet")
    write_table_atomically(rows_to_table(rows[8:]), root / "data" / "train-00001-of-00002.parquet")
    write_dataset_card(root, top_k=3)
    return root


@pytest.fixture(scope="module")
def af_embedded_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("af_audio")

    def window_wav(clip_id, start):
        # A distinct tone per window, so the decoded audio tells which row it came from.
        frequency = {"clipA": 500.0, "clipB": 1000.0, "clipZ": 3000.0}[clip_id] + 10 * start
        buffer = io.BytesIO()
        sf.write(buffer, tone(frequency, 10, 16000), 16000, format="WAV", subtype="FLOAT")
        return buffer.getvalue()

    write_table_atomically(rows_to_table(af_rows(window_wav), with_audio=True), root / "data" / "train-00000.parquet")
    (root / "build_config.json").write_text(json.dumps({"embed_audio": True, "top_k": 3, "window_seconds": 10.0}))
    write_dataset_card(root, top_k=3)
    return root


def run_loader(dataset, batch_size=4, sampler=None):
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=0, collate_fn=collate_audio_captions
    )
    captions, skipped, skipped_sources, shapes = [], Counter(), Counter(), []
    for batch in loader:
        assert batch["waveforms"].dtype == torch.float32
        assert len(batch["captions"]) == batch["waveforms"].shape[0] == len(batch["sources"])
        if batch["waveforms"].shape[0]:
            shapes.append(tuple(batch["waveforms"].shape[1:]))
            peaks = batch["waveforms"].abs().amax(-1)
            torch.testing.assert_close(peaks, torch.full_like(peaks, 0.5))
        captions.extend(batch["captions"])
        skipped.update(batch["skipped"])
        skipped_sources.update(batch["skipped_sources"])
        assert len(batch["skipped_details"]) == sum(batch["skipped"].values())
    return captions, skipped, skipped_sources, shapes


# ---------------------------------------------------------------- parse_source


def test_parse_source_examples():
    spec = parse_source("af_audioset:/data/af?tau=0.45&top_k=3&audio_dir=/clips&weight=0.7")
    assert spec == DataSourceSpec(
        kind="af_audioset", path="/data/af", weight=0.7, tau=0.45, top_k=3, audio_dir="/clips"
    )
    assert parse_source("hf:/data/audiocaps?caption_column=text") == DataSourceSpec(
        "hf", "/data/audiocaps", caption_column="text"
    )
    assert parse_source("manifest:data/train_audiocaps.json") == DataSourceSpec(
        "manifest", "data/train_audiocaps.json"
    )
    spec = parse_source("hf:org/name?config_name=clean&split=validation&audio_column=wav&weight=2")
    assert (spec.path, spec.config_name, spec.split, spec.audio_column, spec.weight) == (
        "org/name",
        "clean",
        "validation",
        "wav",
        2.0,
    )
    # Percent-encoding lets a path hold the separators.
    assert parse_source("manifest:/a%3Fb/m%26n.json").path == "/a?b/m&n.json"


@pytest.mark.parametrize(
    "spec,message",
    [
        ("s3:/bucket", "Unknown data source kind 's3'"),
        ("/data/af", "kind:path"),
        ("hf:/data?colour=red", "Unknown option 'colour'"),
        ("af_audioset:/data/af?tau=high", "tau='high'"),
        ("af_audioset:/data/af?top_k=2.5", "top_k='2.5'"),
        ("hf:/data?weight=0", "positive"),
        ("hf:/data?weight=1&weight=2", "given twice"),
        ("af_audioset:/data/af?tau=1.5", "1.5"),
        ("hf:/data?tau=0.4", "af_audioset sources only"),
        ("hf:/data?split", "not key=value"),
        ("hf:", "needs a path"),
    ],
)
def test_parse_source_errors_quote_the_spec(spec, message):
    with pytest.raises(ValueError) as info:
        parse_source(spec)
    assert message in str(info.value) and repr(spec) in str(info.value)


# ---------------------------------------------------------------- hf / manifest sources, skipping


def test_hf_source_skips_and_counts_through_a_dataloader(hf_saved):
    dataset = AudioCaptionDataset([parse_source(f"hf:{hf_saved}")], random_crop=False)
    assert len(dataset) == 7 and dataset.source_lengths == [7] and dataset.names == [f"hf:{hf_saved}"]
    captions, skipped, skipped_sources, shapes = run_loader(dataset, batch_size=3)
    assert captions == [f"Caption of {name}" for name in GOOD]
    assert dict(skipped) == {"unreadable": 1, "empty": 1, "silent": 1, "no_caption": 1}
    assert dict(skipped_sources) == {f"hf:{hf_saved}": 4}
    assert set(shapes) == {(TARGET_SAMPLES,)}
    item = dataset[3]
    assert item["skipped"] == "unreadable" and item["source"] == dataset.names[0] and "corrupt.wav" in item["detail"]
    # The dataset pickles, as DataLoader workers started with "spawn" need.
    again = pickle.loads(pickle.dumps(dataset))
    torch.testing.assert_close(again[0]["waveform"], dataset[0]["waveform"])


def test_hf_source_columns_are_checked(hf_saved, clips, tmp_path):
    with pytest.raises(ValueError) as info:
        AudioCaptionDataset([parse_source(f"hf:{hf_saved}?caption_column=text")])
    assert "'text'" in str(info.value) and "'caption'" in str(info.value) and "'extra'" in str(info.value)
    with pytest.raises(ValueError, match="not strings"):
        AudioCaptionDataset([parse_source(f"hf:{hf_saved}?caption_column=extra")])
    # An audiofolder with metadata.csv, loaded by load_dataset, with its caption column named "text".
    folder = tmp_path / "audiofolder"
    folder.mkdir()
    sf.write(folder / "a.wav", tone(700, 2, 16000), 16000)
    (folder / "b.wav").write_bytes(b"garbage" * 20)
    (folder / "metadata.csv").write_text("file_name,text\na.wav,A tone\nb.wav,Broken\n")
    dataset = AudioCaptionDataset([parse_source(f"hf:{folder}?caption_column=text")], random_crop=False)
    captions, skipped, _, _ = run_loader(dataset)
    assert captions == ["A tone"] and dict(skipped) == {"unreadable": 1}


def test_manifest_source(clips, tmp_path):
    manifest = tmp_path / "lists" / "train.json"
    manifest.parent.mkdir()
    lines = [
        {"dataset": "audiocaps", "location": "tone16k.wav", "captions": "A tone"},
        {"dataset": "audiocaps", "location": str(clips / "stereo44k.wav"), "captions": "Stereo tone"},
        {"dataset": "audiocaps", "location": "missing.wav", "captions": "Nothing"},
    ]
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    dataset = AudioCaptionDataset([parse_source(f"manifest:{manifest}?audio_dir={clips}")], random_crop=False)
    captions, skipped, _, _ = run_loader(dataset)
    assert captions == ["A tone", "Stereo tone"] and dict(skipped) == {"unreadable": 1}
    # Without audio_dir, relative locations resolve against the manifest's folder.
    (tmp_path / "lists" / "tone16k.wav").write_bytes((clips / "tone16k.wav").read_bytes())
    dataset = AudioCaptionDataset([parse_source(f"manifest:{manifest}")], random_crop=False)
    assert dataset[0]["caption"] == "A tone"
    # A malformed line is an error at construction, naming the line.
    manifest.write_text(json.dumps(lines[0]) + "\n" + json.dumps(lines[1]) + "\n{not json\n")
    with pytest.raises(ValueError, match="line 3"):
        AudioCaptionDataset([parse_source(f"manifest:{manifest}")])
    manifest.write_text(json.dumps(lines[0]) + "\n" + json.dumps({"location": "x.wav", "caption": "typo"}) + "\n")
    with pytest.raises(ValueError, match="line 2.*'captions'"):
        AudioCaptionDataset([parse_source(f"manifest:{manifest}")])
    manifest.write_text("\n")
    with pytest.raises(ValueError, match="no rows"):
        AudioCaptionDataset([parse_source(f"manifest:{manifest}")])


def test_all_skipped_batch_collates_to_zero_rows(hf_saved):
    dataset = AudioCaptionDataset([parse_source(f"hf:{hf_saved}")])
    batch = collate_audio_captions([dataset[3], dataset[4]])
    assert batch["waveforms"].shape[0] == 0 and batch["captions"] == []
    assert batch["skipped"] == {"unreadable": 1, "empty": 1}


# ---------------------------------------------------------------- random crops


def test_random_crops_are_a_function_of_seed_epoch_and_index(clips, tmp_path):
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"location": str(clips / "noise22k.flac"), "captions": "Noise"}) + "\n")
    spec = [parse_source(f"manifest:{manifest}")]
    first, second = AudioCaptionDataset(spec, seed=5), AudioCaptionDataset(spec, seed=5)
    crop = first[0]["waveform"]
    assert crop.shape == (TARGET_SAMPLES,) and abs(float(crop.abs().max()) - 0.5) < 1e-6
    torch.testing.assert_close(second[0]["waveform"], crop)
    first.set_epoch(1)
    assert not torch.equal(first[0]["waveform"], crop)
    second.set_epoch(1)
    torch.testing.assert_close(second[0]["waveform"], first[0]["waveform"])
    assert not torch.equal(AudioCaptionDataset(spec, seed=6)[0]["waveform"], crop)
    # The crop is a stretch of the clip prepared without cropping: find it by cross-correlation.
    audio, rate = sf.read(clips / "noise22k.flac", dtype="float32")
    whole = prepare_waveform(audio, rate, num_samples=12 * 16000).numpy()
    offset = int(np.argmax(np.correlate(whole, crop[:4000].numpy(), mode="valid")))
    assert offset > 0
    stretch = whole[offset : offset + TARGET_SAMPLES]
    np.testing.assert_allclose(crop.numpy(), stretch / np.abs(stretch).max() * 0.5, atol=1e-5)
    # Without random crops every epoch keeps the start, as Tango does.
    fixed = AudioCaptionDataset(spec, random_crop=False)
    fixed.set_epoch(3)
    torch.testing.assert_close(fixed[0]["waveform"], prepare_waveform(audio, rate))


# ---------------------------------------------------------------- MixtureSampler


def test_mixture_sampler_proportions_and_coverage():
    sampler = MixtureSampler([100, 1000], [3.0, 1.0], num_samples=4000, seed=0)
    indices = list(sampler)
    assert len(indices) == len(sampler) == 4000
    assert all(0 <= i < 1100 for i in indices)
    share = sum(i < 100 for i in indices) / 4000
    assert abs(share - 0.75) < 0.03
    # Rows of a source come from cycled permutations: each of source 0's rows is drawn equally often, +-1.
    counts = Counter(i for i in indices if i < 100)
    assert len(counts) == 100 and max(counts.values()) - min(counts.values()) <= 1
    assert len({i for i in indices if i >= 100}) == 4000 - sum(counts.values())  # fewer draws than rows: no repeat


def test_mixture_sampler_is_a_function_of_seed_and_epoch():
    sampler = MixtureSampler([50, 70, 30], [1.0, 2.0, 1.0], seed=3)
    assert len(sampler) == 150
    epoch0 = list(sampler)
    assert list(sampler) == epoch0
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert epoch1 != epoch0
    # A resumed run re-creates the sampler: the same epoch gives the same order.
    resumed = MixtureSampler([50, 70, 30], [1.0, 2.0, 1.0], seed=3)
    assert list(resumed) == epoch0
    resumed.set_epoch(1)
    assert list(resumed) == epoch1
    assert list(MixtureSampler([50, 70, 30], [1.0, 2.0, 1.0], seed=4)) != epoch0


def test_mixture_sampler_permutation_cases():
    for lengths, weights in (([37], [1.0]), ([10, 30], [1.0, 3.0])):
        sampler = MixtureSampler(lengths, weights, seed=1)
        assert sampler.is_permutation
        order = list(sampler)
        assert sorted(order) == list(range(sum(lengths))) and order != sorted(order)
    # More draws than rows: whole permutations one after another.
    order = list(MixtureSampler([10], [1.0], num_samples=25))
    assert sorted(order[:10]) == sorted(order[10:20]) == list(range(10)) and len(set(order[20:])) == 5
    with pytest.raises(ValueError, match="one weight per source"):
        MixtureSampler([10, 20], [1.0])
    with pytest.raises(ValueError, match="positive"):
        MixtureSampler([10, 20], [1.0, 0.0])


def test_sampler_drives_a_two_source_dataset(hf_saved, clips, tmp_path):
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"location": str(clips / "tone16k.wav"), "captions": "Manifest tone"}) + "\n")
    dataset = AudioCaptionDataset(
        [parse_source(f"hf:{hf_saved}?weight=1"), parse_source(f"manifest:{manifest}?weight=3")], random_crop=False
    )
    assert dataset.source_lengths == [7, 1] and dataset.weights == [1.0, 3.0]
    sampler = MixtureSampler(dataset.source_lengths, dataset.weights, num_samples=40, seed=0)
    captions, skipped, skipped_sources, _ = run_loader(dataset, batch_size=8, sampler=sampler)
    from_manifest = captions.count("Manifest tone")
    assert 20 <= from_manifest <= 38
    assert sum(skipped.values()) == skipped_sources[f"hf:{hf_saved}"] and set(skipped_sources) == {f"hf:{hf_saved}"}
    assert len(captions) + sum(skipped.values()) == 40


# ---------------------------------------------------------------- AF-AudioSet


@pytest.mark.parametrize("tau,top_k", [(0.45, 3), (0.40, 3), (0.45, 1), (0.5, None), (-1.0, None)])
def test_af_audioset_tau_and_top_k(af_folder, clips, tau, top_k):
    spec = DataSourceSpec("af_audioset", str(af_folder), tau=tau, top_k=top_k, audio_dir=str(clips))
    # default_top_k=None so that top_k=None in the spec means "every rank" here.
    dataset = AudioCaptionDataset([spec], default_top_k=None)
    assert len(dataset) == expected_af_rows(tau, top_k)


def test_af_audioset_defaults_and_errors(af_folder, clips):
    spec = DataSourceSpec("af_audioset", str(af_folder), audio_dir=str(clips))
    assert len(AudioCaptionDataset([spec])) == expected_af_rows(0.45, 3)
    assert len(AudioCaptionDataset([spec], default_tau=0.5, default_top_k=2)) == expected_af_rows(0.5, 2)
    with pytest.raises(ValueError, match="audio_dir"):
        AudioCaptionDataset([DataSourceSpec("af_audioset", str(af_folder))])
    with pytest.raises(ValueError, match="no rows") as info:
        AudioCaptionDataset([parse_source(f"af_audioset:{af_folder}?tau=0.99&audio_dir={clips}")])
    assert str(af_folder) in str(info.value)


def test_af_audioset_cuts_the_captioned_window(af_folder, clips):
    spec = parse_source(f"af_audioset:{af_folder}?tau=-1&audio_dir={clips}")
    dataset = AudioCaptionDataset([spec], default_top_k=None, random_crop=False)
    assert len(dataset) == 16
    frequencies, skipped = {}, Counter()
    for index in range(len(dataset)):
        item = dataset[index]
        if "skipped" in item:
            skipped[item["skipped"]] += 1
            assert "clipZ" in item["detail"]
            continue
        window = item["caption"].split(" caption")[0]
        # clipA's windows are 10 s, clipB is a 3 s clip; Tango's zero padding follows up to 10.24 s.
        length = 16000 * (3 if window == "clipB@0" else 10)
        audible = item["waveform"][:length]
        frequencies.setdefault(window, set()).add(round(dominant_frequency(audible)))
        assert torch.all(item["waveform"][length:] == 0) and audible[-100:].abs().max() > 0.1
    assert frequencies == {"clipA@0": {500}, "clipA@10": {2000}, "clipB@0": {1000}}
    assert dict(skipped) == {"unreadable": 4}


def test_af_audioset_with_embedded_audio(af_embedded_folder):
    dataset = AudioCaptionDataset(
        [parse_source(f"af_audioset:{af_embedded_folder}?tau=0.45&top_k=3")], random_crop=False
    )
    assert len(dataset) == expected_af_rows(0.45, 3)
    captions, skipped, _, _ = run_loader(dataset)
    assert len(captions) == len(dataset) and not skipped
    for index in range(len(dataset)):
        item = dataset[index]
        clip_id, start = item["caption"].split(" caption")[0].split("@")
        expected = {"clipA": 500.0, "clipB": 1000.0, "clipZ": 3000.0}[clip_id] + 10 * float(start)
        assert abs(dominant_frequency(item["waveform"][:160000]) - expected) < 1
