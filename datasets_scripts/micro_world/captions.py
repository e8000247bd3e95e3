"""Reference captions for micro-world clips, AudioCaps-like: "A loud siren wails, then a bell rings".

Each class has several noun phrases (its synonyms), each with verbs that fit it; attributes become adjectives
(loudness, pitch) or adverbs (rhythm). Single events and pairs each have their own set of templates; a "then" pair
always names the earlier event first, a "while" pair uses simultaneity words and never sequence words.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

# class -> [(noun phrase, is a mass noun, ((verb, gerund), ...)), ...]. No noun phrase contains another class's.
_WORDS: dict[str, list[tuple[str, bool, tuple[tuple[str, str], ...]]]] = {
    "tone": [
        ("tone", False, (("sounds", "sounding"), ("plays", "playing"))),
        ("beep", False, (("sounds", "sounding"), ("rings out", "ringing out"))),
        ("sine tone", False, (("sounds", "sounding"), ("drones", "droning"))),
        ("electronic tone", False, (("plays", "playing"), ("sounds", "sounding"))),
    ],
    "chirp_up": [
        ("rising chirp", False, (("sounds", "sounding"), ("sweeps upward", "sweeping upward"))),
        ("upward sweep", False, (("plays", "playing"), ("rises", "rising"))),
        ("ascending chirp", False, (("rises", "rising"), ("sounds", "sounding"))),
    ],
    "chirp_down": [
        ("falling chirp", False, (("sounds", "sounding"), ("sweeps downward", "sweeping downward"))),
        ("downward sweep", False, (("plays", "playing"), ("drops", "dropping"))),
        ("descending chirp", False, (("drops", "dropping"), ("sounds", "sounding"))),
    ],
    "noise_burst": [
        ("burst of noise", False, (("erupts", "erupting"), ("sounds", "sounding"))),
        ("noise burst", False, (("hisses", "hissing"), ("sounds", "sounding"))),
        ("blast of static", False, (("hisses", "hissing"), ("crackles", "crackling"))),
        ("rush of white noise", False, (("sweeps past", "sweeping past"), ("hisses", "hissing"))),
    ],
    "clicks": [
        ("clock", False, (("ticks", "ticking"),)),
        ("metronome", False, (("clicks", "clicking"), ("ticks", "ticking"))),
        ("clicker", False, (("clicks", "clicking"), ("taps", "tapping"))),
        ("timer", False, (("ticks", "ticking"),)),
        ("series of clicks", False, (("sounds", "sounding"), ("plays", "playing"))),
    ],
    "siren": [
        ("siren", False, (("wails", "wailing"), ("blares", "blaring"))),
        ("emergency siren", False, (("wails", "wailing"), ("sounds", "sounding"))),
        ("police siren", False, (("blares", "blaring"), ("wails", "wailing"))),
        ("alarm siren", False, (("howls", "howling"), ("sounds", "sounding"))),
    ],
    "hum": [
        ("hum", False, (("drones on", "droning on"), ("continues", "continuing"))),
        ("electrical hum", False, (("drones", "droning"), ("whirs", "whirring"))),
        ("transformer", False, (("hums", "humming"),)),
        ("mains hum", False, (("drones", "droning"), ("persists", "persisting"))),
    ],
    "drum": [
        ("drum", False, (("beats", "beating"), ("is struck", "being struck"))),
        ("bass drum", False, (("thumps", "thumping"), ("booms", "booming"))),
        ("tom drum", False, (("is hit", "being hit"), ("beats", "beating"))),
        ("kick drum", False, (("thumps", "thumping"), ("pounds", "pounding"))),
    ],
    "bell": [
        ("bell", False, (("rings", "ringing"), ("chimes", "chiming"))),
        ("church bell", False, (("tolls", "tolling"), ("rings", "ringing"))),
        ("chime", False, (("rings", "ringing"), ("resonates", "resonating"))),
        ("gong", False, (("is struck", "being struck"), ("resonates", "resonating"))),
    ],
    "whistle": [
        ("whistle", False, (("blows", "blowing"), ("shrieks", "shrieking"))),
        ("pennywhistle", False, (("plays", "playing"), ("trills", "trilling"))),
        ("tin whistle", False, (("plays", "playing"), ("trills", "trilling"))),
        ("referee's whistle", False, (("blows", "blowing"), ("sounds", "sounding"))),
    ],
    "buzz": [
        ("buzzer", False, (("buzzes", "buzzing"), ("sounds", "sounding"))),
        ("harsh buzz", False, (("sounds", "sounding"), ("drones", "droning"))),
        ("electric buzzer", False, (("buzzes", "buzzing"), ("rasps", "rasping"))),
        ("sawtooth drone", False, (("plays", "playing"), ("grinds on", "grinding on"))),
    ],
    "rain": [
        ("rain", True, (("falls", "falling"), ("patters", "pattering"))),
        ("rainfall", True, (("patters", "pattering"), ("continues", "continuing"))),
        ("dripping water", True, (("trickles", "trickling"), ("splashes", "splashing"))),
        ("downpour", False, (("pours down", "pouring down"), ("continues", "continuing"))),
    ],
    "engine": [
        ("engine", False, (("rumbles", "rumbling"), ("runs", "running"))),
        ("car engine", False, (("rumbles", "rumbling"), ("runs", "running"))),
        ("motor", False, (("rumbles", "rumbling"), ("chugs", "chugging"))),
        ("diesel engine", False, (("chugs", "chugging"), ("runs", "running"))),
    ],
}
# The words a caption uses to name each class (any one of them names it).
SYNONYMS: dict[str, tuple[str, ...]] = {
    name: tuple(noun for noun, _, _ in entries) for name, entries in _WORDS.items()
}

_ADJECTIVES = {
    "quiet": ("quiet", "faint", "soft"),
    "loud": ("loud", "loud", "powerful"),
    "low": ("low", "low-pitched", "deep"),
    "high": ("high", "high-pitched"),
    "slow": ("slow",),
    "fast": ("fast", "rapid"),
    "steady": ("steady", "continuous"),
    "pulsing": ("pulsing", "intermittent"),
}
_ADVERBS = {
    "slow": ("slowly", "at a slow pace"),
    "fast": ("rapidly", "quickly", "fast"),
    "steady": ("steadily", "continuously"),
    "pulsing": ("in pulses", "intermittently", "on and off"),
}
# Class-specific words where the generic ones read badly.
_CLASS_ADJECTIVES = {("rain", "quiet"): ("light", "gentle"), ("rain", "loud"): ("heavy", "loud")}
_CLASS_ADVERBS = {("engine", "slow"): ("slowly", "at idle"), ("engine", "fast"): ("fast", "at high speed")}

THEN_WORDS = ("then", "followed by", "before", "after")
WHILE_WORDS = ("while", "as", "with", "at the same time", "over")

# Templates fill {np}/{NP} (noun phrase with article, capitalised for NP), {bare} (without article), {v} (verb
# phrase), {ving} (gerund phrase); pairs prefix them with a_ / b_ (a: the first event in `labels["events"]`).
SINGLE_TEMPLATES = (
    "{NP} {v}",
    "The sound of {np}",
    "{NP} is heard",
    "There is {np} {ving}",
    "You can hear {np} {ving}",
    "{Bare} {ving}",
    "A recording of {np} {ving}",
)
THEN_TEMPLATES = (
    "{a_NP} {a_v}, then {b_np} {b_v}",
    "{a_NP} {a_v}, followed by {b_np}",
    "{a_NP} {a_v} and then {b_np} {b_v}",
    "First {a_np} {a_v}, then {b_np} {b_v}",
    "{a_NP} {a_v} before {b_np} {b_v}",
    "After {a_np} {a_v}, {b_np} {b_v}",
    "{a_Bare} {a_ving} followed by {b_bare} {b_ving}",
)
WHILE_TEMPLATES = (
    "{a_NP} {a_v} while {b_np} {b_v}",
    "{a_NP} {a_v} as {b_np} {b_v} in the background",
    "{a_NP} {a_v} with {b_np} in the background",
    "{a_NP} {a_v} and {b_np} {b_v} at the same time",
    "While {b_np} {b_v}, {a_np} {a_v}",
    "{a_NP} {a_v} over the sound of {b_np}",
    "{a_Bare} {a_ving} with {b_bare} {b_ving} in the background",
)


def _choose(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _phrases(event: dict[str, Any], rng: np.random.Generator, attribute_probability: float) -> dict[str, str]:
    """The noun, verb and gerund phrases for one event, with some of its attributes worded."""
    name, attributes = event["class"], event["attributes"]
    noun, mass, verbs = _choose(rng, _WORDS[name])
    verb, gerund = _choose(rng, verbs)
    adjectives = []
    for key in ("loudness", "pitch"):
        if key in attributes and rng.random() < attribute_probability:
            value = attributes[key]
            adjectives.append(_choose(rng, _CLASS_ADJECTIVES.get((name, value), _ADJECTIVES[value])))
    rhythm_adjective = rhythm_adverb = ""
    if "rhythm" in attributes and rng.random() < attribute_probability:
        value = attributes["rhythm"]
        rhythm_adjective = _choose(rng, _ADJECTIVES[value])
        rhythm_adverb = " " + _choose(rng, _CLASS_ADVERBS.get((name, value), _ADVERBS[value]))
    # Loudness first, then the rhythm adjective (used only by templates without a verb), then pitch.
    words = adjectives[:1] + ([rhythm_adjective] if rhythm_adjective else []) + adjectives[1:]
    bare = " ".join(adjectives + [noun])
    bare_with_rhythm = " ".join(words + [noun])

    def with_article(text: str) -> str:
        if mass:
            return text
        return ("an " if text[0] in "aeiou" else "a ") + text

    return {
        "np": with_article(bare),
        "np_rhythm": with_article(bare_with_rhythm),
        "bare": bare,
        "v": verb + rhythm_adverb,
        "ving": gerund + rhythm_adverb,
    }


def _slots(prefix: str, phrases: dict[str, str], template: str) -> dict[str, str]:
    # A template that names an event without a verb ("The sound of {np}") carries its rhythm as an adjective.
    has_verb = "{" + prefix + "v}" in template or "{" + prefix + "ving}" in template
    noun_phrase = phrases["np"] if has_verb else phrases["np_rhythm"]
    return {
        prefix + "np": noun_phrase,
        prefix + "NP": noun_phrase[0].upper() + noun_phrase[1:],
        prefix + "bare": phrases["bare"],
        prefix + "Bare": phrases["bare"][0].upper() + phrases["bare"][1:],
        prefix + "v": phrases["v"],
        prefix + "ving": phrases["ving"],
    }


def caption_for(labels: dict[str, Any], rng: np.random.Generator, attribute_probability: float = 0.7) -> str:
    """
    Writes a reference caption for a clip's labels.

    Args:
        labels (`dict`):
            Ground truth as `sample_labels` returns it: one or two events and their relation.
        rng (`np.random.Generator`):
            Chooses the template, synonyms and which attributes are worded.
        attribute_probability (`float`, *optional*, defaults to 0.7):
            Probability of wording each of an event's attributes (loudness, pitch, rhythm).

    Returns:
        `str`: e.g. `"A loud siren wails, then a bell rings"` (no final full stop, as in AudioCaps).
    """
    events, relation = labels["events"], labels.get("relation")
    if len(events) == 1:
        template = _choose(rng, SINGLE_TEMPLATES)
        return template.format(**_slots("", _phrases(events[0], rng, attribute_probability), template))
    if len(events) != 2 or relation not in ("then", "while"):
        raise ValueError(f"A caption needs one event, or two with relation 'then'/'while'; got {labels}.")
    template = _choose(rng, THEN_TEMPLATES if relation == "then" else WHILE_TEMPLATES)
    slots = _slots("a_", _phrases(events[0], rng, attribute_probability), template)
    slots.update(_slots("b_", _phrases(events[1], rng, attribute_probability), template))
    text = template.format(**slots)
    return text[0].upper() + text[1:]


# Longest names first, so that "bass drum" is read as a drum before "drum" could match on its own.
_NAME_PATTERN = re.compile(
    r"\b("
    + "|".join(re.escape(name) for name in sorted((n for ns in SYNONYMS.values() for n in ns), key=len, reverse=True))
    + r")s?\b"
)
_CLASS_OF_NAME = {name: class_name for class_name, names in SYNONYMS.items() for name in names}


def classes_mentioned(caption: str) -> set[str]:
    """
    The classes a caption names, by the world's synonym table: how a caption written by a model is checked against
    a clip's ground truth.

    Args:
        caption (`str`): any text.

    Returns:
        `set[str]`: names from `CLASSES`; empty when the caption names none.
    """
    return {_CLASS_OF_NAME[match.group(1)] for match in _NAME_PATTERN.finditer(caption.lower())}
