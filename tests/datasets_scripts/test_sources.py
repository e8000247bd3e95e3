"""Tests of datasets_scripts.sources: listing clips from folders, AudioSet CSVs and datasets, id lists, sharding.

All audio is generated here with numpy and written with soundfile into tmp_path.
"""

import logging
import pickle

import numpy as np
import pytest
import soundfile as sf

from datasets_scripts.audio import NOT_AUDIO, UNREADABLE, ClipError, make_windows
from datasets_scripts.sources import (
    ClipSource,
    clips_from_audio_dir,
    clips_from_audioset_csv,
    clips_from_hf_dataset,
    exclude_ids,
    load_hf_source,
    read_id_list,
)


def write_tone(path, seconds=1.0, sample_rate=16000, frequency=440.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    sf.write(path, (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), sample_rate)
    return str(path)


AUDIOSET_CSV = """\
# Segments csv created Sun Mar  5 10:54:31 2017
# num_ytids=4, num_segs=4, num_unique_labels=3, num_positive_labels=5
# YTID, start_seconds, end_seconds, positive_labels
--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"
--ZhevVpy1s, 50.000, 60.000, "/m/012xff"
--aE2O5G5WE, 0.000, 10.000, "/m/03fwl,/m/04rlf,/m/09x0r"
-0BIyqJj9ZU, 30.000, 40.000, "/m/07rgt08"
"""


# ---------------------------------------------------------------- folders


def test_audio_dir_sorted_recursive(tmp_path):
    write_tone(tmp_path / "b" / "zzz.wav")
    write_tone(tmp_path / "aaa.flac")
    write_tone(tmp_path / "b" / "c" / "mmm.WAV")
    (tmp_path / "notes.txt").write_text("not audio")
    sources = clips_from_audio_dir(tmp_path)
    # Every file is listed: the text file too, under its relative path, as a known failure.
    assert [s.clip_id for s in sources] == ["aaa", "mmm", "notes.txt", "zzz"]
    assert [s.listing_failure for s in sources] == [None, None, NOT_AUDIO, None]
    assert sources[1].origin == str(tmp_path / "b" / "c" / "mmm.WAV")
    waveform, sample_rate = sources[0].load()
    assert waveform.shape == (1, 16000) and sample_rate == 16000
    with pytest.raises(ClipError) as info:
        sources[2].load()
    assert info.value.reason == NOT_AUDIO and "notes.txt" in info.value.detail
    # `extensions` only says which endings are trusted without opening the file: a .wav is still found by probing.
    assert [s.clip_id for s in clips_from_audio_dir(tmp_path, extensions=("flac",)) if s.listing_failure is None] == [
        "aaa",
        "mmm",
        "zzz",
    ]


def test_audio_dir_duplicate_stems_refused(tmp_path):
    first = write_tone(tmp_path / "x" / "same.wav")
    second = write_tone(tmp_path / "y" / "same.flac")
    with pytest.raises(ValueError) as info:
        clips_from_audio_dir(tmp_path)
    assert first in str(info.value) and second in str(info.value)


def test_audio_dir_bad_files_fail_on_load_not_on_listing(tmp_path):
    (tmp_path / "corrupt.wav").write_bytes(np.random.default_rng(0).bytes(2048))
    (tmp_path / "empty.wav").touch()
    sources = {s.clip_id: s for s in clips_from_audio_dir(tmp_path)}
    assert sorted(sources) == ["corrupt", "empty"]
    reasons = {}
    for clip_id, source in sources.items():
        with pytest.raises(ClipError) as info:
            source.load()
        reasons[clip_id] = info.value.reason
    assert reasons == {"corrupt": "unreadable", "empty": "empty"}


def test_missing_dir_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        clips_from_audio_dir(tmp_path / "nope")


def test_sources_pickle(tmp_path):
    write_tone(tmp_path / "a.wav")
    (source,) = clips_from_audio_dir(tmp_path)
    copy = pickle.loads(pickle.dumps(source))
    assert copy == source
    np.testing.assert_array_equal(copy.load()[0], source.load()[0])
    missing = pickle.loads(pickle.dumps(ClipSource.missing("gone", "no audio file for ytid 'gone'")))
    with pytest.raises(ClipError, match="no audio file"):
        missing.load()


# ---------------------------------------------------------------- AudioSet CSV


def test_audioset_csv(tmp_path):
    csv_path = tmp_path / "eval_segments.csv"
    csv_path.write_text(AUDIOSET_CSV)
    audio = tmp_path / "audio"
    write_tone(audio / "--PJHxphWEs.wav")
    write_tone(audio / "sub" / "--ZhevVpy1s_50.000_60.000.flac")
    write_tone(audio / "-0BIyqJj9ZU_30000.wav")  # start in milliseconds
    write_tone(audio / "unrelated.wav")
    sources = clips_from_audioset_csv(csv_path, audio)
    # CSV order, every row accounted for, the file-less one included.
    assert [s.clip_id for s in sources] == [
        "--PJHxphWEs",
        "--ZhevVpy1s",
        "--aE2O5G5WE",
        "-0BIyqJj9ZU",
    ]
    assert sources[1].origin.endswith("--ZhevVpy1s_50.000_60.000.flac")
    for source in (sources[0], sources[1], sources[3]):
        assert source.load()[0].shape == (1, 16000)
    with pytest.raises(ClipError) as info:
        sources[2].load()
    assert info.value.reason == UNREADABLE and "no audio file for ytid" in info.value.detail
    assert sources[2].origin == "missing:--aE2O5G5WE"


def test_audioset_csv_ytid_with_underscore_and_several_segments(tmp_path):
    # YouTube ids may contain "_" and digits; two segments of one video are told apart by the CSV's start.
    csv_path = tmp_path / "segments.csv"
    csv_path.write_text('# YTID, start_seconds, end_seconds, positive_labels\nab_12345678, 20.000, 30.000, "/m/x"\n')
    audio = tmp_path / "audio"
    write_tone(audio / "ab_12345678_0.000_10.000.wav")
    wanted = write_tone(audio / "ab_12345678_20.000_30.000.wav")
    (source,) = clips_from_audioset_csv(csv_path, audio)
    assert source.clip_id == "ab_12345678" and source.origin == wanted


def test_audioset_csv_y_prefixed_files(tmp_path):
    csv_path = tmp_path / "segments.csv"
    csv_path.write_text(AUDIOSET_CSV)
    write_tone(tmp_path / "audio" / "Y--PJHxphWEs.wav")
    sources = clips_from_audioset_csv(csv_path, tmp_path / "audio")
    assert sources[0].origin.endswith("Y--PJHxphWEs.wav")
    assert sources[0].load()[1] == 16000


def test_plain_csv_with_ytid_column(tmp_path):
    # MusicCaps' layout: a header with ytid, quoted captions holding commas and line breaks.
    csv_path = tmp_path / "musiccaps.csv"
    csv_path.write_text(
        "ytid,start_s,end_s,caption\n"
        '--PJHxphWEs,30,40,"a guitar, then\na drum"\n'
        '-0BIyqJj9ZU,0,10,"piano"\n'
        '-0BIyqJj9ZU,0,10,"piano again (AudioCaps lists a clip once per caption)"\n'
    )
    write_tone(tmp_path / "audio" / "-0BIyqJj9ZU_0_10.wav")
    sources = clips_from_audioset_csv(csv_path, tmp_path / "audio")
    assert [s.clip_id for s in sources] == ["--PJHxphWEs", "-0BIyqJj9ZU"]
    with pytest.raises(ClipError):
        sources[0].load()
    assert sources[1].load()[0].shape == (1, 16000)


def test_csv_conflicting_segments_refused(tmp_path):
    csv_path = tmp_path / "segments.csv"
    csv_path.write_text("ytid,start_s\nabc,0\nabc,30\n")
    (tmp_path / "audio").mkdir()
    with pytest.raises(ValueError, match="abc"):
        clips_from_audioset_csv(csv_path, tmp_path / "audio")


# ---------------------------------------------------------------- datasets


def make_dataset(tmp_path, count=3):
    from datasets import Audio, Dataset

    paths = [
        write_tone(
            tmp_path / "clips" / f"clip{i}.wav",
            seconds=1.0 + i,
            frequency=300.0 * (i + 1),
        )
        for i in range(count)
    ]
    ytids = [f"yt{i:02d}" for i in range(count)]
    return Dataset.from_dict({"audio": paths, "ytid": ytids, "caption": ["x"] * count}).cast_column(
        "audio", Audio()
    ), paths


def test_hf_dataset_listed_lazily_and_loadable(tmp_path, monkeypatch):
    import datasets_scripts.sources as sources_module

    dataset, _ = make_dataset(tmp_path)
    decoded = []
    real_decode = sources_module.decode_audio
    monkeypatch.setattr(sources_module, "decode_audio", lambda x: decoded.append(x) or real_decode(x))

    sources = clips_from_hf_dataset(dataset, id_column="ytid", name="toy")
    assert decoded == []  # listing decodes nothing
    assert [s.clip_id for s in sources] == ["yt00", "yt01", "yt02"]
    assert [s.origin for s in sources] == [
        "dataset:toy[0]",
        "dataset:toy[1]",
        "dataset:toy[2]",
    ]
    for i, source in enumerate(sources):
        waveform, sample_rate = source.load()
        assert sample_rate == 16000 and waveform.shape == (1, 16000 * (i + 1))
    assert len(decoded) == 3
    assert len(make_windows(sources[2].clip_id, *sources[2].load())) == 1


def test_hf_dataset_ids_from_file_names_or_index(tmp_path):
    from datasets import Audio, Dataset

    dataset, _ = make_dataset(tmp_path)
    assert [s.clip_id for s in clips_from_hf_dataset(dataset)] == [
        "clip0",
        "clip1",
        "clip2",
    ]
    # Embedded bytes without a path (as after some Hub uploads): ids fall back to the row index.
    raw = [{"bytes": p.read_bytes(), "path": None} for p in sorted((tmp_path / "clips").glob("*.wav"))]
    embedded = Dataset.from_dict({"sound": raw}, features=None).cast_column("sound", Audio())
    sources = clips_from_hf_dataset(embedded, audio_column="sound")
    assert [s.clip_id for s in sources] == ["00000000", "00000001", "00000002"]
    assert sources[1].load()[0].shape == (1, 32000)


def test_hf_dataset_selected_rows_and_bad_row(tmp_path):
    dataset, _ = make_dataset(tmp_path, count=4)
    subset = dataset.select([3, 1])
    sources = clips_from_hf_dataset(subset, id_column="ytid")
    assert [s.clip_id for s in sources] == ["yt03", "yt01"]
    assert sources[0].load()[0].shape == (1, 64000)
    # A row whose file has gone is that clip's failure, not an exception escaping the builder.
    (tmp_path / "clips" / "clip1.wav").unlink()
    with pytest.raises(ClipError) as info:
        sources[1].load()
    assert info.value.reason == UNREADABLE


def test_hf_dataset_missing_columns(tmp_path):
    dataset, _ = make_dataset(tmp_path, count=1)
    with pytest.raises(ValueError) as info:
        clips_from_hf_dataset(dataset, audio_column="wav")
    assert "wav" in str(info.value) and "['audio', 'ytid', 'caption']" in str(info.value)
    with pytest.raises(ValueError, match="youtube_id"):
        clips_from_hf_dataset(dataset, id_column="youtube_id")


def test_hf_dataset_duplicate_ids_refused(tmp_path):
    from datasets import Audio, Dataset

    path = write_tone(tmp_path / "a.wav")
    dataset = Dataset.from_dict({"audio": [path, path], "ytid": ["same", "same"]}).cast_column("audio", Audio())
    with pytest.raises(ValueError, match="same"):
        clips_from_hf_dataset(dataset, id_column="ytid")


def test_load_hf_source_from_disk(tmp_path):
    from datasets import DatasetDict

    dataset, _ = make_dataset(tmp_path, count=2)
    DatasetDict({"test": dataset}).save_to_disk(tmp_path / "saved")
    sources = load_hf_source(tmp_path / "saved", split="test", id_column="ytid")
    assert [s.clip_id for s in sources] == ["yt00", "yt01"]
    assert sources[1].load()[0].shape == (1, 32000)
    with pytest.raises(ValueError, match="test"):
        load_hf_source(tmp_path / "saved", split="train")


# ---------------------------------------------------------------- id lists, exclusion, sharding


def test_read_id_list_formats(tmp_path):
    plain = tmp_path / "ids.txt"
    plain.write_text("# evaluation clips\n\n--PJHxphWEs\n  -0BIyqJj9ZU  \n# end\n")
    assert read_id_list(plain) == {"--PJHxphWEs", "-0BIyqJj9ZU"}

    audiocaps = tmp_path / "audiocaps_test.csv"
    audiocaps.write_text(
        "audiocap_id,youtube_id,start_time,caption\n"
        '103549,--PJHxphWEs,30,"A man speaks, then a dog barks"\n'
        "103550,--PJHxphWEs,30,A dog barks\n"
        "103551,-0BIyqJj9ZU,0,Wind blows\n"
    )
    assert read_id_list(audiocaps) == {"--PJHxphWEs", "-0BIyqJj9ZU"}

    musiccaps = tmp_path / "musiccaps.csv"
    musiccaps.write_text(
        'ytid,start_s,end_s,audioset_positive_labels,caption\n-0Gj8-vB1q4,30,40,"[\'/m/0140xf\']","a, b\nc"\n'
    )
    assert read_id_list(musiccaps) == {"-0Gj8-vB1q4"}

    generic = tmp_path / "generic.csv"
    generic.write_text("id,split\nabc,test\ndef,test\n")
    assert read_id_list(generic) == {"abc", "def"}

    audioset = tmp_path / "eval_segments.csv"
    audioset.write_text(AUDIOSET_CSV)
    assert len(read_id_list(audioset)) == 4


def test_exclude_ids(tmp_path):
    sources = [ClipSource.missing(i, "") for i in ["a", "b", "c", "d"]]
    kept, excluded = exclude_ids(sources, {"b", "d", "not-listed"})
    assert [s.clip_id for s in kept] == ["a", "c"]
    assert [s.clip_id for s in excluded] == ["b", "d"]


# ---------------------------------------------------------------- any format FFmpeg reads, and the rest accounted for


TONE_1_5_S = "sine=frequency=440:duration=1.5:sample_rate=16000"


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, ffmpeg_audio):
    """1.5 s tones in formats outside the usual list, a WAV under an unknown ending, and files that are not audio."""
    root = tmp_path_factory.mktemp("mixed")

    def ffmpeg(path, *arguments, source=TONE_1_5_S):
        return ffmpeg_audio(path, *arguments, source=source)

    ffmpeg(root / "a.oga", "-c:a", "libvorbis")
    ffmpeg(root / "b.aiff")
    ffmpeg(root / "c.aif", "-f", "aiff")
    ffmpeg(root / "d.webm", "-c:a", "libopus")
    ffmpeg(root / "sub" / "e.mp4", "-c:a", "aac")
    ffmpeg(root / "f.wma", "-c:a", "wmav2")
    ffmpeg(root / "g.caf", "-c:a", "pcm_s16le")
    ffmpeg(root / "h.xyz", "-f", "wav")
    # Not audio: a video without sound, an image, text, a sidecar sharing a clip's stem, a zero-byte file.
    ffmpeg(root / "v.mp4", "-c:v", "mpeg4", source="color=c=red:s=16x16:d=1")
    ffmpeg(root / "pic.png", "-frames:v", "1", source="color=c=red:s=16x16:d=0.1")
    (root / "README.txt").write_text("Clips of the test.\n")
    (root / "a.json").write_text('{"label": "tone"}\n')
    (root / "empty.dat").touch()
    return root


AUDIO_IDS = ["a", "b", "c", "d", "e", "f", "g", "h"]
NOT_AUDIO_IDS = ["README.txt", "a.json", "empty.dat", "pic.png", "v.mp4"]


def test_every_format_ffmpeg_reads_is_a_clip(mixed_folder):
    sources = clips_from_audio_dir(mixed_folder)
    # Every file is accounted for: 13 files, 13 entries.
    assert len(sources) == sum(1 for p in mixed_folder.rglob("*") if p.is_file()) == 13
    audio = {s.clip_id: s for s in sources if s.listing_failure is None}
    assert sorted(audio) == AUDIO_IDS
    for clip_id, source in audio.items():
        waveform, rate = source.load()
        # Lossy codecs pad to whole frames (AAC adds 1024 priming samples, Opus decodes at 48 kHz): the length is
        # right to within one codec frame, well under 0.1 s.
        assert abs(waveform.shape[-1] / rate - 1.5) < 0.1, clip_id
        assert np.abs(waveform).max() > 0.1, clip_id


def test_files_that_are_not_audio_are_listed_as_such(mixed_folder):
    others = {s.clip_id: s for s in clips_from_audio_dir(mixed_folder) if s.listing_failure is not None}
    assert sorted(others) == NOT_AUDIO_IDS
    assert {s.listing_failure for s in others.values()} == {NOT_AUDIO}
    with pytest.raises(ClipError) as info:
        others["v.mp4"].load()
    assert info.value.reason == NOT_AUDIO and "no audio stream" in info.value.detail
    assert others["README.txt"].origin == str(mixed_folder / "README.txt")


def test_audioset_csv_matches_any_audio_format_and_skips_sidecars(mixed_folder, tmp_path):
    csv_path = tmp_path / "segments.csv"
    csv_path.write_text("ytid,start_s\na,0\nv,0\nzz,0\n")
    sources = {s.clip_id: s for s in clips_from_audioset_csv(csv_path, mixed_folder)}
    assert sources["a"].origin == str(mixed_folder / "a.oga")  # not its a.json sidecar
    assert sources["a"].load()[1] == 16000
    # A ytid whose only file is a video without sound is a "not_audio" failure, not a missing file.
    assert sources["v"].listing_failure == NOT_AUDIO
    assert sources["zz"].listing_failure == UNREADABLE


def test_a_folder_that_is_a_file_is_named(tmp_path):
    (tmp_path / "clip.wav").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        clips_from_audio_dir(tmp_path / "clip.wav")


def test_hidden_files_and_folders_are_left_out_as_datasets_leaves_them_out(tmp_path, caplog, ffmpeg_audio):
    """macOS resource forks (`._a.wav`, AppleDouble metadata named like the clip), `.DS_Store` and cache folders are
    not clips and not failures: they are skipped, and the log says how many."""
    ffmpeg_audio(tmp_path / "a.wav")
    (tmp_path / "._a.wav").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    ffmpeg_audio(tmp_path / ".cache" / "b.wav")
    ffmpeg_audio(tmp_path / "__MACOSX" / "c.wav")
    ffmpeg_audio(tmp_path / "sub" / "d.wav")
    with caplog.at_level(logging.INFO, logger="datasets_scripts.sources"):
        sources = clips_from_audio_dir(tmp_path)
    assert [s.clip_id for s in sources] == ["a", "d"]
    assert all(s.listing_failure is None for s in sources)
    assert "Left out 4 hidden file(s) or folder(s)" in caplog.text
