# The commands of the project. `make demo` shows it all; `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    ?= .venv
PYTHON  := $(VENV)/bin/python
STAMP   := $(VENV)/.requirements.stamp
JARS    := build/jars/.resolved.stamp
PYTEST_ARGS ?=

.PHONY: help system-deps setup up down status schema test test-fast lint ingest viewer streaming aggregate demo demo-reset stop bench clean

system-deps: ## install the system packages the project needs (Java 17, Maven; Chromium, docker-compose for tests)
	@bash tools/install_system_deps.sh

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: $(STAMP) $(JARS) ## create the virtualenv, install Python packages, resolve the jars

$(STAMP): requirements.txt
	@test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements.txt
	$(PYTHON) -m local_stack check-versions
	@touch $@

$(JARS): local_stack/jvm/pom.xml local_stack/jvm/kafka/pom.xml local_stack/jvm/cassandra/pom.xml local_stack/jvm/spark/pom.xml
	@command -v mvn >/dev/null || { echo "Maven (mvn) is needed to resolve the jars: apt-get install maven"; exit 1; }
	@test -x $(PYTHON) || $(MAKE) $(STAMP)
	$(PYTHON) -m local_stack check-versions
	@# Resolve beside the live folder and swap, so running servers never see a half-empty one.
	rm -rf build/jars.next && mvn -B -q -f local_stack/jvm/pom.xml package -Djars.dir=$(CURDIR)/build/jars.next
	rm -rf build/jars && mv build/jars.next build/jars
	@touch $@

up: setup ## start the local Kafka and Cassandra, apply the schema, create the topic
	$(PYTHON) -m local_stack up

down: ## stop the local Kafka and Cassandra
	@if [ -x $(PYTHON) ]; then $(PYTHON) -m local_stack down; fi

status: ## show what runs and its memory
	$(PYTHON) -m local_stack status

schema: setup ## apply the CQL schema and create the topic (on the configured clusters)
	$(PYTHON) -m orderlog.schema apply

test: system-deps setup ## run every test (starts the local stack if needed, stops what it started)
	$(PYTHON) -m pytest $(PYTEST_ARGS)

test-fast: setup ## only the unit tests (no servers)
	$(PYTHON) -m pytest -m "not integration" $(PYTEST_ARGS)

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
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/test_compose.py

demo: setup ## the whole pipeline on this machine: stack, streaming, ingest, viewer, a replayed week, aggregate; prints the viewer's URL
	$(PYTHON) -m tools.demo start

demo-reset: setup ## stop the demo's processes and empty every table of the keyspace (after orders were added to the demo's dates)
	$(PYTHON) -m tools.demo reset

stop: ## stop everything `make demo` started (and Kafka and Cassandra if the demo started them)
	@if [ -x $(PYTHON) ]; then $(PYTHON) -m tools.demo stop; fi

streaming: setup ## the streaming job, Kafka -> Cassandra (flags: make streaming ARGS='--trigger "2 seconds"'); Ctrl-C stops it between batches
	./spark-submit.sh streaming $(ARGS)
