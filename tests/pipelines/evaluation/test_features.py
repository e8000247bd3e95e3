"""Loading evaluation sets, batched feature extraction equal to one clip at a time, and the feature cache."""

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from datasets_scripts.audio import resample
from pipelines.cli import UserError
from pipelines.evaluation.features import (
    EvalClip,
    FeatureCache,
    extract_features,
    load_clip_set,
    open_clip_source,
    weights_fingerprint,
)

RATE = 16000


def write_clips(folder, seconds=(1.0, 1.0, 2.0), rate=RATE):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, s in enumerate(seconds):
        sf.write(folder / f"clip{i}.wav", (rng.standard_normal(round(s * rate)) * 0.1).astype(np.float32), rate)
    return folder


def test_folder_loading_skips_counts_and_lists(tmp_path):
    folder = write_clips(tmp_path / "gen")
    (folder / "broken.wav").write_bytes(b"RIFF not really a wav")
    (folder / "empty.wav").write_bytes(b"")
    sf.write(folder / "quiet.wav", np.zeros(RATE, dtype=np.float32), RATE)
    sf.write(folder / "stereo_44k.flac", np.full((44100, 2), 0.25, dtype=np.float32), 44100)
    sf.write(folder / "nan.wav", np.full(RATE, np.nan, dtype=np.float32), RATE, subtype="FLOAT")

    loaded = load_clip_set(folder)

    assert sorted(c.key for c in loaded.clips) == ["clip0", "clip1", "clip2", "quiet", "stereo_44k"]
    # Every clip left out is listed under its reason, in the results JSON too.
    assert loaded.skipped == {"unreadable": ["broken"], "empty": ["empty"], "non_finite": ["nan"]}
    assert loaded.summary()["skipped"] == loaded.skipped
    assert loaded.silent == ["quiet"] and loaded.summary()["silent"] == ["quiet"]
    assert loaded.sampling_rates == {16000: 4, 44100: 1}
    stereo = next(c for c in loaded.clips if c.key == "stereo_44k")
    assert stereo.audio.ndim == 1 and stereo.sampling_rate == 44100
    np.testing.assert_array_equal(stereo.audio, np.full(44100, 0.25, dtype=np.float32))  # channels averaged


def ffmpeg_sine(path, seconds=1.0, rate=RATE):
    """An audio file of the format FFmpeg picks for `path`'s extension (Ogg FLAC for .oga, Opus in WebM)."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", f"sine=frequency=440:duration={seconds}:sample_rate={rate}", str(path)],
        check=True, timeout=60,
    )  # fmt: skip


def test_folder_takes_whatever_ffmpeg_reads_and_accounts_for_the_rest(tmp_path):
    folder = write_clips(tmp_path / "gen", seconds=(1.0,))
    ffmpeg_sine(folder / "ogg_flac.oga")
    ffmpeg_sine(folder / "opus.webm")  # an ending the builder does not know: probed, and audio
    (folder / "notes").mkdir()
    (folder / "notes" / "README.txt").write_text("Clips generated for the evaluation.\n")
    (folder / "broken.oga").write_bytes(b"OggS but nothing after")
    # Hidden files (an interrupted write's partial file, an editor's) and hidden folders are not part of the set.
    shutil.copy(folder / "clip0.wav", folder / ".clip0.wav.123.partial")
    (folder / ".cache").mkdir()
    shutil.copy(folder / "clip0.wav", folder / ".cache" / "other.wav")

    source = open_clip_source(folder)
    loaded = source.load()

    assert sorted(source.keys) == ["broken", "clip0", "ogg_flac", "opus"]
    assert sorted(c.key for c in loaded.clips) == ["clip0", "ogg_flac", "opus"]
    assert loaded.skipped == {"not_audio": ["notes/README.txt"], "unreadable": ["broken"]}
    assert loaded.summary()["skipped"] == loaded.skipped
    ogg = next(c for c in loaded.clips if c.key == "ogg_flac")
    opus = next(c for c in loaded.clips if c.key == "opus")
    assert (ogg.sampling_rate, len(ogg.audio)) == (RATE, RATE)  # FLAC in Ogg: lossless, every sample
    assert opus.sampling_rate == 48000 and np.abs(opus.audio).max() > 0.1  # Opus decodes at 48 kHz
    # Selecting clips by key keeps what listing skipped.
    assert source.only(["clip0"]).load().skipped == {"not_audio": ["notes/README.txt"]}


def test_empty_or_unusable_sources_are_errors(tmp_path):
    (tmp_path / "nothing").mkdir()
    with pytest.raises(UserError, match=r"'.*nothing' holds no audio file and no dataset \(it is empty\)"):
        load_clip_set(tmp_path / "nothing")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("not audio")
    with pytest.raises(UserError, match=r"FFmpeg finds no audio in its 1 files, e.g. \['a.txt'\]"):
        load_clip_set(tmp_path / "text")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.wav").write_bytes(b"junk")
    with pytest.raises(UserError, match=r"'.*bad': no usable audio clip \(skipped by reason: \{'unreadable': 1\}\)"):
        load_clip_set(tmp_path / "bad")
    with pytest.raises(UserError, match=r"'.*a.wav' is a file"):
        load_clip_set(tmp_path / "bad" / "a.wav")
    write_clips(tmp_path / "twice", seconds=(1.0,))
    shutil.copy(tmp_path / "twice" / "clip0.wav", tmp_path / "twice" / "clip0.flac")
    with pytest.raises(UserError, match=r"share the id 'clip0'.*clip0.flac and .*clip0.wav.*paired by file name"):
        load_clip_set(tmp_path / "twice")


def test_dataset_loading_keys_by_column(tmp_path):
    import datasets

    folder = write_clips(tmp_path / "wavs", seconds=(1.0, 1.5))
    table = datasets.Dataset.from_dict(
        {"audio": [str(folder / "clip0.wav"), str(folder / "clip1.wav")], "ytid": ["yt_a", "yt_b"]}
    ).cast_column("audio", datasets.Audio())
    table.save_to_disk(str(tmp_path / "saved"))

    loaded = load_clip_set(tmp_path / "saved", key_column="ytid")
    assert [c.key for c in loaded.clips] == ["yt_a", "yt_b"] and len(loaded.clips[1].audio) == 24000
    with pytest.raises(UserError, match=r"has no column 'missing' \(--key_column\); its columns: \['audio', 'ytid'\]"):
        load_clip_set(tmp_path / "saved", key_column="missing")


class PooledConv(torch.nn.Module):
    """Stands in for a backbone: convolution then mean and max pooling over time, like Cnn14's head."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 4, 9, stride=4)

    def forward(self, waveforms):
        x = self.conv(waveforms[:, None])
        return {"embedding": x.mean(-1) + x.amax(-1), "frames": x.mean(1)[:, :3]}


def test_batched_extraction_equals_one_clip_at_a_time(float32_close):
    torch.manual_seed(0)
    model = PooledConv().eval()
    rng = np.random.default_rng(1)
    clips = [
        EvalClip(f"c{i}", rng.standard_normal(n).astype(np.float32), RATE)
        for i, n in enumerate([800, 800, 1200, 800, 1200])
    ]
    clips.append(EvalClip("resampled", rng.standard_normal(1600).astype(np.float32), 32000))

    def prepare(audio, rate):
        return resample(audio, rate, RATE)

    batched = extract_features(clips, model, prepare, "toy", batch_size=4)
    alone = {c.key: extract_features([c], model, prepare, "toy", batch_size=1)[c.key] for c in clips}

    assert list(batched) == [c.key for c in clips] and batched.keys() == alone.keys()
    for key in alone:  # a batched convolution sums in another order than one clip's: float32 reordering
        float32_close(batched[key]["embedding"], alone[key]["embedding"])
        float32_close(batched[key]["frames"], alone[key]["frames"])
    assert batched["c0"]["embedding"].shape == (4,)


def test_feature_cache_is_keyed_by_audio_rate_and_weights(tmp_path):
    torch.manual_seed(0)
    model = PooledConv().eval()
    cache = FeatureCache(tmp_path / "cache")
    clip = EvalClip("a", np.linspace(-0.5, 0.5, 800, dtype=np.float32), RATE)
    backbone = "toy-" + weights_fingerprint(model)

    first = extract_features([clip], model, lambda a, rate: a, backbone, cache=cache)
    assert (cache.hits, cache.misses) == (0, 1)
    again = extract_features([clip], model, lambda a, rate: a, backbone, cache=cache)
    assert (cache.hits, cache.misses) == (1, 1)
    np.testing.assert_array_equal(again["a"]["embedding"], first["a"]["embedding"])
    assert not any(tmp_path.glob("*.safetensors"))  # nothing beside the audio; all under the cache folder

    other_rate = EvalClip("a", clip.audio, 32000)
    assert FeatureCache.key(other_rate, backbone) != FeatureCache.key(clip, backbone)
    with torch.no_grad():
        model.conv.bias += 1
    assert weights_fingerprint(model) != backbone.removeprefix("toy-")
