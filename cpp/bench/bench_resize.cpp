// Resize micro-benchmark on the W5 workload's inputs: uint8 RGB (HWC, as the PNG/JPEG decoders
// give them) of the five W5 shapes, each resized to 224x224 with order 1 (anti-aliasing on).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "image/resize.hpp"

namespace {

void ResizeW5(benchmark::State& state) {
  const int order = static_cast<int>(state.range(0));
  const std::uint64_t shapes[5][2] = {{200, 300}, {256, 256}, {384, 512}, {480, 640}, {300, 225}};
  std::mt19937 rng(1);
  std::vector<std::vector<std::uint8_t>> images;
  for (const auto& s : shapes) {
    std::vector<std::uint8_t> img(s[0] * s[1] * 3);
    for (auto& v : img) v = static_cast<std::uint8_t>(rng() >> 24);
    images.push_back(std::move(img));
  }
  std::vector<std::uint8_t> out;
  i2z::DType dt;
  for (auto _ : state)
    for (std::size_t i = 0; i < 5; ++i) {
      i2z::SrcImage src{images[i].data(), i2z::DType::u8, 3, shapes[i][0], shapes[i][1], false};
      i2z::resize_image(src, 224, 224, order, out, dt);
      benchmark::DoNotOptimize(out.data());
    }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * 5));
}
BENCHMARK(ResizeW5)->Arg(1)->Arg(3)->Unit(benchmark::kMillisecond);

}  // namespace
