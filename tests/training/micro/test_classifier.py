"""The micro world's evaluation classifier: it learns to hear the classes, embeds, and saves without pickle."""

import json

import numpy as np
import pytest
import torch

from datasets_scripts.micro_world import WorldConfig, render_audio
from training.micro.classifier import MicroEventClassifier, evaluate_micro_classifier, train_micro_classifier

CLASSES = ("tone", "noise_burst", "clicks", "hum")
ATTRIBUTES = {
    "tone": {"pitch": "high"},
    "noise_burst": {"pitch": "high", "rhythm": "steady"},
    "clicks": {"rhythm": "fast"},
    "hum": {"pitch": "low"},
}
# 1.28 s clips (128 mel frames): half the world's length, the same sounds.
CONFIG = WorldConfig(seed=0, clip_seconds=1.28)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: these models are small, and on a shared 2-core machine a second thread waiting for a busy
    core makes training many times slower, not faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def single_event_clips(per_class, seed):
    """Balanced single-event clips of `CLASSES`, each event 0.5-1.1 s long, anywhere in the clip, at peaks 0.1-0.5."""
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(per_class):
        for name in CLASSES:
            start = round(float(rng.uniform(0.02, 0.6)), 3)
            end = round(min(start + float(rng.uniform(0.5, 1.1)), 1.26), 3)
            peak = float(rng.uniform(0.1, 0.5))
            attributes = {**ATTRIBUTES[name], "loudness": "loud"}
            labels = {"events": [{"class": name, "attributes": attributes, "peak": peak, "start": start, "end": end}]}
            clips.append((render_audio(labels, CONFIG, rng), [name]))
    return clips


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("classifier")
    train = single_event_clips(per_class=8, seed=1)
    train_micro_classifier(
        train,
        folder,
        epochs=15,
        batch_size=8,
        lr=3e-3,
        seed=0,
        classes=CLASSES,
        mix_probability=0.0,
        progress=False,
    )
    return folder


def test_it_learns_to_tell_the_classes_apart_on_held_out_clips(trained):
    held_out = single_event_clips(per_class=6, seed=2)
    result = evaluate_micro_classifier(trained, held_out)
    untrained = evaluate_micro_classifier(MicroEventClassifier(classes=CLASSES), held_out)
    assert result["clips"] == 24
    assert result["exact_set_accuracy"] >= 0.9, result
    assert result["mean_accuracy"] >= 0.95 and set(result["per_class_accuracy"]) == set(CLASSES)
    assert untrained["exact_set_accuracy"] < 0.5


def test_embeddings_and_probabilities_keep_the_clip_order_for_mixed_lengths(trained, float32_close):
    model = MicroEventClassifier.from_pretrained(trained)
    clips = [audio for audio, _ in single_event_clips(per_class=1, seed=3)]
    clips[1] = clips[1][:12000]  # a shorter clip in the middle of the list
    embeddings = model.embed(clips, batch_size=2)
    probabilities = model.predict_proba(clips)
    assert embeddings.shape == (4, model.config["embedding_dim"]) and embeddings.dtype == np.float32
    assert probabilities.shape == (4, len(CLASSES)) and ((probabilities >= 0) & (probabilities <= 1)).all()
    alone = np.concatenate([model.predict_proba([clip]) for clip in clips])
    float32_close(probabilities, alone)
    # An (N, samples) array works as well as a list.
    same_length = np.stack([clips[0], clips[2]])
    float32_close(model.embed(same_length), embeddings[[0, 2]])
    with pytest.raises(ValueError, match="samples"):
        model.embed([np.zeros(100, dtype=np.float32)])


def test_the_level_of_a_clip_does_not_change_what_it_hears(trained):
    model = MicroEventClassifier.from_pretrained(trained)
    clip = single_event_clips(per_class=1, seed=4)[0][0]
    np.testing.assert_allclose(model.predict_proba([clip]), model.predict_proba([0.1 * clip]), atol=1e-4)


def test_save_and_load_round_trip_is_exact_and_pickle_free(trained, tmp_path):
    model = MicroEventClassifier.from_pretrained(trained)
    assert sorted(p.name for p in trained.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((trained / "config.json").read_text())["classes"] == list(CLASSES)
    # The input statistics were fitted and travel with the weights.
    assert not torch.equal(model.mel_mean, torch.zeros(64))
    clips = [audio for audio, _ in single_event_clips(per_class=1, seed=5)]
    model.save_pretrained(tmp_path / "copy")
    again = MicroEventClassifier.from_pretrained(tmp_path / "copy")
    np.testing.assert_array_equal(model.predict_proba(clips), again.predict_proba(clips))
    np.testing.assert_array_equal(model.embed(clips), again.embed(clips))


def test_training_is_deterministic_with_a_seed(tmp_path):
    clips = single_event_clips(per_class=2, seed=6)

    def weights(seed, name):
        folder = train_micro_classifier(
            clips, tmp_path / name, epochs=2, batch_size=4, seed=seed, classes=CLASSES, progress=False
        )
        return MicroEventClassifier.from_pretrained(folder).state_dict()

    first, second, other = weights(0, "a"), weights(0, "b"), weights(1, "c")
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_unknown_labels_and_bad_arguments_are_refused(tmp_path):
    clips = single_event_clips(per_class=1, seed=7)
    with pytest.raises(ValueError, match="siren"):
        train_micro_classifier([(clips[0][0], ["siren"])], tmp_path, epochs=1, classes=CLASSES, progress=False)
    with pytest.raises(ValueError, match="epochs"):
        train_micro_classifier(clips, tmp_path, epochs=0, classes=CLASSES, progress=False)
