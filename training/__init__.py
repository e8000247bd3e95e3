"""Training TangoCLAP: `train_tango_clap.py` (accelerate script for full fine-tuning or from-scratch pretraining;
`train_tango_clap_lora.py` for LoRA adapters), Tango's audio front end (`front_end.py`), data sources and their
weighted mixtures (`data.py`: Hugging Face datasets, AF-AudioSet filtered at load time, Tango manifests), the loss
(`objective.py`), checkpoints (`checkpoints.py`), pre-computed latents (`precompute_latents.py`), accelerate configs
(`configs/`), and the paper's method reproduced end to end at micro scale on a CPU (`micro/`)."""
