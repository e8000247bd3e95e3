"""Which of the micro world's sound events does a file hold? The world's event classifier, as a command line.

The classifier is the one the micro reproduction evaluates every model with (the role PANNs plays on AudioSet):
trained on the world's ground-truth labels of real clips only, never on generated audio. The one the embedded default
model was evaluated with ships beside this module (`event_classifier/`, safetensors), so anyone can check what the
default model made:

```bash
tango-af-generate --prompt "A loud siren wails, then a bell rings" --out outputs/demo.wav
python -m training.micro.classify outputs/demo.wav outputs/demo_1.wav
# outputs/demo.wav: siren, bell
```

Each line names the classes whose probability reaches the threshold (0.5, the study's), in the world's class order,
or `(none)`. `--probabilities` adds every class's probability. Files are read at any sampling rate and resampled to
16 kHz; stereo is averaged.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from pipelines.cli import UserError, add_debug_argument, command_line

# Where the reproduction installs the classifier it evaluated the embedded default with.
SHIPPED_CLASSIFIER = Path(__file__).resolve().parent / "event_classifier"
THRESHOLD = 0.5
SAMPLING_RATE = 16000


def read_audio(path: str | os.PathLike) -> np.ndarray:
    """A file as mono float32 at 16 kHz; `UserError` naming the file when it cannot be read or holds no samples."""
    from pipelines.tango_clap.pipeline_tango_clap import resample_waveform

    try:
        audio, rate = sf.read(os.fspath(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise UserError(f"Cannot read {os.fspath(path)!r} as audio: {error}") from None
    if audio.shape[0] == 0:
        raise UserError(f"{os.fspath(path)!r} holds no samples.")
    mono = audio.mean(axis=1)
    if not np.isfinite(mono).all():
        raise UserError(f"{os.fspath(path)!r} holds non-finite samples (NaN or infinity).")
    import torch

    return resample_waveform(torch.from_numpy(mono), rate, SAMPLING_RATE).numpy()


def classify_files(
    paths: Sequence[str | os.PathLike],
    classifier: str | os.PathLike = SHIPPED_CLASSIFIER,
) -> list[dict[str, float]]:
    """
    Every class's probability for each file.

    Args:
        paths (`Sequence[str | os.PathLike]`): audio files.
        classifier (`str` or `os.PathLike`, *optional*): a `MicroEventClassifier` folder; the shipped one by default.

    Returns:
        `list[dict[str, float]]`: one `{class name: probability}` per file, in the world's class order.
    """
    from .classifier import MicroEventClassifier

    if not (Path(classifier) / "config.json").is_file():
        raise UserError(
            f"--classifier {os.fspath(classifier)!r} is not an event-classifier folder (no config.json); "
            "`python -m training.micro.reproduce --install-default` writes one."
        )
    audios = [read_audio(path) for path in paths]
    model = MicroEventClassifier.from_pretrained(classifier)
    probabilities = np.asarray(model.predict_proba(audios))
    return [dict(zip(model.classes, map(float, row))) for row in probabilities]


def heard(probabilities: dict[str, float], threshold: float = THRESHOLD) -> list[str]:
    """The classes at or above `threshold`, in the world's class order."""
    return [name for name, p in probabilities.items() if p >= threshold]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.micro.classify",
        description="Print, for each audio file, the micro world's sound events the event classifier hears in it.",
    )
    parser.add_argument("files", nargs="+", help="Audio files (any format soundfile reads).")
    parser.add_argument(
        "--classifier", default=str(SHIPPED_CLASSIFIER), help="Event-classifier folder (default: the shipped one)."
    )
    parser.add_argument("--threshold", type=float, default=THRESHOLD, help="Probability at which a class is heard.")
    parser.add_argument("--probabilities", action="store_true", help="Also print every class's probability.")
    add_debug_argument(parser)
    return parser


@command_line
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0.0 < args.threshold < 1.0:
        raise UserError(f"--threshold must be between 0 and 1, got {args.threshold}.")
    missing = [f for f in args.files if not os.path.isfile(f)]
    if missing:
        raise UserError(
            f"Not a file: {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    for path, probabilities in zip(args.files, classify_files(args.files, args.classifier)):
        names = heard(probabilities, args.threshold)
        line = f"{path}: {', '.join(names) if names else '(none)'}"
        if args.probabilities:
            line += "  [" + ", ".join(f"{name} {p:.2f}" for name, p in probabilities.items()) + "]"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
