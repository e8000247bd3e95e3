"""TangoCLAPPipeline: latent-diffusion text-to-audio with a CLAP or FLAN-T5 text encoder."""

from .pipeline_tango_clap import TangoCLAPPipeline, TangoCLAPPipelineOutput

__all__ = ["TangoCLAPPipeline", "TangoCLAPPipelineOutput"]
