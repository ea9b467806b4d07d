#include "image/dispatch.hpp"
#include "image/pixels.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

namespace i2z {

namespace {

// std::nearbyint in the default rounding mode (half to even), inline: without SSE4.1 the
// compiler calls libm for it, once per pixel. Below 2^52 adding and removing 2^52 leaves the
// nearest integer (ties to even); from 2^52 on every double is already an integer.
inline double round_half_even(double v) {
  constexpr double k = 4503599627370496.0;  // 2^52
  if (!(std::fabs(v) < k)) return v;
  return v >= 0 ? (v + k) - k : (v - k) + k;
}

template <typename D, typename S>
inline D convert(S v) {
  if constexpr (std::is_same_v<D, S>) {
    return v;
  } else if constexpr (std::is_floating_point_v<D>) {
    return static_cast<D>(v);
  } else if constexpr (std::is_floating_point_v<S>) {
    if (std::isnan(v)) return D{0};
    const double r = round_half_even(static_cast<double>(v));
    if (r <= static_cast<double>(std::numeric_limits<D>::min())) return std::numeric_limits<D>::min();
    // max() of 64-bit types is not exactly representable; >= catches the rounded-up value.
    if (r >= static_cast<double>(std::numeric_limits<D>::max())) return std::numeric_limits<D>::max();
    return static_cast<D>(r);
  } else {
    using W = std::conditional_t<std::is_signed_v<S> || std::is_signed_v<D>, std::int64_t, std::uint64_t>;
    if constexpr (std::is_signed_v<S> && !std::is_signed_v<D>) {
      if (v < 0) return D{0};
      if (static_cast<std::uint64_t>(v) > std::numeric_limits<D>::max()) return std::numeric_limits<D>::max();
      return static_cast<D>(v);
    } else if constexpr (!std::is_signed_v<S> && std::is_signed_v<D>) {
      if (static_cast<std::uint64_t>(v) > static_cast<std::uint64_t>(std::numeric_limits<D>::max()))
        return std::numeric_limits<D>::max();
      return static_cast<D>(v);
    } else {
      const W w = static_cast<W>(v);
      if (w < static_cast<W>(std::numeric_limits<D>::min())) return std::numeric_limits<D>::min();
      if (w > static_cast<W>(std::numeric_limits<D>::max())) return std::numeric_limits<D>::max();
      return static_cast<D>(v);
    }
  }
}


template <typename D>
D alpha_max() {
  if constexpr (std::is_floating_point_v<D>) return D{1};
  else return std::numeric_limits<D>::max();
}

template <typename D, typename S>
void normalise_typed(const SrcImage& src, D* dst, std::uint32_t C, std::uint64_t H, std::uint64_t W) {
  const S* s = static_cast<const S*>(src.data);
  const std::uint64_t h = std::min(src.height, H), w = std::min(src.width, W);
  const std::uint32_t c = src.channels;
  const bool replicate = c == 1 && (C == 3 || C == 4);
  const std::uint64_t plane = H * W;
  if (h < H || w < W) std::memset(dst, 0, sizeof(D) * plane * C);
  for (std::uint32_t k = 0; k < C; ++k) {
    D* out = dst + k * plane;
    const bool from_src = replicate ? k < 3 : k < c;
    if (!from_src) {
      const D fillv = (replicate && k == 3) ? alpha_max<D>() : D{0};
      for (std::uint64_t y = 0; y < h; ++y) std::fill(out + y * W, out + y * W + w, fillv);
      continue;
    }
    const std::uint32_t sk = replicate ? 0 : k;
    for (std::uint64_t y = 0; y < h; ++y) {
      D* row = out + y * W;
      if (src.chw || c == 1) {
        const S* in = s + (static_cast<std::uint64_t>(sk) * src.height + y) * src.width;
        if constexpr (std::is_same_v<D, S>) {
          std::memcpy(row, in, w * sizeof(D));
        } else {
          for (std::uint64_t x = 0; x < w; ++x) row[x] = convert<D>(in[x]);
        }
      } else {
        const S* in = s + y * src.width * c + sk;
        for (std::uint64_t x = 0; x < w; ++x) row[x] = convert<D>(in[x * c]);
      }
    }
  }
}

}  // namespace

void normalise_into(const SrcImage& src, void* dst, DType dst_dtype, std::uint32_t C, std::uint64_t H,
                    std::uint64_t W) {
  dispatch_dtype(dst_dtype, [&](auto d) {
    using D = decltype(d);
    dispatch_dtype(src.dtype, [&](auto s) {
      using S = decltype(s);
      normalise_typed<D, S>(src, static_cast<D*>(dst), C, H, W);
    });
  });
}

void cast_values(const void* src, DType src_dtype, void* dst, DType dst_dtype, std::uint64_t n) {
  if (src_dtype == dst_dtype) {
    std::memcpy(dst, src, n * dtype_size(src_dtype));
    return;
  }
  dispatch_dtype(dst_dtype, [&](auto d) {
    using D = decltype(d);
    dispatch_dtype(src_dtype, [&](auto s) {
      using S = decltype(s);
      const S* in = static_cast<const S*>(src);
      D* out = static_cast<D*>(dst);
      for (std::uint64_t i = 0; i < n; ++i) out[i] = convert<D>(in[i]);
    });
  });
}

namespace {

// Float statistics in 16 fixed lanes, written with vector types because the compiler does not
// vectorise the lane loop by itself (it must not reassociate one sum). Each lane sums its own
// values in order, so the result is the same on every instruction set; 4 double accumulators
// keep the adds from waiting on each other. NaN fails every comparison, so it drops out of
// min/max by itself. With kMask the NaNs are also kept out of the sum and the count.
// These vectors never cross a non-inlined call, so GCC's note that a 32-byte vector argument
// has another ABI without AVX does not apply (it is reported at the end of the file, hence no pop).
#pragma GCC diagnostic ignored "-Wpsabi"
using F4 = float __attribute__((vector_size(16)));
using D4 = double __attribute__((vector_size(32)));
using I4 = std::int64_t __attribute__((vector_size(32)));
using M4 = std::int32_t __attribute__((vector_size(16)));
template <typename T>
struct Lanes;
template <>
struct Lanes<float> {
  using V = F4;  // 4 values
  using M = M4;  // their comparison mask
  [[gnu::always_inline]] static D4 widen(F4 v) { return __builtin_convertvector(v, D4); }
};
template <>
struct Lanes<double> {
  using V = D4;
  using M = I4;
  [[gnu::always_inline]] static D4 widen(D4 v) { return v; }
};

template <typename V, typename M>
[[gnu::always_inline]] inline V select(M m, V a, V b) {  // m ? a : b, lane by lane
  return reinterpret_cast<V>((reinterpret_cast<M>(a) & m) | (reinterpret_cast<M>(b) & ~m));
}

template <typename T, bool kMask>
[[gnu::always_inline]] inline Stats float_stats_pass(const T* p, std::uint64_t n) {
  using V = typename Lanes<T>::V;
  using M = typename Lanes<T>::M;
  constexpr std::uint64_t K = 4, L = 4 * K;
  D4 sum[K] = {};
  I4 count[K] = {};
  V lo[K], hi[K];
  for (std::uint64_t k = 0; k < K; ++k) {
    lo[k] = V{} + std::numeric_limits<T>::infinity();
    hi[k] = V{} - std::numeric_limits<T>::infinity();
  }
  const std::uint64_t body = n / L * L;
  for (std::uint64_t i = 0; i < body; i += L)
    for (std::uint64_t k = 0; k < K; ++k) {
      V v;
      std::memcpy(&v, p + i + 4 * k, sizeof v);
      const D4 d = Lanes<T>::widen(v);
      if constexpr (kMask) {
        const I4 ok = d == d;
        sum[k] += reinterpret_cast<D4>(reinterpret_cast<I4>(d) & ok);
        count[k] -= ok;  // true is -1
      } else {
        sum[k] += d;
      }
      lo[k] = select<V, M>(v < lo[k], v, lo[k]);
      hi[k] = select<V, M>(v > hi[k], v, hi[k]);
    }
  double total = 0, mn = INFINITY, mx = -INFINITY;
  std::uint64_t cnt = kMask ? 0 : body;
  for (std::uint64_t k = 0; k < K; ++k)
    for (int j = 0; j < 4; ++j) {
      total += sum[k][j];
      cnt += static_cast<std::uint64_t>(count[k][j]);
      mn = lo[k][j] < mn ? lo[k][j] : mn;
      mx = hi[k][j] > mx ? hi[k][j] : mx;
    }
  for (std::uint64_t i = body; i < n; ++i) {
    const T v = p[i];
    if (v != v) continue;
    total += v;
    ++cnt;
    mn = v < mn ? v : mn;
    mx = v > mx ? v : mx;
  }
  if (cnt == 0) return {NAN, NAN, NAN};
  return {mn, mx, total / static_cast<double>(cnt)};
}

// Images rarely hold NaN: sum without masking, and only when a NaN (or inf - inf) shows up in
// the sum redo the pass with masking. Without NaN both passes give identical bits.
template <typename T>
[[gnu::always_inline]] inline Stats float_stats(const T* p, std::uint64_t n) {
  const Stats s = float_stats_pass<T, false>(p, n);
  if (!std::isnan(s.mean)) return s;
  return float_stats_pass<T, true>(p, n);
}

// Integer statistics: exact sums, in blocks small enough for a 32-bit accumulator on 8/16-bit
// types (2^16 values of at most 2^16), which vectorises far better than a 64-bit one.
template <typename T>
[[gnu::always_inline]] inline Stats int_stats(const T* p, std::uint64_t n) {
  if (n == 0) return {NAN, NAN, NAN};
  using Acc = std::conditional_t<(sizeof(T) <= 2), std::conditional_t<std::is_signed_v<T>, std::int32_t, std::uint32_t>,
                                 std::conditional_t<std::is_signed_v<T>, std::int64_t, std::uint64_t>>;
  T lo = p[0], hi = p[0];
  double sum = 0;
  constexpr std::uint64_t kBlock = 1 << 16;
  for (std::uint64_t b = 0; b < n; b += kBlock) {
    const std::uint64_t e = n - b < kBlock ? n : b + kBlock;
    Acc acc = 0;
    T blo = p[b], bhi = p[b];
    for (std::uint64_t i = b; i < e; ++i) {
      blo = p[i] < blo ? p[i] : blo;
      bhi = p[i] > bhi ? p[i] : bhi;
      if constexpr (sizeof(T) < 8) acc += static_cast<Acc>(p[i]);
      else sum += static_cast<double>(p[i]);
    }
    lo = blo < lo ? blo : lo;
    hi = bhi > hi ? bhi : hi;
    if constexpr (sizeof(T) < 8) sum += static_cast<double>(acc);
  }
  return {static_cast<double>(lo), static_cast<double>(hi), sum / static_cast<double>(n)};
}

// The kernels are built twice, for baseline x86-64 and for AVX2 (picked at load time): SSE2 has
// no unsigned 16-bit min/max and only 2 doubles per vector.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__)
#define I2Z_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define I2Z_SIMD_CLONES
#endif

#define I2Z_STATS_KERNEL(T, name, impl) \
  I2Z_SIMD_CLONES Stats name(const T* p, std::uint64_t n) { return impl<T>(p, n); }
I2Z_STATS_KERNEL(std::uint8_t, stats_u8, int_stats)
I2Z_STATS_KERNEL(std::uint16_t, stats_u16, int_stats)
I2Z_STATS_KERNEL(std::uint32_t, stats_u32, int_stats)
I2Z_STATS_KERNEL(std::uint64_t, stats_u64, int_stats)
I2Z_STATS_KERNEL(std::int8_t, stats_i8, int_stats)
I2Z_STATS_KERNEL(std::int16_t, stats_i16, int_stats)
I2Z_STATS_KERNEL(std::int32_t, stats_i32, int_stats)
I2Z_STATS_KERNEL(std::int64_t, stats_i64, int_stats)
I2Z_STATS_KERNEL(float, stats_f32, float_stats)
I2Z_STATS_KERNEL(double, stats_f64, float_stats)
#undef I2Z_STATS_KERNEL

}  // namespace

Stats compute_stats(const void* data, DType dtype, std::uint64_t n) {
  switch (dtype) {
    case DType::u8: return stats_u8(static_cast<const std::uint8_t*>(data), n);
    case DType::u16: return stats_u16(static_cast<const std::uint16_t*>(data), n);
    case DType::u32: return stats_u32(static_cast<const std::uint32_t*>(data), n);
    case DType::u64: return stats_u64(static_cast<const std::uint64_t*>(data), n);
    case DType::i8: return stats_i8(static_cast<const std::int8_t*>(data), n);
    case DType::i16: return stats_i16(static_cast<const std::int16_t*>(data), n);
    case DType::i32: return stats_i32(static_cast<const std::int32_t*>(data), n);
    case DType::i64: return stats_i64(static_cast<const std::int64_t*>(data), n);
    case DType::f32: return stats_f32(static_cast<const float*>(data), n);
    default: return stats_f64(static_cast<const double*>(data), n);
  }
}

}  // namespace i2z
