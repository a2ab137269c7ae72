# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: demo test lint bench clean

# editable_mode=compat: the editable install is a path in site-packages, which mypy
# follows when it checks a user's app (setuptools' default, an import hook, it does not).
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]" --config-settings editable_mode=compat
	touch $@

demo: $(VENV)/.installed
	$(PY) examples/job_queue.py

# Two pytest workers (pytest-xdist), each with its own Ray: most tests on Ray wait on
# processes restarting, so two share two cores well. worksteal: the tests that run a
# driver of their own for a minute go first (tests/conftest.py), and a worker that is
# done takes tests from the other's end, so neither idles at the end.
test: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 --dist worksteal

# Lint and types: ruff (rules in pyproject.toml) and mypy on dotdo/, actors/ and the
# public API's types (tests/typing; see [tool.mypy] in pyproject.toml).
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check dotdo actors tests/typing
	$(VENV)/bin/mypy

# The peers (Celery, RQ, Dramatiq, Huey) come from the bench extra; the queue
# benchmark also wants redis-server (Debian: apt-get install redis-server).
bench: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) benchmarks/pipelining.py
	$(PY) benchmarks/durable_steps.py
	$(PY) benchmarks/queue_throughput.py
	$(PY) benchmarks/first_round.py
	$(PY) benchmarks/queue_features.py
	$(PY) benchmarks/scale.py
	$(PY) benchmarks/tracing_cost.py

clean:
	rm -rf $(VENV) .dotdo .pytest_cache *.egg-info
