"""`python -m training.micro.classify`: the world's event classifier on files, and its errors."""

import numpy as np
import pytest
import soundfile as sf
import torch

from training.micro.classifier import MicroEventClassifier
from training.micro.classify import classify_files, heard, main


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """An untrained classifier whose head is set so that it hears `siren` and `bell`, whatever the input."""
    folder = tmp_path_factory.mktemp("classifier")
    model = MicroEventClassifier()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(-5.0)
        for name in ("siren", "bell"):
            model.head.bias[model.classes.index(name)] = 5.0
    model.save_pretrained(folder)
    return folder


def _wav(path, seconds=1.0, rate=16000, channels=1, value=None):
    audio = np.random.default_rng(0).uniform(-0.3, 0.3, size=(int(seconds * rate), channels)).astype(np.float32)
    if value is not None:
        audio[:] = value
    sf.write(path, audio, rate, subtype="FLOAT" if str(path).endswith(".wav") else None)
    return path


def test_prints_the_classes_heard_per_file(classifier, tmp_path, capsys):
    files = [_wav(tmp_path / "a.wav"), _wav(tmp_path / "b.flac", rate=44100, channels=2)]
    assert main([*map(str, files), "--classifier", str(classifier)]) == 0
    out = capsys.readouterr().out.splitlines()
    # The world's class order: siren comes before bell.
    assert out == [f"{files[0]}: siren, bell", f"{files[1]}: siren, bell"]
    probabilities = classify_files(files[:1], classifier)[0]
    assert heard(probabilities) == ["siren", "bell"] and heard(probabilities, threshold=0.9999) == []
    assert main([str(files[0]), "--classifier", str(classifier), "--probabilities"]) == 0
    assert "siren 0.99" in capsys.readouterr().out


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: p, "Not a file"),
        (lambda p: (p.write_text("not audio"), p)[1], "Cannot read"),
        (lambda p: _wav(p, value=np.nan), "non-finite"),
    ],
)
def test_bad_files_are_one_line_errors(classifier, tmp_path, capsys, make, expected):
    path = make(tmp_path / "x.wav")
    assert main([str(path), "--classifier", str(classifier)]) == 2
    err = capsys.readouterr().err
    assert expected in err and str(path) in err and err.count("\n") == 1


def test_a_folder_without_a_classifier_is_named(tmp_path, capsys):
    assert main([str(_wav(tmp_path / "a.wav")), "--classifier", str(tmp_path)]) == 2
    assert "not an event-classifier folder" in capsys.readouterr().err
