#!/usr/bin/env python
"""LoRA fine-tuning of a `TangoCLAPPipeline`'s UNet: `train_tango_clap.py` with `--lora_rank 4` by default.

Only the LoRA adapters of the UNet's attention projections (`to_q`, `to_k`, `to_v`, `to_out.0`) train, through
peft; the output folder holds the adapter alone (`pytorch_lora_weights.safetensors`), which loads into the pipeline
it was trained from:

```py
from diffusers import DiffusionPipeline

pipe = DiffusionPipeline.from_pretrained("BASE_PIPELINE", trust_remote_code=True)
pipe.unet.load_lora_adapter(
    "ADAPTER_FOLDER_OR_REPO", prefix=None, weight_name="pytorch_lora_weights.safetensors"
)
```

```bash
accelerate launch training/train_tango_clap_lora.py --pretrained_model_name_or_path ./tango-diffusers \\
  --train_data "hf:/data/musiccaps" --output_dir ./tango-musiccaps-lora --lora_rank 8 --learning_rate 1e-4
```

Every other option is `train_tango_clap.py`'s (see `--help`).
"""

from training.train_tango_clap import main

if __name__ == "__main__":
    raise SystemExit(main(lora=True))
