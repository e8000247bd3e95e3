"""AF-AudioSet: synthetic captions from an audio language model, scored and ranked with CLAP.

Build with `build_af_audioset` (or `tango-af-dataset build`), load any tau with `load_af_audioset` or
`load_dataset(folder_or_repo, "tau0.45")`.
"""

from .loading import AFAudioSet, AFAudioSetConfig, load_af_audioset

__all__ = ["AFAudioSet", "AFAudioSetConfig", "load_af_audioset"]
