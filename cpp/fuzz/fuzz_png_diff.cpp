// libFuzzer entry point; the body is fuzz_png_diff() in targets.hpp (shared with the regression test).
#include "targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  i2z::fuzz::fuzz_png_diff(data, size);
  return 0;
}
