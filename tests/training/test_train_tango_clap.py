"""The training script end to end on tiny models and generated audio, launched as users launch it
(`accelerate launch`, and `torchrun` for two processes), like diffusers' example tests."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from diffusers import DiffusionPipeline, UNet2DConditionModel
from safetensors.torch import load_file

from pipelines.tango_clap.debug import get_debug_pipeline
from training.checkpoints import list_checkpoints
from training.components import build_pipeline, frames_for
from training.data import AudioCaptionDataset, MixtureSampler, collate_audio_captions, parse_source
from training.front_end import TangoMelSpectrogram
from training.objective import diffusion_loss, encode_audio, sample_latents, step_generator
from training.precompute_latents import LatentsDataset, collate_latents, precompute_latents

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "training" / "train_tango_clap.py"
LORA_SCRIPT = REPO / "training" / "train_tango_clap_lora.py"
SECONDS = 1.28  # 128 mel frames: 32 latent frames, whole for the debug UNet's two levels
RATE = 16000


class TrainingTester:
    """Tiny pipeline folder, a manifest of generated clips (one of them missing) and the shared arguments."""

    captions = ["a low hum", "a high whistle", "a pulsing beep", "a rising chirp"]

    def make_pipeline(self, root: Path) -> Path:
        """The debug pipeline, its random VAE made to behave like a trained one: a nearly deterministic posterior
        (log-variance -12) and a `scaling_factor` bringing latents to unit scale. With the random VAE's own
        posterior (std ~1 around means of std ~0.2) every latent would be mostly fresh noise, with nothing to fit."""
        pipe = get_debug_pipeline(with_clap_scorer=False)
        channels = pipe.vae.config.latent_channels
        with torch.no_grad():
            pipe.vae.quant_conv.weight[channels:] = 0
            pipe.vae.quant_conv.bias[channels:] = -12.0
        pipe.vae.register_to_config(scaling_factor=5.0)
        folder = root / "base"
        pipe.save_pretrained(folder)
        return folder

    def make_manifest(self, root: Path) -> Path:
        clips = root / "clips"
        clips.mkdir()
        t = np.arange(round(2.0 * RATE)) / RATE
        signals = [
            np.sin(2 * np.pi * 110 * t),
            np.sin(2 * np.pi * 3000 * t),
            np.sin(2 * np.pi * 800 * t) * (np.sin(2 * np.pi * 4 * t) > 0),
            np.sin(2 * np.pi * (300 + 1500 * t) * t),
        ]
        lines = []
        for i, (signal, caption) in enumerate(zip(signals, self.captions)):
            sf.write(clips / f"clip{i}.wav", (0.4 * signal).astype(np.float32), RATE)
            lines.append({"location": f"clips/clip{i}.wav", "captions": caption})
        lines.append({"location": "clips/missing.wav", "captions": "a clip that was never downloaded"})
        manifest = root / "train.json"
        manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
        return manifest

    def args(self, base: Path, manifest: Path, output: Path, steps: int, *extra: str) -> list[str]:
        return [
            "--pretrained_model_name_or_path", str(base),
            "--train_data", f"manifest:{manifest}",
            "--output_dir", str(output),
            "--audio_length_in_s", str(SECONDS),
            "--train_batch_size", "2",
            "--max_train_steps", str(steps),
            "--learning_rate", "1e-3",
            "--seed", "7",
            "--report_to", "none",
            *extra,
        ]  # fmt: skip


tester = TrainingTester()


def launch(script: Path, args: list[str], processes: int = 1, timeout: int = 600) -> subprocess.CompletedProcess:
    if processes == 1:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1"]
        command += ["--mixed_precision", "no", "--dynamo_backend", "no", "--cpu", str(script), *args]
    else:
        # `accelerate launch --cpu --num_processes 2` starts one process on this machine; torchrun starts both.
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), str(script)]
        command += [*args, "--cpu"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result


def losses(output: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (output / "train_log.jsonl").read_text().splitlines()]
    return {row["step"]: row["loss"] for row in rows}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    return tester.make_pipeline(root), tester.make_manifest(root), root


def test_overfitting_four_clips_drives_the_loss_down(workspace):
    base, manifest, root = workspace
    output = root / "overfit"
    extra = ["--condition_dropout", "0", "--checkpointing_steps", "1000", "--learning_rate", "2e-3"]
    launch(SCRIPT, tester.args(base, manifest, output, 80, *extra))

    loss = losses(output)
    assert sorted(loss) == list(range(1, 81))
    # Untrained, this model's loss stays at ~1.15 on these clips (measured with a zero learning rate).
    first, last = np.mean([loss[s] for s in range(1, 6)]), np.mean([loss[s] for s in range(61, 81)])
    assert last < 0.7 * first, (first, last)
    summary = json.loads((output / "training_summary.json").read_text())
    assert summary["skipped_clips"] and sum(summary["skipped_clips"].values()) >= 1  # the missing clip, every epoch


@pytest.fixture(scope="module")
def full_run(workspace):
    """8 steps with every option that draws random numbers, EMA, checkpoints every 2 steps, at most 2 kept."""
    base, manifest, root = workspace
    output = root / "full"
    extra = ["--use_ema", "--mixup", "--mixup_items", "1", "--noise_offset", "0.05", "--snr_gamma", "5"]
    extra += ["--checkpointing_steps", "2", "--checkpoints_total_limit", "2", "--validation_prompts", "a low hum"]
    extra += ["--validation_steps", "4", "--validation_inference_steps", "2"]
    launch(SCRIPT, tester.args(base, manifest, output, 8, *extra, "--report_to", "tensorboard"))
    return output, extra


def test_checkpoint_limit_prunes(full_run):
    output, _ = full_run
    assert [p.name for p in list_checkpoints(output)] == ["checkpoint-6", "checkpoint-8"]
    assert not list(output.glob(".checkpoint-*"))  # no half-written checkpoint left
    for name in ("unet", "unet_ema"):
        assert (output / "checkpoint-8" / name / "config.json").is_file()
    assert (output / "validation" / "step-4" / "00.wav").is_file()


def test_validation_audio_mels_and_losses_reach_tensorboard(full_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    output, _ = full_run
    events = EventAccumulator(str(next((output / "logs").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    tags = events.Tags()
    assert "validation/00" in tags["audio"] and "validation/00_mel" in tags["images"]
    assert [event.step for event in events.Scalars("loss")] == list(range(1, 9))


def test_final_pipeline_holds_the_ema_weights_and_generates(full_run):
    output, _ = full_run
    raw = UNet2DConditionModel.from_pretrained(output / "checkpoint-8", subfolder="unet").state_dict()
    ema = load_file(output / "checkpoint-8" / "unet_ema" / "diffusion_pytorch_model.safetensors")
    final = load_file(output / "unet" / "diffusion_pytorch_model.safetensors")
    name = "conv_in.weight"
    assert not torch.allclose(raw[name], ema[name])
    for key, tensor in final.items():
        torch.testing.assert_close(tensor, ema[key])

    pipe = DiffusionPipeline.from_pretrained(output, trust_remote_code=True)
    assert type(pipe).__name__ == "TangoCLAPPipeline"
    audio = pipe("a low hum", num_inference_steps=2, audio_length_in_s=SECONDS, generator=torch.manual_seed(0)).audios
    assert audio.shape == (1, round(SECONDS * RATE)) and np.isfinite(audio).all()
    assert "TangoCLAPPipeline" in (output / "README.md").read_text()


def test_resuming_reproduces_the_uninterrupted_run(workspace, full_run):
    base, manifest, root = workspace
    full, extra = full_run
    output = root / "interrupted"
    launch(SCRIPT, tester.args(base, manifest, output, 4, *extra))
    launch(SCRIPT, tester.args(base, manifest, output, 8, *extra, "--resume_from_checkpoint", "latest"))

    want, got = losses(full), losses(output)
    assert sorted(got) == list(range(1, 9))
    np.testing.assert_allclose([got[s] for s in range(5, 9)], [want[s] for s in range(5, 9)], rtol=1e-5)
    final_full = load_file(full / "unet" / "diffusion_pytorch_model.safetensors")
    final_resumed = load_file(output / "unet" / "diffusion_pytorch_model.safetensors")
    for key, tensor in final_full.items():
        torch.testing.assert_close(final_resumed[key], tensor)


def test_two_processes_hold_identical_weights(workspace):
    base, manifest, root = workspace
    output = root / "ddp"
    result = launch(SCRIPT, tester.args(base, manifest, output, 3, "--log_weight_checksums"), processes=2)

    # Found wherever they are in the output: the two processes' lines may share a pipe with other output.
    checksums = dict(re.findall(r"WEIGHT_CHECKSUM process=(\d+) value=([-+.\deE]+|nan|inf)", result.stdout))
    assert sorted(checksums) == ["0", "1"] and checksums["0"] == checksums["1"], result.stdout[-2000:]
    initial = UNet2DConditionModel.from_pretrained(base, subfolder="unet")
    trained = UNet2DConditionModel.from_pretrained(output, subfolder="unet")
    assert not torch.allclose(initial.conv_in.weight, trained.conv_in.weight)


def test_lora_adapter_is_saved_alone_and_loads_into_the_pipeline(workspace):
    base, manifest, root = workspace
    output = root / "lora"
    launch(LORA_SCRIPT, tester.args(base, manifest, output, 3, "--lora_rank", "2", "--checkpointing_steps", "2"))

    assert (output / "pytorch_lora_weights.safetensors").is_file()
    assert not (output / "unet").exists() and not (output / "model_index.json").exists()
    adapter = load_file(output / "pytorch_lora_weights.safetensors")
    assert adapter and all("lora" in key for key in adapter)

    pipe = DiffusionPipeline.from_pretrained(base, trust_remote_code=True)
    sample = torch.randn(1, 8, 32, 16, generator=torch.manual_seed(0))
    hidden = torch.randn(1, 5, pipe.unet.config.cross_attention_dim, generator=torch.manual_seed(1))
    before = pipe.unet(sample, 10, hidden).sample
    pipe.unet.load_lora_adapter(
        str(output), prefix=None, adapter_name="default", weight_name="pytorch_lora_weights.safetensors"
    )
    after = pipe.unet(sample, 10, hidden).sample
    assert not torch.allclose(before, after)


def test_precomputed_latents_give_the_on_the_fly_loss(workspace, tmp_path):
    base, manifest, root = workspace
    pipe = build_pipeline(str(base))
    num_samples, frames = frames_for(pipe, SECONDS)
    dataset = AudioCaptionDataset([parse_source(f"manifest:{manifest}")], num_samples=num_samples, seed=3)
    precompute_latents(pipe, dataset, tmp_path / "latents", frames=frames, batch_size=2, shard_size=2)

    dataset.set_epoch(0)
    live = collate_audio_captions([dataset[i] for i in range(2)])
    stored = LatentsDataset(tmp_path / "latents")
    assert len(stored) == 4  # the missing clip is counted, not stored
    assert stored.info["skipped"] == {"unreadable": 1}
    cached = collate_latents([stored[i] for i in range(2)])
    assert cached["captions"] == live["captions"]

    def loss(mean, logvar, hidden, mask):
        generator = step_generator(0, 0, 0)
        latents = sample_latents(mean, logvar, pipe.vae.config.scaling_factor, generator)
        return diffusion_loss(pipe.unet, pipe.scheduler, latents, hidden, mask, generator, snr_gamma=5.0)

    with torch.no_grad():
        mean, logvar = encode_audio(pipe, TangoMelSpectrogram(), live["waveforms"], frames)
        hidden, mask = pipe.encode_text(live["captions"])
        on_the_fly = loss(mean, logvar, hidden, mask)
        precomputed = loss(cached["mean"], cached["logvar"], cached["hidden"], cached["mask"])
    torch.testing.assert_close(precomputed, on_the_fly, rtol=1e-4, atol=1e-6)

    # and the script trains from them
    output = root / "from_latents"
    args = tester.args(base, manifest, output, 2)
    args[args.index("--train_data") : args.index("--train_data") + 2] = [
        "--precomputed_latents",
        str(tmp_path / "latents"),
    ]
    launch(SCRIPT, args)
    assert sorted(losses(output)) == [1, 2]


def test_several_precomputed_folders_form_a_weighted_mixture(workspace, tmp_path):
    base, manifest, _ = workspace
    pipe = build_pipeline(str(base))
    num_samples, frames = frames_for(pipe, SECONDS)
    dataset = AudioCaptionDataset([parse_source(f"manifest:{manifest}")], num_samples=num_samples, seed=3)
    precompute_latents(pipe, dataset, tmp_path / "a", frames=frames, batch_size=2, shard_size=2)
    precompute_latents(pipe, dataset, tmp_path / "b", frames=frames, batch_size=2, shard_size=4)

    mixed = LatentsDataset([str(tmp_path / "a"), f"{tmp_path / 'b'}?weight=3"])
    assert mixed.source_lengths == [4, 4] and mixed.weights == [1.0, 3.0]
    assert mixed.paths == [str(tmp_path / "a"), str(tmp_path / "b")]
    torch.testing.assert_close(mixed[5]["latent_mean"], LatentsDataset(tmp_path / "b")[1]["latent_mean"])
    # The training loop's sampler draws the second folder about three times as often.
    sampler = MixtureSampler(mixed.source_lengths, mixed.weights, num_samples=4000, seed=0)
    from_b = sum(index >= 4 for index in sampler)
    assert abs(from_b / 4000 - 0.75) < 4 * (0.75 * 0.25 / 4000) ** 0.5  # four standard errors

    for bad, message in [
        (f"{tmp_path / 'a'}?weight=0", "must be positive"),
        (f"{tmp_path / 'a'}?weight=abc", "'abc'"),
        (f"{tmp_path / 'a'}?tau=0.4", "takes only"),
    ]:
        with pytest.raises(ValueError, match=message):
            LatentsDataset(bad)
    # Folders encoded with another VAE scaling (another model) cannot be mixed.
    info_path = tmp_path / "b" / "precompute_info.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "scaling_factor": info["scaling_factor"] * 2}))
    with pytest.raises(ValueError, match="differ in \\['scaling_factor'\\]"):
        LatentsDataset([tmp_path / "a", tmp_path / "b"])


def test_an_encoding_cache_encodes_each_clip_and_caption_once_with_the_same_rows(workspace, tmp_path, float32_close):
    from training.precompute_latents import EncodingCache

    base, manifest, _ = workspace
    pipe = build_pipeline(str(base))
    num_samples, frames = frames_for(pipe, SECONDS)
    dataset = AudioCaptionDataset([parse_source(f"manifest:{manifest}")], num_samples=num_samples, seed=3)
    precompute_latents(pipe, dataset, tmp_path / "plain", frames=frames, batch_size=2, shard_size=2)

    encoded = {"clips": 0, "texts": 0}
    vae_encode, encode_text = pipe.vae.encode, pipe.encode_text

    def counting_encode(mel, *args, **kwargs):
        encoded["clips"] += mel.shape[0]
        return vae_encode(mel, *args, **kwargs)

    def counting_text(texts, *args, **kwargs):
        encoded["texts"] += len(texts)
        return encode_text(texts, *args, **kwargs)

    pipe.vae.encode, pipe.encode_text = counting_encode, counting_text
    cache = EncodingCache()
    precompute_latents(pipe, dataset, tmp_path / "first", frames=frames, batch_size=2, shard_size=2, cache=cache)
    first = dict(encoded)
    assert first["clips"] == 4  # the four readable clips
    # The same clips again (another source of one study): nothing is encoded but the empty prompt of the info.
    precompute_latents(pipe, dataset, tmp_path / "second", frames=frames, batch_size=2, shard_size=2, cache=cache)
    assert encoded["clips"] == first["clips"] and encoded["texts"] == first["texts"] + 1
    plain, cached = LatentsDataset(tmp_path / "plain"), LatentsDataset(tmp_path / "second")
    for i in range(len(plain)):
        assert plain[i]["caption"] == cached[i]["caption"]
        torch.testing.assert_close(cached[i]["latent_mean"], plain[i]["latent_mean"])
        # A caption encoded alone or beside a longer one: masked padding changes nothing but float rounding.
        float32_close(cached[i]["text_hidden"], plain[i]["text_hidden"])


def test_a_killed_precompute_job_continues_after_its_last_whole_shard(workspace, tmp_path):
    base, manifest, _ = workspace
    pipe = build_pipeline(str(base))
    num_samples, frames = frames_for(pipe, SECONDS)
    dataset = AudioCaptionDataset([parse_source(f"manifest:{manifest}")], num_samples=num_samples, seed=3)
    output = tmp_path / "latents"
    precompute_latents(pipe, dataset, output, frames=frames, batch_size=2, shard_size=2)
    whole = LatentsDataset(output)
    first = output / "shards" / "00000"
    stamp = first.stat().st_mtime_ns
    # The job "died" while writing shard 1: its folder is a partial one and the info was never written.
    (output / "shards" / "00001").rename(output / "shards" / ".00001.partial")
    (output / "precompute_info.json").unlink()
    with pytest.raises(ValueError, match="not a precomputed-latents folder"):
        LatentsDataset(output)

    precompute_latents(pipe, dataset, output, frames=frames, batch_size=2, shard_size=2)

    assert first.stat().st_mtime_ns == stamp  # shard 0 was not encoded again
    again = LatentsDataset(output)
    assert len(again) == len(whole) == 4
    for i in range(4):
        torch.testing.assert_close(again[i]["latent_mean"], whole[i]["latent_mean"])


def test_push_to_hub_uploads_the_final_folder(workspace, tmp_path, fake_hub):
    from training.train_tango_clap import main

    base, manifest, _ = workspace
    output = tmp_path / "pushed"
    extra = ["--checkpointing_steps", "1", "--push_to_hub", "--hub_model_id", "someone/tango-ft", "--cpu"]
    assert main(tester.args(base, manifest, output, 2, *extra)) == 0

    (_, repo, create), (_, upload_repo, upload) = fake_hub
    assert repo == upload_repo == "someone/tango-ft" and create["repo_type"] == upload["repo_type"] == "model"
    assert {"model_index.json", "pipeline.py", "README.md", "training_summary.json"} <= set(upload["files"])
    assert any(f.startswith("unet/") for f in upload["files"])
    # Only what users load is uploaded: the output folder's checkpoints and logs stay behind.
    assert any(p.name.startswith("checkpoint-") for p in output.iterdir())
    assert not any(f.startswith(("checkpoint-", "logs")) for f in upload["files"])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--text_encoder", "laion/clap-htsat-fused"], r"laion/clap-htsat-fused.*--unet_from_scratch"),
        (["--audio_length_in_s", "-1"], r"-1"),
        (["--condition_dropout", "1.5"], r"1\.5"),
        (["--checkpoints_total_limit", "0"], r"got 0"),
        (["--lora_rank", "4", "--use_ema"], r"LoRA"),
        (["--mixup", "--mixup_items", "0"], r"got 0"),
        (["--push_to_hub"], r"--hub_model_id"),
    ],
)
def test_bad_arguments_are_named(extra, message, tmp_path):
    from training.train_tango_clap import parse_args

    with pytest.raises(ValueError, match=message):
        parse_args(["--pretrained_model_name_or_path", "x", "--train_data", "manifest:x", "--output_dir", "o", *extra])


def test_a_clip_length_that_does_not_fill_latent_frames_is_refused(workspace):
    base, _, _ = workspace
    pipe = build_pipeline(str(base))
    with pytest.raises(ValueError, match=r"1\.0 s gives 100 mel frames.*multiple of 8"):
        frames_for(pipe, 1.0)


def test_bf16_gradient_checkpointing_and_accumulation(workspace):
    base, manifest, root = workspace
    output = root / "bf16"
    extra = ["--mixed_precision", "bf16", "--gradient_checkpointing", "--gradient_accumulation_steps", "2"]
    extra += ["--lr_scheduler", "cosine", "--lr_warmup_steps", "1"]
    launch(SCRIPT, tester.args(base, manifest, output, 3, *extra))

    rows = [json.loads(line) for line in (output / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3]  # optimisation steps, each of two batches
    assert rows[0]["lr"] == pytest.approx(1e-3) and rows[-1]["lr"] == pytest.approx(0.0)  # warm-up, then cosine
    weights = load_file(output / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(t.dtype == torch.float32 for t in weights.values())  # saved as loaded, not in bf16


def test_fine_tune_records_its_pretraining_and_the_card_shows_both(workspace, tmp_path):
    from huggingface_hub import ModelCard

    from training.train_tango_clap import main

    base, manifest, _ = workspace
    pretrained, fine_tuned = tmp_path / "pt", tmp_path / "ft"
    assert main(tester.args(base, manifest, pretrained, 2, "--unet_from_scratch", "debug", "--cpu")) == 0
    assert main(tester.args(pretrained, manifest, fine_tuned, 1, "--learning_rate", "1e-4", "--cpu")) == 0

    first = json.loads((pretrained / "training_summary.json").read_text())
    second = json.loads((fine_tuned / "training_summary.json").read_text())
    assert first["unet_from_scratch"] == "debug" and first["steps"] == 2 and first["base_training"] is None
    assert second["base_model"] == str(pretrained) and second["base_training"] == first
    assert second["data"] == [{"kind": "manifest", "path": str(manifest), "weight": 1.0, "tau": None, "top_k": None}]
    assert second["batch_size"] == 2 and second["learning_rate"] == 1e-4
    text = ModelCard.load(fine_tuned / "README.md").text
    assert text.index("| pretraining | random UNet (`debug`)") < text.index(f"| fine-tuning | `{pretrained}`")
