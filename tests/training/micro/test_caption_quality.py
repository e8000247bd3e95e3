"""Caption exactness against the kept fraction, read through `load_af_audioset` on folders `build_af_audioset`
wrote: the oracle's curve rises with tau, the random scorer's does not, and the report has the shape the study
ships."""

import json

import numpy as np
import pytest
import torch

from datasets_scripts.build import build_af_audioset
from datasets_scripts.micro_world import CLASSES, SYNONYMS, WorldConfig, generate_clip, write_split
from datasets_scripts.sources import clips_from_audio_dir
from training.micro.caption_quality import (
    _bootstrap_ratio,
    caption_table,
    scorer_quality_report,
    tau_for_kept_fraction,
)
from training.micro.scorers import OracleScorer, RandomScorer, ReplayCaptioner

WORLD = WorldConfig(seed=4, split_sizes={"pool": 12, "captioned": 0, "test": 0})
NUM_CAPTIONS = 6


class OneRightCaptioner:
    """Duck-typed like `AudioCaptioner`: per clip, its reference caption among five captions of one wrong class."""

    model_id = "one-right"
    device = torch.device("cpu")

    def __init__(self, clips):
        self.captions = {}
        for index, clip in enumerate(clips):
            wrong = [SYNONYMS[name][0] for name in CLASSES if name not in clip.classes][: NUM_CAPTIONS - 1]
            texts = [f"The sound of a {noun}" for noun in wrong]
            texts.insert(index % NUM_CAPTIONS, clip.caption)
            self.captions[f"{clip.clip_id}@0.00"] = texts

    def caption(self, clip_keys, audios):
        return [list(self.captions[key]) for key in clip_keys]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    audio_dir = write_split(WORLD, "pool", root / "pool", progress=False) / "audio"
    clips = [generate_clip(WORLD, "pool", index) for index in range(WORLD.split_size("pool"))]
    common = {"num_captions": NUM_CAPTIONS, "top_k": 3}
    build_af_audioset(
        clips_from_audio_dir(audio_dir), root / "oracle", OneRightCaptioner(clips), OracleScorer(clips), **common
    )
    replay = ReplayCaptioner(root / "oracle")
    build_af_audioset(clips_from_audio_dir(audio_dir), root / "random", replay, RandomScorer(seed=1), **common)
    truth = {clip.clip_id: clip.classes for clip in clips}
    folders = {"random": root / "random", "oracle": root / "oracle"}
    report = scorer_quality_report(folders, truth, root / "report", top_k=3, kept_fractions=(1.0, 2 / 3, 1 / 3))
    return root, truth, report


def test_the_oracle_curve_rises_to_every_kept_caption_exact_and_random_stays_near_the_base_rate(study):
    _, _, report = study
    oracle, random = report["curves"]["oracle"], report["curves"]["random"]
    # Top 3 of 6 captions, one of them exact: a third of the kept captions, whatever the scorer, before tau.
    assert oracle[0]["exact"] == pytest.approx(1 / 3) and oracle[0]["tau"] is None
    # A third of the top 3 kept: exactly the best-scored caption of every clip, each exact under the oracle.
    assert [row["kept_fraction"] for row in oracle] == pytest.approx([1.0, 2 / 3, 1 / 3])
    assert oracle[-1]["exact"] == 1.0 and oracle[-1]["clips"] == 12
    assert report["best_of_n_exact"]["oracle"] == 1.0
    # The random scorer's top 3 hold the exact caption in about half the clips (C(5,2)/C(6,3) = 1/2), so a third
    # of its captions at most: it cannot approach the oracle's 100%.
    assert all(row["exact"] <= 0.5 for row in random)
    assert report["sampled_exact"] == pytest.approx(1 / NUM_CAPTIONS)


def test_rows_have_the_shipped_shape_and_intervals_bracket_the_estimates(study):
    root, _, report = study
    for rows in report["curves"].values():
        for row in rows:
            assert {"tau", "kept_fraction", "exact"} <= set(row)
            low, high = row["exact_ci95"]
            assert low <= row["exact"] <= high
    written = json.loads((root / "report" / "caption_quality.json").read_text())
    assert written["curves"] == json.loads(json.dumps(report["curves"]))
    table = (root / "report" / "caption_quality.md").read_text()
    assert "| 33% | " in table and "| random | oracle |" in table
    assert (root / "report" / "caption_quality.png").read_bytes()[:4] == b"\x89PNG"


def test_a_tau_keeps_what_the_loader_keeps(study):
    root, truth, report = study
    everything = caption_table(root / "oracle", truth)
    assert len(everything["rank"]) == 12 * NUM_CAPTIONS
    tau = report["curves"]["oracle"][1]["tau"]
    kept = caption_table(root / "oracle", truth, tau=tau, top_k=3)
    expected = (everything["rank"] < 3) & (everything["similarity"] >= np.float32(tau))
    assert len(kept["rank"]) == int(expected.sum()) == report["curves"]["oracle"][1]["captions"]


def test_folders_with_other_captions_are_refused(study, tmp_path):
    root, truth, _ = study
    clips = [generate_clip(WORLD, "pool", index) for index in range(WORLD.split_size("pool"))]
    other = OneRightCaptioner(clips)
    other.captions = {key: ["Something is heard"] + texts[1:] for key, texts in other.captions.items()}
    build_af_audioset(
        clips_from_audio_dir(root / "pool" / "audio"), tmp_path / "other", other, RandomScorer(), num_captions=6
    )
    with pytest.raises(ValueError, match="hold different captions"):
        scorer_quality_report({"a": root / "oracle", "b": tmp_path / "other"}, truth, tmp_path / "report")


def test_tau_for_a_kept_fraction_and_the_bootstrap():
    similarity = np.array([0.1, 0.2, 0.3, 0.4, 0.9, 0.5])
    rank = np.array([0, 1, 2, 0, 5, 1])  # 0.9 is beyond the top 3
    assert tau_for_kept_fraction(similarity, rank, 3, 1.0) is None
    assert tau_for_kept_fraction(similarity, rank, 3, 0.4) == 0.3  # keeps 0.3, 0.4, 0.5 of five
    with pytest.raises(ValueError, match="in \\(0, 1\\], got 0"):
        tau_for_kept_fraction(similarity, rank, 3, 0)
    # Every clip alike: every resample gives the same ratio.
    clips = np.array(["a", "a", "b", "b"])
    assert _bootstrap_ratio(clips, np.array([1, 0, 1, 0]), np.random.default_rng(0), 100) == [0.5, 0.5]
    low, high = _bootstrap_ratio(clips, np.array([1, 1, 0, 0]), np.random.default_rng(0), 400)
    assert low == 0.0 and high == 1.0
