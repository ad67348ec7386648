# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv on first use.
VENV := .venv
PY := $(VENV)/bin/python
OUT ?= runs/demo

.PHONY: setup demo test bench clean

$(VENV)/.installed: pyproject.toml .ci/setup
	bash .ci/setup

setup: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m sine_fields.demo --output $(OUT)

test: $(VENV)/.installed
	$(PY) -m pytest -q

# The quick benchmarks, then every results table in README.md and docs/ rewritten from the JSON;
# shapes, nerf, vit and lora take 15 minutes to an hour each (docs/benchmarks.md).
bench: $(VENV)/.installed
	$(PY) benchmarks/rank.py
	$(PY) benchmarks/layers.py
	$(PY) benchmarks/readme_tables.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
