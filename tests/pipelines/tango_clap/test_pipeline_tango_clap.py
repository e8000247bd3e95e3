"""Tests of TangoCLAPPipeline on tiny random components built offline (diffusers' pipeline-test style)."""

from __future__ import annotations

import inspect
import json
import logging
import math
import os

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DiffusionPipeline, DPMSolverMultistepScheduler

from pipelines.tango_clap import TangoCLAPPipeline, TangoCLAPPipelineOutput
from pipelines.tango_clap.debug import build_debug_components
from pipelines.tango_clap.pipeline_tango_clap import resample_waveform


class TangoCLAPPipelineTester:
    """Tiny hyper-parameters and inputs shared by the tests below."""

    def __init__(
        self,
        text_encoder: str = "clap",
        with_clap_scorer: bool = False,
        prediction_type: str = "v_prediction",
        audio_length_in_s: float = 0.64,
        num_inference_steps: int = 2,
        guidance_scale: float = 3.0,
    ):
        self.text_encoder = text_encoder
        self.with_clap_scorer = with_clap_scorer
        self.prediction_type = prediction_type
        self.audio_length_in_s = audio_length_in_s
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.text_hidden_size = 32

    def get_components(self, seed: int = 0) -> dict:
        return build_debug_components(
            self.text_encoder,
            with_clap_scorer=self.with_clap_scorer,
            seed=seed,
            prediction_type=self.prediction_type,
            text_hidden_size=self.text_hidden_size,
        )

    def get_pipeline(self, seed: int = 0) -> TangoCLAPPipeline:
        pipe = TangoCLAPPipeline(**self.get_components(seed))
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def get_inputs(self, seed: int = 0, **overrides) -> dict:
        inputs = {
            "prompt": "a dog barks twice",
            "audio_length_in_s": self.audio_length_in_s,
            "num_inference_steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale,
            "generator": torch.Generator().manual_seed(seed),
            "output_type": "np",
        }
        inputs.update(overrides)
        return inputs


@pytest.fixture(params=["clap", "t5"])
def tester(request) -> TangoCLAPPipelineTester:
    return TangoCLAPPipelineTester(text_encoder=request.param)


@pytest.fixture
def clap_tester() -> TangoCLAPPipelineTester:
    return TangoCLAPPipelineTester(text_encoder="clap")


class UNetInputRecorder:
    """Records what the UNet receives at each call."""

    def __init__(self, unet: torch.nn.Module):
        self.calls: list[dict] = []
        self.handle = unet.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        self.calls.append(
            {
                "sample": args[0].detach().clone(),
                "encoder_hidden_states": kwargs["encoder_hidden_states"].detach().clone(),
                "encoder_attention_mask": kwargs["encoder_attention_mask"].detach().clone(),
            }
        )


# ---------------------------------------------------------------------------------------------- save / load


def test_save_pretrained_loads_both_ways_with_identical_output(tester, tmp_path):
    pipe = tester.get_pipeline()
    expected = pipe(**tester.get_inputs()).audios
    pipe.save_pretrained(tmp_path)

    with open(tmp_path / "model_index.json") as f:
        index = json.load(f)
    assert index["_class_name"] == ["pipeline", "TangoCLAPPipeline"]
    assert (tmp_path / "pipeline.py").read_text() == open(inspect.getsourcefile(TangoCLAPPipeline)).read()
    weights = [p.name for p in tmp_path.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".safetensors")]
    assert weights and all(name.endswith(".safetensors") for name in weights), weights

    local = TangoCLAPPipeline.from_pretrained(tmp_path)
    assert type(local) is TangoCLAPPipeline
    remote = DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True)
    assert type(remote).__name__ == "TangoCLAPPipeline" and type(remote) is not TangoCLAPPipeline
    for loaded in (local, remote):
        loaded.set_progress_bar_config(disable=True)
        # transformers may pick another attention kernel for a loaded model: equal up to float rounding.
        np.testing.assert_allclose(loaded(**tester.get_inputs()).audios, expected, atol=1e-6)


def test_folder_declares_its_custom_code(clap_tester, tmp_path):
    clap_tester.get_pipeline().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="trust_remote_code"):
        DiffusionPipeline.from_pretrained(tmp_path)


def test_resaving_a_remote_code_pipeline_keeps_the_hub_layout(clap_tester, tmp_path):
    clap_tester.get_pipeline().save_pretrained(tmp_path / "a")
    remote = DiffusionPipeline.from_pretrained(tmp_path / "a", trust_remote_code=True)
    remote.save_pretrained(tmp_path / "b")
    assert json.loads((tmp_path / "b" / "model_index.json").read_text())["_class_name"] == [
        "pipeline",
        "TangoCLAPPipeline",
    ]
    assert (tmp_path / "b" / "pipeline.py").read_text() == (tmp_path / "a" / "pipeline.py").read_text()


def test_optional_clap_parts_round_trip(tmp_path):
    tester = TangoCLAPPipelineTester(with_clap_scorer=True)
    pipe = tester.get_pipeline()
    pipe.save_pretrained(tmp_path)
    loaded = TangoCLAPPipeline.from_pretrained(tmp_path)
    assert loaded.has_clap_scorer
    waveforms = torch.randn(2, 16000) * 0.1
    torch.testing.assert_close(
        loaded.score_waveforms(["rain", "a dog"], waveforms), pipe.score_waveforms(["rain", "a dog"], waveforms)
    )


# ---------------------------------------------------------------------------------------------- signature, outputs


def test_call_signature():
    parameters = inspect.signature(TangoCLAPPipeline.__call__).parameters
    expected = {
        "prompt",
        "negative_prompt",
        "audio_length_in_s",
        "num_inference_steps",
        "guidance_scale",
        "num_waveforms_per_prompt",
        "generator",
        "latents",
        "prompt_embeds",
        "negative_prompt_embeds",
        "attention_mask",
        "negative_attention_mask",
        "output_type",
        "return_dict",
        "callback_on_step_end",
        "callback_on_step_end_tensor_inputs",
    }
    assert expected <= set(parameters)
    assert (
        "Examples:" in TangoCLAPPipeline.__call__.__doc__
        and "trust_remote_code=True" in TangoCLAPPipeline.__call__.__doc__
    )


def test_dict_and_tuple_outputs_match(clap_tester):
    pipe = clap_tester.get_pipeline()
    as_dict = pipe(**clap_tester.get_inputs())
    as_tuple = pipe(**clap_tester.get_inputs(), return_dict=False)
    assert isinstance(as_dict, TangoCLAPPipelineOutput) and isinstance(as_tuple, tuple) and len(as_tuple) == 1
    np.testing.assert_array_equal(as_dict.audios, as_tuple[0])
    assert as_dict.clap_scores is None


def test_output_types(clap_tester):
    pipe = clap_tester.get_pipeline()
    audio_np = pipe(**clap_tester.get_inputs()).audios
    audio_pt = pipe(**clap_tester.get_inputs(output_type="pt")).audios
    latents = pipe(**clap_tester.get_inputs(output_type="latent")).audios
    assert isinstance(audio_np, np.ndarray) and audio_np.dtype == np.float32
    assert isinstance(audio_pt, torch.Tensor)
    np.testing.assert_array_equal(audio_np, audio_pt.numpy())
    frames = pipe.num_frames(clap_tester.audio_length_in_s)
    assert latents.shape == (1, pipe.unet.config.in_channels, frames // 4, 64 // 4)
    with torch.no_grad():
        decoded = pipe.mel_to_waveform(pipe.decode_latents(latents))[:, : audio_np.shape[1]]
    np.testing.assert_allclose(decoded.numpy(), audio_np, atol=1e-6)


def test_deterministic_under_seeded_generator(clap_tester):
    pipe = clap_tester.get_pipeline()
    first = pipe(**clap_tester.get_inputs(seed=0)).audios
    again = pipe(**clap_tester.get_inputs(seed=0)).audios
    other = pipe(**clap_tester.get_inputs(seed=1)).audios
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-4


def test_batch_and_single_are_identical(tester, float32_close):
    pipe = tester.get_pipeline()
    prompts = ["a dog barks twice", "rain on a tin roof while thunder rolls far away"]
    batch = pipe(
        **tester.get_inputs(prompt=prompts, generator=[torch.Generator().manual_seed(s) for s in (0, 1)])
    ).audios
    for i, prompt in enumerate(prompts):
        single = pipe(**tester.get_inputs(prompt=prompt, generator=[torch.Generator().manual_seed(i)])).audios
        float32_close(batch[i], single[0])


def test_num_waveforms_per_prompt_without_scorer_keeps_generation_order(clap_tester, float32_close):
    pipe = clap_tester.get_pipeline()
    generators = [torch.Generator().manual_seed(s) for s in range(4)]
    out = pipe(**clap_tester.get_inputs(prompt=["a", "b"], num_waveforms_per_prompt=2, generator=generators)).audios
    assert out.shape[0] == 4
    single = pipe(**clap_tester.get_inputs(prompt="b", generator=[torch.Generator().manual_seed(3)])).audios
    float32_close(out[3], single[0])


# ---------------------------------------------------------------------------------------------- guidance, text


def test_classifier_free_guidance_batches_uncond_then_cond(tester):
    pipe = tester.get_pipeline()
    recorder = UNetInputRecorder(pipe.unet)
    guided = pipe(**tester.get_inputs(guidance_scale=3.0)).audios
    assert len(recorder.calls) == tester.num_inference_steps
    call = recorder.calls[0]
    assert call["sample"].shape[0] == 2
    torch.testing.assert_close(call["sample"][0], call["sample"][1])

    # The unconditional half is the encoding of the empty prompt, the condition training drops to.
    uncond, uncond_mask = pipe.encode_text([""])
    cond, cond_mask = pipe.encode_text(["a dog barks twice"])
    hidden, mask = call["encoder_hidden_states"], call["encoder_attention_mask"]
    assert hidden.shape[1] == max(uncond.shape[1], cond.shape[1])
    torch.testing.assert_close(hidden[0, : uncond.shape[1]], uncond[0])
    torch.testing.assert_close(hidden[1, : cond.shape[1]], cond[0])
    assert mask[0].sum() == uncond_mask.sum() and mask[1].sum() == cond_mask.sum()
    recorder.handle.remove()

    recorder = UNetInputRecorder(pipe.unet)
    unguided = pipe(**tester.get_inputs(guidance_scale=1.0)).audios
    assert recorder.calls[0]["sample"].shape[0] == 1
    assert np.abs(guided - unguided).max() > 1e-7


def test_negative_prompt(clap_tester):
    pipe = clap_tester.get_pipeline()
    default = pipe(**clap_tester.get_inputs()).audios
    empty = pipe(**clap_tester.get_inputs(negative_prompt="")).audios
    negative = pipe(**clap_tester.get_inputs(negative_prompt="low quality, noisy")).audios
    np.testing.assert_allclose(default, empty, atol=1e-6)
    assert np.abs(default - negative).max() > 1e-5


def test_prompt_embeds_give_the_same_audio(tester):
    pipe = tester.get_pipeline()
    from_text = pipe(**tester.get_inputs(negative_prompt="noise")).audios
    embeds, mask = pipe.encode_text(["a dog barks twice"])
    neg_embeds, neg_mask = pipe.encode_text(["noise"])
    inputs = tester.get_inputs(prompt=None)
    from_embeds = pipe(
        **inputs,
        prompt_embeds=embeds,
        attention_mask=mask,
        negative_prompt_embeds=neg_embeds,
        negative_attention_mask=neg_mask,
    ).audios
    np.testing.assert_allclose(from_text, from_embeds, atol=1e-6)


def test_text_encoder_output_conditions_the_unet(tester):
    pipe = tester.get_pipeline()
    tokens = pipe.tokenizer(["a dog"], return_tensors="pt")
    expected = pipe.text_encoder(**tokens).last_hidden_state
    embeds, mask = pipe.encode_text(["a dog"])
    torch.testing.assert_close(embeds, expected)
    assert torch.equal(mask, tokens.attention_mask)
    assert embeds.shape[-1] == pipe.unet.config.cross_attention_dim


def test_long_prompt_is_truncated_with_a_warning(clap_tester, caplog):
    pipe = clap_tester.get_pipeline()
    limit = pipe.tokenizer.model_max_length
    prompt = "a dog barks " * 20 + "THE END"
    with caplog.at_level(logging.WARNING):
        embeds, _ = pipe.encode_text([prompt])
    assert embeds.shape[1] == limit
    assert any("truncated" in r.getMessage() and "THE END" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------------------------- length, callbacks


@pytest.mark.parametrize("seconds", [0.04, 0.5, 1.0, 2.37, 10.0])
def test_any_audio_length_gives_exact_sample_count(clap_tester, seconds):
    pipe = clap_tester.get_pipeline()
    audio = pipe(**clap_tester.get_inputs(audio_length_in_s=seconds, num_inference_steps=1)).audios
    assert audio.shape == (1, round(seconds * 16000))
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0


def test_longer_audio_uses_more_latent_frames(clap_tester):
    pipe = clap_tester.get_pipeline()
    short = pipe(**clap_tester.get_inputs(audio_length_in_s=1.0, output_type="latent")).audios
    long = pipe(**clap_tester.get_inputs(audio_length_in_s=3.0, output_type="latent")).audios
    assert long.shape[2] > short.shape[2]
    assert long.shape[2] * 4 * 160 >= 3.0 * 16000 and short.shape[2] * 4 * 160 >= 16000


def test_callback_on_step_end_sees_and_replaces_tensors(clap_tester):
    pipe = clap_tester.get_pipeline()
    seen = []

    def callback(pipeline, step, timestep, callback_kwargs):
        seen.append((step, int(timestep), callback_kwargs["latents"].shape, callback_kwargs["prompt_embeds"].shape))
        if step == pipeline.num_timesteps - 1:
            return {"latents": torch.zeros_like(callback_kwargs["latents"])}
        return {}

    latents = pipe(
        **clap_tester.get_inputs(num_inference_steps=3, output_type="latent"),
        callback_on_step_end=callback,
        callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"],
    ).audios
    assert [s[0] for s in seen] == [0, 1, 2]
    assert [s[1] for s in seen] == pipe.scheduler.timesteps.tolist()
    assert torch.count_nonzero(latents) == 0


def test_interrupt_stops_denoising(clap_tester):
    pipe = clap_tester.get_pipeline()
    recorder = UNetInputRecorder(pipe.unet)

    def stop(pipeline, step, timestep, callback_kwargs):
        pipeline._interrupt = True
        return {}

    pipe(**clap_tester.get_inputs(num_inference_steps=5), callback_on_step_end=stop)
    assert len(recorder.calls) == 1


# ---------------------------------------------------------------------------------------------- reference loop


@pytest.mark.parametrize("text_encoder", ["clap", "t5"])
def test_matches_a_hand_written_denoising_loop(text_encoder):
    tester = TangoCLAPPipelineTester(text_encoder=text_encoder, num_inference_steps=4)
    components = tester.get_components()
    pipe = TangoCLAPPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(**tester.get_inputs(seed=7)).audios

    tokenizer, text_encoder_model = components["tokenizer"], components["text_encoder"]
    unet, scheduler, vae, vocoder = (
        components["unet"],
        components["scheduler"],
        components["vae"],
        components["vocoder"],
    )
    with torch.no_grad():
        # Tango's way: the condition padded to its longest prompt, the empty prompt padded to the same length.
        cond = tokenizer(["a dog barks twice"], return_tensors="pt")
        uncond = tokenizer([""], padding="max_length", max_length=cond.input_ids.shape[1], return_tensors="pt")
        cond_hidden = text_encoder_model(**cond).last_hidden_state
        uncond_hidden = text_encoder_model(**uncond).last_hidden_state
        hidden = torch.cat([uncond_hidden, cond_hidden])
        mask = torch.cat([uncond.attention_mask, cond.attention_mask])

        num_samples = round(tester.audio_length_in_s * 16000)
        frames = math.ceil(math.ceil(num_samples / 160) / 8) * 8  # VAE x4, then 2 UNet levels (x2)
        generator = torch.Generator().manual_seed(7)
        latents = torch.randn((1, unet.config.in_channels, frames // 4, 16), generator=generator)
        latents = latents * scheduler.init_noise_sigma
        scheduler.set_timesteps(tester.num_inference_steps)
        for t in scheduler.timesteps:
            model_input = scheduler.scale_model_input(torch.cat([latents, latents]), t)
            prediction = unet(model_input, t, encoder_hidden_states=hidden, encoder_attention_mask=mask).sample
            uncond_pred, cond_pred = prediction.chunk(2)
            prediction = uncond_pred + tester.guidance_scale * (cond_pred - uncond_pred)
            latents = scheduler.step(prediction, t, latents, generator=generator).prev_sample
        mel = vae.decode(latents / vae.config.scaling_factor).sample.squeeze(1)
        waveform = vocoder(mel)[:, :num_samples]

    np.testing.assert_allclose(expected, waveform.numpy(), atol=1e-5)


# ---------------------------------------------------------------------------------------------- schedulers, dtypes


@pytest.mark.parametrize("scheduler_class", [DDIMScheduler, DPMSolverMultistepScheduler])
@pytest.mark.parametrize("prediction_type", ["v_prediction", "epsilon"])
def test_other_schedulers_and_prediction_types(scheduler_class, prediction_type):
    tester = TangoCLAPPipelineTester(prediction_type=prediction_type)
    pipe = tester.get_pipeline()
    pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config)
    assert pipe.scheduler.config.prediction_type == prediction_type
    audio = pipe(**tester.get_inputs(num_inference_steps=3)).audios
    assert audio.shape == (1, round(tester.audio_length_in_s * 16000)) and np.isfinite(audio).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_runs_in_that_dtype_and_stays_close(clap_tester, dtype):
    pipe = clap_tester.get_pipeline()
    reference = pipe(**clap_tester.get_inputs(output_type="pt")).audios
    pipe.to(dtype=dtype)
    recorder = UNetInputRecorder(pipe.unet)
    audio = pipe(**clap_tester.get_inputs(output_type="pt")).audios
    assert recorder.calls[0]["sample"].dtype == dtype
    assert recorder.calls[0]["encoder_hidden_states"].dtype == dtype
    assert audio.dtype == torch.float32 and torch.isfinite(audio).all()
    relative_error = (audio - reference).norm() / reference.norm()
    assert relative_error < 0.2, relative_error


def test_model_cpu_offload_gives_the_same_audio(clap_tester):
    expected = clap_tester.get_pipeline()(**clap_tester.get_inputs()).audios
    pipe = clap_tester.get_pipeline()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pipe.enable_model_cpu_offload(device=device)
    np.testing.assert_allclose(pipe(**clap_tester.get_inputs()).audios, expected, atol=1e-4)


def test_torch_compile_on_the_unet(clap_tester):
    pipe = clap_tester.get_pipeline()
    expected = pipe(**clap_tester.get_inputs()).audios
    pipe.unet = torch.compile(pipe.unet, fullgraph=True)
    np.testing.assert_allclose(pipe(**clap_tester.get_inputs()).audios, expected, atol=1e-4)


# ---------------------------------------------------------------------------------------------- CLAP ranking


def test_candidates_are_ranked_by_clap_similarity(float32_close):
    tester = TangoCLAPPipelineTester(with_clap_scorer=True)
    components = tester.get_components()
    ranked_pipe = TangoCLAPPipeline(**components)
    ranked_pipe.set_progress_bar_config(disable=True)
    plain = {k: v for k, v in components.items() if not k.startswith("clap_")}
    plain_pipe = TangoCLAPPipeline(**plain)
    plain_pipe.set_progress_bar_config(disable=True)

    prompts = ["a dog barks twice", "rain"]
    kwargs = {"prompt": prompts, "num_waveforms_per_prompt": 3}
    generators = lambda: [torch.Generator().manual_seed(s) for s in range(6)]
    ranked = ranked_pipe(**tester.get_inputs(**kwargs, generator=generators()))
    unranked = plain_pipe(**tester.get_inputs(**kwargs, generator=generators())).audios

    assert ranked.clap_scores.shape == (2, 3)
    assert torch.all(ranked.clap_scores[:, :-1] >= ranked.clap_scores[:, 1:])
    rescored = ranked_pipe.score_waveforms([p for p in prompts for _ in range(3)], torch.from_numpy(ranked.audios))
    float32_close(rescored.view(2, 3), ranked.clap_scores)
    for i in range(2):
        # Each prompt's candidates are a permutation of what was generated for that prompt, nothing else.
        group = ranked.audios[3 * i : 3 * i + 3]
        original = unranked[3 * i : 3 * i + 3]
        matches = [[np.allclose(g, o, atol=1e-6) for o in original] for g in group]
        assert sorted(row.index(True) for row in matches) == [0, 1, 2]
    scores_tuple = ranked_pipe(**tester.get_inputs(**kwargs, generator=generators()), return_dict=False)
    assert len(scores_tuple) == 2 and torch.equal(scores_tuple[1], ranked.clap_scores)


def test_mel_spectrograms_are_the_vocoder_inputs_of_the_ranked_audios(float32_close):
    pipe = TangoCLAPPipelineTester(with_clap_scorer=True).get_pipeline()
    tester = TangoCLAPPipelineTester(with_clap_scorer=True)
    generators = [torch.Generator().manual_seed(s) for s in range(3)]
    out = pipe(**tester.get_inputs(prompt="a dog barks", num_waveforms_per_prompt=3, generator=generators))
    assert out.mel_spectrograms.shape[0] == out.audios.shape[0] == 3
    assert out.mel_spectrograms.shape[-1] == pipe.vocoder.config.model_in_dim
    # Ranking reorders the mels with the audios: each mel, vocoded, gives the audio at the same index.
    with torch.no_grad():
        vocoded = pipe.mel_to_waveform(torch.from_numpy(out.mel_spectrograms))[:, : out.audios.shape[1]]
    float32_close(vocoded.numpy(), out.audios)
    assert not np.allclose(out.mel_spectrograms[0], out.mel_spectrograms[1])
    latent = pipe(**tester.get_inputs(prompt="a dog barks", output_type="latent"))
    assert latent.mel_spectrograms is None


def test_score_waveforms_embeds_each_distinct_text_once():
    pipe = TangoCLAPPipelineTester(with_clap_scorer=True).get_pipeline()
    texts_seen = []
    original = pipe.clap_model.get_text_features

    def spy(input_ids, attention_mask):
        texts_seen.append(input_ids.shape[0])
        return original(input_ids=input_ids, attention_mask=attention_mask)

    pipe.clap_model.get_text_features = spy
    scores = pipe.score_waveforms(["rain"] * 3 + ["dog"] * 2, torch.randn(5, 8000) * 0.1)
    assert texts_seen == [2] and scores.shape == (5,)
    assert torch.all(scores <= 1.0 + 1e-6) and torch.all(scores >= -1.0 - 1e-6)


def test_resample_keeps_the_tone_and_length():
    t = torch.arange(16000) / 16000
    tone = torch.sin(2 * math.pi * 1000 * t)
    up = resample_waveform(tone, 16000, 48000)
    assert up.shape == (48000,)
    assert int(torch.fft.rfft(up).abs().argmax()) == 1000  # 1 Hz bins over 1 s
    torch.testing.assert_close(up[::3], tone, atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="-5"):
        resample_waveform(tone, -5, 16000)


# ---------------------------------------------------------------------------------------------- check_inputs


BAD_INPUTS = [
    ({"num_inference_steps": 0}, r"num_inference_steps.*got 0"),
    ({"num_inference_steps": 2.5}, r"num_inference_steps.*got 2\.5"),
    ({"audio_length_in_s": -1.0}, r"audio_length_in_s.*got -1\.0"),
    ({"audio_length_in_s": 0}, r"audio_length_in_s.*got 0"),
    ({"audio_length_in_s": float("nan")}, r"audio_length_in_s.*nan"),
    ({"audio_length_in_s": 0.01}, r"0\.01 is shorter than one latent frame"),
    ({"guidance_scale": -0.5}, r"guidance_scale.*-0\.5"),
    ({"num_waveforms_per_prompt": 0}, r"num_waveforms_per_prompt.*got 0"),
    ({"output_type": "mp3"}, r"output_type.*'mp3'"),
    ({"prompt": None}, r"prompt.*both are None"),
    ({"prompt": 123}, r"prompt.*int: 123"),
    ({"prompt": ["ok", 5]}, r"prompt.*\['ok', 5\]"),
    ({"prompt": []}, r"empty list"),
    ({"prompt": ["a", "b"], "negative_prompt": ["x"]}, r"negative_prompt.*1 entries.*2 prompts"),
    ({"negative_prompt": 3.5}, r"negative_prompt.*float: 3\.5"),
    ({"callback_on_step_end_tensor_inputs": ["latents", "foo"]}, r"\['foo'\]"),
]


@pytest.mark.parametrize("overrides,message", BAD_INPUTS)
def test_check_inputs_rejects_bad_values(clap_tester, overrides, message):
    pipe = clap_tester.get_pipeline()
    with pytest.raises(ValueError, match=message):
        pipe(**clap_tester.get_inputs(**overrides))


def test_check_inputs_rejects_bad_embeddings(clap_tester):
    pipe = clap_tester.get_pipeline()
    embeds, mask = pipe.encode_text(["a dog"])
    base = clap_tester.get_inputs(prompt=None)
    cases = [
        ({"prompt": "a dog", "prompt_embeds": embeds}, r"either `prompt` or `prompt_embeds`"),
        ({"prompt_embeds": torch.zeros(1, 5, 7)}, r"\(batch, tokens, 32\).*\(1, 5, 7\)"),
        ({"prompt_embeds": torch.zeros(5, 32)}, r"\(5, 32\)"),
        ({"prompt_embeds": embeds, "attention_mask": mask[:, :-1]}, r"attention_mask.*got \(1, \d+\)"),
        ({"prompt_embeds": embeds, "negative_prompt_embeds": torch.cat([embeds, embeds])}, r"batch size 2.*1 prompts"),
        ({"prompt_embeds": embeds, "negative_prompt": "x", "negative_prompt_embeds": embeds}, r"negative_prompt"),
        ({"prompt": "a dog", "attention_mask": mask}, r"attention_mask.*without `prompt_embeds`"),
    ]
    for overrides, message in cases:
        with pytest.raises(ValueError, match=message):
            pipe(**{**base, **overrides})


def test_bad_latents_and_generators_are_named(clap_tester):
    pipe = clap_tester.get_pipeline()
    with pytest.raises(ValueError, match=r"latents.*got \(1, 8, 3, 3\)"):
        pipe(**clap_tester.get_inputs(latents=torch.zeros(1, 8, 3, 3)))
    with pytest.raises(ValueError, match="Got 3 generators for a batch of 2"):
        pipe(**clap_tester.get_inputs(num_waveforms_per_prompt=2, generator=[torch.Generator()] * 3))


def test_given_latents_are_used(clap_tester):
    pipe = clap_tester.get_pipeline()
    shape = pipe(**clap_tester.get_inputs(output_type="latent")).audios.shape
    latents = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    a = pipe(**clap_tester.get_inputs(latents=latents, generator=torch.Generator().manual_seed(0))).audios
    b = pipe(**clap_tester.get_inputs(latents=latents, generator=torch.Generator().manual_seed(0))).audios
    c = pipe(**clap_tester.get_inputs(generator=torch.Generator().manual_seed(0))).audios
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-5


def test_module_is_self_contained():
    source = open(inspect.getsourcefile(TangoCLAPPipeline)).read()
    imported = set()
    for line in source.splitlines():
        if line.startswith("import ") or line.startswith("from "):
            imported.add(line.split()[1].split(".")[0])
    allowed = {"__future__", "collections", "inspect", "json", "math", "os", "shutil", "dataclasses", "typing"}
    allowed |= {"numpy", "torch"}
    allowed |= {"diffusers", "transformers"}
    assert imported <= allowed, imported - allowed
    assert os.path.basename(inspect.getsourcefile(TangoCLAPPipeline)) == "pipeline_tango_clap.py"


def test_push_to_hub_uploads_the_same_folder_as_save_pretrained(clap_tester, tmp_path, monkeypatch):
    import shutil
    from types import SimpleNamespace

    from diffusers.utils import hub_utils
    from huggingface_hub import ModelCard

    uploaded = tmp_path / "hub"

    def fake_upload_folder(repo_id, folder_path, **kwargs):
        shutil.copytree(folder_path, uploaded / repo_id)

    monkeypatch.setattr(hub_utils, "create_repo", lambda repo_id, **kwargs: SimpleNamespace(repo_id=repo_id))
    monkeypatch.setattr(hub_utils, "load_or_create_model_card", lambda *args, **kwargs: ModelCard("---\n---\n"))
    monkeypatch.setattr(hub_utils, "upload_folder", fake_upload_folder)

    pipe = clap_tester.get_pipeline()
    pipe.push_to_hub("org/tiny-tango")
    folder = uploaded / "org/tiny-tango"
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == ["pipeline", "TangoCLAPPipeline"]
    loaded = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(
        loaded(**clap_tester.get_inputs()).audios, pipe(**clap_tester.get_inputs()).audios, atol=1e-6
    )
