"""Reference VGGish features computed by torchvggish's own code, the way audioldm_eval's FAD computes them.

Runs in the separate environment that holds torchvggish 0.2 and resampy (see `ensure_torchvggish_env` in
`pipelines/evaluation/vggish.py`); it imports nothing from this project.

audioldm_eval gets its model from `torch.hub.load("harritaylor/torchvggish", "vggish")`, which downloads the
repository and its weights. This script downloads nothing. It builds the same network from the PyPI package,
`torchvggish.torchvggish.VGG(make_layers(), postprocess=False)`: the hub's `VGGish` class subclasses the same `VGG`
(same `features` / `embeddings` modules and forward), and its `forward(x, fs)` only adds
`vggish_input.waveform_to_examples(x, fs)` in front, and the PCA postprocessor behind, which audioldm_eval turns
off (`model.postprocess = False`). `vggish_input.py`, `mel_features.py` and `vggish_params.py` are the same files in
the PyPI package and at the hub's commit (harritaylor/torchvggish@f3f9096).

With `--random`, the network gets seeded random weights (He-normal, so that activations keep their scale through
the ReLUs and different clips give clearly different embeddings), saved as a bare state dict in the layout of the
release file `vggish-10086976.pth`, and read back into a fresh network with a strict `load_state_dict` (the hub's
`VGGish` loads the release file the same way). With `--checkpoint`, an original file is loaded instead. Then, as
audioldm_eval does, the last module of `embeddings` (the final ReLU) is removed, and each clip goes through
`waveform_to_examples(clip, sr)` and the network.

Usage:

```bash
python vggish_reference.py --inputs clips.safetensors --output features.safetensors \
    --random --seed 0 --checkpoint_out random-vggish.pth
```

The inputs are float64 waveforms `audio_<i>` with their sample rates `sampling_rate_<i>` (int64, shape `(1,)`);
the outputs are `examples_<i>` (float32 `(n, 96, 64)`) and `embeddings_<i>` (float32 `(n, 128)`).
"""

import argparse
import os

import numpy as np
import torch
from safetensors.numpy import load_file, save_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", required=True, help="safetensors of `audio_<i>` and `sampling_rate_<i>`.")
    parser.add_argument("--output", required=True, help="safetensors to write `examples_<i>`, `embeddings_<i>` to.")
    parser.add_argument("--checkpoint", help="An original torchvggish state dict (e.g. vggish-10086976.pth).")
    parser.add_argument("--random", action="store_true", help="Random weights from --seed instead of --checkpoint.")
    parser.add_argument("--checkpoint_out", help="With --random: where to save the original-layout state dict.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.random == bool(args.checkpoint):
        parser.error("give exactly one of --checkpoint and --random.")
    if args.random and not args.checkpoint_out:
        parser.error("--random needs --checkpoint_out.")

    from torchvggish import torchvggish, vggish_input

    checkpoint = os.path.abspath(args.checkpoint or args.checkpoint_out)
    if args.random:
        torch.manual_seed(args.seed)
        network = torchvggish.VGG(torchvggish.make_layers(), postprocess=False)
        with torch.no_grad():
            for name, parameter in network.named_parameters():
                if name.endswith("weight"):
                    torch.nn.init.kaiming_normal_(parameter, nonlinearity="relu")
                else:
                    torch.nn.init.normal_(parameter, std=0.05)
        torch.save(network.state_dict(), checkpoint)

    model = torchvggish.VGG(torchvggish.make_layers(), postprocess=False)
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True), strict=True)
    # audioldm_eval's `use_activation=False`: every module of `embeddings` but the last (the final ReLU).
    model.embeddings = torch.nn.Sequential(*list(model.embeddings.children())[:-1])
    model.eval()

    inputs = load_file(os.path.abspath(args.inputs))
    outputs = {}
    for index in range(sum(name.startswith("audio_") for name in inputs)):
        audio = inputs[f"audio_{index}"]
        sampling_rate = int(inputs[f"sampling_rate_{index}"][0])
        examples = vggish_input.waveform_to_examples(audio, sampling_rate)
        with torch.no_grad():
            if examples.shape[0] == 0:
                # torchvggish's `x.view(x.size(0), -1)` raises on an empty batch; audioldm_eval catches that and
                # skips the clip, so a clip too short for one example contributes no embedding.
                embeddings = torch.zeros(0, 128)
            else:
                embeddings = model(examples)
        outputs[f"examples_{index}"] = examples.detach()[:, 0].numpy().astype(np.float32)
        outputs[f"embeddings_{index}"] = embeddings.numpy().astype(np.float32)
    save_file(outputs, os.path.abspath(args.output))


if __name__ == "__main__":
    main()
