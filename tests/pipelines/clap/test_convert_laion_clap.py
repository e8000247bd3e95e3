"""The LAION-CLAP converter on tiny checkpoints in the original layout, and the CLAP front end's laion_clap rules.

The original layout is written here from a transformers `ClapModel` by an inverse mapping kept in this file; parity
with laion_clap's own code on its own random weights is `test_laion_parity.py`.
"""

import argparse
import os
import pickle
import re

import numpy as np
import pytest
import torch
from transformers import ClapModel, ClapProcessor

from pipelines.clap.convert_laion_clap import (
    convert_laion_clap_checkpoint,
    infer_clap_config,
    laion_clap_to_transformers,
    laion_feature_extractor,
    main,
    read_laion_state_dict,
    rename_laion_state_dict,
)
from pipelines.tango_clap.debug import build_debug_clap_scorer, build_debug_tokenizer
from pipelines.tango_clap.pipeline_tango_clap import (
    clap_audio_embeddings,
    clap_audio_features,
    clap_text_embeddings,
    int16_round_trip,
)

SR = 48000


class LaionClapConverterTester:
    """Tiny CLAP models (the debug scorer's sizes) and their original-layout checkpoints."""

    # The debug text tower has 4 heads and transformers' default LayerNorm eps; roberta-base's are 12 and 1e-5.
    text_config_overrides = {"num_attention_heads": 4, "layer_norm_eps": 1e-12}
    # and a 128-wide spectrogram image where LAION-CLAP's HTSAT uses 256.
    audio_config_overrides = {"spec_size": 128}

    def get_model(self, enable_fusion: bool, seed: int = 0) -> dict:
        torch.manual_seed(seed)
        parts = build_debug_clap_scorer(enable_fusion=enable_fusion)
        with torch.no_grad():  # non-trivial BatchNorm statistics, so their mapping is checked too
            for name, buffer in parts["clap_model"].named_buffers():
                if name.endswith(("running_mean", "running_var")):
                    buffer.copy_(torch.rand_like(buffer) + 0.5)
        return parts

    def to_original_layout(self, model: ClapModel) -> dict[str, torch.Tensor]:
        """The names and fused `qkv` tensors of laion_clap's `CLAP` module, plus the buffers it also saves."""
        block_renames = {
            "layernorm_before": "norm1",
            "layernorm_after": "norm2",
            "attention.output.dense": "attn.proj",
            "intermediate.dense": "mlp.fc1",
            "output.dense": "mlp.fc2",
        }
        state, out = model.state_dict(), {}
        qkv: dict[str, dict[str, torch.Tensor]] = {}
        for key, tensor in state.items():
            if key in ("text_model.embeddings.position_ids", "text_model.embeddings.token_type_ids"):
                continue
            if key.startswith("text_model."):
                out["text_branch." + key[len("text_model.") :]] = tensor
            elif m := re.match(r"^(text|audio)_projection\.linear([12])\.(\w+)$", key):
                out[f"{m.group(1)}_projection.{0 if m.group(2) == '1' else 2}.{m.group(3)}"] = tensor
            elif key.startswith("audio_model.audio_encoder.batch_norm."):
                out["audio_branch.bn0." + key.rsplit(".", 1)[1]] = tensor
            elif m := re.match(r"^audio_model\.audio_encoder\.layers\.(\d+)\.blocks\.(\d+)\.(.+)$", key):
                prefix, rest = f"audio_branch.layers.{m.group(1)}.blocks.{m.group(2)}.", m.group(3)
                if q := re.match(r"^attention\.self\.(query|key|value)\.(weight|bias)$", rest):
                    qkv.setdefault(prefix + "attn.qkv." + q.group(2), {})[q.group(1)] = tensor
                elif rest.startswith("attention.self.relative_position"):
                    out[prefix + "attn." + rest.rsplit(".", 1)[1]] = tensor
                else:
                    module, leaf = rest.rsplit(".", 1)
                    out[f"{prefix}{block_renames[module]}.{leaf}"] = tensor
            elif key.startswith("audio_model.audio_encoder."):
                out["audio_branch." + key[len("audio_model.audio_encoder.") :]] = tensor
            else:
                out[key] = tensor
        for key, parts in qkv.items():
            out[key] = torch.cat([parts["query"], parts["key"], parts["value"]])
        # What the original files carry and transformers has no place for.
        out["audio_branch.spectrogram_extractor.stft.conv_real.weight"] = torch.randn(513, 1, 1024)
        out["audio_branch.logmel_extractor.melW"] = torch.randn(513, 16)
        out["audio_branch.head.weight"] = torch.randn(527, 527)
        out["audio_branch.tscam_conv.weight"] = torch.randn(527, 32, 2, 3)
        out["audio_transform.sequential.0.weight"] = torch.randn(16, 16)
        out["text_transform.sequential.0.weight"] = torch.randn(16, 16)
        out["audio_branch.layers.0.blocks.0.attn_mask"] = torch.zeros(4, 16, 16)
        out["text_branch.embeddings.position_ids"] = torch.arange(66)[None]
        return out

    def save_original(self, model: ClapModel, path: str) -> str:
        weights = {"module." + k: v for k, v in self.to_original_layout(model).items()}
        torch.save({"epoch": 45, "name": "tiny", "state_dict": weights, "optimizer": {"lr": 1e-4}}, path)
        return path

    def get_audio(self, seconds: tuple[float, ...] = (3.0, 10.0, 10.0), seed: int = 0) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        return [(rng.standard_normal(round(s * SR)) * 0.3).astype(np.float32) for s in seconds]


tester = LaionClapConverterTester()


@pytest.mark.parametrize("enable_fusion", [True, False])
def test_conversion_reproduces_the_model(enable_fusion, tmp_path):
    parts = tester.get_model(enable_fusion)
    source = parts["clap_model"]
    path = tester.save_original(source, str(tmp_path / "tiny.pt"))

    converted, report = laion_clap_to_transformers(
        read_laion_state_dict(path), tester.text_config_overrides, tester.audio_config_overrides
    )

    assert report.missing == [] and report.unexpected == []
    assert converted.config.audio_config.enable_fusion is enable_fusion
    assert converted.config.audio_config.depths == source.config.audio_config.depths
    assert converted.config.audio_config.window_size == source.config.audio_config.window_size
    for name, tensor in source.state_dict().items():
        assert torch.equal(converted.state_dict()[name], tensor), name
    audio = tester.get_audio((3.0, 10.0, 14.0))
    texts = ["a dog barks", "rain on a tin roof", "x" * 200]
    np.random.seed(0)
    want = clap_audio_embeddings(source, parts["clap_feature_extractor"], audio)
    np.random.seed(0)
    got = clap_audio_embeddings(converted, parts["clap_feature_extractor"], audio)
    torch.testing.assert_close(got, want)
    tokenizer = parts["clap_tokenizer"]
    torch.testing.assert_close(
        clap_text_embeddings(converted, tokenizer, texts), clap_text_embeddings(source, tokenizer, texts)
    )


def test_infer_clap_config_reads_the_architecture_off_the_shapes():
    source = tester.get_model(enable_fusion=True)["clap_model"]
    original = tester.to_original_layout(source)
    config = infer_clap_config(original, tester.text_config_overrides, tester.audio_config_overrides)
    audio, text = config.audio_config, config.text_config
    assert (audio.patch_embeds_hidden_size, audio.hidden_size, audio.num_attention_heads) == (16, 32, [2, 2])
    assert audio.num_mel_bins == 16 and audio.projection_dim == 16 and audio.num_classes == 527
    assert (text.vocab_size, text.hidden_size, text.num_hidden_layers, text.intermediate_size) == (
        source.config.text_config.vocab_size,
        32,
        2,
        64,
    )
    assert text.num_attention_heads == 4
    # Without overrides the text settings are roberta-base's, as in every released LAION-CLAP checkpoint.
    defaults = infer_clap_config(original)
    assert defaults.text_config.layer_norm_eps == 1e-5 and defaults.audio_config.spec_size == 256


def test_rename_names_an_unknown_weight():
    original = tester.to_original_layout(tester.get_model(enable_fusion=False)["clap_model"])
    original["audio_branch.layers.0.blocks.0.mystery.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"mystery"):
        rename_laion_state_dict(original)


def test_a_missing_weight_is_an_error(tmp_path):
    original = tester.to_original_layout(tester.get_model(enable_fusion=False)["clap_model"])
    del original["audio_branch.layers.0.blocks.0.mlp.fc1.bias"]
    with pytest.raises(ValueError, match=r"missing .*mlp\.fc1|intermediate\.dense\.bias"):
        laion_clap_to_transformers(original, tester.text_config_overrides, tester.audio_config_overrides)


def test_read_refuses_non_clap_files_and_unsafe_pickles(tmp_path):
    torch.save({"state_dict": {"unet.conv.weight": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"not a LAION-CLAP checkpoint.*unet\.conv\.weight"):
        read_laion_state_dict(tmp_path / "other.pt")

    # A training script's argparse.Namespace: any class but plain containers and tensors is refused.
    with open(tmp_path / "unsafe.pt", "wb") as f:
        pickle.dump({"state_dict": {}, "args": argparse.Namespace(lr=1e-4)}, f)
    with pytest.raises(ValueError, match=r"Refusing to load .*unsafe\.pt"):
        read_laion_state_dict(tmp_path / "unsafe.pt")
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pt"):
        read_laion_state_dict(tmp_path / "nowhere.pt")


def test_read_accepts_a_bare_state_dict_without_prefix(tmp_path):
    original = tester.to_original_layout(tester.get_model(enable_fusion=False)["clap_model"])
    torch.save(original, tmp_path / "bare.pt")
    assert read_laion_state_dict(tmp_path / "bare.pt").keys() == original.keys()


def test_convert_writes_a_folder_with_laion_processor_settings(tmp_path):
    parts = tester.get_model(enable_fusion=True)
    path = tester.save_original(parts["clap_model"], str(tmp_path / "tiny.pt"))
    parts["clap_tokenizer"].save_pretrained(tmp_path / "tokenizer")

    convert_laion_clap_checkpoint(
        path,
        tmp_path / "out",
        tokenizer=tmp_path / "tokenizer",
        text_config_overrides=tester.text_config_overrides,
        audio_config_overrides=tester.audio_config_overrides,
    )

    assert sorted(f for f in os.listdir(tmp_path / "out") if f.endswith((".bin", ".safetensors"))) == [
        "model.safetensors"
    ]
    processor = ClapProcessor.from_pretrained(tmp_path / "out")
    fe = processor.feature_extractor
    assert (fe.sampling_rate, fe.nb_max_samples, fe.hop_length, fe.fft_window_size) == (48000, 480000, 480, 1024)
    assert (fe.frequency_min, fe.frequency_max, fe.truncation, fe.padding) == (50, 14000, "fusion", "repeatpad")
    assert processor.tokenizer.model_max_length == 77
    reloaded = ClapModel.from_pretrained(tmp_path / "out")
    for name, tensor in parts["clap_model"].state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], tensor), name


def test_cli_compares_weights_with_another_port(tmp_path, capsys):
    parts = tester.get_model(enable_fusion=False)
    path = tester.save_original(parts["clap_model"], str(tmp_path / "tiny.pt"))
    parts["clap_model"].save_pretrained(tmp_path / "same")
    other = tester.get_model(enable_fusion=False, seed=1)["clap_model"]
    other.save_pretrained(tmp_path / "other")
    overrides = ["--text_config", '{"num_attention_heads": 4, "layer_norm_eps": 1e-12}']
    overrides += ["--audio_config", '{"spec_size": 128}']

    assert main(["--checkpoint", path, "--compare_with", str(tmp_path / "same"), *overrides]) == 0
    out = capsys.readouterr().out
    assert "SAME WEIGHTS" in out and "SAME CONFIG" in out
    # Same weights, but a port whose text LayerNorm eps is roberta-base's while this model's is not.
    code = main(
        ["--checkpoint", path, "--compare_with", str(tmp_path / "same"), "--audio_config", '{"spec_size": 128}']
        + ["--text_config", '{"num_attention_heads": 4}']
    )
    assert code == 1
    out = capsys.readouterr().out
    assert "SAME WEIGHTS" in out and "text_config.layer_norm_eps: 1e-05 != 1e-12" in out
    assert main(["--checkpoint", path, "--compare_with", str(tmp_path / "other"), *overrides]) == 1
    out = capsys.readouterr().out
    assert "DIFFERENT WEIGHTS" in out and "differing" in out


def test_cli_user_errors_are_one_line_before_any_work(tmp_path, capsys):
    parts = tester.get_model(enable_fusion=False)
    path = tester.save_original(parts["clap_model"], str(tmp_path / "tiny.pt"))
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("the user's own file")
    cases = [
        (["--checkpoint", str(tmp_path / "missing.pt"), "--output_dir", str(tmp_path / "o")], "missing.pt"),
        (["--checkpoint", path, "--output_dir", str(theirs)], "did not write"),
        (["--checkpoint", path, "--compare_with", "./no/such/port"], "'./no/such/port' does not exist"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err and err.count("\n") == 1, err
    assert (theirs / "notes.txt").read_text() == "the user's own file" and len(list(theirs.iterdir())) == 1


# ------------------------------------------------------------------------- laion_clap's front-end rules


def test_int16_round_trip_clips_and_quantises():
    audio = np.array([0.0, 0.5, -0.25, 1.7, -3.0, 1e-6], dtype=np.float32)
    out = int16_round_trip(audio)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[[3, 4]], [1.0, -1.0])
    np.testing.assert_allclose(out[1], np.float32(16383 / 32767))  # truncation toward zero, as astype(int16)
    assert out[5] == 0.0


def test_fused_embedding_does_not_depend_on_the_batch():
    """transformers' extractor marks a random clip of an all-short batch as "longer"; laion_clap at eval does not."""
    parts = tester.get_model(enable_fusion=True)
    model, fe = parts["clap_model"], parts["clap_feature_extractor"]
    audio = tester.get_audio((3.0, 10.0, 6.0))

    together = clap_audio_embeddings(model, fe, audio)
    alone = torch.cat([clap_audio_embeddings(model, fe, [clip]) for clip in audio])

    torch.testing.assert_close(together, alone)
    _, is_longer = clap_audio_features(fe, audio)
    assert not is_longer.any()
    # The fusion branch is not a no-op, so the rule above is what keeps the embeddings equal.
    features, _ = clap_audio_features(fe, audio[:1])
    forced = model.get_audio_features(input_features=features, is_longer=torch.tensor([[True]])).pooler_output
    assert not torch.allclose(torch.nn.functional.normalize(forced, dim=-1), alone[:1], atol=1e-4)


def test_fused_long_clip_uses_an_antialiased_whole_clip_channel():
    fe = laion_feature_extractor(enable_fusion=True)  # 64 mel bins: the only size transformers' fusion handles
    clip = tester.get_audio((17.0,))[0]
    whole = torch.from_numpy(fe._np_extract_fbank_features(int16_round_trip(clip).astype(np.float64), fe.mel_filters))
    np.random.seed(0)
    stock = fe([int16_round_trip(clip)], sampling_rate=SR, return_tensors="pt")["input_features"].float()
    # transformers (like laion_clap) draws one crop start in each third of the possible starts, from NumPy's global
    # generator; the same draws, given explicitly, reproduce its crops.
    np.random.seed(0)
    thirds = np.array_split(np.arange(whole.shape[0] - (fe.nb_max_samples // fe.hop_length + 1) + 1), 3)
    drawn = [int(np.random.choice(part)) for part in thirds]
    ours, is_longer = clap_audio_features(fe, [clip], fusion_crop_starts=[drawn])

    assert is_longer.tolist() == [[True]]
    # The three crops are the same windows of the same spectrogram as transformers' ...
    torch.testing.assert_close(ours[0, 1:], stock[0, 1:])
    # ... and by default they are fixed (the middle of each third), whatever NumPy's global state.
    np.random.seed(1)
    default, _ = clap_audio_features(fe, [clip])
    middles = [int(part[len(part) // 2]) for part in thirds]
    torch.testing.assert_close(default[0, 1:], torch.stack([whole[s : s + ours.shape[-2]] for s in middles]).float())
    # The whole-clip channel is shrunk with antialiasing (torchvision's Resize), not without.
    antialiased = torch.nn.functional.interpolate(
        whole[None, None], size=list(ours.shape[-2:]), mode="bilinear", align_corners=False, antialias=True
    )[0, 0].float()
    torch.testing.assert_close(ours[0, 0], antialiased)
    assert (ours[0, 0] - stock[0, 0]).abs().max() > 0.1
    # A clip just past 10 s whose frame count equals the window's is not "longer" (laion_clap's corner case).
    _, corner = clap_audio_features(fe, [np.zeros(480000 + 100, dtype=np.float32)])
    assert corner.tolist() == [[False]]


def test_text_is_cut_to_laion_clap_length():
    torch.manual_seed(0)
    parts = build_debug_clap_scorer(tokenizer=build_debug_tokenizer("clap", model_max_length=512))
    model, tokenizer = parts["clap_model"], parts["clap_tokenizer"]
    long_text = "a" * 75 + "b" * 40
    cut = tokenizer.convert_tokens_to_string(tokenizer.tokenize(long_text)[:75])
    # 75 tokens + <s> + </s> = 77: what follows the 77th token never changes the embedding.
    torch.testing.assert_close(
        clap_text_embeddings(model, tokenizer, [long_text]), clap_text_embeddings(model, tokenizer, [cut])
    )
