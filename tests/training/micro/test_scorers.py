"""The caption filter's controls, through the real builder and loader: the oracle keeps exact captions first, the
random scorer ignores quality, and the replay captioner gives every scorer the very same captions."""

import numpy as np
import pytest
import torch

from datasets_scripts.audio import make_windows
from datasets_scripts.build import build_af_audioset
from datasets_scripts.loading import load_af_audioset
from datasets_scripts.micro_world import CLASSES, SYNONYMS, WorldConfig, classes_mentioned, generate_clip, write_split
from datasets_scripts.sources import clips_from_audio_dir
from training.micro.scorers import OracleScorer, RandomScorer, ReplayCaptioner, audio_envelope, caption_agreement

WORLD = WorldConfig(seed=3, split_sizes={"pool": 6, "captioned": 0, "test": 0})
NUM_CAPTIONS = 4


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    folder = write_split(WORLD, "pool", tmp_path_factory.mktemp("world") / "pool", progress=False)
    return folder / "audio", [generate_clip(WORLD, "pool", index) for index in range(WORLD.split_size("pool"))]


def _wrong_class(clip) -> str:
    """A noun phrase of a class the clip does not hold."""
    return SYNONYMS[next(name for name in CLASSES if name not in clip.classes)][0]


class ScriptedCaptioner:
    """Duck-typed like `AudioCaptioner`: for each clip, one exact caption (its reference), one naming a class it
    lacks, one naming nothing, one naming only part of it or an extra class; their order differs per clip."""

    model_id = "scripted"
    device = torch.device("cpu")

    def __init__(self, clips):
        self.captions = {}
        for index, clip in enumerate(clips):
            wrong = _wrong_class(clip)
            partial = f"A {SYNONYMS[clip.classes[0]][0]} and a {wrong} sound"
            texts = [clip.caption, f"The sound of a {wrong}", "Something is heard", partial]
            self.captions[f"{clip.clip_id}@0.00"] = texts[index % 4 :] + texts[: index % 4]

    def caption(self, clip_keys, audios):
        return [list(self.captions[key]) for key in clip_keys]


def _build(pool, folder, captioner, scorer):
    audio_dir, _ = pool
    return build_af_audioset(
        clips_from_audio_dir(audio_dir), folder, captioner=captioner, clap=scorer, num_captions=NUM_CAPTIONS, top_k=2
    )


@pytest.fixture(scope="module")
def builds(pool, tmp_path_factory):
    _, clips = pool
    root = tmp_path_factory.mktemp("af")
    _build(pool, root / "oracle", ScriptedCaptioner(clips), OracleScorer(clips, seed=0))
    _build(pool, root / "random", ReplayCaptioner(root / "oracle"), RandomScorer(seed=0))
    return root


def test_caption_agreement_is_the_jaccard_of_the_named_classes():
    assert caption_agreement("A siren wails, then a bell rings", ["bell", "siren"]) == 1.0
    assert caption_agreement("A siren wails", ["bell", "siren"]) == 0.5
    assert caption_agreement("A siren wails, then rain falls", ["bell", "siren"]) == pytest.approx(1 / 3)
    assert caption_agreement("Something is heard", ["bell"]) == 0.0


def test_the_oracle_recognises_a_clip_after_wav_and_resampling_and_ranks_exact_captions_first(pool):
    audio_dir, clips = pool
    oracle = OracleScorer(clips, seed=0)
    # What the builder hands a scorer: the 16-bit WAV, decoded, resampled to 48 kHz, cut into windows.
    source = clips_from_audio_dir(audio_dir)[2]
    window = make_windows(source.clip_id, *source.load())[0]
    assert oracle.identify(window.audio_48k) == oracle.identify(window.audio_16k) == 2
    clip = clips[2]
    captions = [f"The sound of a {_wrong_class(clip)}", clip.caption, "Something is heard"]
    scores = oracle.score([window.audio_48k], [captions])[0]
    assert int(np.argmax(scores)) == 1 and all(0 <= s < 1 for s in scores)
    # Seeded and batch-independent: the same clip scores the same alone or among others.
    again = oracle.score([clips[0].audio, window.audio_16k], [["x"], captions])[1]
    assert again == scores


def test_the_oracle_refuses_a_clip_it_does_not_know(pool):
    _, clips = pool
    oracle = OracleScorer(clips[:3])
    with pytest.raises(ValueError, match="knows no clip like this one"):
        oracle.score([clips[4].audio], [["A bell rings"]])
    with pytest.raises(ValueError, match=r"`noise` must be in \[0, 1/12\)"):
        OracleScorer(clips, noise=0.2)


def test_envelopes_tell_the_pool_clips_apart(pool):
    _, clips = pool
    envelopes = np.stack([audio_envelope(clip.audio) for clip in clips])
    distances = np.sqrt(((envelopes[:, None] - envelopes[None]) ** 2).mean(axis=-1))
    # Every other clip is far beyond the oracle's 3 dB tolerance.
    assert distances[~np.eye(len(clips), dtype=bool)].min() > 3.0


def test_random_scores_are_seeded_uniform_and_blind_to_the_captions_quality(pool):
    _, clips = pool
    captions = [[f"caption {i}" for i in range(50)]] * 2
    first = RandomScorer(seed=0).score([clips[0].audio, clips[1].audio], captions)
    assert first == RandomScorer(seed=0).score([clips[0].audio, clips[1].audio], captions)
    assert first[0] == RandomScorer(seed=0).score([clips[0].audio], captions[:1])[0]
    assert first != RandomScorer(seed=1).score([clips[0].audio, clips[1].audio], captions)
    # The same captions of another clip get other scores: nothing but chance ties a score to a text.
    assert first[0] != first[1]
    values = np.array(first).ravel()
    assert values.min() >= 0 and values.max() < 1


def test_replay_gives_the_stored_captions_and_the_builds_rank_them_differently(builds, pool):
    _, clips = pool
    scripted = ScriptedCaptioner(clips)
    replay = ReplayCaptioner(builds / "oracle")
    keys = list(scripted.captions)
    assert replay.caption(keys, [None] * len(keys)) == scripted.caption(keys, None)
    assert replay.model_id == "scripted" and replay.num_captions == NUM_CAPTIONS
    with pytest.raises(KeyError, match="pool-99999@0.00"):
        replay.caption(["pool-99999@0.00"], [None])

    oracle = load_af_audioset(builds / "oracle", tau=None, top_k=None).to_pandas()
    random = load_af_audioset(builds / "random", tau=None, top_k=None).to_pandas()
    key = ["clip_id", "caption_index"]
    merged = oracle.merge(random, on=key, suffixes=("_oracle", "_random"))
    assert len(merged) == len(oracle) == len(random) == len(clips) * NUM_CAPTIONS
    assert (merged["caption_oracle"] == merged["caption_random"]).all()
    assert (merged["captioner_random"] == "scripted").all() and (merged["clap_random"] == "random").all()


def test_through_the_loader_the_oracle_keeps_exact_captions_first(builds, pool):
    _, clips = pool
    truth = {clip.clip_id: set(clip.classes) for clip in clips}
    best = load_af_audioset(builds / "oracle", tau=None, top_k=1)
    assert len(best) == len(clips)
    assert all(classes_mentioned(row["caption"]) == truth[row["clip_id"]] for row in best)
    # A tau between an exact caption's score and the next kept only the exact ones among the top 2.
    strict = load_af_audioset(builds / "oracle", tau=0.9, top_k=2)
    assert sorted(strict["clip_id"]) == sorted(truth)
