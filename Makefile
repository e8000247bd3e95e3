# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Each one installs what it needs first: Debian's ffmpeg (for torchcodec / the datasets Audio feature) and chromium
# (the Space's browser test, driven by Playwright) when running as root, then this project with its pinned Python
# stack. `make space` runs the Gradio Space locally on the embedded default model.

PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
DEMO_OUT ?= outputs/demo.wav

SPACE_DIR ?= outputs/space
# Debian packages `setup` adds when missing; `make test` adds chromium (inherited by its `setup` prerequisite).
APT_PACKAGES ?= ffmpeg
test: APT_PACKAGES = ffmpeg chromium

.PHONY: setup demo test space

setup:
	@missing=""; \
	for package in $(APT_PACKAGES); do command -v $$package >/dev/null 2>&1 || missing="$$missing $$package"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = "0" ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "warning: Debian packages missing and this is not root: run 'sudo apt-get install$$missing'"; \
		fi; \
	fi
	$(PIP) install -q -e ".[test]"

demo: setup
	HF_HUB_OFFLINE=1 $(PYTHON) -m pipelines.generate \
		--prompt "A loud siren wails, then a bell rings" \
		--seconds 2.56 --steps 10 --num-waveforms 2 --seed 0 --out $(DEMO_OUT)

test: setup
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest

# The Space as it would be uploaded (tango-af-publish space --dry-run), launched on http://127.0.0.1:7860.
space: setup
	rm -rf $(SPACE_DIR)
	HF_HUB_OFFLINE=1 $(PYTHON) -m model_cards.publish space --repo-id local/tango-af --dry-run $(SPACE_DIR)
	cd $(SPACE_DIR) && HF_HUB_OFFLINE=1 $(PYTHON) app.py --host 127.0.0.1
