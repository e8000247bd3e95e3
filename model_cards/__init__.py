"""Cards and publishing: the pipeline, AF-AudioSet and Space cards rendered from `templates/` with huggingface_hub's
card classes (`pipeline_card.py`, `dataset_card.py`, `space_card.py`), and `tango-af-publish` (`publish.py`), which
stages exactly the folder to upload and uploads it."""
