# Two entry points for a fresh Linux machine with Python >= 3.10: `make demo` and `make test`.
PYTHON ?= python3
# The library accepts a torch range (setup.py, [export]); the Makefile pins the CPU wheel that
# installs offline on our machines.  Override: make test TORCH_VERSION=2.12.0
TORCH_VERSION ?= 2.13.0
# PyTriton ([serve]) needs numpy<2 and pyarrow 26 (pulled by Ray Data, [batch]) needs numpy>=2:
# the test environment holds both, so it takes the last pyarrow that runs on numpy 1.x.
COMPAT ?= "pyarrow<26"
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ccnet-installed
DEMO_OUT ?= demo_out

.PHONY: install demo test test-all plugin clean

$(STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade setuptools wheel
	$(PY) -m pip install -q --no-build-isolation -e ".[ort,export,test,serve,batch]" "torch==$(TORCH_VERSION)" $(COMPAT)
	touch $(STAMP)

install: $(STAMP)

# The main job offline on the CPU: ccnet-demo model → ONNX → ONNX Runtime → parity → overlays/video.
demo: install
	$(PY) scripts/demo.py --out $(DEMO_OUT)

# Default test suite (no GPU, no TensorRT; those tests skip with a reason).
test: install
	$(PY) -m pytest -q -rs

# Everything incl. slow tests (GPU/TensorRT tests still skip without them).
test-all: install
	$(PY) -m pytest -q -rs -m "not gpu and not tensorrt"

plugin:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j2

clean:
	rm -rf build $(DEMO_OUT)
