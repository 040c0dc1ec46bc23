# `make test` and `make demo` work on a fresh machine: they create .venv, install torch pinned
# (override with TORCH_SPEC, e.g. make demo TORCH_SPEC='torch==2.13.0' or a CUDA build's spec),
# install VQSegCore with its test extras, then run.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
DEMO_OUT ?= demo_out

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

SLICER_VENV ?= .venv-slicer
SLICER_CORE_SPEC ?= slicer-core==5.12.4.0
MRML_PYTEST_ARGS ?=
SLICER_BIN := $(SLICER_VENV)/bin
SLICER_STAMP := $(SLICER_VENV)/.installed

.PHONY: install test test-fast test-mrml demo clean

install: $(STAMP)

# torch goes in first and alone: installed before anything that depends on it, so pip never
# resolves an unpinned torch (which would pull a multi-GB CUDA build).
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test,astra]"
	$(BIN)/python -c "import torch, VQSegCore; print('installed torch', torch.__version__, 'and VQSegCore', VQSegCore.__version__)"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest Testing $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-mrml

test-fast: $(STAMP)
	$(BIN)/python -m pytest Testing -m "not slow" $(PYTEST_ARGS)

# The Slicer adapter (VQSegExtension/VQSegLib) against real MRML: Kitware's Qt-free slicer-core wheel.
# It gets its own venv because it pins its own vtk. VQSegCore comes from the checkout (its pool needs
# numpy, SimpleITK and slicerio, not torch); --confcutdir keeps Testing/conftest.py out.
$(SLICER_STAMP): Makefile
	$(PYTHON) -m venv $(SLICER_VENV)
	$(SLICER_BIN)/python -m pip install --quiet "$(SLICER_CORE_SPEC)" "numpy>=1.24" "SimpleITK>=2.3" "slicerio>=1.1" "pytest>=8"
	touch $(SLICER_STAMP)

test-mrml: $(SLICER_STAMP)
	$(SLICER_BIN)/python -m pytest Testing/mrml --confcutdir Testing/mrml $(MRML_PYTEST_ARGS)

# The whole loop on synthetic chest CT with the shipped default model: segment, add 3 corrected and a few
# uncorrected cases to a demo pool, fine-tune for DEMO_MINUTES, segment again; a before/after table and
# $(DEMO_OUT)/demo.png. The demo keeps its own model store and pool under $(DEMO_OUT)/home.
DEMO_MINUTES ?= 2.5
demo: $(STAMP)
	rm -rf $(DEMO_OUT)
	$(BIN)/vqseg demo --out $(DEMO_OUT) --minutes $(DEMO_MINUTES)

clean:
	rm -rf $(VENV) $(SLICER_VENV) $(DEMO_OUT) .pytest_cache
