"""Tests of `pipelines/tango_clap/convert_tango.py` on tiny checkpoints written, offline, in the layout of the released
declare-lab Tango checkpoints (`main_config.json`, `pytorch_model_main.bin` with `unet.*` / `text_encoder.*`,
`pytorch_model_vae.bin` with LDM VAE keys and `vocoder.*`, `vae_config.json`, `stft_config.json`)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import T5Config, T5EncoderModel

from pipelines.tango_clap.architectures import (
    AUDIOLDM_VAE_CONFIG,
    HIFIGAN_16K_64_CONFIG,
    TANGO_STFT_CONFIG,
    tango_unet_config,
)
from pipelines.tango_clap.convert_tango import (
    convert_tango_checkpoint,
    convert_vocoder,
    infer_unet_config,
    main,
    save_pipeline,
    vae_config_from_audioldm,
)
from pipelines.tango_clap.debug import build_debug_tokenizer
from pipelines.tango_clap.pipeline_tango_clap import TangoCLAPPipeline

TEXT_WIDTH = 32
LATENT_CHANNELS = 8
VOCODER_WIDTH = 32
SCALE_FACTOR = 0.6

UNET_OVERRIDES: dict[str, Any] = {
    "block_out_channels": [32, 64],
    "attention_head_dim": [2, 4],
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "in_channels": LATENT_CHANNELS,
    "out_channels": LATENT_CHANNELS,
    "sample_size": [16, 4],
}

# AudioLDM's VAE kwargs at a tiny width; LDM's GroupNorm has 32 groups, hence ch 32.
VAE_CONFIG: dict[str, Any] = {
    "image_key": "fbank",
    "subband": 1,
    "embed_dim": LATENT_CHANNELS,
    "time_shuffle": 1,
    "ddconfig": {
        "double_z": True,
        "z_channels": LATENT_CHANNELS,
        "resolution": 256,
        "downsample_time": False,
        "in_channels": 1,
        "out_ch": 1,
        "ch": 32,
        "ch_mult": [1, 2, 2],
        "num_res_blocks": 1,
        "attn_resolutions": [],
        "dropout": 0.0,
    },
    "scale_factor": SCALE_FACTOR,
}

MAIN_CONFIG: dict[str, Any] = {
    "text_encoder_name": None,  # set to the local tiny T5 folder
    "scheduler_name": "stabilityai/stable-diffusion-2-1",
    "unet_model_name": None,
    "unet_model_config_path": "configs/diffusion_model_config.json",
    "snr_gamma": 5.0,
    "freeze_text_encoder": True,
    "uncondition": False,
}

# --------------------------------------------------------------------------------------------- helpers


UNPICKLED: list[str] = []


def _record_unpickling(tag: str) -> str:
    UNPICKLED.append(tag)
    return tag


class Payload:
    """A pickled object that is not a tensor; unpickling it would run `_record_unpickling`."""

    def __reduce__(self):
        return (_record_unpickling, ("payload ran",))


def perturb_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Adds noise to every parameter so that norms and biases are not at their (identical) initial values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    return module.eval()


def diffusers_vae_to_ldm(state_dict: dict[str, torch.Tensor], levels: int) -> dict[str, torch.Tensor]:
    """Diffusers `AutoencoderKL` names -> AudioLDM / LDM names (written here, independently of the converter)."""
    attention_names = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    ldm = {}
    for key, value in state_dict.items():
        match = re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)", key)
        if match:
            part, layer, kind = match.groups()
            new = f"{part}.mid.attn_1.{attention_names[layer]}.{kind}"
            if layer != "group_norm" and kind == "weight":
                value = value[:, :, None, None]  # LDM's attention uses 1x1 convolutions
        else:
            new = re.sub(r"mid_block\.resnets\.(\d)", lambda m: f"mid.block_{int(m[1]) + 1}", key)
            new = re.sub(r"^encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", new)
            new = re.sub(r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", new)
            new = re.sub(
                r"^decoder\.up_blocks\.(\d+)\.resnets\.", lambda m: f"decoder.up.{levels - 1 - int(m[1])}.block.", new
            )
            new = re.sub(
                r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
                lambda m: f"decoder.up.{levels - 1 - int(m[1])}.upsample.",
                new,
            )
            new = new.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out")
        ldm[new] = value.clone()
    return ldm


def original_hifigan_state_dict(seed: int, initial_channel: int = VOCODER_WIDTH, n_mels: int = 64) -> dict:
    """Random weights under AudioLDM's HiFi-GAN `Generator` names (weight norm removed), Tango's rates and kernels."""
    generator = torch.Generator().manual_seed(seed)
    config = HIFIGAN_16K_64_CONFIG

    def conv(out_ch: int, in_ch: int, k: int, prefix: str, transposed: bool = False) -> None:
        shape = (in_ch, out_ch, k) if transposed else (out_ch, in_ch, k)
        state[f"{prefix}.weight"] = torch.randn(shape, generator=generator) / math.sqrt(in_ch * k)
        state[f"{prefix}.bias"] = 0.1 * torch.randn(out_ch, generator=generator)

    state: dict[str, torch.Tensor] = {}
    conv(initial_channel, n_mels, 7, "conv_pre")
    channels = initial_channel
    kernels, dilations = config["resblock_kernel_sizes"], config["resblock_dilation_sizes"]
    for i, kernel in enumerate(config["upsample_kernel_sizes"]):
        conv(channels // 2, channels, kernel, f"ups.{i}", transposed=True)
        channels //= 2
        for j, (k, dilation) in enumerate(zip(kernels, dilations, strict=True)):
            for n in range(len(dilation)):
                conv(channels, channels, k, f"resblocks.{i * len(kernels) + j}.convs1.{n}")
                conv(channels, channels, k, f"resblocks.{i * len(kernels) + j}.convs2.{n}")
    conv(1, channels, 7, "conv_post")
    return state


def hifigan_reference(state: dict[str, torch.Tensor], mel: torch.Tensor) -> torch.Tensor:
    """HiFi-GAN v1's forward pass (AudioLDM's `Generator`) written functionally; `mel` is `(batch, n_mels, frames)`."""
    config = HIFIGAN_16K_64_CONFIG
    kernels, dilations = config["resblock_kernel_sizes"], config["resblock_dilation_sizes"]
    x = F.conv1d(mel, state["conv_pre.weight"], state["conv_pre.bias"], padding=3)
    for i, (rate, kernel) in enumerate(zip(config["upsample_rates"], config["upsample_kernel_sizes"], strict=True)):
        x = F.leaky_relu(x, 0.1)
        x = F.conv_transpose1d(
            x, state[f"ups.{i}.weight"], state[f"ups.{i}.bias"], stride=rate, padding=(kernel - rate) // 2
        )
        total = 0
        for j, (k, dilation) in enumerate(zip(kernels, dilations, strict=True)):
            prefix, h = f"resblocks.{i * len(kernels) + j}", x
            for n, d in enumerate(dilation):
                t = F.leaky_relu(h, 0.1)
                t = F.conv1d(
                    t,
                    state[f"{prefix}.convs1.{n}.weight"],
                    state[f"{prefix}.convs1.{n}.bias"],
                    dilation=d,
                    padding=(k * d - d) // 2,
                )
                t = F.leaky_relu(t, 0.1)
                t = F.conv1d(
                    t, state[f"{prefix}.convs2.{n}.weight"], state[f"{prefix}.convs2.{n}.bias"], padding=(k - 1) // 2
                )
                h = t + h
            total = total + h
        x = total / len(kernels)
    x = F.leaky_relu(x)  # slope 0.01, as in HiFi-GAN
    x = F.conv1d(x, state["conv_post.weight"], state["conv_post.bias"], padding=3)
    return torch.tanh(x).squeeze(1)


def write_checkpoint(
    folder: Path,
    source: dict[str, Any],
    main_extra: dict[str, torch.Tensor] | None = None,
    main_changes: dict[str, Any] | None = None,
    stft_changes: dict[str, Any] | None = None,
    safetensors: bool = False,
) -> Path:
    """Writes a checkpoint folder in Tango's layout from the source modules."""
    folder.mkdir(parents=True, exist_ok=True)
    main_state = {f"unet.{k}": v for k, v in source["unet"].state_dict().items()}
    main_state.update({f"text_encoder.{k}": v for k, v in source["text_encoder"].state_dict().items()})
    main_state.update(main_extra or {})
    vae_state = dict(source["vae_ldm"])
    vae_state.update({f"vocoder.{k}": v for k, v in source["vocoder"].items()})
    if safetensors:
        # Like a safetensors export of a tied model: one copy of the shared embeddings.
        main_state.pop("text_encoder.encoder.embed_tokens.weight")
        for name, state in (("main", main_state), ("vae", vae_state)):
            save_file(
                {k: v.contiguous().clone() for k, v in state.items()}, folder / f"pytorch_model_{name}.safetensors"
            )
    else:
        torch.save(main_state, folder / "pytorch_model_main.bin")
        torch.save(vae_state, folder / "pytorch_model_vae.bin")
    main_config = dict(MAIN_CONFIG, text_encoder_name=str(source["t5_dir"]), **(main_changes or {}))
    (folder / "main_config.json").write_text(json.dumps(main_config))
    (folder / "vae_config.json").write_text(json.dumps(VAE_CONFIG))
    (folder / "stft_config.json").write_text(json.dumps(dict(TANGO_STFT_CONFIG, **(stft_changes or {}))))
    (folder / "configs").mkdir(exist_ok=True)
    (folder / "configs" / "diffusion_model_config.json").write_text(source["unet"].to_json_string())
    return folder


# --------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> dict[str, Any]:
    torch.manual_seed(0)
    tokenizer = build_debug_tokenizer("t5", model_max_length=32)
    # FLAN-T5's kind of T5: gated-GELU feed-forward, untied output head (the encoder shares `shared` either way).
    t5_config = T5Config(
        vocab_size=len(tokenizer),
        d_model=TEXT_WIDTH,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    text_encoder = perturb_(T5EncoderModel(t5_config), 1)
    t5_dir = tmp_path_factory.mktemp("tiny-flan-t5")
    text_encoder.config.save_pretrained(t5_dir)  # config and tokenizer only, as on the Hub for the name
    tokenizer.save_pretrained(t5_dir)

    unet = perturb_(UNet2DConditionModel(**tango_unet_config(TEXT_WIDTH, **UNET_OVERRIDES)), 2)
    dd = VAE_CONFIG["ddconfig"]
    vae = AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=["DownEncoderBlock2D"] * 3,
        up_block_types=["UpDecoderBlock2D"] * 3,
        block_out_channels=[dd["ch"] * m for m in dd["ch_mult"]],
        layers_per_block=dd["num_res_blocks"],
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=32,
    )
    perturb_(vae, 3)
    return {
        "tokenizer": tokenizer,
        "text_encoder": text_encoder,
        "t5_dir": t5_dir,
        "unet": unet,
        "vae": vae,
        "vae_ldm": diffusers_vae_to_ldm(vae.state_dict(), levels=3),
        "vocoder": original_hifigan_state_dict(4),
    }


@pytest.fixture(scope="module")
def checkpoint_dir(source, tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("tango-ckpt"), source)


@pytest.fixture(scope="module")
def converted(checkpoint_dir) -> dict[str, Any]:
    return convert_tango_checkpoint(checkpoint_dir)


@pytest.fixture(scope="module")
def saved_dir(converted, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("converted") / "pipe"
    save_pipeline(converted, out)
    return out


# --------------------------------------------------------------------------------------------- equivalence


def test_ldm_state_dict_has_original_names(source):
    ldm = source["vae_ldm"]
    assert ldm["encoder.mid.attn_1.q.weight"].ndim == 4
    assert ldm["decoder.mid.attn_1.proj_out.weight"].shape[-2:] == (1, 1)
    assert "encoder.down.1.block.0.nin_shortcut.weight" in ldm
    assert "decoder.up.0.block.1.conv2.weight" in ldm and "decoder.up.2.upsample.conv.weight" in ldm
    assert not any("_blocks" in k for k in ldm)


@torch.no_grad()
def test_unet_matches_source(source, converted):
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2, LATENT_CHANNELS, 16, 4, generator=generator)
    text = torch.randn(2, 5, TEXT_WIDTH, generator=generator)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    timesteps = torch.tensor([10, 700])
    expected = source["unet"](sample, timesteps, text, encoder_attention_mask=mask).sample
    actual = converted["unet"](sample, timesteps, text, encoder_attention_mask=mask).sample
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)
    assert converted["unet"].config.cross_attention_dim == TEXT_WIDTH


@torch.no_grad()
def test_text_encoder_and_tokenizer_match_source(source, converted):
    prompts = ["a dog and a cat", "rain"]
    ids = source["tokenizer"](prompts, padding=True, return_tensors="pt")
    converted_ids = converted["tokenizer"](prompts, padding=True, return_tensors="pt")
    assert torch.equal(ids.input_ids, converted_ids.input_ids)
    expected = source["text_encoder"](**ids).last_hidden_state
    actual = converted["text_encoder"](**converted_ids).last_hidden_state
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


@torch.no_grad()
def test_vae_encode_decode_match_source(source, converted):
    vae = converted["vae"]
    assert vae.config.scaling_factor == SCALE_FACTOR
    assert list(vae.config.block_out_channels) == [32, 64, 64] and vae.config.latent_channels == LATENT_CHANNELS
    mel = torch.randn(1, 1, 32, 16, generator=torch.Generator().manual_seed(1))
    expected, actual = source["vae"].encode(mel).latent_dist, vae.encode(mel).latent_dist
    torch.testing.assert_close(actual.mean, expected.mean, rtol=0, atol=0)
    torch.testing.assert_close(actual.logvar, expected.logvar, rtol=0, atol=0)
    torch.testing.assert_close(vae.decode(expected.mean).sample, source["vae"].decode(expected.mean).sample)


@torch.no_grad()
def test_vocoder_matches_hifigan(source, converted):
    vocoder = converted["vocoder"]
    assert vocoder.config.upsample_initial_channel == VOCODER_WIDTH and vocoder.config.model_in_dim == 64
    assert not vocoder.config.normalize_before
    assert torch.equal(vocoder.mean, torch.zeros(64)) and torch.equal(vocoder.scale, torch.ones(64))
    mel = torch.randn(2, 64, 6, generator=torch.Generator().manual_seed(2))  # (batch, mels, frames), Tango's order
    expected = hifigan_reference(source["vocoder"], mel)
    actual = vocoder(mel.transpose(1, 2))
    assert actual.shape == expected.shape == (2, 992)  # HiFi-GAN: 5 * frames + 1, then x32, minus padding
    assert expected.abs().max() < 0.99  # not saturated, so the comparison means something
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_vocoder_weight_norm_pairs_are_folded(source):
    state = dict(source["vocoder"])
    v = state.pop("ups.1.weight")
    g = torch.rand(v.shape[0], 1, 1) + 0.5
    state["ups.1.weight_g"], state["ups.1.weight_v"] = g, v
    folded = dict(source["vocoder"], **{"ups.1.weight": v * g / v.norm(dim=(1, 2), keepdim=True)})
    mel = torch.randn(1, 64, 4, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(convert_vocoder(state)(mel.transpose(1, 2)), hifigan_reference(folded, mel))


def test_scheduler_prediction_type_is_explicit(converted):
    assert converted["scheduler"].config.prediction_type == "v_prediction"
    assert converted["scheduler"].config.beta_schedule == "scaled_linear"


# --------------------------------------------------------------------------------------------- saved pipeline


def test_saved_folder_is_safetensors_only_and_reloads(converted, saved_dir):
    files = [p for p in saved_dir.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in {".bin", ".pt", ".pth", ".ckpt", ".pkl"}]
    for part in ("unet", "vae", "text_encoder", "vocoder"):
        assert list((saved_dir / part).glob("*.safetensors")), part
    scheduler_config = json.loads((saved_dir / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler_config["prediction_type"] == "v_prediction"

    pipe = TangoCLAPPipeline.from_pretrained(saved_dir)
    for part in ("unet", "vae", "text_encoder", "vocoder"):
        expected, actual = converted[part].state_dict(), getattr(pipe, part).state_dict()
        assert expected.keys() == actual.keys(), part
        assert all(torch.equal(expected[k], actual[k]) for k in expected), part
    assert pipe.vae.config.scaling_factor == SCALE_FACTOR
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.tokenizer("a dog").input_ids == converted["tokenizer"]("a dog").input_ids


def test_cli_converts_safetensors_input_with_dtype_and_push(source, tmp_path, monkeypatch):
    checkpoint = write_checkpoint(tmp_path / "ckpt", source, safetensors=True)
    assert not list(checkpoint.glob("*.bin"))
    from model_cards import publish

    pushed = []

    def publish_model(folder, repo_id, **kwargs):
        pushed.append((repo_id, sorted(p.name for p in Path(folder).iterdir())))

    monkeypatch.setattr(publish, "publish_model", publish_model)
    out = tmp_path / "out"
    code = main([
        "--checkpoint", str(checkpoint),
        "--output_dir", str(out),
        "--prediction_type", "epsilon",
        "--dtype", "bfloat16",
        "--push_to_hub", "someone/tango-converted",
    ])  # fmt: skip
    assert code == 0
    # What is pushed is the finished folder, with the record of where it was converted from (for its card).
    assert [repo for repo, _ in pushed] == ["someone/tango-converted"]
    assert {"model_index.json", "conversion.json", "unet"} <= set(pushed[0][1])
    assert json.loads((out / "conversion.json").read_text())["source"] == str(checkpoint)
    assert (out / "model_index.json").is_file()
    assert json.loads((out / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == "epsilon"
    (unet_file,) = (out / "unet").glob("*.safetensors")
    with safe_open(str(unet_file), framework="pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
    pipe = TangoCLAPPipeline.from_pretrained(out, dtype=torch.bfloat16)
    expected = source["text_encoder"].shared.weight.to(torch.bfloat16)
    assert torch.equal(pipe.text_encoder.encoder.embed_tokens.weight, expected)


# --------------------------------------------------------------------------------------------- refusals


def test_cli_refuses_bad_paths_in_one_line_before_reading_anything(tmp_path, capsys):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "README.md").write_text("the user's own notes")
    cases = [
        (["--checkpoint", str(tmp_path / "no-checkpoint"), "--output_dir", str(tmp_path / "o")], "does not exist"),
        (["--checkpoint", str(tmp_path), "--output_dir", str(theirs)], "did not write"),
        (
            ["--checkpoint", str(tmp_path), "--output_dir", str(tmp_path / "o"), "--unet_config", "nope.json"],
            "nope.json",
        ),
    ]
    for argv, expected in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err and err.count("\n") == 1, err
    assert [p.name for p in theirs.iterdir()] == ["README.md"]
    assert not (tmp_path / "o").exists()


def test_non_tensor_pickle_is_refused(source, tmp_path):
    checkpoint = write_checkpoint(tmp_path / "ckpt", source)
    torch.save({"unet.conv_in.weight": Payload()}, checkpoint / "pytorch_model_main.bin")
    UNPICKLED.clear()
    with pytest.raises(ValueError, match=r"pytorch_model_main\.bin.*weights_only=True"):
        convert_tango_checkpoint(checkpoint)
    assert UNPICKLED == []  # the payload never ran


def test_stft_hop_mismatch_is_refused(source, tmp_path):
    checkpoint = write_checkpoint(tmp_path / "ckpt", source, stft_changes={"hop_length": 256})
    with pytest.raises(ValueError, match=r"hop_length=256.*160"):
        convert_tango_checkpoint(checkpoint)


def test_group_in_checkpoint_is_refused(source, tmp_path):
    extra = {"group_in.0.weight": torch.zeros(512, 8), "group_out.1.weight": torch.zeros(8, 512)}
    checkpoint = write_checkpoint(tmp_path / "ckpt", source, main_extra=extra)
    with pytest.raises(NotImplementedError, match="group_in"):
        convert_tango_checkpoint(checkpoint)


def test_unet_initialised_from_stable_diffusion_is_refused(source, tmp_path):
    changes = {"unet_model_name": "stabilityai/stable-diffusion-2-1", "unet_model_config_path": None}
    checkpoint = write_checkpoint(tmp_path / "ckpt", source, main_changes=changes)
    with pytest.raises(NotImplementedError, match="group_in"):
        convert_tango_checkpoint(checkpoint)


def test_missing_local_folder_is_not_sent_to_the_hub(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a checkpoint folder"):
        convert_tango_checkpoint(tmp_path / "does-not-exist")


def test_unet_config_not_matching_weights_names_keys(checkpoint_dir, tmp_path):
    config_path = tmp_path / "unet_config.json"
    config_path.write_text(json.dumps(tango_unet_config(TEXT_WIDTH, **dict(UNET_OVERRIDES, layers_per_block=2))))
    with pytest.raises(ValueError, match=r"UNet.*missing: \['down_blocks\.0\.attentions\.1\.") as err:
        convert_tango_checkpoint(checkpoint_dir, unet_config=config_path)
    assert "shape mismatches" in str(err.value) and "up_blocks.0.resnets.1.conv1.weight" in str(err.value)


@pytest.mark.parametrize(
    "change",
    [{"subband": 2}, {"embed_dim": 4}, {"ddconfig": dict(VAE_CONFIG["ddconfig"], attn_resolutions=[32])}],
)
def test_vae_options_without_diffusers_equivalent_are_refused(change):
    with pytest.raises(ValueError, match="cannot express"):
        vae_config_from_audioldm(dict(VAE_CONFIG, **change))


def test_audioldm_vae_config_gives_the_shared_architecture():
    # AudioLDM's first-stage config as Tango's `vae_config.json` carries it (audioldm/utils.py).
    ddconfig = dict(VAE_CONFIG["ddconfig"], ch=128, ch_mult=[1, 2, 4], num_res_blocks=2)
    config = vae_config_from_audioldm(dict(VAE_CONFIG, ddconfig=ddconfig, scale_factor=0.9))
    assert config == dict(AUDIOLDM_VAE_CONFIG, scaling_factor=0.9)


def test_default_unet_config_reads_widths_from_weights(source):
    unet_state = {k: v for k, v in source["unet"].state_dict().items()}
    config = infer_unet_config(unet_state)
    assert config["cross_attention_dim"] == TEXT_WIDTH
    assert config["in_channels"] == config["out_channels"] == LATENT_CHANNELS
    assert config["block_out_channels"] == [320, 640, 1280, 1280]  # otherwise Tango's own config
    assert config["upcast_attention"] and config["use_linear_projection"]
