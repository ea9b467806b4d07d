# The two commands of the README: `make demo` (convert the bundled examples) and `make test`
# (everything, from a fresh clone). Other targets are building blocks.
PYTHON ?= python3
JOBS ?= 2

.PHONY: demo test deps install cpp-test py-test bench bench-quick clean fuzz test-asan

deps:
	bash scripts/install-deps.sh
	$(PYTHON) -m pip install -q --upgrade "scikit-build-core>=0.10" "nanobind>=2.0"

# The extension's CMake build also builds the GoogleTest binary (one compile of the engine);
# cpp-test runs it from that build folder.
install: deps
	$(PYTHON) -m pip install -q --no-build-isolation -Ccmake.define.I2Z_BUILD_TESTS=ON -e '.[test]'

cpp-test: install
	ctest --test-dir $$(ls -d build/cp3*/ | head -n 1) --output-on-failure -j $(JOBS)

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

# Hardening (FUZZING.md). Neither target is part of `make test`.
# fuzz: clang + libFuzzer harnesses of cpp/fuzz/, each run FUZZ_SECONDS (one after the other).
# test-asan: the GoogleTest suite under ASan + UBSan, then the pytest suite (ASAN_PYTESTS) against an
# ASan build of the extension (loaded with LD_PRELOAD of libasan; leak checks off for Python).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= png jpeg tiff fits shard zarr_json
FUZZ_BUILD := build/fuzz
ASAN_BUILD := build/asan
ASAN_PY_BUILD := build/asan-py
ASAN_PYTESTS ?= tests

fuzz:
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -G Ninja -DI2Z_BUILD_FUZZ=ON -DI2Z_BUILD_PYTHON=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(FUZZ_BUILD) -j $(JOBS)
	cpp/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DI2Z_SANITIZE=ON -DI2Z_BUILD_TESTS=ON -DI2Z_BUILD_PYTHON=OFF
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS)
	cpp/fuzz/asan_pytest.sh $(ASAN_PY_BUILD) $(ASAN_PYTESTS)

clean:
	rm -rf build examples/out
