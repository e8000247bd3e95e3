"""The paper's method at micro scale, on the procedural world of `datasets_scripts.micro_world`: tiny CLAP,
captioner, VAE, vocoder and evaluation classifier trainers, and the reproduction that chains them with the project's
own AF-AudioSet builder, training script and evaluation."""
