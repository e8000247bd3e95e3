"""A small, fully procedural audio world: short labelled, captioned clips of 13 synthetic sound-event classes.

It is the stage on which the paper's whole method is reproduced at micro scale on a CPU: a tiny CLAP and a tiny
captioner are trained on its `captioned` split, AF-AudioSet is built on its `pool` split (whose captions and labels
users hide), and TangoCLAP is trained and evaluated against its `test` split. Everything is a pure function of
`(world seed, split, clip index)`:

```python
from datasets_scripts.micro_world import WorldConfig, generate_clip, write_world

clip = generate_clip(WorldConfig(seed=0), "pool", 42)   # clip.audio, clip.caption, clip.labels, clip.classes
paths = write_world(WorldConfig(seed=0), "micro_world")  # {"pool": Path, "captioned": Path, "test": Path}
```

or `python -m datasets_scripts.micro_world --root micro_world`.
"""

from .captions import (
    SINGLE_TEMPLATES,
    SYNONYMS,
    THEN_TEMPLATES,
    THEN_WORDS,
    WHILE_TEMPLATES,
    WHILE_WORDS,
    caption_for,
    classes_mentioned,
)
from .clips import (
    CLIP_SECONDS,
    MAX_PEAK,
    SAMPLING_RATE,
    SPLITS,
    LabelPolicy,
    MicroClip,
    WorldConfig,
    class_pairs,
    clip_metadata,
    combination,
    generate_clip,
    render_audio,
    sample_labels,
)
from .synthesis import CLASS_ATTRIBUTES, CLASSES, LOUDNESS_PEAKS, synthesize_event
from .writing import main, write_split, write_world

__all__ = [
    "CLASSES",
    "CLASS_ATTRIBUTES",
    "CLIP_SECONDS",
    "LOUDNESS_PEAKS",
    "MAX_PEAK",
    "SAMPLING_RATE",
    "SINGLE_TEMPLATES",
    "SPLITS",
    "SYNONYMS",
    "THEN_TEMPLATES",
    "THEN_WORDS",
    "WHILE_TEMPLATES",
    "WHILE_WORDS",
    "LabelPolicy",
    "MicroClip",
    "WorldConfig",
    "caption_for",
    "class_pairs",
    "classes_mentioned",
    "clip_metadata",
    "combination",
    "generate_clip",
    "main",
    "render_audio",
    "sample_labels",
    "synthesize_event",
    "write_split",
    "write_world",
]
