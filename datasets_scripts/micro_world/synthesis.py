"""The micro world's sound events: one small numpy synthesis function per class.

Every function takes the event's categorical attributes, its length in samples, a generator and the sampling rate,
and returns a float64 waveform of exactly that length with peak 1 (the caller scales it to the loudness attribute's
peak). Hidden parameters (the exact frequency, the hit interval, ...) are drawn from the generator inside the range
that the attribute names, so two "high" tones differ but both are high. The classes are built to differ in spectrum
or in temporal structure (pure / harmonic / inharmonic / noisy; steady / swept / pulsed / decaying), so that a tiny
model can tell them apart from a few hundred clips.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

PITCHES = ("low", "high")
TEMPI = ("slow", "fast")
PULSES = ("steady", "pulsing")
LOUDNESSES = ("quiet", "loud")

# The attributes each class has, and their values. Every class has a loudness; pitch and rhythm only where they apply.
CLASS_ATTRIBUTES: dict[str, dict[str, tuple[str, ...]]] = {
    "tone": {"pitch": PITCHES},
    "chirp_up": {"pitch": PITCHES},
    "chirp_down": {"pitch": PITCHES},
    "noise_burst": {"pitch": PITCHES, "rhythm": PULSES},
    "clicks": {"rhythm": TEMPI},
    "siren": {"pitch": PITCHES, "rhythm": TEMPI},
    "hum": {"pitch": PITCHES},
    "drum": {"pitch": PITCHES, "rhythm": TEMPI},
    "bell": {"pitch": PITCHES},
    "whistle": {"pitch": PITCHES},
    "buzz": {"pitch": PITCHES, "rhythm": PULSES},
    "rain": {},
    "engine": {"rhythm": TEMPI},
}
for _attributes in CLASS_ATTRIBUTES.values():
    _attributes["loudness"] = LOUDNESSES
CLASSES: tuple[str, ...] = tuple(CLASS_ATTRIBUTES)

# Peak amplitude range of one event for each loudness value (the event alone, before the noise floor is added).
LOUDNESS_PEAKS: dict[str, tuple[float, float]] = {"quiet": (0.08, 0.12), "loud": (0.4, 0.55)}

_Synth = Callable[[dict[str, str], int, np.random.Generator, int], np.ndarray]


def _pick(rng: np.random.Generator, ranges: dict[str, tuple[float, float]], key: str) -> float:
    low, high = ranges[key]
    return float(rng.uniform(low, high))


def _time(n: int, sr: int) -> np.ndarray:
    return np.arange(n) / sr


def _band_noise(n: int, low_hz: float, high_hz: float, rng: np.random.Generator, sr: int) -> np.ndarray:
    """White noise with everything outside `[low_hz, high_hz]` removed in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0.0
    return np.fft.irfft(spectrum, n)


def _ramp(n: int, attack: int, release: int) -> np.ndarray:
    """A gain of 1 with linear attack and release ramps (in samples), which avoid clicks at the event's edges."""
    gain = np.ones(n)
    attack, release = min(attack, n // 2), min(release, n // 2)
    if attack:
        gain[:attack] = np.linspace(0.0, 1.0, attack, endpoint=False)
    if release:
        gain[n - release :] = np.linspace(1.0, 0.0, release)
    return gain


def _place_hits(n: int, kernel: np.ndarray, onsets: np.ndarray) -> np.ndarray:
    """Adds `kernel` at each onset (in samples), truncated at the end."""
    out = np.zeros(n)
    for onset in onsets:
        length = min(len(kernel), n - onset)
        out[onset : onset + length] += kernel[:length]
    return out


def _onsets(n: int, interval_s: float, jitter_s: float, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Regular onsets every `interval_s`, each jittered by up to `jitter_s`; the first lands just after the 10 ms
    fade-in, so that the event sounds from its labelled start."""
    base = np.arange(0.012, n / sr, interval_s)
    jitter = rng.uniform(-jitter_s, jitter_s, size=base.shape)
    jitter[0] = 0.0
    return np.clip(((base + jitter) * sr).astype(int), 0, n - 1)


def _exp_sweep_phase(f_start: float, f_end: float, n: int, sr: int) -> np.ndarray:
    duration = n / sr
    k = np.log(f_end / f_start) / duration
    t = _time(n, sr)
    return 2 * np.pi * f_start * (np.exp(k * t) - 1.0) / k


def tone(attrs, n, rng, sr):
    f = _pick(rng, {"low": (250.0, 400.0), "high": (900.0, 1300.0)}, attrs["pitch"])
    return np.sin(2 * np.pi * f * _time(n, sr) + rng.uniform(0, 2 * np.pi))


def _chirp(attrs, n, rng, sr, rising: bool):
    # Four-fold exponential sweep; "low" spans about 200-900 Hz, "high" about 800-3800 Hz.
    f_low = _pick(rng, {"low": (200.0, 240.0), "high": (800.0, 950.0)}, attrs["pitch"])
    f_start, f_end = (f_low, 4 * f_low) if rising else (4 * f_low, f_low)
    return np.sin(_exp_sweep_phase(f_start, f_end, n, sr))


def chirp_up(attrs, n, rng, sr):
    return _chirp(attrs, n, rng, sr, rising=True)


def chirp_down(attrs, n, rng, sr):
    return _chirp(attrs, n, rng, sr, rising=False)


def noise_burst(attrs, n, rng, sr):
    low, high = {"low": (300.0, 900.0), "high": (2500.0, 6000.0)}[attrs["pitch"]]
    noise = _band_noise(n, low * rng.uniform(0.9, 1.1), high * rng.uniform(0.9, 1.1), rng, sr)
    if attrs["rhythm"] == "steady":
        # One burst: fast attack, a sustained middle, an exponential decay over its last third.
        t = np.linspace(0.0, 1.0, n)
        gain = np.where(t < 2 / 3, 1.0, np.exp(-(t - 2 / 3) * 12))
    else:
        # Short bursts of 80-120 ms, about four per second.
        period = rng.uniform(0.22, 0.28)
        gain = ((_time(n, sr) % period) < rng.uniform(0.08, 0.12)).astype(float)
    return noise * gain


def clicks(attrs, n, rng, sr):
    rate = _pick(rng, {"slow": (2.5, 4.0), "fast": (10.0, 14.0)}, attrs["rhythm"])
    k = np.arange(int(0.004 * sr))
    kernel = rng.standard_normal(len(k)) * np.exp(-k / (0.0006 * sr))
    kernel = kernel - np.convolve(kernel, np.ones(4) / 4, mode="same")  # high-pass: a sharp, bright click
    return _place_hits(n, kernel, _onsets(n, 1.0 / rate, 0.05 / rate, rng, sr))


def siren(attrs, n, rng, sr):
    base = _pick(rng, {"low": (450.0, 600.0), "high": (900.0, 1200.0)}, attrs["pitch"])
    rate = _pick(rng, {"slow": (0.8, 1.3), "fast": (3.0, 4.0)}, attrs["rhythm"])
    t = _time(n, sr)
    if rng.random() < 0.5:  # wailing: a sinusoidal sweep between base and 1.6 x base
        freq = base * (1.3 + 0.3 * np.sin(2 * np.pi * rate * t - np.pi / 2))
    else:  # two-tone: alternates between base and 4/3 x base
        freq = base * np.where((t * rate * 2) % 2 < 1, 1.0, 4.0 / 3.0)
    phase = 2 * np.pi * np.cumsum(freq) / sr
    return np.sin(phase) + 0.7 * np.sin(2 * phase) + 0.5 * np.sin(3 * phase) + 0.3 * np.sin(4 * phase)


def hum(attrs, n, rng, sr):
    f0 = _pick(rng, {"low": (50.0, 65.0), "high": (100.0, 130.0)}, attrs["pitch"])
    t = _time(n, sr)
    harmonics = np.arange(1, 11)[:, None]
    wave = (np.sin(2 * np.pi * f0 * harmonics * t + rng.uniform(0, 2 * np.pi, (10, 1))) / harmonics**1.5).sum(0)
    return wave * (1.0 + 0.1 * np.sin(2 * np.pi * 0.5 * t))


def drum(attrs, n, rng, sr):
    f0 = _pick(rng, {"low": (60.0, 90.0), "high": (160.0, 240.0)}, attrs["pitch"])
    interval = _pick(rng, {"slow": (0.45, 0.55), "fast": (0.2, 0.25)}, attrs["rhythm"])
    k = _time(int(min(interval, 0.35) * sr), sr)
    freq = f0 * (1.0 + np.exp(-k / 0.03))  # the pitch drops from 2 x f0 to f0
    body = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-k / 0.12)
    transient = rng.standard_normal(len(k)) * np.exp(-k / 0.004) * 0.5
    return _place_hits(n, body + transient, _onsets(n, interval, 0.01, rng, sr))


def bell(attrs, n, rng, sr):
    f = _pick(rng, {"low": (350.0, 500.0), "high": (900.0, 1300.0)}, attrs["pitch"])
    interval = rng.uniform(0.9, 1.3)
    k = _time(int(interval * sr), sr)
    ratios = np.array([1.0, 2.32, 4.25, 6.63])[:, None]  # inharmonic partials
    amps = np.array([1.0, 0.8, 0.6, 0.4])[:, None]
    decays = np.array([0.4, 0.3, 0.2, 0.12])[:, None]
    kernel = (amps * np.sin(2 * np.pi * f * ratios * k) * np.exp(-k / decays)).sum(0)
    kernel[: int(0.002 * sr)] *= np.linspace(0, 1, int(0.002 * sr))
    return _place_hits(n, kernel, _onsets(n, interval, 0.0, rng, sr))


def whistle(attrs, n, rng, sr):
    f = _pick(rng, {"low": (1600.0, 2000.0), "high": (2600.0, 3200.0)}, attrs["pitch"])
    t = _time(n, sr)
    freq = f * (1.0 + 0.025 * np.sin(2 * np.pi * rng.uniform(5.0, 7.0) * t))
    breath = _band_noise(n, 0.8 * f, 1.2 * f, rng, sr)
    return np.sin(2 * np.pi * np.cumsum(freq) / sr) + 0.3 * breath / (np.abs(breath).max() + 1e-12)


def buzz(attrs, n, rng, sr):
    f = _pick(rng, {"low": (140.0, 190.0), "high": (330.0, 430.0)}, attrs["pitch"])
    t = _time(n, sr)
    wave = 2.0 * ((f * t + rng.random()) % 1.0) - 1.0  # sawtooth: every harmonic, falling as 1/k
    if attrs["rhythm"] == "pulsing":
        wave *= (t * rng.uniform(4.0, 6.0)) % 1.0 < 0.5
    return wave


def rain(attrs, n, rng, sr):
    # A dense patter: a tilted noise bed (more energy low than high) under 40-80 droplets per second.
    bed = _band_noise(n, 300.0, 6000.0, rng, sr)
    spectrum = np.fft.rfft(bed)
    spectrum /= np.sqrt(np.maximum(np.fft.rfftfreq(n, 1.0 / sr), 300.0) / 300.0)
    bed = np.fft.irfft(spectrum, n)
    bed *= 0.5 / (np.abs(bed).max() + 1e-12)
    drops = np.zeros(n)
    num_drops = rng.poisson(rng.uniform(40.0, 80.0) * n / sr)
    k = _time(int(0.03 * sr), sr)
    for onset, f, amp in zip(
        rng.integers(0, n, num_drops), rng.uniform(1500.0, 4500.0, num_drops), rng.uniform(0.2, 1.0, num_drops)
    ):
        length = min(len(k), n - onset)
        drops[onset : onset + length] += amp * np.sin(2 * np.pi * f * k[:length]) * np.exp(-k[:length] / 0.008)
    return bed + drops


def engine(attrs, n, rng, sr):
    pulse_rate = _pick(rng, {"slow": (9.0, 12.0), "fast": (18.0, 24.0)}, attrs["rhythm"])
    t = _time(n, sr)
    f0 = rng.uniform(30.0, 45.0)
    harmonics = np.arange(1, 7)[:, None]
    tonal = (np.sin(2 * np.pi * f0 * harmonics * t) / harmonics).sum(0)
    rumble = _band_noise(n, 20.0, 300.0, rng, sr)
    rumble *= 2.0 / (np.abs(rumble).max() + 1e-12)
    pulses = np.abs(np.sin(np.pi * pulse_rate * t)) ** 4
    return (tonal + rumble) * (0.5 + 0.5 * pulses)


SYNTHS: dict[str, _Synth] = {name: globals()[name] for name in CLASSES}


def synthesize_event(
    class_name: str, attributes: dict[str, str], num_samples: int, rng: np.random.Generator, sampling_rate: int
) -> np.ndarray:
    """
    Synthesises one event, faded in and out over 10 ms, with peak exactly 1.

    Args:
        class_name (`str`):
            One of `CLASSES`.
        attributes (`dict[str, str]`):
            The event's attributes, with a value for each of `CLASS_ATTRIBUTES[class_name]` except loudness.
        num_samples (`int`):
            Length of the event.
        rng (`np.random.Generator`):
            Source of the hidden parameters (exact frequencies, onsets, noise).
        sampling_rate (`int`):
            Samples per second.

    Returns:
        `np.ndarray`: float64 waveform of `num_samples` samples, peak 1 (all zeros only if `num_samples` is tiny).
    """
    if class_name not in SYNTHS:
        raise ValueError(f"Unknown class {class_name!r}; known: {', '.join(CLASSES)}.")
    for key, values in CLASS_ATTRIBUTES[class_name].items():
        if key != "loudness" and attributes.get(key) not in values:
            raise ValueError(f"{class_name} needs {key} in {values}, got {attributes.get(key)!r}.")
    wave = SYNTHS[class_name](attributes, num_samples, rng, sampling_rate)
    fade = int(0.01 * sampling_rate)
    wave = wave * _ramp(num_samples, fade, fade)
    peak = np.abs(wave).max() if num_samples else 0.0
    return wave / peak if peak > 0 else wave
