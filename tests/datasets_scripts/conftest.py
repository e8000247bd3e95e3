"""Fixtures shared by the dataset builder's tests: the tiny offline captioner and CLAP, and audio files written by
FFmpeg."""

import subprocess

import pytest

from datasets_scripts.debug_models import save_debug_af_audioset_models


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """`{"captioner": folder, "clap": folder}`: the debug Audio Flamingo 3 and CLAP, saved once for every module (no
    test writes into them)."""
    return save_debug_af_audioset_models(tmp_path_factory.mktemp("models"), seed=0)


def _ffmpeg_audio(path, *arguments, source="sine=frequency=440:duration=1.2:sample_rate=16000"):
    """Writes `path` (its folder made first) from an FFmpeg lavfi `source`, with extra output `arguments` (codec,
    format, ...); returns it as a string."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, *arguments, str(path)], check=True)
    return str(path)


@pytest.fixture(scope="session")
def ffmpeg_audio():
    """`ffmpeg_audio(path, *output_arguments, source=...)`: an audio (or any) file written by FFmpeg; by default a
    1.2 s, 440 Hz, 16 kHz tone."""
    return _ffmpeg_audio
