"""Tests of datasets_scripts.micro_world: the procedural audio world the paper's method is reproduced on at micro scale.

Everything here is generated on the fly with numpy; the acoustic checks measure the audio (spectral centroids,
onsets, envelopes, log-mel features), so they fail if a synthesis function stops doing what its label says.
"""

import itertools
import json
import re
import time
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from datasets_scripts.micro_world import (
    CLASS_ATTRIBUTES,
    CLASSES,
    LOUDNESS_PEAKS,
    MAX_PEAK,
    SINGLE_TEMPLATES,
    SPLITS,
    SYNONYMS,
    THEN_TEMPLATES,
    THEN_WORDS,
    WHILE_TEMPLATES,
    WHILE_WORDS,
    WorldConfig,
    caption_for,
    class_pairs,
    clip_metadata,
    combination,
    generate_clip,
    main,
    render_audio,
    write_split,
    write_world,
)
from datasets_scripts.sources import clips_from_audio_dir

SR = 16000
WORLD = WorldConfig(seed=0)
SILENT_WORLD = WorldConfig(seed=0, noise_floor=0.0)  # no background noise: the events alone


def single(class_name, seed=0, config=SILENT_WORLD, start=0.1, end=2.4, peak=0.5, **attributes):
    """Renders one event of `class_name`; attributes default to each one's first value."""
    attrs = {key: attributes.get(key, values[0]) for key, values in CLASS_ATTRIBUTES[class_name].items()}
    event = {"class": class_name, "attributes": attrs, "peak": peak, "start": start, "end": end}
    return render_audio({"events": [event], "relation": None}, config, np.random.default_rng(seed))


def centroid(audio):
    power = np.abs(np.fft.rfft(audio)) ** 2
    return float((np.fft.rfftfreq(len(audio), 1 / SR) * power).sum() / power.sum())


def frame_rms(audio, frame):
    usable = len(audio) // frame * frame
    return np.sqrt((audio[:usable].reshape(-1, frame) ** 2).mean(1))


def mentions(caption, phrase):
    """Position of `phrase` as whole words in `caption`, or None."""
    match = re.search(r"\b" + re.escape(phrase) + r"\b", caption.lower())
    return match.start() if match else None


def first_mention(caption, class_name):
    positions = [p for p in (mentions(caption, s) for s in SYNONYMS[class_name]) if p is not None]
    return min(positions) if positions else None


# --- determinism and shape ---------------------------------------------------------------------------------------


def test_same_seed_split_index_gives_the_same_clip_and_others_differ():
    a, b = generate_clip(WORLD, "pool", 7), generate_clip(WORLD, "pool", 7)
    assert a.clip_id == "pool-00007"
    np.testing.assert_array_equal(a.audio, b.audio)
    assert (a.caption, a.labels, a.classes) == (b.caption, b.labels, b.classes)
    for other in (
        generate_clip(WORLD, "pool", 8),
        generate_clip(WORLD, "test", 7),
        generate_clip(WorldConfig(seed=1), "pool", 7),
    ):
        assert not np.array_equal(a.audio, other.audio)
        assert (a.caption, a.labels) != (other.caption, other.labels)
    # The labels and caption computed without audio are the generated clip's.
    assert clip_metadata(WORLD, "pool", 7) == (a.clip_id, a.labels, a.caption)


def test_clips_have_the_configured_length_are_finite_and_not_clipped():
    for config in (WORLD, WorldConfig(clip_seconds=1.28)):
        for index in range(40):
            clip = generate_clip(config, "captioned", index)
            assert clip.audio.dtype == np.float32 and clip.audio.shape == (config.num_samples,)
            assert clip.sampling_rate == SR and np.isfinite(clip.audio).all()
            assert np.abs(clip.audio).max() <= MAX_PEAK + 1e-6
            assert json.loads(json.dumps(clip.labels)) == clip.labels
            assert clip.classes == [event["class"] for event in clip.labels["events"]]
            for event in clip.labels["events"]:
                assert 0 <= event["start"] < event["end"] <= config.clip_seconds
    assert WorldConfig().num_samples == 40960  # 2.56 s: eight 0.32 s latent frames


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="split"):
        generate_clip(WORLD, "validation", 0)
    with pytest.raises(IndexError):
        generate_clip(WORLD, "test", WORLD.split_size("test"))
    with pytest.raises(ValueError, match="sampling_rate"):
        WorldConfig(sampling_rate=8000)
    with pytest.raises(ValueError, match="two_event_probability"):
        WorldConfig(two_event_probability=1.5)


def test_pool_covers_every_class_and_relation():
    labels = [clip_metadata(WORLD, "pool", i)[1] for i in range(WORLD.split_size("pool"))]
    classes = Counter(event["class"] for label in labels for event in label["events"])
    relations = Counter(label["relation"] for label in labels)
    assert set(classes) == set(CLASSES) and min(classes.values()) >= 20
    assert set(relations) == {None, "then", "while"}
    assert 0.25 < (relations["then"] + relations["while"]) / len(labels) < 0.55  # two_event_probability 0.4


# --- synthesis does what the label says -------------------------------------------------------------------------


@pytest.mark.parametrize("class_name", CLASSES)
def test_each_class_renders_in_its_span_at_its_peak(class_name):
    choices = CLASS_ATTRIBUTES[class_name]
    peaks = {}
    for values in itertools.product(*choices.values()):
        attrs = dict(zip(choices, values))
        low, high = LOUDNESS_PEAKS[attrs["loudness"]]
        peak = (low + high) / 2
        audio = single(class_name, start=0.5, end=2.0, peak=peak, **attrs)
        assert audio.shape == (SILENT_WORLD.num_samples,) and np.isfinite(audio).all()
        assert np.abs(audio).max() == pytest.approx(peak, rel=1e-4)
        # Exactly silent outside the labelled span (no background noise here), sounding inside it.
        assert not audio[: int(0.5 * SR)].any() and not audio[int(2.0 * SR) + 1 :].any()
        assert frame_rms(audio[int(0.5 * SR) : int(2.0 * SR)], 4000).min() > 0.01 * peak
        peaks.setdefault(attrs["loudness"], []).append(peak)
    assert min(peaks["loud"]) > 3 * max(peaks["quiet"])


def test_world_clip_peaks_follow_the_loudness_attribute():
    checked = Counter()
    for index in range(200):
        clip = generate_clip(WORLD, "pool", index)
        if clip.labels["relation"] is None:
            event = clip.labels["events"][0]
            low, high = LOUDNESS_PEAKS[event["attributes"]["loudness"]]
            assert low - 0.012 <= np.abs(clip.audio).max() <= high + 0.012  # the noise floor's margin
            checked[event["attributes"]["loudness"]] += 1
    assert min(checked["quiet"], checked["loud"]) >= 20


@pytest.mark.parametrize("class_name", [name for name in CLASSES if "pitch" in CLASS_ATTRIBUTES[name]])
def test_high_pitch_has_a_higher_spectral_centroid_than_low(class_name):
    for seed in range(3):
        low = centroid(single(class_name, seed=seed, pitch="low"))
        high = centroid(single(class_name, seed=seed, pitch="high"))
        assert high > 1.5 * low, (class_name, low, high)


@pytest.mark.parametrize("pitch", ["low", "high"])
def test_chirps_sweep_in_their_direction(pitch):
    half = SR  # both renders span 0.1-2.4 s: compare the first and last second
    for seed in range(3):
        up = single("chirp_up", seed=seed, pitch=pitch)
        down = single("chirp_down", seed=seed, pitch=pitch)
        assert centroid(up[:half]) * 2 < centroid(up[-half:])
        assert centroid(down[:half]) > 2 * centroid(down[-half:])


def onset_count(audio, threshold=0.25):
    envelope = np.abs(audio[: len(audio) // 80 * 80]).reshape(-1, 80).max(1)  # 5 ms frames
    above = envelope > threshold * envelope.max()
    return int((above[1:] & ~above[:-1]).sum() + above[0])


def dominant_rate(track, frame_seconds, low_hz, high_hz):
    track = track - track.mean()
    spectrum = np.abs(np.fft.rfft(track, 4096))
    freqs = np.fft.rfftfreq(4096, frame_seconds)
    band = (freqs >= low_hz) & (freqs <= high_hz)
    return float(freqs[band][np.argmax(spectrum[band])])


@pytest.mark.parametrize("seed", range(3))
def test_rhythm_attributes(seed):
    # Clicks and drum hits: fast has many more onsets than slow.
    for name in ("clicks", "drum"):
        slow, fast = onset_count(single(name, seed, rhythm="slow")), onset_count(single(name, seed, rhythm="fast"))
        assert fast > 1.8 * slow >= 4, (name, slow, fast)
    # Engine: the power envelope (below 28 Hz, under the 30-45 Hz firing tone) pulses at a higher rate.
    rates = {}
    for rhythm in ("slow", "fast"):
        power = np.fft.rfft(single("engine", seed, rhythm=rhythm)[1600:38400] ** 2)
        power[np.fft.rfftfreq(36800, 1 / SR) > 28] = 0
        rates[rhythm] = dominant_rate(np.fft.irfft(power, 36800)[::80], 80 / SR, 3, 28)
    assert rates["fast"] > 1.4 * rates["slow"], rates
    # Siren: the pitch alternates or sweeps faster (the rate of the centroid of 20 ms frames).
    for_rhythm = {}
    for rhythm in ("slow", "fast"):
        frames = single("siren", seed, rhythm=rhythm)[1600:38400].reshape(-1, 320)
        track = np.array([centroid(frame) for frame in frames])
        for_rhythm[rhythm] = dominant_rate(track, 0.02, 0.3, 8)
    assert for_rhythm["fast"] > 2 * for_rhythm["slow"], for_rhythm
    # Pulsing noise bursts and buzzes vary far more in level than steady ones (middle of the span).
    for name in ("noise_burst", "buzz"):
        variation = {}
        for rhythm in ("steady", "pulsing"):
            rms = frame_rms(single(name, seed, rhythm=rhythm)[SR // 2 : SR + SR // 2], 320)
            variation[rhythm] = rms.std() / rms.mean()
        assert variation["pulsing"] > 2 * variation["steady"], (name, variation)


def test_event_spans_match_the_audio_energy():
    frame, noise_threshold = 320, 5 * WORLD.noise_floor
    seen = Counter()
    for index in range(WORLD.split_size("pool")):
        _, labels, _ = clip_metadata(WORLD, "pool", index)
        if labels["relation"] is None or seen[labels["relation"]] >= 8:
            continue
        seen[labels["relation"]] += 1
        audio = generate_clip(WORLD, "pool", index).audio
        centres = (np.arange(len(audio) // frame) + 0.5) * frame / SR
        active = frame_rms(audio, frame) > noise_threshold
        spans = [(event["start"], event["end"]) for event in labels["events"]]
        tolerance = frame / SR
        inside = np.zeros_like(active)
        for start, end in spans:
            in_span = (centres > start - tolerance) & (centres < end + tolerance)
            assert active[in_span].any(), (index, start, end)
            inside |= in_span
        assert not active[~inside].any(), index  # nothing sounds outside the labelled spans
        first, second = labels["events"]
        if labels["relation"] == "then":
            assert first["end"] < second["start"]
            gap = (centres > first["end"] + tolerance) & (centres < second["start"] - tolerance)
            assert not active[gap].any()
            assert active[centres < first["end"]].any() and active[centres > second["start"]].any()
        else:
            assert second["start"] <= first["start"] and first["end"] <= second["end"] + 0.002
    assert seen == {"then": 8, "while": 8}


# --- learnability ----------------------------------------------------------------------------------------------

_MEL = torchaudio.transforms.MelSpectrogram(SR, n_fft=1024, hop_length=160, n_mels=64)


def log_mel_features(audio):
    """Spectral shape of the sounding frames plus a 4-step temporal profile, relative to the clip's maximum and
    floored 26 dB below it (so loudness and the noise floor drop out)."""
    mel = torch.log(_MEL(torch.from_numpy(audio)) + 1e-6).numpy()
    energy = np.log(np.exp(mel).sum(0))
    loud = energy > energy.max() - 5
    active = np.flatnonzero(loud)
    mel = np.maximum(mel - mel.max(), -6.0) / 6.0
    profile = np.stack([chunk.mean(1) for chunk in np.array_split(mel[:, active[0] : active[-1] + 1], 4, axis=1)])
    profile = (profile - profile.mean(0)).reshape(4, 16, 4).mean(-1) * 2.0
    return np.concatenate([mel[:, loud].mean(1), profile.ravel()])


def test_classes_are_separable_by_a_nearest_centroid_classifier():
    # Train on the first 12 single-event clips of each class in the pool, test on every single-event test clip.
    # One centroid per (class, pitch): low and high versions of a class are different sounds.
    train, per_class = [], Counter()
    for index in range(WORLD.split_size("pool")):
        _, labels, _ = clip_metadata(WORLD, "pool", index)
        if labels["relation"] is None and per_class[labels["events"][0]["class"]] < 12:
            train.append(index)
            per_class[labels["events"][0]["class"]] += 1
    assert set(per_class) == set(CLASSES)

    def featurise(split, index):
        clip = generate_clip(WORLD, split, index)
        event = clip.labels["events"][0]
        return log_mel_features(clip.audio), event["class"], (event["class"], event["attributes"].get("pitch"))

    rows = [featurise("pool", index) for index in train]
    groups = sorted({group for _, _, group in rows})
    centroids = np.stack([np.mean([f for f, _, g in rows if g == group], axis=0) for group in groups])
    test = [
        featurise("test", index)
        for index in range(WORLD.split_size("test"))
        if clip_metadata(WORLD, "test", index)[1]["relation"] is None
    ]
    assert len(test) >= 40
    features = np.stack([f for f, _, _ in test])
    predicted = [groups[i][0] for i in ((features[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)]
    accuracy = np.mean([p == c for p, (_, c, _) in zip(predicted, test)])
    assert accuracy > 0.8, Counter((c, p) for p, (_, c, _) in zip(predicted, test) if p != c)


# --- captions ---------------------------------------------------------------------------------------------------


def test_synonyms_name_one_class_each():
    for a, b in itertools.permutations(CLASSES, 2):
        for phrase in SYNONYMS[a]:
            assert all(mentions(phrase, other) is None for other in SYNONYMS[b]), (phrase, b)


def test_captions_name_every_event_and_no_other_class():
    for index in range(200):
        _, labels, caption = clip_metadata(WORLD, "pool", index)
        present = {event["class"] for event in labels["events"]}
        for name in CLASSES:
            assert (first_mention(caption, name) is not None) == (name in present), (name, caption)
        assert caption[0].isupper() and "  " not in caption and "{" not in caption


def template_of(caption, templates):
    """The most specific template (most literal text) that the caption fits."""
    fits = []
    for template in templates:
        pattern = re.sub(r"\\\{[^}]*\\\}", ".+", re.escape(template))
        if re.fullmatch(pattern, caption, flags=re.IGNORECASE):
            fits.append((len(re.sub(r"\{[^}]*\}", "", template)), template))
    return max(fits)[1] if fits else None


def test_captions_vary_and_their_order_words_match_the_relation():
    used = {None: set(), "then": set(), "while": set()}
    captions = []
    for index in range(200):
        _, labels, caption = clip_metadata(WORLD, "pool", index)
        captions.append(caption)
        relation = labels["relation"]
        templates = {None: SINGLE_TEMPLATES, "then": THEN_TEMPLATES, "while": WHILE_TEMPLATES}[relation]
        used[relation].add(template_of(caption, templates))
        then_words = [w for w in THEN_WORDS if mentions(caption, w) is not None]
        while_words = [w for w in WHILE_WORDS if mentions(caption, w) is not None]
        if relation == "then":
            first, second = (event["class"] for event in labels["events"])
            assert then_words and not while_words, caption
            assert first_mention(caption, first) < first_mention(caption, second), caption  # earlier event first
        elif relation == "while":
            assert while_words and not then_words, caption
        else:
            assert not then_words, caption
    assert None not in used[None] | used["then"] | used["while"]
    assert len(used[None]) >= 6 and len(used["then"]) >= 5 and len(used["while"]) >= 5, used
    assert len(set(captions)) >= 180


def test_caption_words_follow_the_attributes():
    attribute_words = {
        "loud": ("loud", "powerful", "heavy"),
        "quiet": ("quiet", "faint", "soft", "light", "gentle"),
        "high": ("high", "high-pitched"),
        "low": ("low", "low-pitched", "deep"),
        "fast": ("fast", "rapid", "rapidly", "quickly", "at high speed"),
        "slow": ("slow", "slowly", "at a slow pace", "at idle"),
    }
    for name, loudness, pitch, rhythm, seed in itertools.product(
        ("siren", "drum"), ("quiet", "loud"), ("low", "high"), ("slow", "fast"), range(5)
    ):
        event = {
            "class": name,
            "attributes": {"pitch": pitch, "rhythm": rhythm, "loudness": loudness},
            "peak": 0.1,
            "start": 0.0,
            "end": 1.0,
        }
        labels = {"events": [event], "relation": None}
        caption = caption_for(labels, np.random.default_rng(seed), attribute_probability=1.0)
        assert caption == caption_for(labels, np.random.default_rng(seed), attribute_probability=1.0)
        for value in (loudness, pitch, rhythm):
            assert any(mentions(caption, word) is not None for word in attribute_words[value]), (value, caption)
            opposite = {"loud": "quiet", "quiet": "loud", "high": "low", "low": "high", "fast": "slow", "slow": "fast"}
            assert not any(mentions(caption, word) is not None for word in attribute_words[opposite[value]]), caption
        bare = caption_for(labels, np.random.default_rng(seed), attribute_probability=0.0)
        assert not any(mentions(bare, w) is not None for words in attribute_words.values() for w in words), bare


# --- writing -----------------------------------------------------------------------------------------------------

SMALL = WorldConfig(seed=3, clip_seconds=1.28, split_sizes={"pool": 6, "captioned": 4, "test": 3})


def test_write_split_loads_with_datasets_and_matches_the_wavs(tmp_path):
    import datasets

    folder = write_split(SMALL, "pool", tmp_path / "pool", progress=False)
    ds = datasets.load_dataset(str(folder), split="train")
    assert ds.column_names == ["clip_id", "audio", "caption", "labels", "classes"]
    assert ds.features["audio"] == datasets.Audio(sampling_rate=SR)
    assert ds.features["classes"] == datasets.List(datasets.Value("string"))
    assert ds.features["labels"] == datasets.Value("string")
    raw = ds.cast_column("audio", datasets.Audio(decode=False))
    sources = {source.clip_id: source for source in clips_from_audio_dir(folder / "audio")}
    assert sorted(sources) == [f"pool-{i:05d}" for i in range(6)]
    for index, row in enumerate(raw):
        clip = generate_clip(SMALL, "pool", index)
        assert (row["clip_id"], row["caption"], row["classes"]) == (clip.clip_id, clip.caption, clip.classes)
        assert json.loads(row["labels"]) == clip.labels
        wav_path = folder / "audio" / f"{clip.clip_id}.wav"
        assert row["audio"]["bytes"] == wav_path.read_bytes()
        samples, rate = sf.read(wav_path, dtype="float32")
        assert rate == SR
        np.testing.assert_allclose(samples, clip.audio, atol=1.0 / 32768)  # PCM_16
        decoded, decoded_rate = sources[clip.clip_id].load()  # what the AF-AudioSet builder will read
        assert decoded_rate == SR
        np.testing.assert_allclose(decoded[0], samples, atol=1e-6)
    decoded = ds[0]["audio"].get_all_samples()
    assert decoded.sample_rate == SR
    np.testing.assert_allclose(decoded.data[0].numpy(), sf.read(folder / "audio" / "pool-00000.wav")[0], atol=1e-6)


def test_write_split_resumes_and_regenerates_only_missing_wavs(tmp_path):
    folder = write_split(SMALL, "captioned", tmp_path / "captioned", progress=False)
    wavs = sorted((folder / "audio").glob("*.wav"))
    before = {path.name: (path.stat().st_mtime_ns, path.read_bytes()) for path in wavs}
    time.sleep(0.02)
    wavs[2].unlink()
    write_split(SMALL, "captioned", folder, progress=False)
    after = {path.name: (path.stat().st_mtime_ns, path.read_bytes()) for path in sorted(folder.glob("audio/*.wav"))}
    assert set(after) == set(before)
    for name in before:
        assert after[name][1] == before[name][1]  # identical content, regenerated or not
        assert (after[name][0] == before[name][0]) == (name != wavs[2].name)
    assert not list(folder.rglob("*.tmp"))
    with pytest.raises(ValueError, match="another config"):
        write_split(WorldConfig(seed=4, clip_seconds=1.28, split_sizes=SMALL.split_sizes), "captioned", folder)


def test_parallel_writing_equals_serial(tmp_path):
    serial = write_split(SMALL, "pool", tmp_path / "serial", num_proc=1, progress=False)
    parallel = write_split(SMALL, "pool", tmp_path / "parallel", num_proc=2, progress=False)
    for name in ("audio/pool-00000.wav", "audio/pool-00005.wav", "data/train-00000-of-00001.parquet"):
        assert (serial / name).read_bytes() == (parallel / name).read_bytes()


def test_write_world_and_cli(tmp_path):
    paths = write_world(SMALL, tmp_path / "api", progress=False)
    assert {split: len(list(path.glob("audio/*.wav"))) for split, path in paths.items()} == SMALL.split_sizes
    world = json.loads((tmp_path / "api" / "world.json").read_text())
    assert world["classes"] == list(CLASSES) and world["seed"] == 3 and world["split_sizes"] == SMALL.split_sizes
    argv = ["--root", str(tmp_path / "cli"), "--seed", "3", "--pool", "6", "--captioned", "4", "--test", "3"]
    assert main(argv + ["--clip-seconds", "1.28"]) == 0
    for split in paths:
        assert (tmp_path / "cli" / split / "split.json").read_text() == (paths[split] / "split.json").read_text()
        assert (tmp_path / "cli" / split / "audio" / f"{split}-00001.wav").read_bytes() == (
            paths[split] / "audio" / f"{split}-00001.wav"
        ).read_bytes()


def test_generation_is_fast():
    start = time.perf_counter()
    for index in range(150):
        generate_clip(WORLD, "captioned", index)
    assert time.perf_counter() - start < 15.0  # about 0.6 s here; 850 clips take about 3 s


def test_classes_mentioned_reads_back_every_reference_caption():
    from datasets_scripts.micro_world import classes_mentioned

    config = WorldConfig(seed=3)
    for index in range(120):
        clip = generate_clip(config, "pool", index)
        assert classes_mentioned(clip.caption) == set(clip.classes), clip.caption
    assert classes_mentioned("A bass drum thumps while rain patters") == {"drum", "rain"}
    assert classes_mentioned("two sirens wail over a hum") == {"siren", "hum"}
    assert classes_mentioned("something unrecognisable") == set()
    assert classes_mentioned("A referee's whistle blows over the sound of rainfall") == {"whistle", "rain"}
    assert classes_mentioned("A high-pitched pennywhistle plays") == {"whistle"}
    assert classes_mentioned("The sound of a SINE TONE") == {"tone"}
    # Words that merely share letters with a class name do not name it.
    assert classes_mentioned("Something humming and chiming") == set()


def test_held_out_pairs_never_reach_the_captioned_split_and_fill_odd_test_clips():
    config = WorldConfig(seed=3, held_out_pairs=20, split_sizes={"pool": 400, "captioned": 200, "test": 60})
    assert len(config.held_out) == 20 and all(len(pair) == 2 for pair in config.held_out)
    assert config.held_out == WorldConfig(seed=3, held_out_pairs=20).held_out  # a function of seed and number
    assert config.held_out != WorldConfig(seed=4, held_out_pairs=20).held_out

    def combos(split):
        labels = [clip_metadata(config, split, i)[1] for i in range(config.split_size(split))]
        return [combination([event["class"] for event in label["events"]]) for label in labels]

    captioned = combos("captioned")
    assert not any(c in config.held_out for c in captioned)
    test = combos("test")
    assert all(c in config.held_out for c in test[1::2])
    assert not any(c in config.held_out for c in test[0::2])
    pool = combos("pool")
    held_in_pool = sum(c in config.held_out for c in pool)
    # The pool draws as if nothing were held out: two-event clips (40%) over 78 pairs, 20 of them held out.
    expected = 400 * 0.4 * 20 / len(class_pairs())
    assert 0.5 * expected < held_in_pool < 1.5 * expected


def test_without_held_out_pairs_every_split_draws_as_before():
    plain = WorldConfig(seed=1)
    for split in SPLITS:
        assert plain.label_policy(split, 1) == "all"
    held = WorldConfig(seed=1, held_out_pairs=5)
    # The pool never depends on the held-out pairs: its clips are the plain world's.
    for index in range(20):
        assert clip_metadata(held, "pool", index) == clip_metadata(plain, "pool", index)
    with pytest.raises(ValueError, match="held_out_pairs"):
        WorldConfig(held_out_pairs=len(class_pairs()))
