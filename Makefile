# The front door. Every target sets up what it needs: a local virtual environment (.venv) from pyproject.toml,
# the project's Jupyter kernel, and Fashion-MNIST (Debian's dataset-fashion-mnist when run as root on Debian).
#   make test              the whole test suite (math, tiny-model smoke, notebooks in the smoke profile)
#   make reproduce         every artifact at the tiny profile into results/ (incremental)
#   make reproduce-t2i     one artifact; see README for the list
#   make reproduce-t2i PROFILE=gpu   any profile of crossflow/profiles.py; results/<artifact>-<profile>/
#   make gpu-check         <= 10 min on one GPU: train, sample, evaluate at gpu-smoke on CUDA, one paper-size step
#   make verify ARTIFACT=table7   re-derive a committed artifact from nothing and compare its numbers
#   make bench             training/sampling speed vs the matrix-product peak measured in the same run
#   make lab               JupyterLab on the project's kernel
#   make demo PROMPTS="a red bag; two white sandals"   images from the committed tiny model, judged (seconds)

PYTHON ?= python3
# OpenMP threads wait passively: with the default spinning, a 2-thread job slows down several-fold whenever the other
# core is busy (make bench, Threads). Numerics do not depend on it.
export OMP_WAIT_POLICY ?= PASSIVE
PROFILE ?= tiny
CONSTRAINTS ?= constraints-cpu.txt
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist
OPENCV_DATA := /usr/share/doc/opencv-doc/examples/data

.PHONY: all venv data test test-fast test-gpu gpu-check verify reproduce reproduce-t2i reproduce-table3 reproduce-table1 reproduce-fig3 \
        reproduce-table7 reproduce-evaluators reproduce-fig4 reproduce-table8 reproduce-table10 \
        reproduce-sampler reproduce-precision reproduce-table6 reproduce-fig9 reproduce-table5 reproduce-table9 reproduce-table4 reproduce-regime demo bench lab status clean-results

all: reproduce

# (Re)install when pyproject.toml or the constraints change. pyproject declares ranges; the exact versions of the
# CPU machines (torch 2.14.1 / torchvision 0.29.1, ...) come from $(CONSTRAINTS). On a GPU machine whose torch
# is already right: make venv CONSTRAINTS=/dev/null PYTHON="python3 --system-site-packages" or see README.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[test]"
	$(PY) -m ipykernel install --sys-prefix --name crossflow --display-name "Python (crossflow)" \
	  --env OMP_WAIT_POLICY PASSIVE >/dev/null
	@touch $(STAMP)

venv: $(STAMP)

# Fashion-MNIST: the Debian package when we may install it; otherwise the code searches data.fashion_root,
# $$CROSSFLOW_FASHION_MNIST and a download, and says exactly how to get it if all fail.
data:
	@if [ ! -d $(FMNIST) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian package dataset-fashion-mnist"; \
	  (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1)) || \
	  echo "could not install dataset-fashion-mnist; see README (Data)"; \
	fi
	@if [ ! -d $(OPENCV_DATA) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian package opencv-doc (sample photographs for super-resolution)"; \
	  (apt-get install -y -q opencv-doc >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q opencv-doc >/dev/null 2>&1)) || \
	  echo "could not install opencv-doc; Tables 6, 5 and 9 need it (README: Data)"; \
	fi
	@if ! command -v java >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian package default-jre-headless (Java for pycocoevalcap's tokenizer and METEOR)"; \
	  (apt-get install -y -q default-jre-headless >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q default-jre-headless >/dev/null 2>&1)) || \
	  echo "could not install a Java runtime; caption metrics need it (README: Data)"; \
	fi
	@if [ ! -f .cache/downloads/imgaug-0.4.0-py2.py3-none-any.whl ]; then \
	  echo "fetching the imgaug 0.4.0 wheel (files only: the quokka depth map of Table 9)"; \
	  $(PY) -m pip download --no-deps --quiet imgaug==0.4.0 -d .cache/downloads || \
	  echo "could not fetch imgaug 0.4.0; Table 9 needs it (README: Data)"; \
	fi
	@$(PY) -m reproduce.weights                      # the shipped autoencoder and evaluators (weights/README.md)

test: venv data
	$(PY) -m pytest -q

test-fast: venv data
	$(PY) -m pytest -q -m "not slow"

# Re-derive one committed artifact from nothing (fresh caches and runs in a scratch folder) and compare each
# number with the committed one and the paper's, within the stated build-to-build spread (reproduce/verify.py)
ARTIFACT ?= t2i
verify: venv data
	$(PY) -m reproduce.verify $(ARTIFACT) --profile $(PROFILE) $(if $(REBUILD),--rebuild-networks)

# CUDA-only tests (skipped without a GPU), on the GPU runner
test-gpu: venv data
	CROSSFLOW_DEVICE=cuda $(PY) -m pytest -q -m gpu

# One GPU, <= 10 minutes, offline; report in results/gpu-check/. Uses whatever python has torch (GPU_PYTHON).
GPU_PYTHON ?= $(if $(wildcard $(PY)),$(PY),python3)
gpu-check:
	$(GPU_PYTHON) -m reproduce.gpu_check

reproduce: reproduce-t2i reproduce-evaluators reproduce-table7 reproduce-fig4 reproduce-table8 reproduce-table10 \
           reproduce-table3 reproduce-table1 reproduce-fig3 reproduce-sampler reproduce-precision reproduce-table6 reproduce-fig9 \
           reproduce-table5 reproduce-table9 reproduce-table4 reproduce-regime
	$(PY) -m reproduce.summary --profile $(PROFILE)

reproduce-t2i: venv data
	$(PY) -m reproduce.run t2i --profile $(PROFILE)

reproduce-evaluators: venv data
	$(PY) -m reproduce.run evaluators --profile $(PROFILE)

# reuses the tiny text-to-image run (runs/t2i-tiny) and the cached evaluators
reproduce-table7: venv data reproduce-t2i reproduce-evaluators
	$(PY) -m reproduce.run table7 --profile $(PROFILE)

# Figure 4, Figures 5/6 + Table 8, Table 10 reuse the text-to-image run and the evaluators
reproduce-fig4: venv data reproduce-t2i reproduce-evaluators
	$(PY) -m reproduce.run fig4 --profile $(PROFILE)

reproduce-table8: venv data reproduce-t2i reproduce-evaluators
	$(PY) -m reproduce.run table8 --profile $(PROFILE)

reproduce-table10: venv data reproduce-t2i
	$(PY) -m reproduce.run table10 --profile $(PROFILE)

# Table 3: 9 distinct small models x 2 seeds, trained in two one-thread workers (runs/table3-tiny, resumable)
reproduce-table3: venv data reproduce-evaluators
	$(PY) -m reproduce.run table3 --profile $(PROFILE)

# Table 1: CrossFlow and its matched baseline at the comparison size (runs/table1-tiny, resumable), cost ratio
reproduce-table1: venv data reproduce-evaluators
	$(PY) -m reproduce.run table1 --profile $(PROFILE)

# Figure 3: 5 sizes x 2 methods, same steps (runs/fig3-tiny, resumable)
reproduce-fig3: venv data reproduce-evaluators
	$(PY) -m reproduce.run fig3 --profile $(PROFILE)

# reuses the tiny text-to-image run (runs/t2i-tiny) and the cached evaluators
reproduce-sampler: venv data reproduce-t2i reproduce-evaluators
	$(PY) -m reproduce.run sampler --profile $(PROFILE)

reproduce-precision: venv data reproduce-evaluators
	$(PY) -m reproduce.run precision --profile $(PROFILE)

# Images for your prompts from the committed tiny model, with the judge's reading (no training; seconds)
PROMPTS ?=
demo: venv
	$(PY) -m reproduce.demo --prompts "$(PROMPTS)"

reproduce-table6: venv data
	$(PY) -m reproduce.run table6 --profile $(PROFILE)

reproduce-fig9: venv data reproduce-t2i reproduce-evaluators
	$(PY) -m reproduce.run fig9 --profile $(PROFILE)

reproduce-table5: venv data
	$(PY) -m reproduce.run table5 --profile $(PROFILE)

reproduce-table9: venv data reproduce-table5
	$(PY) -m reproduce.run table9 --profile $(PROFILE)

reproduce-table4: venv data reproduce-t2i
	$(PY) -m reproduce.run table4 --profile $(PROFILE)

# The regime study (issue 15): variants of the main recipe, quality against training CPU-minutes (runs/regime-tiny)
reproduce-regime: venv data
	$(PY) -m reproduce.run regime --profile $(PROFILE)

# Speed against the hardware's own peak, measured in the same run (a few minutes; results/bench/)
bench: venv
	$(PY) -m reproduce.bench

# JupyterLab on the project's kernel, no browser (prints the URL with its token), as root or not; LAB_PORT, LAB_IP
lab: venv data
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[lab]"
	$(PY) -m reproduce.lab

clean-results:
	rm -rf results/*/

# which results are current, and what changed in the others (reproduce/deps.py)
status: venv
	$(PY) -m reproduce.run status --profile $(PROFILE)
