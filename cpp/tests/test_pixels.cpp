// compute_stats against a plain one-accumulator reference: every dtype, lengths around the lane
// and block sizes, NaN and infinities anywhere (the fast float pass must fall back to masking).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "image/pixels.hpp"

namespace i2z {
namespace {

template <typename T>
Stats reference(const std::vector<T>& v) {
  double lo = INFINITY, hi = -INFINITY;
  long double sum = 0;
  std::uint64_t n = 0;
  for (T x : v) {
    if (x != x) continue;
    lo = std::min<double>(lo, x);
    hi = std::max<double>(hi, x);
    sum += x;
    ++n;
  }
  if (n == 0) return {NAN, NAN, NAN};
  return {lo, hi, static_cast<double>(sum / n)};
}

template <typename T>
void expect_stats(const std::vector<T>& v, DType t, const char* what) {
  const Stats got = compute_stats(v.data(), t, v.size());
  const Stats want = reference(v);
  SCOPED_TRACE(std::string(what) + ", n=" + std::to_string(v.size()));
  if (std::isnan(want.mean)) {
    EXPECT_TRUE(std::isnan(got.mean));
    if (std::isnan(want.min)) {
      EXPECT_TRUE(std::isnan(got.min) && std::isnan(got.max));
    }
    return;
  }
  EXPECT_EQ(got.min, want.min);
  EXPECT_EQ(got.max, want.max);
  if (std::isinf(want.mean)) EXPECT_EQ(got.mean, want.mean);
  else EXPECT_NEAR(got.mean, want.mean, 1e-9 * std::max(1.0, std::fabs(want.mean)));
}

const std::vector<std::size_t> kSizes{0, 1, 7, 8, 9, 63, 1000, 65535, 65536, 65537, 200003};

template <typename T>
void int_case(DType t) {
  std::mt19937_64 rng(42);
  for (std::size_t n : kSizes) {
    std::vector<T> v(n);
    for (auto& x : v) x = static_cast<T>(rng());
    expect_stats(v, t, "random");
    // Extremes everywhere: the 32-bit block accumulators of 8/16-bit types must not overflow.
    for (auto& x : v) x = std::numeric_limits<T>::max();
    expect_stats(v, t, "all max");
    for (auto& x : v) x = std::numeric_limits<T>::min();
    expect_stats(v, t, "all min");
  }
}

template <typename T>
void float_case(DType t) {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> g(100.0, 30.0);
  for (std::size_t n : kSizes) {
    std::vector<T> v(n);
    for (auto& x : v) x = static_cast<T>(g(rng));
    expect_stats(v, t, "finite");
    if (n == 0) continue;
    auto w = v;
    w[n / 2] = NAN;  // in the vector body
    expect_stats(w, t, "one NaN");
    w = v;
    w[n - 1] = NAN;  // in the scalar tail when n % 8 != 0
    expect_stats(w, t, "NaN last");
    w = v;
    w[0] = std::numeric_limits<T>::infinity();
    expect_stats(w, t, "+inf");
    w[n - 1] = -std::numeric_limits<T>::infinity();
    expect_stats(w, t, "+inf and -inf");
    for (auto& x : w) x = NAN;
    expect_stats(w, t, "all NaN");
  }
}

TEST(Stats, Integers) {
  int_case<std::uint8_t>(DType::u8);
  int_case<std::uint16_t>(DType::u16);
  int_case<std::uint32_t>(DType::u32);
  int_case<std::uint64_t>(DType::u64);
  int_case<std::int8_t>(DType::i8);
  int_case<std::int16_t>(DType::i16);
  int_case<std::int32_t>(DType::i32);
  int_case<std::int64_t>(DType::i64);
}

TEST(Stats, Floats) {
  float_case<float>(DType::f32);
  float_case<double>(DType::f64);
}

}  // namespace
}  // namespace i2z
