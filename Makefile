# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Each one installs what it needs first: Debian's ffmpeg (for torchcodec / the datasets Audio feature) when
# running as root, then this project with its pinned Python stack.

PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
DEMO_OUT ?= outputs/demo.wav

.PHONY: setup demo test

setup:
	@if ! command -v ffmpeg >/dev/null 2>&1; then \
		if [ "$$(id -u)" = "0" ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null; \
		else \
			echo "warning: Debian's ffmpeg is missing and this is not root: run 'sudo apt-get install ffmpeg'"; \
		fi; \
	fi
	$(PIP) install -q -e ".[test]"

demo: setup
	HF_HUB_OFFLINE=1 $(PYTHON) -m pipelines.generate --model debug \
		--prompt "A dog barks twice, then a car passes by in the rain" \
		--seconds 5 --steps 25 --num-waveforms 2 --seed 0 --out $(DEMO_OUT)

test: setup
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest
