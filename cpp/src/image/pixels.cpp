#include "image/dispatch.hpp"
#include "image/pixels.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

namespace i2z {

namespace {

template <typename D, typename S>
inline D convert(S v) {
  if constexpr (std::is_same_v<D, S>) {
    return v;
  } else if constexpr (std::is_floating_point_v<D>) {
    return static_cast<D>(v);
  } else if constexpr (std::is_floating_point_v<S>) {
    if (std::isnan(v)) return D{0};
    const double r = std::nearbyint(static_cast<double>(v));  // half to even (default rounding mode)
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

Stats compute_stats(const void* data, DType dtype, std::uint64_t n) {
  return dispatch_dtype(dtype, [&](auto tag) -> Stats {
    using T = decltype(tag);
    const T* p = static_cast<const T*>(data);
    if constexpr (std::is_floating_point_v<T>) {
      // Independent lanes let the compiler vectorise the loop without reassociating one sum;
      // NaN fails every comparison, so it drops out of min/max by itself.
      constexpr std::uint64_t L = 8;
      double sum[L] = {};
      std::uint64_t count[L] = {};
      T lo[L], hi[L];
      std::fill(lo, lo + L, std::numeric_limits<T>::infinity());
      std::fill(hi, hi + L, -std::numeric_limits<T>::infinity());
      const std::uint64_t body = n / L * L;
      for (std::uint64_t i = 0; i < body; i += L)
        for (std::uint64_t j = 0; j < L; ++j) {
          const T v = p[i + j];
          const bool ok = v == v;
          sum[j] += ok ? static_cast<double>(v) : 0.0;
          count[j] += ok;
          lo[j] = v < lo[j] ? v : lo[j];
          hi[j] = v > hi[j] ? v : hi[j];
        }
      for (std::uint64_t i = body; i < n; ++i) {
        const T v = p[i];
        if (v != v) continue;
        sum[0] += v;
        ++count[0];
        lo[0] = std::min(lo[0], v);
        hi[0] = std::max(hi[0], v);
      }
      double total = 0, mn = INFINITY, mx = -INFINITY;
      std::uint64_t cnt = 0;
      for (std::uint64_t j = 0; j < L; ++j) {
        total += sum[j];
        cnt += count[j];
        mn = std::min<double>(mn, lo[j]);
        mx = std::max<double>(mx, hi[j]);
      }
      if (cnt == 0) return {NAN, NAN, NAN};
      return {mn, mx, total / static_cast<double>(cnt)};
    } else {
      if (n == 0) return {NAN, NAN, NAN};
      T lo = p[0], hi = p[0];
      // Integer sums in blocks keep the inner loop vectorisable and exact.
      using Acc = std::conditional_t<std::is_signed_v<T>, std::int64_t, std::uint64_t>;
      double sum = 0;
      constexpr std::uint64_t kBlock = 1 << 16;
      for (std::uint64_t b = 0; b < n; b += kBlock) {
        const std::uint64_t e = std::min(n, b + kBlock);
        Acc acc = 0;
        T blo = p[b], bhi = p[b];
        for (std::uint64_t i = b; i < e; ++i) {
          blo = p[i] < blo ? p[i] : blo;
          bhi = p[i] > bhi ? p[i] : bhi;
          if constexpr (sizeof(T) < 8) acc += static_cast<Acc>(p[i]);
          else sum += static_cast<double>(p[i]);
        }
        lo = std::min(lo, blo);
        hi = std::max(hi, bhi);
        if constexpr (sizeof(T) < 8) sum += static_cast<double>(acc);
      }
      return {static_cast<double>(lo), static_cast<double>(hi), sum / static_cast<double>(n)};
    }
  });
}

}  // namespace i2z
