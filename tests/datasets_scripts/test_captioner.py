"""Tests of the AF-AudioSet captioner on tiny random AF3 / Qwen2-Audio models built offline."""

import numpy as np
import pytest
import torch
from transformers import (
    LogitsProcessorList,
    Qwen2Config,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from datasets_scripts.captioner import (
    CAPTION_PROMPT,
    CAPTIONER_SAMPLING_RATE,
    DEFAULT_CAPTIONER,
    AudioCaptioner,
    GumbelSamplingProcessor,
    row_seed,
    strip_chat_scaffolding,
)
from datasets_scripts.debug_models import (
    build_debug_audio_flamingo3,
    build_debug_qwen2_audio,
)

SR = CAPTIONER_SAMPLING_RATE


def sine(freq: float, seconds: float = 10.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def noise(seed: int, seconds: float = 10.0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """One intra-op thread for this module: the tiny models gain nothing from two, and on a shared 2-core machine two
    spinning OpenMP threads made a caption call 15x slower (3 s instead of 0.2 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def af3():
    return build_debug_audio_flamingo3(seed=0)


@pytest.fixture(scope="module")
def qwen2_audio():
    return build_debug_qwen2_audio(seed=0)


@pytest.fixture(scope="module")
def captioner(af3):
    model, processor = af3
    return AudioCaptioner(model, processor, model_id="debug/af3", num_captions=3, max_new_tokens=8, seed=0)


# Clips "a" (10 s tone) and "b" (7 s noise, so its prompt is left-padded) and their captions, shared by several tests.
CLIP_A, CLIP_B = sine(440.0), noise(0, seconds=7.0)


@pytest.fixture(scope="module")
def reference(captioner):
    return captioner.caption(["a", "b"], [CLIP_A, CLIP_B])


def test_constants():
    assert CAPTION_PROMPT == "Can you briefly describe what you hear in this audio?"
    assert DEFAULT_CAPTIONER == "nvidia/audio-flamingo-3-hf"
    assert CAPTIONER_SAMPLING_RATE == 16000


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("assistant\nA dog barks.", "A dog barks."),
        ("<|im_start|>assistant\n A dog barks. <|im_end|>", "A dog barks."),
        ("Assistant: A dog barks.", "A dog barks."),
        ('  "A dog barks."  ', "A dog barks."),
        ("assistant\n'A dog barks.'<|endoftext|>", "A dog barks."),
        ("\u201cA dog barks.\u201d", "A dog barks."),
        ("An assistant speaks while a dog barks.", "An assistant speaks while a dog barks."),
        ('A dog "barks" loudly.', 'A dog "barks" loudly.'),
        ("<sound>A dog barks.", "A dog barks."),
        ("assistant\n", ""),
        ("<|im_end|>", ""),
        ("", ""),
    ],
)
def test_strip_chat_scaffolding(raw, expected):
    assert strip_chat_scaffolding(raw) == expected


def test_row_seed_is_stable_and_distinct():
    # A fixed value: the seeds define the released captions, so the hash must never change (and must not be
    # Python's per-process salted hash()).
    assert row_seed(0, "ytid_30000", 0) == row_seed(0, "ytid_30000", 0) == 5055156197751708591
    seeds = {row_seed(s, k, j) for s in (0, 1) for k in ("a", "b", "ab") for j in range(20)}
    assert len(seeds) == 2 * 3 * 20
    assert all(0 <= s < 2**63 for s in seeds)


def test_gumbel_sampler_matches_filtered_softmax():
    """Empirical token frequencies of top-k -> top-p -> Gumbel-argmax equal softmax of the filtered logits."""
    logits = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0])
    rows, steps = 50, 200
    filters = LogitsProcessorList([TopKLogitsWarper(top_k=5), TopPLogitsWarper(top_p=0.9)])
    filtered = filters(None, logits[None].clone())[0]
    expected = torch.softmax(filtered, dim=-1)
    # top_k=5 keeps tokens 0-4; top_p=0.9 then drops token 4 (p=0.058 <= 1 - 0.9): 4 tokens remain.
    assert torch.isfinite(filtered).tolist() == [True] * 4 + [False] * 4

    generators = [torch.Generator().manual_seed(row_seed(0, "dist", r)) for r in range(rows)]
    processors = LogitsProcessorList([*filters, GumbelSamplingProcessor(generators)])
    counts = torch.zeros_like(logits)
    for _ in range(steps):
        tokens = processors(None, logits.expand(rows, -1).clone()).argmax(-1)
        counts += torch.bincount(tokens, minlength=logits.numel())
    n = rows * steps
    assert counts[4:].sum() == 0, "filtered tokens must never be drawn"
    kept = expected > 0
    chi2 = (((counts[kept] - n * expected[kept]) ** 2) / (n * expected[kept])).sum().item()
    assert chi2 < 16.27, f"chi-square {chi2:.2f} >= 16.27 (df=3, p=0.001); counts={counts.tolist()}"
    np.testing.assert_allclose((counts / n).numpy(), expected.numpy(), atol=0.015)


def test_gumbel_sampler_requires_one_generator_per_row():
    processor = GumbelSamplingProcessor([torch.Generator().manual_seed(0)])
    with pytest.raises(ValueError, match="1 generators but got scores for 2 rows"):
        processor(None, torch.zeros(2, 5))


def test_prompt_and_audio_reach_the_model(captioner):
    inputs = captioner.prepare_inputs([sine(440.0)])
    ids = inputs["input_ids"][0]
    tokenizer = captioner.processor.tokenizer
    sound_id = tokenizer.convert_tokens_to_ids("<sound>")
    # A 10 s clip in a 30 s Whisper window: 1000 mel frames -> 500 after conv stride 2 -> 250 after the average pool.
    assert (ids == sound_id).sum().item() == 250
    text = tokenizer.decode(ids[ids != sound_id])
    assert CAPTION_PROMPT in text
    assert text.endswith("<|im_start|>assistant\n")
    assert "<|im_start|>user\n" in text
    # Full 30 s feature windows, exactly as the processor builds them for the released checkpoint.
    assert tuple(inputs["input_features"].shape) == (1, 80, 3000)
    assert inputs["input_features_mask"][0].sum().item() == 1000


def test_prompts_are_left_padded_to_a_fixed_length(captioner):
    full = captioner.prepare_inputs([sine(440.0)])
    short = captioner.prepare_inputs([sine(440.0, seconds=3.0)])
    assert short["input_ids"].shape == full["input_ids"].shape
    assert short["attention_mask"][0, 0] == 0 and short["attention_mask"][0, -1] == 1
    assert short["input_ids"][0, -1] == full["input_ids"][0, -1]


def test_caption_shapes_and_types(captioner, reference):
    captions = reference
    assert len(captions) == 2
    assert all(len(per_clip) == 3 for per_clip in captions)
    assert all(isinstance(c, str) for per_clip in captions for c in per_clip)
    # Different samples of the same clip differ.
    assert len(set(captions[0])) > 1
    assert captioner.caption([], []) == []


def test_caption_is_deterministic_across_runs_and_batches(captioner, reference, af3):
    a, b, c = CLIP_A, CLIP_B, sine(1000.0, amplitude=0.3)
    batch = reference
    assert captioner.caption(["b"], [b]) == [batch[1]]
    reordered = captioner.caption(["c", "b", "a"], [c, b, a])
    assert reordered[1:] == [batch[1], batch[0]]
    # A re-run, by a fresh captioner over the same weights (e.g. another worker), gives the same captions.
    model, processor = af3
    other = AudioCaptioner(model, processor, model_id="debug/af3", num_captions=3, max_new_tokens=8, seed=0)
    assert other.caption(["a", "b"], [a, b]) == batch


def test_captions_depend_on_seed_key_and_audio(captioner, reference, af3):
    a = CLIP_A
    base = reference[0]
    other_key, other_audio = captioner.caption(["other_key", "a"], [a, noise(3)])
    assert other_key != base
    assert other_audio != base
    model, processor = af3
    reseeded = AudioCaptioner(model, processor, model_id="debug/af3", num_captions=3, max_new_tokens=8, seed=1)
    assert reseeded.caption(["a"], [a])[0] != base


def test_max_new_tokens_is_respected(af3):
    model, processor = af3
    captioner = AudioCaptioner(model, processor, model_id="debug/af3", num_captions=3, max_new_tokens=3)
    ids = captioner.generate_caption_ids(["a", "b"], [sine(440.0), noise(0)])
    assert ids.shape[0] == 2 * 3
    assert ids.shape[1] <= 3
    pad_id = processor.tokenizer.pad_token_id
    assert ((ids != pad_id).sum(-1) <= 3).all()
    captions = captioner.caption(["a", "b"], [sine(440.0), noise(0)])
    # Decoding these ids is exactly what caption() returns.
    decoded = [strip_chat_scaffolding(t) for t in processor.tokenizer.batch_decode(ids, skip_special_tokens=True)]
    assert [c for per_clip in captions for c in per_clip] == decoded


def test_empty_captions_are_kept(captioner, monkeypatch):
    tokenizer = captioner.processor.tokenizer
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad = tokenizer.pad_token_id
    scaffolding = tokenizer("assistant\n", add_special_tokens=False)["input_ids"]
    caption = tokenizer(" A dog barks.", add_special_tokens=False)["input_ids"]
    width = max(len(scaffolding), len(caption)) + 1
    rows = [[im_end], scaffolding + [im_end], caption + [im_end]] * 2
    ids = torch.tensor([row + [pad] * (width - len(row)) for row in rows])
    monkeypatch.setattr(captioner, "generate_caption_ids", lambda keys, audios: ids)
    assert captioner.caption(["a", "b"], [sine(440.0), noise(0)]) == [["", "", "A dog barks."]] * 2


def test_audio_longer_than_one_window(captioner, reference):
    # 31 s -> two AF3 windows for the first clip, one for the second: features must stay aligned with their rows
    # after the expansion to num_captions (a misalignment fails the model's <sound> count check).
    captions = captioner.caption(["long", "a"], [noise(1, seconds=31.0), CLIP_A])
    assert [len(c) for c in captions] == [3, 3]
    assert captions[1] == reference[0]


def test_invalid_inputs(captioner):
    with pytest.raises(ValueError, match="must match 1:1"):
        captioner.caption(["a", "b"], [sine(440.0)])
    with pytest.raises(ValueError, match="mono"):
        captioner.caption(["a"], [np.zeros((2, SR), dtype=np.float32)])


def test_qwen2_audio_captioner(qwen2_audio):
    model, processor = qwen2_audio
    captioner = AudioCaptioner(model, processor, model_id="debug/qwen2-audio", num_captions=3, max_new_tokens=6)
    inputs = captioner.prepare_inputs([sine(440.0)])
    ids = inputs["input_ids"][0]
    audio_id = processor.tokenizer.convert_tokens_to_ids("<|AUDIO|>")
    assert (ids == audio_id).sum().item() == 250
    text = processor.tokenizer.decode(ids[ids != audio_id])
    assert "Audio 1: <|audio_bos|><|audio_eos|>\n" + CAPTION_PROMPT in text

    a, b = sine(440.0), noise(0, seconds=5.0)
    batch = captioner.caption(["a", "b"], [a, b])
    assert [len(c) for c in batch] == [3, 3]
    assert captioner.caption(["b"], [b]) == [batch[1]]
    assert captioner.caption(["b", "a"], [b, a]) == [batch[1], batch[0]]


@pytest.mark.parametrize("builder", [build_debug_audio_flamingo3, build_debug_qwen2_audio])
def test_save_and_load_round_trip(builder, tmp_path):
    model, processor = builder(seed=0)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)

    loaded = AudioCaptioner.from_pretrained(str(tmp_path), num_captions=2, max_new_tokens=5, seed=7)
    assert loaded.model_id == str(tmp_path)
    assert type(loaded.model) is type(model)
    assert type(loaded.processor) is type(processor)
    assert (loaded.num_captions, loaded.max_new_tokens, loaded.seed) == (2, 5, 7)

    in_memory = AudioCaptioner(model, processor, model_id="in-memory", num_captions=2, max_new_tokens=5, seed=7)
    audios = [sine(440.0), noise(0)]
    assert loaded.caption(["a", "b"], audios) == in_memory.caption(["a", "b"], audios)


def test_unknown_model_type_raises(tmp_path):
    Qwen2Config(
        vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2
    ).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"Unsupported captioner model type 'qwen2'"):
        AudioCaptioner.from_pretrained(str(tmp_path))
