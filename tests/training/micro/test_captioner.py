"""The micro AF3 captioner: inputs identical to inference, caption-only labels, overfitting, loading, seeding."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import datasets_scripts.captioner as captioner_module
from datasets_scripts.captioner import AudioCaptioner
from datasets_scripts.micro_world import WorldConfig, render_audio
from training.micro.captioner import (
    build_micro_captioner,
    build_training_batch,
    evaluate_micro_captioner,
    generation_position_ids,
    train_micro_captioner,
)

TINY = {"text_hidden_size": 64, "text_layers": 2, "audio_hidden_size": 32, "audio_layers": 1}
CAPTIONS = {
    "siren": "A loud siren wails",
    "rain": "Heavy rain falls",
    "bell": "A church bell tolls",
    "engine": "A diesel engine chugs",
}


def _audio(name: str, index: int) -> np.ndarray:
    labels = {
        "events": [{"class": name, "attributes": {"loudness": "loud"}, "peak": 0.5, "start": 0.1, "end": 2.4}],
        "relation": None,
    }
    if name in ("siren", "bell"):
        labels["events"][0]["attributes"]["pitch"] = "low"
    if name in ("siren", "engine"):
        labels["events"][0]["attributes"]["rhythm"] = "slow"
    return render_audio(labels, WorldConfig(seed=0), np.random.default_rng([index, 7]))


@pytest.fixture(scope="module")
def clips():
    return [(_audio(name, i), caption) for i, (name, caption) in enumerate(CAPTIONS.items())]


@pytest.fixture(scope="module")
def trained(clips, tmp_path_factory):
    folder = tmp_path_factory.mktemp("micro_captioner")
    return train_micro_captioner(
        clips, folder, epochs=60, batch_size=4, lr=3e-3, seed=0, model_kwargs=TINY, progress=False
    )


def _caption_loss(model, processor, clips) -> float:
    captioner = AudioCaptioner(model, processor, model_id="test")
    batch = build_training_batch(captioner, [a for a, _ in clips], [c for _, c in clips])
    with torch.no_grad():
        return float(model.eval()(**batch).loss)


def test_labels_cover_the_caption_only(clips):
    model, processor = build_micro_captioner(list(CAPTIONS.values()), **TINY)
    captioner = AudioCaptioner(model, processor, model_id="test")
    batch = build_training_batch(captioner, [clips[0][0], clips[1][0]], ["A loud siren wails", "Rain"])
    tokenizer = processor.tokenizer
    for row, caption in enumerate(["A loud siren wails", "Rain"]):
        ids, labels, mask = batch["input_ids"][row], batch["labels"][row], batch["attention_mask"][row]
        supervised = labels != -100
        # The targets are exactly the caption's tokens then <|im_end|>, at the end of the real tokens.
        target = tokenizer(caption, add_special_tokens=False)["input_ids"] + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
        assert labels[supervised].tolist() == target
        assert torch.equal(ids[supervised], labels[supervised])
        real = int(mask.sum())
        assert supervised[real - len(target) : real].all() and not supervised[: real - len(target)].any()
        assert not supervised[real:].any()
        # Everything before is the inference prompt: system turn, <sound> tokens, instruction, assistant header.
        prompt = tokenizer.decode(ids[: real - len(target)])
        assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
        assert "Can you briefly describe what you hear in this audio?" in prompt
        assert int((ids == processor.audio_token_id).sum()) == 32  # 2.56 s of audio at a 20 ms hop
    # The shorter row is right-padded and masked.
    assert batch["attention_mask"][1, -1] == 0 and batch["input_ids"][1, -1] == tokenizer.pad_token_id


def test_teacher_forcing_sees_the_logits_generation_samples_from(clips, monkeypatch):
    model, processor = build_micro_captioner(list(CAPTIONS.values()), seed=3, **TINY)
    captioner = AudioCaptioner(model, processor, model_id="test", num_captions=1, max_new_tokens=4)
    seen = []
    sample = captioner_module.GumbelSamplingProcessor.__call__

    def record(self, input_ids, scores):
        seen.append(scores.clone())
        return sample(self, input_ids, scores)

    monkeypatch.setattr(captioner_module.GumbelSamplingProcessor, "__call__", record)
    generated = captioner.generate_caption_ids(["k"], [clips[2][0]])[0]
    assert len(seen) == 4 and len(generated) == 4
    batch = build_training_batch(captioner, [clips[2][0]], [generated[:3].tolist()])
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0]
    first = int((batch["labels"][0] == -100).sum()) - 1  # the last prompt token predicts the first caption token
    for step, scores in enumerate(seen):
        kept = torch.isfinite(scores[0])  # top-k / top-p leave the other logits untouched
        torch.testing.assert_close(logits[first + step][kept], scores[0][kept], atol=1e-4, rtol=1e-4)


def test_generation_position_ids():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    positions = generation_position_ids(mask, 2)
    # Prefill counts pads, generate does not: the last prompt token restarts at (real tokens - 1).
    assert positions.tolist() == [[0, 1, 2, 3, 2, 3, 4], [0, 1, 2, 3, 4, 5, 6]]


def test_overfit_then_caption_from_the_saved_folder(clips, trained):
    model, processor = build_micro_captioner(list(CAPTIONS.values()), seed=0, **TINY)
    before = _caption_loss(model, processor, clips)
    loaded = AudioCaptioner.from_pretrained(str(trained), num_captions=2, max_new_tokens=16)
    after = _caption_loss(loaded.model, loaded.processor, clips)
    assert after < 0.2 * before, (before, after)

    # Sampled with the AF-AudioSet recipe: lists of strings, one list per clip.
    captions = loaded.caption(["a", "b", "c", "d"], [a for a, _ in clips])
    assert [len(row) for row in captions] == [2, 2, 2, 2]
    assert all(isinstance(text, str) and "<|" not in text for row in captions for text in row)

    # Near-greedy (top_p tiny keeps the most likely token only): each clip gets its own training caption back.
    greedy = AudioCaptioner.from_pretrained(str(trained), num_captions=1, top_p=0.01, max_new_tokens=16)
    got = [row[0] for row in greedy.caption(["a", "b", "c", "d"], [a for a, _ in clips])]
    for (_, reference), caption in zip(clips, got):
        assert set(reference.lower().split()) <= set(caption.lower().split()), (reference, caption)

    metrics = evaluate_micro_captioner(trained, [(a, [name]) for (a, _), name in zip(clips, CAPTIONS)], num_samples=3)
    assert metrics["exact_class_rate"] > 0.5 and metrics["num_captions"] == 12, metrics


def test_saved_folder_is_safetensors_with_generation_config(trained):
    assert (trained / "model.safetensors").exists() and not list(trained.glob("*.bin"))
    assert (trained / "generation_config.json").exists()
    captioner = AudioCaptioner.from_pretrained(str(trained))
    im_end = captioner.processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in captioner.model.generation_config.eos_token_id
    assert captioner.processor.feature_extractor.chunk_length == 3


def test_same_seed_same_weights(clips, tmp_path):
    # Several captions per clip, so that the seeded caption choice is exercised too.
    data = [(audio, [caption, caption.lower()]) for audio, caption in clips]
    kwargs = {"epochs": 3, "batch_size": 3, "lr": 3e-3, "model_kwargs": TINY, "progress": False}
    runs = [
        load_file(train_micro_captioner(data, tmp_path / name, seed=seed, **kwargs) / "model.safetensors")
        for name, seed in (("a", 0), ("b", 0), ("c", 1))
    ]
    assert runs[0].keys() == runs[1].keys()
    assert all(torch.equal(runs[0][name], runs[1][name]) for name in runs[0])
    assert not all(torch.equal(runs[0][name], runs[2][name]) for name in runs[0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, "epochs must be a positive integer, got 0"),
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        ({"lr": -1.0}, "lr must be > 0, got -1.0"),
    ],
)
def test_bad_arguments_raise(clips, tmp_path, kwargs, message):
    with pytest.raises(ValueError) as error:
        train_micro_captioner(clips, tmp_path, progress=False, **kwargs)
    assert message in str(error.value)
