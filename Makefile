# The two commands: `make run` (the main job) and `make test`. Both set everything up
# first (scripts/setup.sh: fast when nothing is missing).
SHELL := /bin/bash
VENV := .venv
# Extra pytest arguments, e.g. `make test PYTEST_ARGS='-k doctor -x'`.
PYTEST_ARGS ?=
# Test processes (pytest-xdist): most tests wait on sandboxes, so three share two cores
# well (on 2 cores: 2 processes 462 s, 3 processes 384 s); each test file stays on one
# process (its module fixtures are built once).
TEST_WORKERS ?= 3

.PHONY: run test setup image doctor clean-sandboxes

run: setup
	$(VENV)/bin/deskdojo run

# The layers first (DESIGN.md's import arrows, [tool.importlinter] in pyproject.toml),
# then the tests (TEST_WORKERS processes), with the 15 slowest listed.
test: setup
	$(VENV)/bin/lint-imports --no-cache --no-logo
	$(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15 $(PYTEST_ARGS)

setup:
	@bash scripts/setup.sh

image: $(VENV)/bin/deskdojo
	$(VENV)/bin/deskdojo image build

doctor: $(VENV)/bin/deskdojo
	$(VENV)/bin/deskdojo doctor

$(VENV)/bin/deskdojo:
	@echo "no $(VENV) yet: run \`make setup\` first" >&2; exit 1

# Every container labelled deskdojo=1, selected by label only.
clean-sandboxes:
	@ids=$$(docker ps -aq --filter label=deskdojo=1); \
	if [ -n "$$ids" ]; then docker rm -f $$ids >/dev/null && echo "removed $$(echo $$ids | wc -w) sandbox container(s)"; \
	else echo "no sandbox containers"; fi
