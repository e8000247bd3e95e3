"""The Space in a real browser: Debian's chromium, driven by Playwright, against the app launched on 127.0.0.1."""

import re
from pathlib import Path

import pytest

from .conftest import launched, started, wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TIMEOUT_MS = 60_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no chromium at {CHROMIUM} (Debian: apt-get install chromium)"
)


@pytest.fixture(scope="module")
def url(app, tiny_pipe):
    with launched(app.build_demo(tiny_pipe, "tiny-debug")) as local_url:
        yield local_url


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def set_slider(page, label: str, value: float) -> None:
    box = page.get_by_label(f"number input for {label}")
    box.fill(str(value))
    box.press("Enter")


def test_prompt_to_ranked_audio_players(url, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    try:
        page.goto(url, wait_until="domcontentloaded", timeout=TIMEOUT_MS)
        page.get_by_label("Prompt", exact=True).fill("A dog barks twice, then a car passes by in the rain")
        # Keep the run short on a CPU: one second, three steps, two candidates, a fixed seed.
        set_slider(page, "Duration (s)", 1)
        set_slider(page, "Denoising steps", 3)
        set_slider(page, "Candidates (ranked by CLAP)", 2)
        page.get_by_label("Random seed").uncheck()
        page.get_by_label("Seed", exact=True).fill("123")

        page.get_by_role("button", name="Generate").click()

        audio = page.locator("#candidate-audio-1 audio[src]")
        audio.wait_for(state="attached", timeout=TIMEOUT_MS)
        assert audio.get_attribute("src")
        second = page.locator("#candidate-audio-2 audio[src]")
        second.wait_for(state="attached", timeout=TIMEOUT_MS)
        # Only as many players as candidates are shown.
        assert page.locator("#candidate-audio-3").is_hidden()
        assert page.locator("#candidate-mel-1 img").first.is_visible()

        labels = [page.locator(f"#candidate-audio-{rank}").inner_text() for rank in (1, 2)]
        scores = []
        for rank, label in enumerate(labels, start=1):
            match = re.search(rf"#{rank} · CLAP (-?\d+\.\d{{3}})", label)
            assert match, label
            scores.append(float(match.group(1)))
        assert scores == sorted(scores, reverse=True)

        # The JSON viewer puts tokens on separate lines; compare without whitespace.
        settings = re.sub(r"\s+", "", page.locator("#settings-used").inner_text())
        assert '"seed":123,' in settings and '"candidates":2,' in settings, settings
        assert '"model":"tiny-debug"' in settings, settings

        screenshot = tmp_path / "space.png"
        page.screenshot(path=str(screenshot), full_page=True)
        content = screenshot.read_bytes()
        assert content.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(content) > 20_000, f"a nearly blank screenshot ({len(content)} bytes)"
    finally:
        page.close()


def test_closing_the_tab_stops_the_generation(url, browser, instrumented):
    asked = 200  # ten seconds of sleeping steps alone, were it to run to the end
    page = browser.new_page()
    try:
        page.goto(url, wait_until="domcontentloaded", timeout=TIMEOUT_MS)
        page.get_by_label("Prompt", exact=True).fill("Rain on a tin roof")
        set_slider(page, "Duration (s)", 1)
        set_slider(page, "Denoising steps", asked)
        page.get_by_role("button", name="Generate").click()
        wait_until(started(instrumented, 0), what="the generation to start")
    finally:
        page.close()
    wait_until(lambda: instrumented.calls[0]["done"], what="the generation to stop")
    assert instrumented.calls[0]["asked"] == asked
    assert instrumented.calls[0]["ran"] < asked
