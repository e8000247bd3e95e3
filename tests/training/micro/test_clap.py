"""The micro CLAP: it builds, learns a handful of clips, saves a folder the project's loaders read, and is seeded."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from datasets_scripts.micro_world import (
    WorldConfig,
    caption_for,
    classes_mentioned,
    clip_metadata,
    generate_clip,
    render_audio,
)
from datasets_scripts.scorer import ClapScorer
from pipelines.tango_clap.pipeline_tango_clap import clap_audio_embeddings, clap_audio_features, clap_text_embeddings
from training.components import load_text_encoder
from training.micro.clap import (
    HARD_NEGATIVE_EDITS,
    _tokenize,
    build_micro_clap,
    build_micro_clap_tokenizer,
    contrastive_loss,
    evaluate_micro_clap,
    hard_negative_labels,
    train_micro_clap,
    world_training_clips,
)

# Small enough to train in seconds on a CPU, big enough to tell four sounds apart.
TINY = {
    "text_hidden_size": 32,
    "text_layers": 1,
    "audio_patch_hidden_size": 16,
    "audio_depths": (1,),
    "projection_dim": 16,
}
CLASSES = ("siren", "rain", "bell", "engine")


def _clip(name: str, index: int) -> tuple[np.ndarray, str]:
    config = WorldConfig(seed=0)
    attributes = {"loudness": "loud"}
    if name in ("siren", "bell"):
        attributes["pitch"] = "high"
    if name in ("siren", "engine"):
        attributes["rhythm"] = "slow"
    labels = {
        "events": [{"class": name, "attributes": attributes, "peak": 0.5, "start": 0.1, "end": 2.4}],
        "relation": None,
    }
    audio = render_audio(labels, config, np.random.default_rng([index, 1]))
    return audio, caption_for(labels, np.random.default_rng([index, 2]))


@pytest.fixture(scope="module")
def clips():
    return [_clip(name, i) for i, name in enumerate(CLASSES)]


@pytest.fixture(scope="module")
def trained(clips, tmp_path_factory):
    folder = tmp_path_factory.mktemp("micro_clap")
    return train_micro_clap(clips, folder, steps=40, batch_size=4, lr=3e-3, seed=0, model_kwargs=TINY, progress=False)


def _loss(components, clips) -> float:
    features, _ = clap_audio_features(components["clap_feature_extractor"], [audio for audio, _ in clips])
    with torch.no_grad():
        tokens = _tokenize(components["clap_tokenizer"], [caption for _, caption in clips])
        return float(contrastive_loss(components["clap_model"].eval(), features, tokens))


def test_front_end_reads_world_clips_whole(clips, float32_close):
    components = build_micro_clap(captions=[caption for _, caption in clips], **TINY)
    extractor = components["clap_feature_extractor"]
    assert extractor.sampling_rate == 16000 and extractor.feature_size == 64
    features, is_longer = clap_audio_features(extractor, [audio for audio, _ in clips])
    # No crop, no fusion: one 3 s window that fits the 256-frame HTSAT input.
    assert is_longer is None and features.shape == (4, 1, 241, 64)
    audio = clap_audio_embeddings(components["clap_model"], extractor, [audio for audio, _ in clips])
    text = clap_text_embeddings(components["clap_model"], components["clap_tokenizer"], [c for _, c in clips])
    assert audio.shape == text.shape == (4, 16)
    torch.testing.assert_close(audio.norm(dim=-1), torch.ones(4))
    # A clip's embedding does not depend on its batch.
    alone = clap_audio_embeddings(components["clap_model"], extractor, [clips[2][0]])
    float32_close(alone[0], audio[2])


def test_tokenizer_keeps_world_captions_short():
    captions = ["A loud siren wails, then a bell rings", "Light rain is heard", "A motor chugs at idle"]
    tokenizer = build_micro_clap_tokenizer(captions * 3)
    ids = tokenizer(captions[0])["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    # Word-level merges: far fewer tokens than bytes (a byte-level vocabulary would cut long captions at 77).
    assert len(ids) < len(captions[0]) / 2
    assert tokenizer.decode(ids, skip_special_tokens=True) == captions[0]
    # Unseen words still tokenize, byte by byte.
    assert tokenizer.decode(tokenizer("zebra!")["input_ids"], skip_special_tokens=True) == "zebra!"


def test_training_learns_the_pairs(clips, trained):
    before = _loss(build_micro_clap(captions=[c for _, c in clips], seed=0, **TINY), clips)
    scorer = ClapScorer.from_pretrained(str(trained))
    after = _loss(
        {
            "clap_model": scorer.model,
            "clap_tokenizer": scorer.tokenizer,
            "clap_feature_extractor": scorer.feature_extractor,
        },
        clips,
    )
    assert after < 0.5 * before, (before, after)

    metrics = evaluate_micro_clap(trained, clips)
    # Chance is 0.25 for four clips.
    assert metrics["text_to_audio_r1"] == 1.0 and metrics["audio_to_text_r1"] == 1.0, metrics
    assert metrics["mean_matching"] > metrics["mean_mismatched"] + 0.3, metrics


def test_saved_folder_loads_as_scorer_and_text_encoder(clips, trained, float32_close):
    scorer = ClapScorer.from_pretrained(str(trained))
    assert scorer.sampling_rate == 16000
    scores = scorer.score([audio for audio, _ in clips], [[caption for _, caption in clips]] * len(clips))
    # Every clip scores its own caption highest.
    assert [int(np.argmax(row)) for row in scores] == [0, 1, 2, 3]

    encoder, tokenizer = load_text_encoder(str(trained))
    assert type(encoder).__name__ == "ClapTextModelWithProjection"
    texts = [caption for _, caption in clips]
    tokens = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        text_embeds = encoder(**tokens).text_embeds
    # The loaded tower is the trained one (not a fresh initialisation): same embeddings as the full model.
    expected = clap_text_embeddings(scorer.model, scorer.tokenizer, texts)
    float32_close(torch.nn.functional.normalize(text_embeds, dim=-1), expected)
    assert not list(trained.glob("*.bin")) and (trained / "model.safetensors").exists()


def test_same_seed_same_weights(clips, tmp_path):
    # Several captions per clip and batches smaller than the data: caption choice, order and gains are all drawn.
    data = [(audio, [caption, caption.upper()]) for audio, caption in clips]
    kwargs = {"steps": 4, "batch_size": 3, "lr": 3e-3, "model_kwargs": TINY, "progress": False}
    runs = [
        load_file(train_micro_clap(data, tmp_path / name, seed=seed, **kwargs) / "model.safetensors")
        for name, seed in (("a", 0), ("b", 0), ("c", 1))
    ]
    assert runs[0].keys() == runs[1].keys()
    assert all(torch.equal(runs[0][name], runs[1][name]) for name in runs[0])
    assert not all(torch.equal(runs[0][name], runs[2][name]) for name in runs[0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps": 0}, "steps must be a positive integer, got 0"),
        ({"batch_size": -2}, "batch_size must be a positive integer, got -2"),
        ({"lr": 0.0}, "lr must be > 0, got 0.0"),
        ({"gain_db": -1.0}, "gain_db must be >= 0, got -1.0"),
        ({"warmup_fraction": 1.5}, "warmup_fraction must be in [0, 1), got 1.5"),
    ],
)
def test_bad_arguments_raise(clips, tmp_path, kwargs, message):
    with pytest.raises(ValueError) as error:
        train_micro_clap(clips, tmp_path, progress=False, **kwargs)
    assert message in str(error.value)
    assert not any(tmp_path.iterdir())


def test_bad_clips_raise(clips, tmp_path):
    with pytest.raises(ValueError, match="at least 2 clips, got 1"):
        train_micro_clap(clips[:1], tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"Clip 1 needs at least one non-empty caption, got \[' '\]"):
        train_micro_clap([clips[0], (clips[1][0], " ")], tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"Clip 0 must be a non-empty mono waveform, got shape \(2, 3\)"):
        train_micro_clap([(np.zeros((2, 3)), "a"), clips[1]], tmp_path, progress=False)


# ---------------------------------------------------------------- the captioned distribution and hard negatives


def _key(labels):
    return labels["relation"], [event["class"] for event in labels["events"]]


def test_training_clips_are_the_captioned_distribution_of_the_given_world():
    world = WorldConfig(seed=5, held_out_pairs=40, split_sizes={"pool": 4, "captioned": 3, "test": 2})
    clips = world_training_clips(world, 8, captions_per_clip=2)
    assert len(clips) == 8 and all(len(clip.captions) == 2 for clip in clips)
    # The split's own clips first, exactly as every tool sees them; then more of the same distribution.
    for index in range(3):
        reference = generate_clip(world, "captioned", index)
        assert np.array_equal(clips[index].audio, reference.audio)
        assert clips[index].captions[0] == reference.caption and clips[index].labels == reference.labels
    # Never a held-out pair (40 of the 78: a clip of the pool's distribution would hit one about 40% of the time).
    assert all(frozenset(clip.classes) not in world.held_out for clip in clips)
    assert len({clip.captions[0] for clip in clips}) == 8
    with pytest.raises(TypeError, match="must be a `WorldConfig`, got int 0"):
        world_training_clips(0, 2)


def test_hard_negatives_are_one_edit_away():
    world = WorldConfig(seed=0, split_sizes={"pool": 0, "captioned": 60, "test": 0})
    seen = set()
    for index in range(60):
        _, labels, _ = clip_metadata(world, "captioned", index)
        relation, classes = _key(labels)
        for edit, edited in hard_negative_labels(labels, np.random.default_rng(index)):
            seen.add(edit)
            new_relation, new_classes = _key(edited)
            if edit == "swap":
                # One class replaced by one the clip lacks, in the same role; the rest untouched.
                assert new_relation == relation and len(new_classes) == len(classes)
                changed = [i for i, (a, b) in enumerate(zip(classes, new_classes)) if a != b]
                assert len(changed) == 1 and new_classes[changed[0]] not in classes
            elif edit == "order":
                assert relation == new_relation == "then" and new_classes == classes[::-1]
            elif edit == "drop":
                assert len(classes) == 2 and new_relation is None and new_classes[0] in classes
            else:
                assert edit == "add" and relation is None and new_relation in ("then", "while")
                assert classes[0] in new_classes and len(set(new_classes)) == 2
            caption = caption_for(edited, np.random.default_rng(index))
            assert classes_mentioned(caption) == set(new_classes)
    assert seen == set(HARD_NEGATIVE_EDITS)


def test_training_clips_carry_negatives_worded_like_their_captions():
    world = WorldConfig(seed=1, split_sizes={"pool": 0, "captioned": 6, "test": 0})
    for clip in world_training_clips(world, 6, captions_per_clip=2):
        truth = set(clip.classes)
        named = [classes_mentioned(text) for text in clip.hard_negatives]
        # One swap per wording, plus an order, drop or add edit where it applies.
        assert len(clip.hard_negatives) == 2 * len(hard_negative_labels(clip.labels, np.random.default_rng(0)))
        for text, classes in zip(clip.hard_negatives, named):
            assert classes != truth or clip.labels["relation"] == "then", text
            assert len(classes ^ truth) in (0, 1, 2)


def test_hard_negatives_enter_only_the_audio_to_text_term(clips):
    components = build_micro_clap(captions=[caption for _, caption in clips], seed=1, **TINY)
    model, tokenizer = components["clap_model"].eval(), components["clap_tokenizer"]
    features, _ = clap_audio_features(components["clap_feature_extractor"], [audio for audio, _ in clips])
    captions = [caption for _, caption in clips]
    with torch.no_grad():
        plain = float(contrastive_loss(model, features, _tokenize(tokenizer, captions)))
        # A negative that reads exactly like clip 0's caption: one more column of every clip's audio-to-text softmax,
        # equal to its column 0, so clip i's term rises by log(1 + e^{s_i0} / sum_j e^{s_ij}) (clip 0 can no longer
        # prefer its own caption); the text-to-audio term is untouched.
        doubled = float(contrastive_loss(model, features, _tokenize(tokenizer, captions + captions[:1])))
        audio = F.normalize(model.get_audio_features(input_features=features).pooler_output, dim=-1)
        text = F.normalize(model.get_text_features(**_tokenize(tokenizer, captions)).pooler_output, dim=-1)
        logits = (model.logit_scale_a.exp() * (audio @ text.T)).double()
    expected = 0.5 * float(torch.log1p(logits[:, 0].exp() / logits.exp().sum(dim=1)).mean())
    assert doubled - plain == pytest.approx(expected, rel=1e-3)
    with pytest.raises(ValueError, match="Got 4 clips but only 3 texts"):
        contrastive_loss(model, features, _tokenize(tokenizer, captions[:3]))


def test_training_with_hard_negatives(tmp_path):
    world = WorldConfig(seed=2, split_sizes={"pool": 0, "captioned": 4, "test": 0})
    labelled = world_training_clips(world, 4)
    kwargs = {"steps": 2, "batch_size": 4, "model_kwargs": TINY, "progress": False}
    with_negatives = load_file(
        train_micro_clap(labelled, tmp_path / "a", hard_negatives=2, **kwargs) / "model.safetensors"
    )
    without = load_file(train_micro_clap(labelled, tmp_path / "b", **kwargs) / "model.safetensors")
    assert not all(torch.equal(with_negatives[name], without[name]) for name in without)
    pairs = [(clip.audio, clip.captions) for clip in labelled]
    with pytest.raises(ValueError, match="hard_negatives=2 needs clips that carry hard-negative captions"):
        train_micro_clap(pairs, tmp_path / "c", hard_negatives=2, **kwargs)
    with pytest.raises(ValueError, match="hard_negatives must be a non-negative integer, got -1"):
        train_micro_clap(labelled, tmp_path / "d", hard_negatives=-1, **kwargs)
