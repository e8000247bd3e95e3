"""The CLAP sanity check: a tiny CLAP trained on the check's pairs passes, one trained on shifted pairs fails, and
a collapsed one is reported broken."""

import copy

import numpy as np
import pytest
import torch
from transformers import ClapProcessor

from pipelines.clap.sanity import SANITY_CAPTIONS, check_clap, main, sanity_clips
from pipelines.tango_clap.debug import build_debug_clap_scorer
from pipelines.tango_clap.pipeline_tango_clap import clap_audio_features

STEPS = 150


def trained_clap(shift: int) -> dict:
    """The debug CLAP trained contrastively to pair clip i with caption (i + shift) % 3."""
    torch.manual_seed(0)
    parts = build_debug_clap_scorer()
    model, tokenizer, fe = parts["clap_model"], parts["clap_tokenizer"], parts["clap_feature_extractor"]
    clips = sanity_clips(int(fe.sampling_rate))
    names = list(clips)
    captions = [SANITY_CAPTIONS[names[(i + shift) % len(names)]] for i in range(len(names))]
    features, _ = clap_audio_features(fe, [clips[n] for n in names])
    tokens = tokenizer(captions, padding=True, return_tensors="pt")
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(STEPS):
        out = model(
            input_ids=tokens.input_ids,
            attention_mask=tokens.attention_mask,
            input_features=features,
            return_loss=True,
        )
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    model.eval()
    return parts


@pytest.fixture(scope="module")
def matching_clap():
    return trained_clap(shift=0)


def test_sanity_clips():
    clips = sanity_clips(16000, seconds=2.0, seed=1)
    assert list(clips) == list(SANITY_CAPTIONS)
    assert all(len(c) == 32000 and c.dtype == np.float32 for c in clips.values())
    assert np.abs(clips["silence"]).max() == 0 and clips["noise"].std() > 0.2
    assert np.abs(np.fft.rfft(clips["tone"])).argmax() == 440 * 2  # 0.5 Hz bins
    np.testing.assert_array_equal(sanity_clips(16000, 2.0, seed=1)["noise"], clips["noise"])
    with pytest.raises(ValueError, match=r"-3"):
        sanity_clips(-3)


def test_a_checkpoint_that_matches_passes(matching_clap):
    report = check_clap(
        matching_clap["clap_model"], matching_clap["clap_tokenizer"], matching_clap["clap_feature_extractor"]
    )
    assert report.passed, report.summary()
    assert report.similarities.shape == (3, 3)
    assert (np.diag(report.similarities) > report.similarities.max(axis=0) - 1e-6).all()
    assert "PASSED" in report.summary()


def test_a_checkpoint_that_mismatches_fails():
    parts = trained_clap(shift=1)
    report = check_clap(parts["clap_model"], parts["clap_tokenizer"], parts["clap_feature_extractor"])
    assert not report.passed and not report.collapsed
    assert len(report.failures) == 3
    assert "'tone' scores" in report.summary() and "FAILED" in report.summary()


def test_a_collapsed_checkpoint_is_broken():
    torch.manual_seed(0)
    parts = build_debug_clap_scorer()
    with torch.no_grad():  # every clip maps to the same audio embedding
        parts["clap_model"].audio_projection.linear2.weight.zero_()
        parts["clap_model"].audio_projection.linear2.bias.normal_()
    report = check_clap(parts["clap_model"], parts["clap_tokenizer"], parts["clap_feature_extractor"])
    assert report.collapsed and not report.passed
    assert "BROKEN" in report.summary()


def test_cli_exit_code(matching_clap, tmp_path, capsys):
    good = tmp_path / "good"
    matching_clap["clap_model"].save_pretrained(good)
    ClapProcessor(
        feature_extractor=matching_clap["clap_feature_extractor"], tokenizer=matching_clap["clap_tokenizer"]
    ).save_pretrained(good)
    assert main(["--model", str(good)]) == 0
    assert "PASSED" in capsys.readouterr().out

    # A broken copy: the module's fixture is shared with the other tests, whatever order they run in.
    broken = copy.deepcopy(matching_clap["clap_model"])
    with torch.no_grad():
        broken.text_projection.linear2.weight.zero_()
    bad = tmp_path / "bad"
    broken.save_pretrained(bad)
    ClapProcessor(
        feature_extractor=matching_clap["clap_feature_extractor"], tokenizer=matching_clap["clap_tokenizer"]
    ).save_pretrained(bad)
    assert main(["--model", str(bad)]) == 1
    assert "BROKEN" in capsys.readouterr().out
    assert main(["--model", str(tmp_path / "no-such-clap")]) == 2
    assert "does not exist" in capsys.readouterr().err
