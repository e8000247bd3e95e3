"""The model card of pipeline folders: metadata valid for huggingface_hub, lineage, evaluation and licence."""

import json
import shutil

import pytest
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from model_cards.pipeline_card import (
    NON_COMMERCIAL_NOTE,
    UNSTATED_NOTE,
    describe_pipeline,
    eval_results,
    training_stages,
    write_pipeline_card,
)
from pipelines.generate import save_default_model

RESULTS = {
    "metrics": {"FD": 21.5, "FAD": 3.25, "IS": 7.5, "IS_std": 0.2, "KL": 1.75, "KL_sigmoid": 0.9, "CLAP": 0.3125},
    "protocol": {"eval_set": "audiocaps", "generation": {"num_inference_steps": 50, "guidance_scale": 3.0,
                                                         "audio_length_in_s": 10.0, "seed": 0}},
    "clips": {"generated": {"clips": 957}},
}  # fmt: skip

PRETRAINING = {
    "steps": 1000,
    "unet_from_scratch": "tango",
    "base_model": "declare-lab/tango",
    "data": [
        {"kind": "af_audioset", "path": "someone/AF-AudioSet", "tau": 0.45, "top_k": 3, "weight": 0.5},
        {"kind": "hf", "path": "/data/audiocaps", "weight": 0.5},
    ],
    "batch_size": 128,
    "learning_rate": 1e-4,
}
FINE_TUNING = {
    "steps": 40,
    "unet_from_scratch": None,
    "base_model": "someone/tango-af-pt",
    "data": [{"kind": "hf", "path": "someone/audiocaps", "weight": 1.0}],
    "batch_size": 48,
    "learning_rate": 3e-5,
    "skipped_clips": {"unreadable": 2},
    "base_training": PRETRAINING,
}


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory):
    return save_default_model(tmp_path_factory.mktemp("default") / "pipe", model="debug")


@pytest.fixture
def folder(pipeline_folder, tmp_path):
    copy = tmp_path / "pipe"
    shutil.copytree(pipeline_folder, copy)
    return copy


def test_fine_tune_card_shows_both_stages_the_evaluation_and_valid_metadata(folder):
    (folder / "training_summary.json").write_text(json.dumps(FINE_TUNING))
    write_pipeline_card(folder, repo_id="me/tango-af-ft", evaluations=[("AudioCaps test", RESULTS)])

    card = ModelCard.load(folder / "README.md")
    data = card.data
    assert data.library_name == "diffusers" and data.pipeline_tag == "text-to-audio"
    assert data.license == "other" and data.license_name == "non-commercial"
    # Hub ids only: a local path is not a dataset the Hub can link.
    assert data.datasets == ["someone/AF-AudioSet", "someone/audiocaps"]
    assert data.base_model == "someone/tango-af-pt"
    # model-index round trip through huggingface_hub's own parser.
    name, results = model_index_to_eval_results(card.data.to_dict()["model-index"])
    assert name == "tango-af-ft"
    assert {(r.metric_type, r.metric_value, r.dataset_name) for r in results} == {
        ("fd", 21.5, "AudioCaps test"), ("fad", 3.25, "AudioCaps test"), ("is", 7.5, "AudioCaps test"),
        ("kl", 1.75, "AudioCaps test"), ("clap", 0.3125, "AudioCaps test"),
    }  # fmt: skip

    text = card.text
    pretraining, fine_tuning = text.index("| pretraining |"), text.index("| fine-tuning |")
    assert pretraining < fine_tuning
    assert "af_audioset `someone/AF-AudioSet` (tau 0.45, top 3), weight 0.5" in text
    assert "| 1000 | 128 |" in text and "| 40 | 48 |" in text and "unreadable 2" in text
    assert 'DiffusionPipeline.from_pretrained("me/tango-af-ft", trust_remote_code=True' in text
    assert "957 clips; 50 steps, guidance 3.0" in text and "| CLAP score (higher is better) | 0.3125 |" in text
    assert NON_COMMERCIAL_NOTE in text and "kong2024improving" in text
    assert "### CLAP score" in text  # the shared CLAP section


def test_card_describes_the_folder_it_was_written_from(folder):
    model = describe_pipeline(folder)
    names = {row["name"]: row for row in model["components"]}
    assert names["unet"]["class_name"] == "UNet2DConditionModel" and names["unet"]["parameters"] != "-"
    assert names["scheduler"]["parameters"] == "-"
    assert model["has_clap_scorer"] and model["sampling_rate"] == 16000
    # Without CLAP parts, the card says nothing of ranking.
    index = json.loads((folder / "model_index.json").read_text())
    for key in ("clap_model", "clap_tokenizer", "clap_feature_extractor"):
        index[key] = [None, None]
        shutil.rmtree(folder / key)
    (folder / "model_index.json").write_text(json.dumps(index))
    assert not describe_pipeline(folder)["has_clap_scorer"]
    assert "ranked best first" not in write_pipeline_card(folder).text


def test_licence_follows_the_lineage_or_the_choice(folder):
    (folder / "training_summary.json").write_text(
        json.dumps({**PRETRAINING, "data": [{"kind": "hf", "path": "someone/audiocaps", "weight": 1.0}]})
    )
    card = write_pipeline_card(folder)
    assert card.data.license == "other" and card.data.license_name is None and UNSTATED_NOTE in card.text
    card = write_pipeline_card(folder, license="apache-2.0")
    assert card.data.license == "apache-2.0" and NON_COMMERCIAL_NOTE not in card.text


def test_converted_checkpoint_names_its_source(folder):
    record = {"tool": "tango-af-convert-tango", "source": "declare-lab/tango-af-ac-ft-ac"}
    (folder / "conversion.json").write_text(json.dumps(record))
    card = write_pipeline_card(folder, repo_id="me/tango-af-ac-ft-ac")
    assert card.data.base_model == "declare-lab/tango-af-ac-ft-ac"
    assert "Converted with `tango-af-convert-tango` from the released checkpoint" in card.text
    assert card.data.license_name == "non-commercial"  # a Tango-AF release
    assert "Not evaluated yet" in card.text and card.data.eval_results is None


def test_notes_go_between_the_evaluation_and_the_intended_use(folder):
    text = write_pipeline_card(folder, notes="## Where it comes from\n\n| run | score |\n| --- | ---: |\n| a | 1 |\n").text
    assert text.index("## Evaluation") < text.index("## Where it comes from") < text.index("## Intended use")
    assert "| a | 1 |" in text
    assert "## Where it comes from" not in write_pipeline_card(folder).text


def test_lora_folder_card_loads_the_adapter_onto_its_base(tmp_path):
    from safetensors.numpy import save_file
    import numpy as np

    folder = tmp_path / "lora"
    folder.mkdir()
    save_file({"a.lora_A.weight": np.zeros((4, 8), np.float32)}, str(folder / "pytorch_lora_weights.safetensors"))
    (folder / "training_summary.json").write_text(json.dumps({**FINE_TUNING, "lora_rank": 4, "base_training": None}))
    card = write_pipeline_card(folder, repo_id="me/tango-lora")
    assert 'pipe.unet.load_lora_adapter("me/tango-lora"' in card.text
    assert 'from_pretrained("someone/tango-af-pt", trust_remote_code=True)' in card.text
    assert "lora" in card.data.tags and "LoRA rank 4" in card.text and "| 32 |" in card.text


def test_eval_results_keep_the_card_metrics_in_order_and_skip_missing():
    results = eval_results({"metrics": {"CLAP": 0.25, "FD": 30.0, "IS_std": 1.0}}, "MusicCaps")
    assert [(r.metric_type, r.metric_value) for r in results] == [("fd", 30.0), ("clap", 0.25)]
    assert eval_results({"metrics": {}}, "x") == []


def test_stages_follow_the_base_chain_oldest_first():
    stages = training_stages(FINE_TUNING)
    assert [s["name"] for s in stages] == ["pretraining", "fine-tuning"]
    assert stages[0]["starts_from"].startswith("random UNet (`tango`)")
    assert training_stages(None) == []


def test_not_a_pipeline_folder_is_named(tmp_path):
    with pytest.raises(ValueError, match="no model_index.json"):
        describe_pipeline(tmp_path)
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ValueError, match="StableDiffusionPipeline"):
        describe_pipeline(tmp_path)
