# qimg. `make demo` runs the main job, `make test` runs everything CI runs; both set up what they
# need on a fresh Debian 12 machine (Docker engine, base image, tools) through scripts/ensure-env.sh.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
SHELL_SCRIPTS := images/*.sh scripts/*.sh .ci/run
DEMO_IMAGE := qimg/alice:demo

.PHONY: env install lint typecheck test demo bench clean

env:
	sh scripts/ensure-env.sh

# An editable install: `qimg`, pytest and mypy use the working tree right after an edit. Installed as a
# wheel, the top-level folders become qimg.builder, qimg.launcher, qimg.images (see pyproject.toml).
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(VENV)/.installed

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/shellcheck $(SHELL_SCRIPTS)

# mypy reads the tree through src/qimg, whose links mirror the package mapping (mypy_path = src).
typecheck: install
	$(BIN)/mypy -p qimg
	$(BIN)/mypy --explicit-package-bases tests bench

# The Docker and end-to-end suites run `qimg` as installed from the wheel of the tree, from outside the
# repository (tests/helpers.py; tests/packaging checks the wheel, the sdist and pipx), and the README runs
# twice: its sh blocks (tests/e2e/test_readme.py) and `make demo` on the checkout.
test: env lint typecheck
	$(BIN)/pytest
	$(MAKE) demo

# The main job on the local engine: build alice's image, check it, run it, run `id` over ssh with the
# pinned host key, and stop it (--command stops the task when the command ends). The demo's key pair
# is made once in .demo/ so that the demo never touches ~/.ssh.
demo: env install
	$(BIN)/qimg build --user alice --tag $(DEMO_IMAGE)
	$(BIN)/qimg check $(DEMO_IMAGE)
	test -f .demo/id_ed25519 || { mkdir -p .demo && ssh-keygen -q -t ed25519 -N '' -C qimg-demo -f .demo/id_ed25519; }
	$(BIN)/qimg run --local $(DEMO_IMAGE) --key .demo/id_ed25519.pub --command id

# Compiled first, as pip compiles an installed package: with PYTHONDONTWRITEBYTECODE set (as on these
# machines) an editable tree would be compiled again by every qimg process the benchmarks time.
# ROWS="rebuild run-local" runs those sections alone (see bench/run.py).
bench: env install
	$(BIN)/python -m compileall -q src/qimg builder launcher
	$(BIN)/python -m bench.run $(ROWS)

clean:
	rm -rf $(VENV) .demo build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
