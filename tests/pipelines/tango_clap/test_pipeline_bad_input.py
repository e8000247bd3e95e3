"""What TangoCLAPPipeline does with bad input and bad numbers: refused up front with the value named, or, for audio
that comes out non-finite anyway (a float16 overflow), never scored, never ranked above finite audio, and named in a
warning. Also: CLAP scores of clips longer than CLAP's window are deterministic and cover the whole clip.

One tiny debug pipeline (module-scoped), 2 steps of 0.32 s audio."""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)

from pipelines.tango_clap import TangoCLAPPipeline
from pipelines.tango_clap.debug import build_debug_clap_scorer, get_debug_pipeline
from pipelines.tango_clap.pipeline_tango_clap import (
    check_num_inference_steps,
    clap_audio_embeddings,
    clap_window_starts,
)

SECONDS = 0.32


@pytest.fixture(scope="module")
def pipe() -> TangoCLAPPipeline:
    pipe = get_debug_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def plain(pipe) -> TangoCLAPPipeline:
    """The same modules without the CLAP scorer, for the tests that need no ranking (scoring pads to 10 s)."""
    return with_components(pipe, clap_model=None, clap_tokenizer=None, clap_feature_extractor=None)


def with_components(pipe: TangoCLAPPipeline, **replaced) -> TangoCLAPPipeline:
    """A pipeline of the same modules (nothing is copied) with some replaced."""
    other = TangoCLAPPipeline(**{**pipe.components, **replaced})
    other.set_progress_bar_config(disable=True)
    return other


def with_scheduler(pipe: TangoCLAPPipeline, scheduler_class, **config) -> TangoCLAPPipeline:
    return with_components(pipe, scheduler=scheduler_class.from_config(pipe.scheduler.config, **config))


def inputs(**overrides) -> dict:
    kwargs = {
        "prompt": "a dog barks",
        "audio_length_in_s": SECONDS,
        "num_inference_steps": 2,
        "generator": torch.Generator().manual_seed(0),
    }
    kwargs.update(overrides)
    return kwargs


@contextlib.contextmanager
def unet_calls(pipe: TangoCLAPPipeline):
    """Counts the UNet's forward calls inside the block."""
    calls = []
    handle = pipe.unet.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        yield calls
    finally:
        handle.remove()


def warnings_of(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


# ---------------------------------------------------------------------------------------------- refused up front


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"eta": float("nan")}, r"`eta` must be a number in \[0, 1\].*nan"),
        ({"eta": -0.1}, r"`eta`.*-0\.1"),
        ({"eta": 1.5}, r"`eta`.*1\.5"),
        ({"eta": "0.5"}, r"`eta`.*'0\.5'"),
        ({"audio_length_in_s": True}, r"`audio_length_in_s`.*got True"),
        ({"audio_length_in_s": np.float32("inf")}, r"`audio_length_in_s`.*inf"),
        ({"num_inference_steps": True}, r"`num_inference_steps`.*got True"),
        ({"num_inference_steps": np.float64(2.0)}, r"`num_inference_steps`.*2\.0"),
        ({"num_waveforms_per_prompt": np.bool_(True)}, r"`num_waveforms_per_prompt`.*True"),
        ({"guidance_scale": False}, r"`guidance_scale`.*False"),
        ({"guidance_scale": np.float16("nan")}, r"`guidance_scale`.*nan"),
        ({"num_inference_steps": 1001}, r"`num_inference_steps` 1001 is more than DDPMScheduler.*at most 1000"),
    ],
)
def test_bad_numbers_are_refused_before_any_work(pipe, overrides, message):
    with unet_calls(pipe) as calls, pytest.raises(ValueError, match=message):
        pipe(**inputs(**overrides))
    assert not calls


def test_numpy_scalars_are_numbers(plain):
    python = plain(**inputs(num_waveforms_per_prompt=2, guidance_scale=2.5, eta=0.0)).audios
    numpy = plain(
        **inputs(
            audio_length_in_s=np.float32(SECONDS),
            num_inference_steps=np.int64(2),
            num_waveforms_per_prompt=np.int32(2),
            guidance_scale=np.float64(2.5),
            eta=np.float32(0.0),
        )
    ).audios
    # np.float32(0.32) is not 0.32, but both round to the same number of samples.
    assert numpy.shape == python.shape == (2, round(SECONDS * plain.sampling_rate))
    np.testing.assert_array_equal(numpy, python)


@pytest.mark.parametrize("name", ["latents", "prompt_embeds", "negative_prompt_embeds"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_tensors_are_refused_by_name(pipe, name, bad):
    latents = torch.randn(1, pipe.unet.config.in_channels, pipe.num_frames(SECONDS) // pipe.vae_scale_factor, 16)
    embeds, mask = pipe.encode_text(["a dog barks"])
    kwargs = inputs(prompt=None, prompt_embeds=embeds, attention_mask=mask, latents=latents)
    if name == "negative_prompt_embeds":
        kwargs["negative_prompt_embeds"] = embeds.clone()
    kwargs[name] = kwargs[name].clone()
    kwargs[name].view(-1)[3] = bad
    with unet_calls(pipe) as calls, pytest.raises(ValueError, match=rf"`{name}` has 1 non-finite values"):
        pipe(**kwargs)
    assert not calls


def test_eta_is_used_by_ddim_and_ignored_with_a_warning_elsewhere(plain, caplog):
    ddim = with_scheduler(plain, DDIMScheduler)
    with caplog.at_level(logging.WARNING):
        deterministic = ddim(**inputs(eta=0.0)).audios
        noisy = ddim(**inputs(eta=1.0)).audios
    assert not [m for m in warnings_of(caplog) if "eta" in m]
    assert np.abs(deterministic - noisy).max() > 0  # eta reached DDIM

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        plain(**inputs(eta=0.5))  # the debug pipeline's DDPM takes no eta
    assert any("`eta` 0.5 is ignored: DDPMScheduler" in m for m in warnings_of(caplog))


@pytest.mark.parametrize("guidance", [1.0, 0.5])
def test_negative_prompt_without_guidance_warns(plain, caplog, guidance):
    with caplog.at_level(logging.WARNING):
        plain(**inputs(negative_prompt="rain", guidance_scale=guidance))
    assert any("`negative_prompt` is ignored" in m and f"{guidance}" in m for m in warnings_of(caplog))
    caplog.clear()
    embeds, _ = plain.encode_text(["rain"])
    with caplog.at_level(logging.WARNING):
        plain(**inputs(prompt=None, prompt_embeds=embeds, negative_prompt_embeds=embeds, guidance_scale=guidance))
    assert any("`negative_prompt_embeds` is ignored" in m for m in warnings_of(caplog))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        plain(**inputs(negative_prompt="rain", guidance_scale=3.0))
    assert not [m for m in warnings_of(caplog) if "ignored" in m]


# ---------------------------------------------------------------------------------------------- steps vs. scheduler


@pytest.mark.parametrize(
    "scheduler_class,config",
    [
        (DDPMScheduler, {}),
        (DDIMScheduler, {}),
        (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
        (EulerDiscreteScheduler, {}),
        (UniPCMultistepScheduler, {}),
    ],
)
def test_no_scheduler_serves_more_steps_than_its_train_timesteps(pipe, scheduler_class, config):
    other = with_scheduler(pipe, scheduler_class, **config)
    limit = other.scheduler.config.num_train_timesteps
    with unet_calls(pipe) as calls, pytest.raises(ValueError, match=rf"`num_inference_steps` {limit + 1} .*{limit}"):
        other(**inputs(num_inference_steps=limit + 1))
    with pytest.raises(ValueError, match="100000"):
        other(**inputs(num_inference_steps=100_000))
    assert not calls


def test_steps_a_scheduler_cannot_serve_below_the_limit_are_refused(pipe):
    # DPM-Solver++ with "leading" spacing divides num_train_timesteps by steps + 1: at 1000 steps every timestep is 0
    # and the run used to end in an IndexError after every UNet call.
    dpm = with_scheduler(pipe, DPMSolverMultistepScheduler, algorithm_type="dpmsolver++", timestep_spacing="leading")
    with (
        unet_calls(pipe) as calls,
        pytest.raises(ValueError, match=r"1000 cannot be served by DPMSolverMultistep.*leading.*repeated 1000 times"),
    ):
        dpm(**inputs(num_inference_steps=1000))
    assert not calls
    check_num_inference_steps(dpm.scheduler, 999)  # one fewer is fine
    # PNDM's Runge-Kutta warm-up needs more than 2 steps: its set_timesteps fails on a broadcast.
    pndm = with_scheduler(pipe, PNDMScheduler)
    with pytest.raises(ValueError, match=r"2 cannot be served by PNDMScheduler.*ValueError"):
        pndm(**inputs(num_inference_steps=2))


def test_step_check_leaves_scheduler_and_random_state_alone(pipe):
    ddpm = with_scheduler(pipe, DDPMScheduler, variance_type="fixed_small")
    ddpm.scheduler.set_timesteps(7)
    before_timesteps = ddpm.scheduler.timesteps.clone()
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    check_num_inference_steps(ddpm.scheduler, 50)  # DDPM's step draws noise: from its own generator
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state)
    assert torch.equal(ddpm.scheduler.timesteps, before_timesteps)


# ---------------------------------------------------------------------------------------------- non-finite audio


def poison_candidate(index: int):
    """A step-end callback that turns one candidate's latents into NaN after the first step."""

    def callback(pipe, step, timestep, tensors):
        latents = tensors["latents"].clone()
        if step == 0:
            latents[index] = float("nan")
        return {"latents": latents}

    return callback


def test_non_finite_candidate_is_not_scored_and_ranked_last(pipe, caplog):
    def generators():
        return [torch.Generator().manual_seed(s) for s in range(3)]

    clean = pipe(**inputs(num_waveforms_per_prompt=3, generator=generators()))
    with caplog.at_level(logging.WARNING):
        out = pipe(
            **inputs(num_waveforms_per_prompt=3, generator=generators(), callback_on_step_end=poison_candidate(0))
        )

    finite = np.isfinite(out.audios).all(axis=1)
    assert finite.tolist() == [True, True, False]
    scores = out.clap_scores[0]
    assert torch.isfinite(scores[:2]).all() and torch.isnan(scores[2])
    assert scores[0] >= scores[1]
    # The finite candidates are the clean run's candidates 1 and 2, with their own scores.
    clean_scores = pipe.score_waveforms(["a dog barks"] * 3, torch.from_numpy(clean.audios))
    for audio, score in zip(out.audios[:2], scores[:2]):
        match = [i for i in range(3) if np.array_equal(audio, clean.audios[i])]
        assert len(match) == 1
        torch.testing.assert_close(score, clean_scores[match[0]])
    messages = [m for m in warnings_of(caplog) if "non-finite" in m]
    assert len(messages) == 1 and "1 of 3 waveforms" in messages[0] and "2 (prompt 0, candidate 2)" in messages[0]


def test_non_finite_latents_output_is_named(pipe, caplog):
    with caplog.at_level(logging.WARNING):
        out = pipe(
            **inputs(num_waveforms_per_prompt=2, output_type="latent", callback_on_step_end=poison_candidate(1))
        )
    assert not torch.isfinite(out.audios[1]).all() and out.clap_scores is None
    assert any(
        "1 of 2 latents came out non-finite" in m and "1 (prompt 0, candidate 1)" in m for m in warnings_of(caplog)
    )


def test_float16_overflow_takes_the_non_finite_path(caplog):
    """A float16 overflow in the VAE decoder (inf, then NaN through its normalisations) for one candidate."""
    half = get_debug_pipeline().to(dtype=torch.float16)
    half.set_progress_bar_config(disable=True)

    def overflow_second_candidate(module, args, output):
        assert output.dtype == torch.float16
        output = output.clone()
        output[1] = output[1] * 1e5 + 7e4  # past float16's largest value, 65504: inf
        return output

    handle = half.vae.decoder.conv_in.register_forward_hook(overflow_second_candidate)
    try:
        with caplog.at_level(logging.WARNING):
            out = half(**inputs(num_waveforms_per_prompt=2))
    finally:
        handle.remove()
    assert np.isfinite(out.audios[0]).all() and not np.isfinite(out.audios[1]).all()
    assert torch.isfinite(out.clap_scores[0, 0]) and torch.isnan(out.clap_scores[0, 1])
    message = next(m for m in warnings_of(caplog) if "non-finite" in m)
    assert "float16" in message and "vae" in message


def test_score_waveforms_gives_nan_for_non_finite_rows_only(pipe):
    waveforms = torch.randn(4, 8000, generator=torch.Generator().manual_seed(0)) * 0.1
    alone = pipe.score_waveforms(["rain", "dog"], waveforms[[0, 3]])
    waveforms[1, 10] = float("nan")
    waveforms[2, 500] = float("-inf")
    scores = pipe.score_waveforms(["rain", "rain", "dog", "dog"], waveforms)
    assert torch.isnan(scores[1:3]).all()
    torch.testing.assert_close(scores[[0, 3]], alone)


# ---------------------------------------------------------------------------------------------- long prompts


def test_a_very_long_prompt_logs_how_much_was_cut_not_the_text(pipe, caplog):
    prompt = "rain on a tin roof " * 526  # about 10,000 characters
    limit = pipe.tokenizer.model_max_length
    tokens = len(pipe.tokenizer(prompt).input_ids)
    with caplog.at_level(logging.WARNING):
        embeds, _ = pipe.encode_text([prompt])
    assert embeds.shape[1] == limit
    message = next(m for m in warnings_of(caplog) if "truncated" in m)
    # The debug tokenizer has one token per character, so as many characters as tokens were cut.
    assert f"{tokens - limit} tokens ({tokens - limit} characters) were removed" in message
    assert len(message) < 300


# ---------------------------------------------------------------------------------------------- CLAP on long clips


@pytest.fixture(scope="module", params=["rand_trunc", "fusion"])
def clap(request) -> dict:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_debug_clap_scorer(enable_fusion=request.param == "fusion")


def twelve_seconds(rate: int) -> np.ndarray:
    t = np.arange(12 * rate) / rate
    rng = np.random.default_rng(1)
    return (0.3 * np.sin(2 * np.pi * (300 + 80 * t) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def test_long_clip_scores_do_not_depend_on_numpy_global_state(clap):
    model, extractor = clap["clap_model"], clap["clap_feature_extractor"]
    clip = twelve_seconds(int(extractor.sampling_rate))
    embeddings = []
    for seed in (0, 1):
        np.random.seed(seed)
        state = np.random.get_state()[1].copy()
        embeddings.append(clap_audio_embeddings(model, extractor, [clip]))
        assert np.array_equal(np.random.get_state()[1], state)  # nothing drawn from it either
    torch.testing.assert_close(embeddings[0], embeddings[1], rtol=0, atol=0)


def test_long_clip_is_read_to_its_end(clap):
    model, extractor = clap["clap_model"], clap["clap_feature_extractor"]
    clip = twelve_seconds(int(extractor.sampling_rate))
    changed = clip.copy()
    changed[-int(extractor.sampling_rate) // 2 :] = 0  # silence the last half second
    whole, cut = clap_audio_embeddings(model, extractor, [clip, changed])
    assert (whole - cut).abs().max() > 1e-4


def test_unfused_long_clip_averages_windows_covering_it(pipe):
    model, extractor = pipe.clap_model, pipe.clap_feature_extractor
    assert extractor.truncation == "rand_trunc"
    window = int(extractor.nb_max_samples)
    clip = twelve_seconds(int(extractor.sampling_rate))
    assert clap_window_starts(len(clip), window) == [0, len(clip) - window]
    first, last = clap_audio_embeddings(model, extractor, [clip[:window], clip[-window:]])
    expected = torch.nn.functional.normalize((first + last).double(), dim=-1)
    torch.testing.assert_close(
        clap_audio_embeddings(model, extractor, [clip])[0].double(), expected, rtol=0, atol=1e-6
    )


def test_pipeline_ranking_of_long_audio_is_repeatable(pipe):
    """The debug pipeline's CLAP window is 10 s: 12 s candidates were scored on random windows."""
    waveforms = torch.from_numpy(np.stack([twelve_seconds(16000), twelve_seconds(16000)[::-1].copy()]))
    scores = []
    for seed in (0, 1):
        np.random.seed(seed)
        scores.append(pipe.score_waveforms(["a dog barks"] * 2, waveforms))
    torch.testing.assert_close(scores[0], scores[1], rtol=0, atol=0)
