"""Reference CLAP embeddings computed by the `laion_clap` package's own code, for parity checks.

Runs in the separate environment that holds `laion_clap` (see `pipelines/clap/laion_env.py`); it imports nothing
from this project. It builds `laion_clap.CLAP_Module`, either loading an original checkpoint or, with `--random`,
initialising the original architecture from a seed and saving that state dict in the original checkpoint layout
(`{"epoch", "state_dict"}` with `module.` prefixes), then reads it back through `CLAP_Module.load_ckpt`. It embeds
each clip with `get_audio_embedding_from_data` (laion_clap's int16 round trip, `repeatpad`, and the fusion or
`rand_trunc` path of clips longer than 10 s) after `np.random.seed(seed + index)`, so a caller that seeds the same
way draws the same random crops, and embeds the texts with `get_text_embedding`.

laion_clap loads `roberta-base` (model and tokenizer) and, when imported, `bert-base-uncased` and
`facebook/bart-base` tokenizers with `from_pretrained`; the working directory must hold folders of those names
(made by the caller) so that nothing is fetched. Run with `HF_HUB_OFFLINE=1`.

Usage:

```bash
python laion_reference.py --workdir DIR --inputs inputs.safetensors --texts texts.json --output out.safetensors \
    --random --fusion --amodel HTSAT-tiny --checkpoint_out DIR/random-fusion.pt
```
"""

import argparse
import json
import os

import numpy as np
import torch
from safetensors.numpy import load_file, save_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="Holds the `roberta-base` folder laion_clap loads.")
    parser.add_argument("--inputs", required=True, help="safetensors of float32 48 kHz clips `audio_0`, `audio_1`...")
    parser.add_argument("--texts", required=True, help="JSON list of texts.")
    parser.add_argument("--output", required=True, help="safetensors to write: `audio` (N, D) and `text` (M, D).")
    parser.add_argument("--fusion", action="store_true")
    parser.add_argument("--amodel", default="HTSAT-tiny")
    parser.add_argument("--checkpoint", help="An original checkpoint to load.")
    parser.add_argument("--random", action="store_true", help="Random weights from --seed instead of --checkpoint.")
    parser.add_argument("--checkpoint_out", help="With --random: where to save the original-layout checkpoint.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.random == bool(args.checkpoint):
        parser.error("give exactly one of --checkpoint and --random.")

    inputs = load_file(os.path.abspath(args.inputs))
    with open(args.texts, encoding="utf-8") as f:
        texts = json.load(f)
    output, checkpoint_out = os.path.abspath(args.output), args.checkpoint_out and os.path.abspath(args.checkpoint_out)
    checkpoint = args.checkpoint and os.path.abspath(args.checkpoint)
    os.chdir(args.workdir)

    import laion_clap  # imported here: it loads tokenizers relative to the working directory

    torch.manual_seed(args.seed)
    module = laion_clap.CLAP_Module(enable_fusion=args.fusion, amodel=args.amodel, device="cpu")
    if args.random:
        checkpoint = checkpoint_out
        weights = {"module." + k: v for k, v in module.model.state_dict().items()}
        # The released files were saved with transformers < 4.31, whose RoBERTa still stored this buffer (and
        # laion_clap's loader deletes it unconditionally).
        positions = module.model.text_branch.embeddings.position_embeddings.num_embeddings
        weights["module.text_branch.embeddings.position_ids"] = torch.arange(positions)[None]
        torch.save({"epoch": 0, "name": "random", "state_dict": weights}, checkpoint)
        with torch.no_grad():  # prove the reload below restores every weight
            for parameter in module.model.parameters():
                parameter.zero_()
    module.load_ckpt(checkpoint, verbose=False)

    audio = []
    for index in range(len(inputs)):
        np.random.seed(args.seed + index)
        clip = inputs[f"audio_{index}"].astype(np.float32)
        audio.append(module.get_audio_embedding_from_data(clip[None, :], use_tensor=False)[0])
    with torch.no_grad():
        text = module.get_text_embedding(texts, use_tensor=False)
    save_file({"audio": np.stack(audio).astype(np.float32), "text": np.asarray(text, dtype=np.float32)}, output)


if __name__ == "__main__":
    main()
