# The two commands of the README.  Both install what they need first.
.PHONY: demo test deps lint unit integration conformance system bench clean

PY := .venv/bin/python

deps:
	scripts/install-deps

demo: deps
	scripts/demo run

test: deps
	.venv/bin/ruff check .
	$(PY) -m pytest tests

lint: deps
	.venv/bin/ruff check .

unit integration conformance system: deps
	$(PY) -m pytest tests -m $@

bench: deps
	scripts/bench

clean:
	rm -rf .venv build *.egg-info .pytest_cache .demo
