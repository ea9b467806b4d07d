// PNG decode micro-benchmarks (issue 18): the fast path vs libpng, and the inflate libraries
// it could use (zlib, libdeflate, ISA-L) on the same IDAT streams. Inputs: the *.png files of
// $I2Z_BENCH_PNG_DIR (default bench/.data/w1_png_2000, made by `python bench/run.py
// --only W1 --prepare-only`), at most 200 of them, held in memory. Build with
// -DI2Z_BUILD_BENCH=ON; run e.g. `i2z_bench --benchmark_filter=Png --benchmark_repetitions=5`.
#include <benchmark/benchmark.h>
#include <libdeflate.h>
#include <zlib.h>
#if defined(I2Z_HAVE_ISAL)
#include <isa-l/igzip_lib.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "formats/file_io.hpp"
#include "formats/format.hpp"
#include "formats/png_fast.hpp"

namespace {

struct PngFile {
  std::string path;
  std::vector<unsigned char> data, idat;  // whole file; concatenated IDAT data
  i2z::ImageInfo info;
  std::size_t inflated = 0;  // height * (1 + row bytes)
};

std::uint32_t be32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}

const std::vector<PngFile>& files() {
  static const std::vector<PngFile> all = [] {
    const char* env = std::getenv("I2Z_BENCH_PNG_DIR");
    const std::filesystem::path dir = env ? env : "bench/.data/w1_png_2000";
    std::vector<std::string> paths;
    if (std::filesystem::is_directory(dir))
      for (const auto& e : std::filesystem::directory_iterator(dir))
        if (e.path().extension() == ".png") paths.push_back(e.path().string());
    std::sort(paths.begin(), paths.end());
    if (paths.size() > 200) paths.resize(200);
    std::vector<PngFile> out;
    for (const auto& p : paths) {
      PngFile f;
      f.path = p;
      f.data = i2z::read_whole_file(p);
      f.info = i2z::png_format().probe(p, {});
      for (std::size_t pos = 8; pos + 12 <= f.data.size();) {
        const std::uint32_t len = be32(&f.data[pos]);
        if (std::memcmp(&f.data[pos + 4], "IDAT", 4) == 0)
          f.idat.insert(f.idat.end(), f.data.begin() + pos + 8, f.data.begin() + pos + 8 + len);
        pos += 12 + len;
      }
      f.inflated = f.info.height * (1 + f.info.width * f.info.channels * i2z::dtype_size(f.info.dtype));
      out.push_back(std::move(f));
    }
    return out;
  }();
  return all;
}

template <class Fn>
void run(benchmark::State& state, Fn fn) {
  const auto& fs = files();
  if (fs.empty()) {
    state.SkipWithError("no PNG files (set I2Z_BENCH_PNG_DIR)");
    return;
  }
  std::size_t out_bytes = 0;
  for (const auto& f : fs) out_bytes = std::max<std::size_t>(out_bytes, f.inflated);
  std::vector<unsigned char> out(out_bytes);
  std::size_t bytes = 0;
  for (auto _ : state)
    for (const auto& f : fs) {
      fn(f, out.data());
      bytes += f.inflated;
    }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * fs.size()));
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
}

void PngDecodeFast(benchmark::State& state) {
  run(state, [](const PngFile& f, unsigned char* out) {
    if (!i2z::png_decode_fast(f.data.data(), f.data.size(), {}, f.info, out)) std::abort();
  });
}
void PngDecodeLibpng(benchmark::State& state) {
  run(state, [](const PngFile& f, unsigned char* out) {
    i2z::png_decode_libpng(f.data.data(), f.data.size(), {}, f.info, out);
  });
}

void PngInflateZlib(benchmark::State& state) {
  run(state, [](const PngFile& f, unsigned char* out) {
    uLongf n = f.inflated;
    if (uncompress(out, &n, f.idat.data(), f.idat.size()) != Z_OK || n != f.inflated) std::abort();
  });
}
void PngInflateLibdeflate(benchmark::State& state) {
  libdeflate_decompressor* d = libdeflate_alloc_decompressor();
  run(state, [d](const PngFile& f, unsigned char* out) {
    if (libdeflate_zlib_decompress(d, f.idat.data(), f.idat.size(), out, f.inflated, nullptr) != LIBDEFLATE_SUCCESS)
      std::abort();
  });
  libdeflate_free_decompressor(d);
}
#if defined(I2Z_HAVE_ISAL)
void PngInflateIsal(benchmark::State& state) {
  run(state, [](const PngFile& f, unsigned char* out) {
    inflate_state st;
    isal_inflate_init(&st);
    st.crc_flag = ISAL_ZLIB;  // header parsed and Adler-32 checked, as the others do
    st.next_in = const_cast<unsigned char*>(f.idat.data());
    st.avail_in = static_cast<std::uint32_t>(f.idat.size());
    st.next_out = out;
    st.avail_out = static_cast<std::uint32_t>(f.inflated);
    if (isal_inflate_stateless(&st) != ISAL_DECOMP_OK || st.total_out != f.inflated) std::abort();
  });
}
BENCHMARK(PngInflateIsal)->Unit(benchmark::kMillisecond);
#endif

BENCHMARK(PngDecodeFast)->Unit(benchmark::kMillisecond);
BENCHMARK(PngDecodeLibpng)->Unit(benchmark::kMillisecond);
BENCHMARK(PngInflateZlib)->Unit(benchmark::kMillisecond);
BENCHMARK(PngInflateLibdeflate)->Unit(benchmark::kMillisecond);

}  // namespace
