# All set-up lives here: `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
# Users with another CUDA stack override this, e.g. TORCH_SPEC="torch==2.5.1 torchvision==0.20.1".
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
FASHION_MNIST_DIR ?= /usr/share/datasets/fashion-mnist
BIN := $(VENV)/bin
ARGS ?=
# pytest workers (pytest-xdist): one per core of the 2-core reference machine; TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2

.PHONY: install data run test test-bench lint schema tensorboard bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# Debian's dataset-fashion-mnist when apt-get is usable; otherwise torchvision downloads at first use.
data:
	@if [ -f $(FASHION_MNIST_DIR)/train-images-idx3-ubyte.gz ]; then \
		echo "Fashion-MNIST found in $(FASHION_MNIST_DIR)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	else \
		echo "Fashion-MNIST not in $(FASHION_MNIST_DIR) and apt-get unavailable: torchvision will download it to data/ at first use."; \
	fi

run: install data
	$(BIN)/python -m ssl_lightning +experiment=simclr data.fraction=0.25 $(ARGS)

test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15 -m "not bench" tests $(ARGS)

# The opt-in benchmark scripts' tiny runs (about 5 minutes of 2 cores): not part of `make test` / CI.
test-bench: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m bench tests $(ARGS)

lint: install
	$(BIN)/ruff check .

# The files generated from the settings dataclasses (the one home of every default): conf/schema/*.yaml and the key
# reference. Run after adding or changing a setting; tests/test_schema.py fails while they are stale.
schema: install
	$(BIN)/python -m ssl_lightning.config.schema_files
	$(BIN)/python -m ssl_lightning.config.key_table > docs/configuration.md

tensorboard: install
	$(BIN)/tensorboard --logdir outputs --bind_all

bench: install data
	$(BIN)/python -m benchmarks.run_all $(ARGS)

clean:
	rm -rf outputs multirun .pytest_cache
