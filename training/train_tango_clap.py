#!/usr/bin/env python
"""Train the latent UNet of a `TangoCLAPPipeline`: pretraining (from scratch) or fine-tuning, full or LoRA.

In the style of diffusers' `examples/text_to_image/train_text_to_image.py`, for text-to-audio:

```bash
# Fine-tune a pipeline folder or Hub id on AudioCaps
accelerate launch training/train_tango_clap.py \\
  --pretrained_model_name_or_path ./tango-af-ac-ft-ac-diffusers \\
  --train_data "hf:/data/audiocaps" --output_dir ./tango-ft --train_batch_size 8 --gradient_accumulation_steps 6

# Pretrain Tango-CLAP from scratch on AF-AudioSet mixed with real captions (the paper's best pretraining set)
accelerate launch training/train_tango_clap.py \\
  --pretrained_model_name_or_path ./tango-full-ft-audiocaps-diffusers --text_encoder laion/clap-htsat-fused \\
  --unet_from_scratch tango \\
  --train_data "af_audioset:./af-audioset?audio_dir=/audioset/clips&weight=1" "hf:/data/audiocaps?weight=1" \\
  --tau 0.45 --top_k 3 --output_dir ./tango-clap-pt
```

The VAE, the vocoder and the text encoder come from `--pretrained_model_name_or_path` (a `TangoCLAPPipeline` folder
or Hub id) and stay frozen; `--text_encoder` swaps in another one (only with a UNet trained from scratch, since its
width sets the UNet's cross-attention). What is done differently from Tango's own `train.py`, on purpose:

- condition dropout replaces the text encoding with the encoding of `""`, which is what the pipeline uses as the
  unconditional input at inference (Tango drops to zeros in training and uses `""` at inference);
- Min-SNR weighting is `min(snr, gamma) / snr` for epsilon prediction and `min(snr, gamma) / (snr + 1)` for
  v-prediction (Tango divides by `snr` for both);
- EMA of the UNet weights is available and, when on, is what the final pipeline holds;
- trackers are whatever `--report_to` names (tensorboard by default), nothing is forced;
- every random draw of a step (noise, timesteps, condition dropout, mixup, VAE posterior sample) comes from a
  generator seeded by (seed, step, process), and crops from (seed, epoch, clip): a resumed run continues exactly
  as the uninterrupted one would have.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging as py_logging
import math
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DistributedType, ProjectConfiguration, set_seed
from diffusers import UNet2DConditionModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from model_cards.pipeline_card import CONVERSION_RECORD_NAME, TRAINING_SUMMARY_NAME, read_record, write_pipeline_card
from pipelines.cli import add_debug_argument, command_line
from pipelines.tango_clap.architectures import TANGO_UNET_SIZES
from pipelines.tango_clap.pipeline_tango_clap import TangoCLAPPipeline
from training.checkpoints import TRAINING_STATE_NAME, resolve_resume, save_checkpoint
from training.components import build_pipeline, frames_for
from training.data import AudioCaptionDataset, MixtureSampler, collate_audio_captions, parse_source
from training.front_end import TangoMelSpectrogram, mixup
from training.objective import diffusion_loss, drop_conditions, encode_audio, sample_latents, step_generator
from training.precompute_latents import LatentsDataset, collate_latents

logger = get_logger(__name__)

LOSS_LOG_NAME = "train_log.jsonl"
LORA_TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]


# ---------------------------------------------------------------------------------------------------- arguments


def parse_args(argv: list[str] | None = None, lora: bool = False) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a TangoCLAPPipeline's UNet (pretraining or fine-tuning).")
    model = parser.add_argument_group("model")
    model.add_argument(
        "--pretrained_model_name_or_path",
        required=True,
        help="TangoCLAPPipeline folder or Hub id: the frozen VAE, vocoder, text encoder and scheduler, and the UNet "
        "to fine-tune unless --unet_from_scratch.",
    )
    model.add_argument("--revision", default=None, help="Hub revision of --pretrained_model_name_or_path.")
    model.add_argument(
        "--text_encoder",
        default=None,
        help="Another text encoder (Hub id or folder of a CLAP or T5 checkpoint), e.g. laion/clap-htsat-fused for "
        "Tango-CLAP; needs --unet_from_scratch.",
    )
    model.add_argument(
        "--unet_from_scratch",
        default=None,
        choices=sorted(TANGO_UNET_SIZES),
        help="Start from a randomly initialised UNet of this size (tango = the paper's 866M) instead of the "
        "pipeline's.",
    )
    model.add_argument(
        "--unet_config", default=None, help="JSON file of UNet config overrides (with --unet_from_scratch)."
    )
    model.add_argument(
        "--prediction_type",
        default=None,
        choices=["v_prediction", "epsilon"],
        help="Change the scheduler's prediction type (only sensible from scratch); defaults to the pipeline's.",
    )

    data = parser.add_argument_group("data")
    data.add_argument(
        "--train_data",
        nargs="+",
        default=None,
        help="Data sources, each 'kind:path[?key=value&...]' with kind hf, af_audioset or manifest, e.g. "
        "'af_audioset:./af?audio_dir=/clips&weight=0.5' 'hf:/data/audiocaps?caption_column=caption'.",
    )
    data.add_argument(
        "--precomputed_latents",
        nargs="+",
        default=None,
        help="Folders written by training/precompute_latents.py, each 'path[?weight=W]'; several form a mixture "
        "drawn by weight, like --train_data sources.",
    )
    data.add_argument("--tau", type=float, default=0.45, help="AF-AudioSet CLAP threshold (sources may override).")
    data.add_argument(
        "--top_k", type=int, default=3, help="AF-AudioSet captions kept per clip (sources may override)."
    )
    data.add_argument("--audio_length_in_s", type=float, default=10.24, help="Training clip length (Tango: 10.24 s).")
    data.add_argument("--no_random_crop", action="store_true", help="Keep the start of longer clips (as Tango).")
    data.add_argument("--mixup", action="store_true", help="Tango's loudness-aware mixup, captions joined by ' and '.")
    data.add_argument("--mixup_items", type=int, default=4, help="Mixed pairs added to each batch with --mixup.")
    data.add_argument("--dataloader_num_workers", type=int, default=0)

    train = parser.add_argument_group("training")
    train.add_argument("--output_dir", required=True)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--train_batch_size", type=int, default=2, help="Per device.")
    train.add_argument("--num_train_epochs", type=int, default=1)
    train.add_argument("--max_train_steps", type=int, default=None, help="Overrides --num_train_epochs.")
    train.add_argument("--gradient_accumulation_steps", type=int, default=1)
    train.add_argument("--gradient_checkpointing", action="store_true")
    train.add_argument("--learning_rate", type=float, default=3e-5, help="Tango: 3e-5.")
    train.add_argument(
        "--scale_lr", action="store_true", help="Multiply the LR by batch size, accumulation and processes."
    )
    train.add_argument(
        "--lr_scheduler",
        default="constant",
        choices=["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"],
    )
    train.add_argument("--lr_warmup_steps", type=int, default=0)
    train.add_argument("--adam_beta1", type=float, default=0.9)
    train.add_argument("--adam_beta2", type=float, default=0.999)
    train.add_argument("--adam_weight_decay", type=float, default=1e-2)
    train.add_argument("--adam_epsilon", type=float, default=1e-8)
    train.add_argument("--max_grad_norm", type=float, default=1.0)
    train.add_argument("--snr_gamma", type=float, default=None, help="Min-SNR weighting gamma (Tango: 5).")
    train.add_argument("--noise_offset", type=float, default=0.0)
    train.add_argument("--condition_dropout", type=float, default=0.1, help="Share of captions replaced by ''.")
    train.add_argument("--use_ema", action="store_true")
    train.add_argument("--ema_decay", type=float, default=0.9999)
    train.add_argument("--mixed_precision", default=None, choices=["no", "fp16", "bf16"])
    train.add_argument("--allow_tf32", action="store_true")
    train.add_argument("--cpu", action="store_true", help="Train on the CPU even where a GPU is present.")
    train.add_argument(
        "--lora_rank",
        type=int,
        default=4 if lora else None,
        help="Train LoRA adapters of this rank on the UNet's attention instead of the whole UNet.",
    )

    ckpt = parser.add_argument_group("checkpoints and logging")
    ckpt.add_argument("--checkpointing_steps", type=int, default=500)
    ckpt.add_argument("--checkpoints_total_limit", type=int, default=None)
    ckpt.add_argument("--resume_from_checkpoint", default=None, help="A checkpoint-N folder, or 'latest'.")
    ckpt.add_argument("--report_to", default="tensorboard", help="tensorboard, wandb, all, or none.")
    ckpt.add_argument("--logging_dir", default="logs")
    ckpt.add_argument("--tracker_project_name", default="tango-af")
    ckpt.add_argument("--validation_prompts", nargs="*", default=None)
    ckpt.add_argument("--validation_steps", type=int, default=500)
    ckpt.add_argument("--validation_inference_steps", type=int, default=50)
    ckpt.add_argument("--validation_guidance_scale", type=float, default=3.0)
    ckpt.add_argument(
        "--log_weight_checksums", action="store_true", help="Log each process's weight checksum at the end."
    )
    ckpt.add_argument("--push_to_hub", action="store_true")
    ckpt.add_argument("--hub_model_id", default=None)
    ckpt.add_argument("--hub_token", default=None)
    add_debug_argument(parser)

    args = parser.parse_args(argv)
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    """One `ValueError` per rule, naming the bad value."""
    if (args.train_data is None) == (args.precomputed_latents is None):
        raise ValueError("Give exactly one of --train_data and --precomputed_latents.")
    if args.text_encoder and not args.unet_from_scratch:
        raise ValueError(
            f"--text_encoder {args.text_encoder!r} changes the UNet's cross-attention width: it needs --unet_from_scratch."
        )
    if args.unet_config and not args.unet_from_scratch:
        raise ValueError(f"--unet_config {args.unet_config!r} needs --unet_from_scratch.")
    if args.precomputed_latents and args.mixup:
        raise ValueError("--mixup mixes waveforms, which --precomputed_latents does not have.")
    if args.precomputed_latents and args.text_encoder:
        raise ValueError("--precomputed_latents holds text encodings already; --text_encoder cannot apply.")
    if args.audio_length_in_s <= 0:
        raise ValueError(f"--audio_length_in_s must be positive, got {args.audio_length_in_s}.")
    if not 0.0 <= args.condition_dropout < 1.0:
        raise ValueError(f"--condition_dropout must be in [0, 1), got {args.condition_dropout}.")
    if args.train_batch_size < 1 or args.gradient_accumulation_steps < 1:
        raise ValueError(
            f"Batch size and accumulation steps must be >= 1, got {args.train_batch_size} and "
            f"{args.gradient_accumulation_steps}."
        )
    if args.checkpointing_steps < 1:
        raise ValueError(f"--checkpointing_steps must be >= 1, got {args.checkpointing_steps}.")
    if args.checkpoints_total_limit is not None and args.checkpoints_total_limit < 1:
        raise ValueError(f"--checkpoints_total_limit must be >= 1, got {args.checkpoints_total_limit}.")
    if args.lora_rank is not None and args.lora_rank < 1:
        raise ValueError(f"--lora_rank must be >= 1, got {args.lora_rank}.")
    if args.lora_rank is not None and (args.use_ema or args.unet_from_scratch):
        raise ValueError(
            "LoRA fine-tunes a trained UNet: it cannot be combined with --use_ema or --unet_from_scratch."
        )
    if args.snr_gamma is not None and args.snr_gamma <= 0:
        raise ValueError(f"--snr_gamma must be positive, got {args.snr_gamma}.")
    if args.push_to_hub and not args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id.")
    if args.mixup_items < 1:
        raise ValueError(f"--mixup_items must be >= 1, got {args.mixup_items}.")


# ---------------------------------------------------------------------------------------------------- validation


@torch.no_grad()
def log_validation(
    pipe: TangoCLAPPipeline, args: argparse.Namespace, accelerator: Accelerator, step: int
) -> list[np.ndarray]:
    """Renders the validation prompts, writes them under `validation/step-N/` and logs audio and mels to trackers."""
    import soundfile as sf

    logger.info(f"Validation at step {step}: {len(args.validation_prompts)} prompts")
    generator = torch.Generator().manual_seed(args.seed)
    audios, mels = [], []
    for prompt in args.validation_prompts:
        latents = pipe(
            prompt,
            audio_length_in_s=args.audio_length_in_s,
            num_inference_steps=args.validation_inference_steps,
            guidance_scale=args.validation_guidance_scale,
            generator=generator,
            output_type="latent",
        ).audios
        mel = pipe.decode_latents(latents).float()
        audio = pipe.mel_to_waveform(mel)[0, : round(args.audio_length_in_s * pipe.sampling_rate)]
        audios.append(audio.cpu().numpy())
        mels.append(mel[0].cpu().numpy())
    folder = Path(args.output_dir) / "validation" / f"step-{step}"
    folder.mkdir(parents=True, exist_ok=True)
    for i, (prompt, audio) in enumerate(zip(args.validation_prompts, audios)):
        sf.write(folder / f"{i:02d}.wav", audio, pipe.sampling_rate)
    (folder / "prompts.json").write_text(json.dumps(args.validation_prompts, indent=2))
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            for i, (prompt, audio, mel) in enumerate(zip(args.validation_prompts, audios, mels)):
                tag = f"validation/{i:02d}"
                tracker.writer.add_audio(tag, audio, step, sample_rate=pipe.sampling_rate)
                image = (mel.T - mel.min()) / max(float(mel.max() - mel.min()), 1e-8)
                tracker.writer.add_image(tag + "_mel", image[::-1].copy(), step, dataformats="HW")
                tracker.writer.add_text(tag + "_prompt", prompt, step)
        elif tracker.name == "wandb":
            import wandb

            tracker.log(
                {
                    "validation": [
                        wandb.Audio(a, sample_rate=pipe.sampling_rate, caption=p)
                        for p, a in zip(args.validation_prompts, audios)
                    ]
                },
                step=step,
            )
    return audios


# ---------------------------------------------------------------------------------------------------- record


def training_record(
    args: argparse.Namespace, steps: int, data: list[dict], skipped: dict, num_processes: int
) -> dict[str, Any]:
    """
    `training_summary.json`: what this run trained on and how, with the base model's own record chained in
    (`base_training` / `base_conversion`), so a fine-tune's card can show its pretraining too.
    """
    return {
        "steps": steps,
        "skipped_clips": dict(skipped),
        "sources": [f"{d['kind']}:{d['path']}" for d in data],
        "data": data,
        "base_model": args.pretrained_model_name_or_path,
        "unet_from_scratch": args.unet_from_scratch,
        "text_encoder": args.text_encoder,
        "lora_rank": args.lora_rank,
        "batch_size": args.train_batch_size * args.gradient_accumulation_steps * num_processes,
        "learning_rate": args.learning_rate,
        "lr_scheduler": args.lr_scheduler,
        "audio_length_in_s": args.audio_length_in_s,
        "mixed_precision": args.mixed_precision,
        "ema_decay": args.ema_decay if args.use_ema else None,
        "seed": args.seed,
        "base_training": read_record(args.pretrained_model_name_or_path, TRAINING_SUMMARY_NAME),
        "base_conversion": read_record(args.pretrained_model_name_or_path, CONVERSION_RECORD_NAME),
    }


# ---------------------------------------------------------------------------------------------------- main


def train(argv: list[str] | None = None, lora: bool = False) -> None:
    """
    Runs one training (the script's whole job); errors are raised. [`main`] is the same with the command line's
    error reporting (`pipelines.cli.command_line`); code that drives training (e.g. `training.micro`) calls this.

    Args:
        argv (`list[str]`, *optional*): the command line; `sys.argv[1:]` when `None`.
        lora (`bool`, *optional*, defaults to `False`): train LoRA adapters (`train_tango_clap_lora.py`).
    """
    args = parse_args(argv, lora=lora)
    py_logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=py_logging.INFO)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(
            project_dir=args.output_dir, logging_dir=os.path.join(args.output_dir, args.logging_dir)
        ),
        cpu=args.cpu,
    )
    if args.use_ema and accelerator.distributed_type == DistributedType.FSDP:
        raise ValueError(
            "--use_ema keeps a whole copy of the weights per process: not supported with FSDP (use DDP or ZeRO-2)."
        )
    if accelerator.is_local_main_process:
        transformers.utils.logging.set_verbosity_warning()
    else:
        transformers.utils.logging.set_verbosity_error()
    set_seed(args.seed)
    if args.allow_tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)

    # 1. Model: frozen VAE, vocoder and text encoder; the UNet (or its LoRA adapters) trains.
    pipe = build_pipeline(
        args.pretrained_model_name_or_path,
        revision=args.revision,
        text_encoder=args.text_encoder,
        unet_from_scratch=args.unet_from_scratch,
        unet_config=args.unet_config,
        prediction_type=args.prediction_type,
    )
    unet = pipe.unet
    for frozen in (pipe.vae, pipe.text_encoder, pipe.vocoder):
        frozen.requires_grad_(False)
        frozen.eval()
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    pipe.vae.to(accelerator.device, dtype=weight_dtype)
    pipe.text_encoder.to(accelerator.device, dtype=weight_dtype)
    pipe.vocoder.to(accelerator.device, dtype=weight_dtype)
    if args.lora_rank:
        from peft import LoraConfig

        unet.requires_grad_(False)
        unet.add_adapter(
            LoraConfig(
                r=args.lora_rank,
                lora_alpha=args.lora_rank,
                init_lora_weights="gaussian",
                target_modules=LORA_TARGET_MODULES,
            )
        )
    unet.train()
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    ema_unet = None
    if args.use_ema:
        ema_unet = EMAModel(
            unet.parameters(), decay=args.ema_decay, model_cls=UNet2DConditionModel, model_config=unet.config
        )
        ema_unet.to(accelerator.device)
    front_end = TangoMelSpectrogram().to(accelerator.device)

    # 2. Save / load hooks: checkpoints hold diffusers folders (unet, unet_ema) or the LoRA adapter alone.
    def save_model_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            for model in models:
                unwrapped = accelerator.unwrap_model(model)
                if args.lora_rank:
                    unwrapped.save_lora_adapter(os.path.join(output_dir, "unet_lora"))
                else:
                    unwrapped.save_pretrained(os.path.join(output_dir, "unet"))
            if ema_unet is not None:
                ema_unet.save_pretrained(os.path.join(output_dir, "unet_ema"))
        weights.clear()  # the folders above replace accelerate's own model files

    def load_model_hook(models, input_dir):
        if ema_unet is not None:
            loaded = EMAModel.from_pretrained(os.path.join(input_dir, "unet_ema"), UNet2DConditionModel)
            ema_unet.load_state_dict(loaded.state_dict())
            ema_unet.to(accelerator.device)
            del loaded
        while models:
            model = accelerator.unwrap_model(models.pop())
            if args.lora_rank:
                from peft.utils import set_peft_model_state_dict
                from safetensors.torch import load_file

                state = load_file(os.path.join(input_dir, "unet_lora", "pytorch_lora_weights.safetensors"))
                state = {k.removeprefix("unet."): v for k, v in state.items()}
                set_peft_model_state_dict(model, state, adapter_name="default")
            else:
                loaded = UNet2DConditionModel.from_pretrained(input_dir, subfolder="unet")
                model.register_to_config(**loaded.config)
                model.load_state_dict(loaded.state_dict())
                del loaded

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)

    # 3. Data.
    num_samples, frames = frames_for(pipe, args.audio_length_in_s)
    if args.precomputed_latents:
        dataset = LatentsDataset(args.precomputed_latents)
        collate = collate_latents
        data_record = [
            {"kind": "precomputed", "path": path, "weight": weight}
            for path, weight in zip(dataset.paths, dataset.weights)
        ]
    else:
        specs = [parse_source(spec) for spec in args.train_data]
        dataset = AudioCaptionDataset(
            specs,
            num_samples=num_samples,
            random_crop=not args.no_random_crop,
            seed=args.seed,
            default_tau=args.tau,
            default_top_k=args.top_k,
        )
        collate = collate_audio_captions
        data_record = [
            {
                "kind": spec.kind,
                "path": spec.path,
                "weight": spec.weight,
                "tau": (args.tau if spec.tau is None else spec.tau) if spec.kind == "af_audioset" else None,
                "top_k": (args.top_k if spec.top_k is None else spec.top_k) if spec.kind == "af_audioset" else None,
            }
            for spec in specs
        ]
    sampler = MixtureSampler(dataset.source_lengths, dataset.weights, seed=args.seed)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.train_batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=args.dataloader_num_workers,
        drop_last=False,
    )

    # 4. Optimiser and schedule.
    if args.scale_lr:
        args.learning_rate *= args.gradient_accumulation_steps * args.train_batch_size * accelerator.num_processes
    trainable = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable,
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
        eps=args.adam_epsilon,
    )
    batches_per_epoch = math.ceil(len(sampler) / args.train_batch_size / accelerator.num_processes)
    updates_per_epoch = math.ceil(batches_per_epoch / args.gradient_accumulation_steps)
    if args.max_train_steps is None:
        args.max_train_steps = args.num_train_epochs * updates_per_epoch
    args.num_train_epochs = math.ceil(args.max_train_steps / updates_per_epoch)
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    unet, optimizer, loader, lr_scheduler = accelerator.prepare(unet, optimizer, loader, lr_scheduler)
    if accelerator.is_main_process:
        tracker_config = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}
        accelerator.init_trackers(args.tracker_project_name, config=tracker_config)

    # The unconditional encoding that condition dropout swaps in: the pipeline's own, from "".
    empty_hidden, empty_mask = (None, None)
    if args.precomputed_latents:
        info = dataset.info
        empty_hidden = torch.tensor(info["empty_text_hidden"], dtype=weight_dtype, device=accelerator.device)[None]
        empty_mask = torch.tensor(info["empty_text_mask"], device=accelerator.device)[None]
        if info["frames"] != frames:
            raise ValueError(
                f"{args.precomputed_latents!r} holds {info['frames']}-frame clips but --audio_length_in_s "
                f"{args.audio_length_in_s} needs {frames}."
            )
    else:
        with torch.no_grad():
            empty_hidden, empty_mask = pipe.encode_text([""], device=accelerator.device)

    # 5. Resume.
    global_step, first_epoch, skip_batches = 0, 0, 0
    skipped_total: Counter = Counter()
    resume = resolve_resume(args.output_dir, args.resume_from_checkpoint)
    if args.resume_from_checkpoint and resume is None:
        logger.info(f"No checkpoint in {args.output_dir}: starting a new run.")
    if resume is not None:
        accelerator.load_state(str(resume))
        state = json.loads((resume / TRAINING_STATE_NAME).read_text())
        global_step, first_epoch, skip_batches = state["global_step"], state["epoch"], state["batches_in_epoch"]
        skipped_total.update(state.get("skipped", {}))
        logger.info(f"Resumed from {resume} at step {global_step} (epoch {first_epoch}, batch {skip_batches}).")

    total_batch = args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    logger.info(f"***** Training: {len(dataset)} clips, {args.max_train_steps} steps, total batch {total_batch} *****")
    progress = tqdm(
        range(args.max_train_steps), initial=global_step, desc="Steps", disable=not accelerator.is_local_main_process
    )
    log_path = Path(args.output_dir) / LOSS_LOG_NAME
    scaling_factor = float(pipe.vae.config.scaling_factor)
    micro_step = 0

    # 6. The loop.
    for epoch in range(first_epoch, args.num_train_epochs):
        dataset.set_epoch(epoch)
        epoch_loader = accelerator.skip_first_batches(loader, skip_batches) if skip_batches else loader
        # accelerate re-seeds the sampler with its loader's own iteration count; a loader made to skip batches
        # starts counting at 0, so both are told the epoch.
        epoch_loader.set_epoch(epoch)
        batches_in_epoch = skip_batches
        skip_batches = 0
        accumulated_loss = 0.0
        for batch in epoch_loader:
            batches_in_epoch += 1
            skipped_total.update(batch["skipped"])
            generator = step_generator(
                args.seed, global_step * args.gradient_accumulation_steps + micro_step, accelerator.process_index
            )
            micro_step = (micro_step + 1) % args.gradient_accumulation_steps
            with accelerator.accumulate(unet):
                if args.precomputed_latents:
                    mean, logvar = (
                        batch["mean"].to(accelerator.device, weight_dtype),
                        batch["logvar"].to(accelerator.device, weight_dtype),
                    )
                    hidden, mask = (
                        batch["hidden"].to(accelerator.device, weight_dtype),
                        batch["mask"].to(accelerator.device),
                    )
                    captions = batch["captions"]
                else:
                    waveforms, captions = batch["waveforms"].to(accelerator.device), list(batch["captions"])
                    if args.mixup and len(captions) > 1:
                        mixed, mixed_captions = mixup(waveforms.cpu(), captions, args.mixup_items, generator)
                        waveforms = torch.cat([waveforms, mixed.to(waveforms.device)])
                        captions += mixed_captions
                    if not captions:  # every clip of this batch was skipped; keep the processes in step
                        waveforms = torch.zeros((1, num_samples), device=accelerator.device)
                        captions = [""]
                    mean, logvar = encode_audio(pipe, front_end, waveforms, frames)
                    with torch.no_grad():
                        hidden, mask = pipe.encode_text(captions, device=accelerator.device)
                latents = sample_latents(mean.float(), logvar.float(), scaling_factor, generator).to(weight_dtype)
                drop = torch.rand(len(captions), generator=generator) < args.condition_dropout
                hidden, mask = drop_conditions(hidden, mask, empty_hidden, empty_mask, drop)
                loss = diffusion_loss(
                    unet,
                    pipe.scheduler,
                    latents,
                    hidden.to(weight_dtype),
                    mask,
                    generator,
                    args.snr_gamma,
                    args.noise_offset,
                )
                accumulated_loss += (
                    accelerator.gather(loss.detach()[None]).mean().item() / args.gradient_accumulation_steps
                )
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(trainable, args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()

            if accelerator.sync_gradients:
                global_step += 1
                if ema_unet is not None:
                    ema_unet.step(unet.parameters())
                progress.update(1)
                logs = {
                    "loss": accumulated_loss,
                    "lr": lr_scheduler.get_last_lr()[0],
                    "skipped_clips": sum(skipped_total.values()),
                }
                progress.set_postfix(loss=f"{accumulated_loss:.4f}")
                accelerator.log(logs, step=global_step)
                if accelerator.is_main_process:
                    with open(log_path, "a", encoding="utf-8") as f:
                        f.write(json.dumps({"step": global_step, **logs}) + "\n")
                accumulated_loss = 0.0
                if global_step % args.checkpointing_steps == 0 or global_step == args.max_train_steps:
                    state = {
                        "global_step": global_step,
                        "epoch": epoch,
                        "batches_in_epoch": batches_in_epoch,
                        "skipped": dict(skipped_total),
                    }
                    if batches_in_epoch >= batches_per_epoch:
                        state.update(epoch=epoch + 1, batches_in_epoch=0)
                    save_checkpoint(accelerator, args.output_dir, global_step, state, args.checkpoints_total_limit)
                if (
                    args.validation_prompts
                    and global_step % args.validation_steps == 0
                    and accelerator.is_main_process
                ):
                    validation_pipe = pipe_with(pipe, accelerator.unwrap_model(unet))
                    with ema_weights(ema_unet, unet):
                        log_validation(validation_pipe, args, accelerator, global_step)
            if global_step >= args.max_train_steps:
                break
        if global_step >= args.max_train_steps:
            break

    # 7. The final pipeline (EMA weights when EMA is on), or the LoRA adapter alone.
    accelerator.wait_for_everyone()
    unet = accelerator.unwrap_model(unet)
    if args.log_weight_checksums:
        checksum = sum(float(p.detach().double().sum()) for p in unet.parameters())
        # One write per line: `print` writes the text and its newline apart, and two processes sharing a pipe
        # interleave them ("value=1.5WEIGHT_CHECKSUM process=1 ..."); a write this short to a pipe is atomic.
        sys.stdout.write(f"WEIGHT_CHECKSUM process={accelerator.process_index} value={checksum!r}\n")
        sys.stdout.flush()
    if skipped_total:
        logger.info(f"Skipped clips (bad or missing audio): {dict(skipped_total)}")
    if accelerator.is_main_process:
        if args.lora_rank:
            unet.save_lora_adapter(args.output_dir)
        else:
            if ema_unet is not None:
                ema_unet.copy_to(unet.parameters())
            final = pipe_with(pipe, unet)
            if weight_dtype != torch.float32:  # the frozen parts ran in half precision; save them as loaded
                final.to(torch.float32)
            final.save_pretrained(args.output_dir)
        record = training_record(args, global_step, data_record, skipped_total, accelerator.num_processes)
        (Path(args.output_dir) / TRAINING_SUMMARY_NAME).write_text(json.dumps(record, indent=2) + "\n")
        write_pipeline_card(args.output_dir, repo_id=args.hub_model_id)
        if args.push_to_hub:
            from huggingface_hub import HfApi

            from model_cards.publish import publish_model

            # The same staging as `tango-af-publish model`: the pipeline and its card, no checkpoints or logs.
            publish_model(
                args.output_dir,
                args.hub_model_id,
                api=HfApi(token=args.hub_token) if args.hub_token else None,
                commit_message=f"tango-af training: {global_step} steps",
            )
    accelerator.end_training()


def pipe_with(pipe: TangoCLAPPipeline, unet: torch.nn.Module) -> TangoCLAPPipeline:
    """The pipeline with another UNet (the unwrapped training one), sharing every other component."""
    components = {name: getattr(pipe, name) for name in ("vae", "text_encoder", "tokenizer", "scheduler", "vocoder")}
    return TangoCLAPPipeline(unet=unet, **components)


@contextlib.contextmanager
def ema_weights(ema_unet: EMAModel | None, unet: torch.nn.Module) -> Iterator[None]:
    """The EMA weights in the UNet for the duration of the block when EMA is on, then the raw weights back."""
    if ema_unet is None:
        yield
        return
    ema_unet.store(unet.parameters())
    ema_unet.copy_to(unet.parameters())
    try:
        yield
    finally:
        ema_unet.restore(unet.parameters())


main = command_line(train)


if __name__ == "__main__":
    raise SystemExit(main())
