# The commands of the project. `make demo` shows it all; `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# PYTHON is the interpreter the virtualenv is made with (`PYTHON=python3.11 make setup`);
# every command then runs the virtualenv's own, PY.
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
RUNTIME := $(VENV)/.runtime.stamp
DEV     := $(VENV)/.dev.stamp
JARS    := build/jars/.resolved.stamp
PYTEST_ARGS ?=
# pyspark 3.5 with our pins: numpy 1.26.4 has no wheel for 3.13, the code needs 3.11.
PYTHON_VERSIONS := 3.11 3.12

.PHONY: help system-deps setup runtime check-python up down status schema test test-fast test-cluster lint cluster-up cluster-down cluster-status cluster-env ingest viewer streaming aggregate demo demo-reset stop cluster-demo cluster-demo-stop bench clean

system-deps: ## install the system packages the project needs (Java 17, Maven; Chromium, docker-compose for tests; wrk for the benchmarks)
	@bash tools/install_system_deps.sh

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: $(DEV) $(JARS) ## create the virtualenv, install the Python packages (runtime and tests), resolve the jars

runtime: $(RUNTIME) $(JARS) ## the same with the runtime packages only (what the Docker image carries)

check-python: ## refuse a Python that pyspark 3.5 and our pins do not support, saying which do
	@python=$(if $(wildcard $(PY)),$(PY),$(PYTHON)); \
	version=$$($$python -c 'import sys; print("Python %d.%d" % sys.version_info[:2])' 2>/dev/null) || version="not found"; \
	case " $(PYTHON_VERSIONS) " in *" $${version#Python } "*) ;; *) \
	  echo "$$python: $$version; this project needs Python 3.11 or 3.12 (pyspark 3.5 and its pinned numpy): install one (Debian/Ubuntu: apt-get install python3.11-venv) and run PYTHON=python3.11 make setup$(if $(wildcard $(PY)), after rm -rf $(VENV))"; \
	  exit 1;; esac

$(PY): | check-python
	$(PYTHON) -m venv $(VENV)

$(RUNTIME): requirements.txt | $(PY) check-python
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m local_stack check-versions
	@touch $@

$(DEV): $(RUNTIME) requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	@touch $@

$(JARS): local_stack/jvm/pom.xml local_stack/jvm/kafka/pom.xml local_stack/jvm/cassandra/pom.xml local_stack/jvm/spark/pom.xml
	@command -v mvn >/dev/null || { echo "Maven (mvn) is needed to resolve the jars: apt-get install maven"; exit 1; }
	@test -x $(PY) || $(MAKE) $(RUNTIME)
	$(PY) -m local_stack check-versions
	@# Resolve beside the live folder and swap, so running servers never see a half-empty one.
	rm -rf build/jars.next && mvn -B -q -f local_stack/jvm/pom.xml package -Djars.dir=$(CURDIR)/build/jars.next
	rm -rf build/jars && mv build/jars.next build/jars
	@touch $@

up: setup ## start the local Kafka and Cassandra, apply the schema, create the topic
	$(PY) -m local_stack up

down: ## stop the local Kafka and Cassandra
	@if [ -x $(PY) ]; then $(PY) -m local_stack down; fi

status: ## show what runs and its memory
	$(PY) -m local_stack status

cluster-up: setup ## start the local cluster (3 Kafka, 3 Cassandra, Spark master + 2 workers; what is missing) and apply the schema
	$(PY) -m local_stack cluster-up

cluster-down: ## stop the local cluster
	@if [ -x $(PY) ]; then $(PY) -m local_stack cluster-down; fi

cluster-status: ## show what of the local cluster runs, and its memory
	$(PY) -m local_stack cluster-status

cluster-env: ## print the export lines that point every command at the local cluster: eval "$(make -s cluster-env)"
	@$(PY) -m local_stack cluster-env

schema: setup ## apply the CQL schema and create the topic (on the configured clusters)
	$(PY) -m orderlog.schema apply

test: system-deps setup ## run every test (starts the local stack if needed, stops what it started)
	$(PY) -m pytest $(PYTEST_ARGS)

test-cluster: setup ## the tests on the local cluster (marked cluster; starts it if needed, stops what it started)
	$(PY) -m pytest -m cluster $(PYTEST_ARGS)

test-fast: setup ## only the unit tests (no servers)
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

lint: setup ## ruff
	$(VENV)/bin/ruff check .

clean: down ## remove the virtualenv, the jars and all local data
	rm -rf $(VENV) build var

ingest: setup ## run the ingest API under gunicorn in the foreground (127.0.0.1:8080 by default)
	$(VENV)/bin/gunicorn -c ingest_api/gunicorn.conf.py 'ingest_api:create_app()'

.PHONY: browser
viewer: setup ## run the viewer (Flask + Plotly) under gunicorn in the foreground (127.0.0.1:8081 by default)
	$(VENV)/bin/gunicorn -c viewer/gunicorn.conf.py 'viewer:create_app()'

browser: ## install Debian's chromium, chromium-driver and a Japanese font for the browser tests (skipped when present)
	@if [ -x /usr/bin/chromium ]; then echo "chromium: /usr/bin/chromium already installed"; else \
	  S=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$S apt-get update && DEBIAN_FRONTEND=noninteractive $$S apt-get install -y chromium chromium-driver fonts-ipafont-gothic; fi

aggregate: setup ## nightly aggregate: make aggregate [DATE=2025-05-31 | FROM=2025-05-01 TO=2025-05-31] (default: yesterday and every earlier date with late orders)
	./spark-submit.sh aggregate $(if $(DATE),--date $(DATE)) $(if $(FROM),--from $(FROM)) $(if $(TO),--to $(TO))

.PHONY: compose-check
compose-check: setup ## validate docker-compose.yml with Debian's docker-compose (installed via apt-get if missing; no engine needed)
	@command -v docker-compose >/dev/null || { S=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$S apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$S apt-get install -y -qq docker-compose; }
	docker-compose -f docker-compose.yml config -q && echo "docker-compose.yml: valid"
	$(PY) -m pytest -q -p no:cacheprovider tests/test_compose.py

demo: setup ## the whole pipeline on this machine: stack, streaming, ingest, viewer, a replayed week, aggregate; prints the viewer's URL
	$(PY) -m tools.demo start

demo-reset: setup ## stop the demo's processes and empty every table of the keyspace (after orders were added to the demo's dates)
	$(PY) -m tools.demo reset

stop: ## stop everything `make demo` started (and Kafka and Cassandra if the demo started them)
	@if [ -x $(PY) ]; then $(PY) -m tools.demo stop; fi

cluster-demo: setup ## `make demo` on the local cluster: brings up what is missing of it, replays the week, checks the viewer against the truth
	$(PY) -m tools.demo --cluster start

cluster-demo-stop: ## stop everything `make cluster-demo` started (and the cluster if the demo started it)
	@if [ -x $(PY) ]; then $(PY) -m tools.demo --cluster stop; fi

streaming: setup ## the streaming job, Kafka -> Cassandra (flags: make streaming ARGS='--trigger "2 seconds"'); Ctrl-C stops it between batches
	./spark-submit.sh streaming $(ARGS)
