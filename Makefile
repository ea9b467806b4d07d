# The two commands of the README: `make demo` (convert the bundled examples) and `make test`
# (everything, from a fresh clone). Other targets are building blocks.
PYTHON ?= python3
JOBS ?= 2
CPP_BUILD := build/cpp

.PHONY: demo test deps install cpp-test py-test bench bench-quick clean

deps:
	bash scripts/install-deps.sh
	$(PYTHON) -m pip install -q --upgrade "scikit-build-core>=0.10" "nanobind>=2.0"

install: deps
	$(PYTHON) -m pip install -q --no-build-isolation -e '.[test]'

cpp-test: deps
	cmake -S . -B $(CPP_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DI2Z_BUILD_TESTS=ON -DI2Z_BUILD_PYTHON=OFF
	cmake --build $(CPP_BUILD) -j $(JOBS)
	ctest --test-dir $(CPP_BUILD) --output-on-failure -j $(JOBS)

py-test: install
	$(PYTHON) -m pytest -q

test: cpp-test py-test

demo: install
	rm -rf examples/out
	$(PYTHON) -m images_to_zarr.cli convert examples/data --recursive --metadata examples/data/metadata.csv --out examples/out --no-progress
	$(PYTHON) -m images_to_zarr.cli inspect examples/out/metadata.zarr
	$(PYTHON) -m images_to_zarr.cli display examples/out/metadata.zarr --num-samples 9 --save examples/out/samples.png --seed 0
	@echo "sample grid: examples/out/samples.png"

# Side-by-side benchmarks (bench/run.py; results in bench/out/, full-run table in BENCHMARKS.md).
# Installs the package first only when it is not importable; peers get their own venvs.
bench:
	@$(PYTHON) -c "import images_to_zarr._core" 2>/dev/null || $(MAKE) install
	$(PYTHON) bench/run.py

bench-quick:
	@$(PYTHON) -c "import images_to_zarr._core" 2>/dev/null || $(MAKE) install
	$(PYTHON) bench/run.py --quick

clean:
	rm -rf build examples/out
