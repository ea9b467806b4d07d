// Replays every saved fuzzer finding (cpp/fuzz/regressions/<harness>/*) and every seed
// (cpp/fuzz/corpus/<harness>/*) through the harness bodies of cpp/fuzz/targets.hpp, in the
// normal test run. Passing means: no crash, no sanitizer report (under `make test-asan`), no
// exception other than i2z::Error, no harness invariant violated, and no input raising the
// process's peak RSS by 1 GiB (the decompression bombs found by the fuzzers; libFuzzer's
// -rss_limit_mb does not exist here). Error or success both pass.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "../fuzz/targets.hpp"

namespace i2z {
namespace {

namespace fs = std::filesystem;

const fs::path kFuzzDir = fs::path(__FILE__).parent_path().parent_path() / "fuzz";

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().filename().string()[0] != '.') out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

long peak_rss_kib() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

std::vector<std::uint8_t> slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class FuzzInputs : public ::testing::TestWithParam<fuzz::NamedTarget> {};

TEST_P(FuzzInputs, RegressionsAndSeedsRunCleanly) {
  const auto& target = GetParam();
  ASSERT_TRUE(fs::is_directory(kFuzzDir / "corpus" / target.name)) << "no seed corpus for " << target.name;
  std::size_t n = 0;
  for (const char* kind : {"regressions", "corpus"}) {
    for (const auto& path : files_in(kFuzzDir / kind / target.name)) {
      SCOPED_TRACE(path.string());
      const auto data = slurp(path);
      const long before = peak_rss_kib();
      try {
        target.fn(data.data(), data.size());
      } catch (const std::exception& e) {
        ADD_FAILURE() << "escaped exception other than i2z::Error: " << e.what();
      }
      EXPECT_LT(peak_rss_kib() - before, 1L << 20) << "the input drove an allocation of about "
                                                    << (peak_rss_kib() - before) / 1024 << " MiB";
      ++n;
    }
  }
  EXPECT_GT(n, 0u);
}

INSTANTIATE_TEST_SUITE_P(Harness, FuzzInputs, ::testing::ValuesIn(fuzz::all_targets()),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace i2z
