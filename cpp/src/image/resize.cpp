// Per-channel resize, bit-compatible with skimage.transform.resize(order=k, preserve_range=True,
// anti_aliasing=None, mode='reflect', clip=True) on one 2-D channel. The arithmetic follows
// scipy.ndimage (gaussian_filter, spline_filter, zoom with grid_mode) operation by operation, so
// this file must be built without FP contraction or fast-math (see CMakeLists.txt and
// shared/docs/resize-semantics.md, which every step below refers to by section).
//
// Known residual difference: numpy evaluates the Gaussian taps with its own SIMD exp() on
// AVX-512 CPUs, which can differ by 1 ulp from libm's exp() used here. Paths with
// anti-aliasing therefore agree to ~1e-13 absolute on 0-255 data instead of bit for bit.
//
// NaN / infinity policy (the spec leaves it to us):
// * Orders 0 and 1 keep skimage's result: a non-finite pixel reaches only the outputs whose
//   nearest/bilinear taps touch it (widened by the Gaussian radius when anti-aliasing).
// * Orders 2-5: skimage's recursive spline prefilter would smear one NaN over the whole
//   channel. Instead, non-finite pixels are replaced by the mean of the channel's finite
//   pixels (0 if there are none) before the anti-aliasing and the prefilter; then every
//   output pixel whose order-1 result (same anti-aliasing) is non-finite takes that order-1
//   value (NaN, +inf or -inf). Non-finite values thus spread exactly as far as with order 1,
//   and every other output is the order-k resize of the mean-filled channel, clipped to the
//   channel's [nanmin, nanmax] like skimage. Channels without non-finite values are untouched
//   by this rule (bit-identical to skimage).
#include "image/resize.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <string>
#include <type_traits>

#include "i2z/error.hpp"
#include "image/dispatch.hpp"

namespace i2z {

namespace {

using Index = std::int64_t;

// The Gaussian kernels below are built twice, for AVX2 and for the baseline, and picked at load
// time (ifunc). Only the vector width changes: every element sees the same IEEE additions and
// multiplications in the same order (AVX2 does not imply FMA, and this file is built with
// -ffp-contract=off), so results are bit-identical on every CPU. Not under the sanitizers,
// whose runtimes may not be up when an ifunc resolver runs.
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define I2Z_NO_CLONES 1
#endif
#endif
#if defined(__x86_64__) && defined(__ELF__) && !defined(__SANITIZE_ADDRESS__) && !defined(I2Z_NO_CLONES)
#define I2Z_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define I2Z_SIMD_CLONES
#endif


// ---- boundary (spec §2) ----------------------------------------------------------------

// Whole-sample mirror of an integer tap index onto [0, n): ... c b | a b c d | c b a ...
Index mirror_index(Index t, Index n) {
  if (n <= 1) return 0;
  const Index p = 2 * n - 2;
  t %= p;
  if (t < 0) t += p;
  return t >= n ? p - t : t;
}

// scipy's map_coordinate for mode 'mirror', written as it does it (the fold of c changes the
// weights at round-off level, so it must be the same operations).
double mirror_coordinate(double c, Index n) {
  if (c < 0) {
    if (n <= 1) return 0;
    const Index p = 2 * n - 2;
    c = static_cast<double>(p * static_cast<Index>(-c / static_cast<double>(p))) + c;
    return c <= static_cast<double>(1 - n) ? c + static_cast<double>(p) : -c;
  }
  if (c > static_cast<double>(n - 1)) {
    if (n <= 1) return 0;
    const Index p = 2 * n - 2;
    c -= static_cast<double>(p * static_cast<Index>(c / static_cast<double>(p)));
    if (c >= static_cast<double>(n)) c = static_cast<double>(p) - c;
  }
  return c;
}

// ---- interpolation weights (spec §4) -----------------------------------------------------

// B-spline weights of the k+1 taps around c, in scipy's evaluation order; the last weight is
// always 1 minus the others, subtracted one by one.
void spline_weights(double c, int k, double* w) {
  const double x = c - std::floor((k & 1) ? c : c + 0.5);
  double y, z = 1.0 - x, t;
  switch (k) {
    case 1:
      w[0] = 1.0 - x;
      break;
    case 2:
      w[1] = 0.75 - x * x;
      y = 0.5 - x;
      w[0] = 0.5 * y * y;
      break;
    case 3:
      w[1] = (x * x * (x - 2.0) * 3.0 + 4.0) / 6.0;
      w[2] = (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0;
      w[0] = z * z * z / 6.0;
      break;
    case 4:
      t = x * x;
      w[2] = t * (t * 0.25 - 0.625) + 115.0 / 192.0;
      y = 1.0 + x;
      w[1] = y * (y * (y * (5.0 - y) / 6.0 - 1.25) + 5.0 / 24.0) + 55.0 / 96.0;
      w[3] = z * (z * (z * (5.0 - z) / 6.0 - 1.25) + 5.0 / 24.0) + 55.0 / 96.0;
      y = 0.5 - x;
      t = y * y;
      w[0] = t * t / 24.0;
      break;
    case 5:
      t = x * x;
      w[2] = t * (t * (0.25 - x / 12.0) - 0.5) + 0.55;
      t = z * z;
      w[3] = t * (t * (0.25 - z / 12.0) - 0.5) + 0.55;
      y = x + 1.0;
      w[1] = y * (y * (y * (y * (y / 24.0 - 0.375) + 1.25) - 1.75) + 0.625) + 0.425;
      y = z + 1.0;
      w[4] = y * (y * (y * (y * (y / 24.0 - 0.375) + 1.25) - 1.75) + 0.625) + 0.425;
      t = z * z;
      w[0] = z * t * t / 120.0;
      break;
    default:
      break;
  }
  w[k] = 1.0;
  for (int i = 0; i < k; ++i) w[k] -= w[i];
}

// Taps (already mirrored) and weights of every output index along one axis: computed once
// per call, shared by all rows/columns and channels.
struct AxisPlan {
  int taps = 1;
  std::vector<Index> idx;  // m * taps
  std::vector<double> w;   // m * taps (empty for order 0)
};

void plan_axis(Index n, Index m, int k, AxisPlan& p) {
  const double f = static_cast<double>(n) / static_cast<double>(m);
  p.taps = k + 1;
  p.idx.resize(static_cast<std::size_t>(m * p.taps));
  p.w.resize(k > 0 ? p.idx.size() : 0);
  for (Index o = 0; o < m; ++o) {
    double c = static_cast<double>(o) + 0.5;  // two separate roundings, no FMA (spec §2)
    c *= f;
    c -= 0.5;
    c = mirror_coordinate(c, n);
    const Index start = static_cast<Index>(std::floor((k & 1) ? c : c + 0.5)) - k / 2;
    for (int j = 0; j <= k; ++j) p.idx[static_cast<std::size_t>(o * p.taps + j)] = mirror_index(start + j, n);
    if (k > 0) spline_weights(c, k, &p.w[static_cast<std::size_t>(o * p.taps)]);
  }
}

// ---- Gaussian anti-aliasing (spec §1.3) --------------------------------------------------

// numpy's pairwise summation (what ndarray.sum() does for float64).
double pairwise_sum(const double* a, std::size_t n) {
  if (n < 8) {
    double s = 0.0;
    for (std::size_t i = 0; i < n; ++i) s += a[i];
    return s;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    std::size_t i = 8;
    for (; i < n - n % 8; i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    double s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) s += a[i];
    return s;
  }
  std::size_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

// Half of the symmetric kernel, g[0..r], normalised as scipy's _gaussian_kernel1d.
struct Gaussian {
  Index r = -1;  // -1: axis not filtered
  std::vector<double> g;
};

void plan_gaussian(Index n, Index m, Gaussian& k) {
  k.r = -1;
  const double sigma = std::max(0.0, (static_cast<double>(n) / static_cast<double>(m) - 1.0) / 2.0);
  if (!(sigma > 1e-15)) return;
  k.r = static_cast<Index>(4.0 * sigma + 0.5);
  const double a = -0.5 / (sigma * sigma);
  std::vector<double> phi(static_cast<std::size_t>(2 * k.r + 1));
  for (Index j = -k.r; j <= k.r; ++j) phi[static_cast<std::size_t>(j + k.r)] = std::exp(a * static_cast<double>(j * j));
  const double sum = pairwise_sum(phi.data(), phi.size());
  k.g.resize(static_cast<std::size_t>(k.r + 1));
  for (Index j = 0; j <= k.r; ++j) k.g[static_cast<std::size_t>(j)] = phi[static_cast<std::size_t>(j + k.r)] / sum;
}

// out[x] = c[x]*g0 + sum_{j=r..1} (c[x-j] + c[x+j])*g[j] for x in [0, n), where c is a
// mirror-extended line (r samples each side): scipy's symmetric correlation, term by term.
I2Z_SIMD_CLONES void convolve_line(const double* c, Index n, const double* g, Index r, double* out) {
  for (Index x = 0; x < n; ++x) out[x] = c[x] * g[0];
  for (Index j = r; j >= 1; --j) {
    const double gj = g[j];
    for (Index x = 0; x < n; ++x) out[x] += (c[x - j] + c[x + j]) * gj;
  }
}

// One output row of the axis-0 pass: acc[x] = in0[x]*g[0] + sum_{j=r..1} (up[j][x] + down[j][x])*g[j],
// term by term (the order of convolve_line), vectorised across x.
I2Z_SIMD_CLONES void convolve_rows(const double* in0, const double* const* up, const double* const* down,
                                   const double* g, Index r, Index w, double* acc) {
  for (Index x = 0; x < w; ++x) acc[x] = in0[x] * g[0];
  for (Index j = r; j >= 1; --j) {
    const double* a = up[j];
    const double* b = down[j];
    const double gj = g[j];
    for (Index x = 0; x < w; ++x) acc[x] += (a[x] + b[x]) * gj;
  }
}

// convolve_rows on 8-bit rows: each sample converted to double (exactly) where it is read.
I2Z_SIMD_CLONES void convolve_rows_u8(const std::uint8_t* in0, const std::uint8_t* const* up,
                                      const std::uint8_t* const* down, const double* g, Index r, Index w,
                                      double* acc) {
  for (Index x = 0; x < w; ++x) acc[x] = static_cast<double>(in0[x]) * g[0];
  for (Index j = r; j >= 1; --j) {
    const std::uint8_t* a = up[j];
    const std::uint8_t* b = down[j];
    const double gj = g[j];
    for (Index x = 0; x < w; ++x) acc[x] += (static_cast<double>(a[x]) + static_cast<double>(b[x])) * gj;
  }
}

// Row pointers kept on the stack by the double path of gaussian_axis0 (sigma < ~16).
constexpr Index kMaxRadius = 64;

// Along axis 0 (down the columns), rounded to the working type. Wide images stream whole
// rows (the same per-element sum, vectorised across columns); narrow ones go column by column.
template <class W>
void gaussian_axis0(const W* in, W* out, Index h, Index w, const Gaussian& k, std::vector<double>& line,
                    std::vector<double>& acc) {
  const Index r = k.r;
  if (w < 32) {
    line.resize(static_cast<std::size_t>(h + 2 * r));
    acc.resize(static_cast<std::size_t>(h));
    for (Index x = 0; x < w; ++x) {
      for (Index t = -r; t < h + r; ++t) line[static_cast<std::size_t>(t + r)] = static_cast<double>(in[mirror_index(t, h) * w + x]);
      convolve_line(line.data() + r, h, k.g.data(), r, acc.data());
      for (Index i = 0; i < h; ++i) out[i * w + x] = static_cast<W>(acc[static_cast<std::size_t>(i)]);
    }
    return;
  }
  acc.resize(static_cast<std::size_t>(w));
  const W* up[kMaxRadius + 1];
  const W* down[kMaxRadius + 1];
  for (Index i = 0; i < h; ++i) {
    W* o = out + i * w;
    if constexpr (std::is_same_v<W, double>) {
      if (r <= kMaxRadius) {
        for (Index j = 1; j <= r; ++j) {
          up[j] = in + mirror_index(i - j, h) * w;
          down[j] = in + mirror_index(i + j, h) * w;
        }
        convolve_rows(in + i * w, up, down, k.g.data(), r, w, o);
        continue;
      }
    }
    const W* x0 = in + i * w;
    const double g0 = k.g[0];
    for (Index x = 0; x < w; ++x) acc[x] = static_cast<double>(x0[x]) * g0;
    for (Index j = r; j >= 1; --j) {
      const W* a = in + mirror_index(i - j, h) * w;
      const W* b = in + mirror_index(i + j, h) * w;
      const double gj = k.g[static_cast<std::size_t>(j)];
      for (Index x = 0; x < w; ++x) acc[x] += (static_cast<double>(a[x]) + static_cast<double>(b[x])) * gj;
    }
    for (Index x = 0; x < w; ++x) o[x] = static_cast<W>(acc[x]);
  }
}

// Along axis 1 (each row), in place through a mirror-extended copy of the row.
template <class W>
void gaussian_axis1(W* data, Index h, Index w, const Gaussian& k, std::vector<double>& line,
                    std::vector<double>& acc) {
  const Index r = k.r;
  line.resize(static_cast<std::size_t>(w + 2 * r));
  acc.resize(static_cast<std::size_t>(w));
  // Mirror sources of the r samples on each side, once for all rows.
  std::vector<Index> edge(static_cast<std::size_t>(2 * r));
  for (Index t = 0; t < r; ++t) {
    edge[static_cast<std::size_t>(t)] = mirror_index(t - r, w);
    edge[static_cast<std::size_t>(r + t)] = mirror_index(w + t, w);
  }
  double* ext = line.data() + r;
  for (Index i = 0; i < h; ++i) {
    W* row = data + i * w;
    for (Index t = 0; t < r; ++t) {
      ext[t - r] = static_cast<double>(row[edge[static_cast<std::size_t>(t)]]);
      ext[w + t] = static_cast<double>(row[edge[static_cast<std::size_t>(r + t)]]);
    }
    for (Index x = 0; x < w; ++x) ext[x] = static_cast<double>(row[x]);
    if constexpr (std::is_same_v<W, double>) {
      convolve_line(ext, w, k.g.data(), r, row);  // the row itself is the output (its copy is the input)
    } else {
      convolve_line(ext, w, k.g.data(), r, acc.data());
      for (Index x = 0; x < w; ++x) row[x] = static_cast<W>(acc[static_cast<std::size_t>(x)]);
    }
  }
}

// Both passes, one row at a time: row i of the axis-0 pass goes into a mirror-extended line
// (staying in L1) and the axis-1 pass writes it straight into out. The same two passes,
// element by element, as gaussian_axis0 then gaussian_axis1 on double data; the image in
// between is never stored.
template <class T>  // double, or uint8_t (the channel not converted to double beforehand)
void gaussian_both(const T* in, double* out, Index h, Index w, const Gaussian& k0, const Gaussian& k1,
                   std::vector<double>& line) {
  const Index r0 = k0.r, r1 = k1.r;
  line.resize(static_cast<std::size_t>(w + 2 * r1));
  double* ext = line.data() + r1;
  std::vector<Index> edge(static_cast<std::size_t>(2 * r1));
  for (Index t = 0; t < r1; ++t) {
    edge[static_cast<std::size_t>(t)] = mirror_index(t - r1, w);
    edge[static_cast<std::size_t>(r1 + t)] = mirror_index(w + t, w);
  }
  const T* up[kMaxRadius + 1];
  const T* down[kMaxRadius + 1];
  for (Index i = 0; i < h; ++i) {
    for (Index j = 1; j <= r0; ++j) {
      up[j] = in + mirror_index(i - j, h) * w;
      down[j] = in + mirror_index(i + j, h) * w;
    }
    if constexpr (std::is_same_v<T, double>) convolve_rows(in + i * w, up, down, k0.g.data(), r0, w, ext);
    else convolve_rows_u8(in + i * w, up, down, k0.g.data(), r0, w, ext);
    for (Index t = 0; t < r1; ++t) {
      ext[t - r1] = ext[edge[static_cast<std::size_t>(t)]];
      ext[w + t] = ext[edge[static_cast<std::size_t>(r1 + t)]];
    }
    convolve_line(ext, w, k1.g.data(), r1, out + i * w);
  }
}

// ---- spline prefilter (spec §3) ----------------------------------------------------------

// scipy's ni_splines.c constants (36 digits, rounded once by the compiler).
constexpr double kPoles[6][2] = {
    {0, 0},
    {0, 0},
    {-0.171572875253809902396622551580603843, 0},
    {-0.267949192431122706472553658494127633, 0},
    {-0.361341225900220177092212841325675255, -0.013725429297339121360331226939128204},
    {-0.430575347099973791851434783493520110, -0.043096288203264653822712376822550182},
};

double filter_gain(int k) {
  double gain = 1.0;
  for (int p = 0; p < k / 2; ++p) {
    const double z = kPoles[k][p];
    gain *= (1.0 - z) * (1.0 - 1.0 / z);
  }
  return gain;
}

// One line of length n >= 2, in place, with the exact mirror start values.
void prefilter_line(double* c, Index n, int k) {
  const double gain = filter_gain(k);
  for (Index i = 0; i < n; ++i) c[i] *= gain;
  for (int p = 0; p < k / 2; ++p) {
    const double z = kPoles[k][p];
    const double q = std::pow(z, static_cast<double>(n - 1));
    double zi = z;
    c[0] = c[0] + q * c[n - 1];
    for (Index i = 1; i < n - 1; ++i) {
      c[0] += zi * (c[i] + q * c[n - 1 - i]);
      zi *= z;
    }
    c[0] /= 1 - q * q;
    for (Index i = 1; i < n; ++i) c[i] += z * c[i - 1];
    c[n - 1] = (z * c[n - 2] + c[n - 1]) * z / (z * z - 1);
    for (Index i = n - 2; i >= 0; --i) c[i] = z * (c[i + 1] - c[i]);
  }
}

// The same recursion down every column at once (whole rows per step, cache-friendly); each
// element sees exactly the operations of prefilter_line on its column.
void prefilter_columns(double* c, Index h, Index w, int k) {
  const double gain = filter_gain(k);
  for (Index i = 0; i < h * w; ++i) c[i] *= gain;
  auto row = [&](Index i) { return c + i * w; };
  for (int p = 0; p < k / 2; ++p) {
    const double z = kPoles[k][p];
    const double q = std::pow(z, static_cast<double>(h - 1));
    double* r0 = row(0);
    const double* rl = row(h - 1);
    for (Index x = 0; x < w; ++x) r0[x] = r0[x] + q * rl[x];
    double zi = z;
    for (Index i = 1; i < h - 1; ++i) {
      const double* a = row(i);
      const double* b = row(h - 1 - i);
      for (Index x = 0; x < w; ++x) r0[x] += zi * (a[x] + q * b[x]);
      zi *= z;
    }
    const double den = 1 - q * q;
    for (Index x = 0; x < w; ++x) r0[x] /= den;
    for (Index i = 1; i < h; ++i) {
      double* a = row(i);
      const double* b = row(i - 1);
      for (Index x = 0; x < w; ++x) a[x] += z * b[x];
    }
    double* last = row(h - 1);
    const double* prev = row(h - 2);
    const double den2 = z * z - 1;
    for (Index x = 0; x < w; ++x) last[x] = (z * prev[x] + last[x]) * z / den2;
    for (Index i = h - 2; i >= 0; --i) {
      double* a = row(i);
      const double* b = row(i + 1);
      for (Index x = 0; x < w; ++x) a[x] = z * (b[x] - a[x]);
    }
  }
}

void prefilter(double* c, Index h, Index w, int k) {
  if (h > 1) prefilter_columns(c, h, w, k);
  if (w > 1)
    for (Index i = 0; i < h; ++i) prefilter_line(c + i * w, w, k);
}

// ---- evaluation (spec §4) ----------------------------------------------------------------

// acc = sum over row taps a (outer) and column taps b (inner) of (C[ra][cb] * wr[a]) * wc[b],
// starting from 0.0 as scipy does; stored in O, then clipped to [lo, hi] (NaN passes).
template <int K, class E, class O>
void evaluate(const E* C, Index w, const AxisPlan& rows, const AxisPlan& cols, Index H, Index W, O lo, O hi,
              O* out) {
  constexpr int T = K + 1;
  for (Index orow = 0; orow < H; ++orow) {
    const E* rp[T];
    double wr[T];
    for (int a = 0; a < T; ++a) {
      rp[a] = C + rows.idx[static_cast<std::size_t>(orow * T + a)] * w;
      wr[a] = K > 0 ? rows.w[static_cast<std::size_t>(orow * T + a)] : 1.0;
    }
    O* o = out + orow * W;
    for (Index ocol = 0; ocol < W; ++ocol) {
      const Index* ci = cols.idx.data() + ocol * T;
      double acc = 0.0;
      if constexpr (K == 0) {
        acc += static_cast<double>(rp[0][ci[0]]);
      } else {
        const double* wc = cols.w.data() + ocol * T;
        for (int a = 0; a < T; ++a)
          for (int b = 0; b < T; ++b) acc += (static_cast<double>(rp[a][ci[b]]) * wr[a]) * wc[b];
      }
      O v = static_cast<O>(acc);
      if (v < lo) v = lo;
      else if (v > hi) v = hi;
      o[ocol] = v;
    }
  }
}

// One (row tap, column tap) term of evaluate() for a whole output row:
// acc[o] += (row[idx[o]] * wr) * wcol[o]. Called term by term in evaluate()'s order, so each
// output sums the same products in the same order; the lanes are output pixels.
void add_term_scalar(const double* row, const Index* idx, const double* wcol, double wr, Index W, double* acc) {
  for (Index o = 0; o < W; ++o) acc[o] += (row[idx[o]] * wr) * wcol[o];
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// AVX2, 4 outputs at a time. The indexed loads are plain loads put together, not vgatherqpd:
// gathers are microcoded and slow on CPUs with the Downfall (GDS) mitigation.
__attribute__((target("avx2"))) void add_term_avx2(const double* row, const Index* idx, const double* wcol, double wr,
                                                   Index W, double* acc) {
  const __m256d wrv = _mm256_set1_pd(wr);
  Index o = 0;
  for (; o + 4 <= W; o += 4) {
    const __m128d lo = _mm_loadh_pd(_mm_load_sd(row + idx[o]), row + idx[o + 1]);
    const __m128d hi = _mm_loadh_pd(_mm_load_sd(row + idx[o + 2]), row + idx[o + 3]);
    const __m256d v = _mm256_insertf128_pd(_mm256_castpd128_pd256(lo), hi, 1);
    const __m256d t = _mm256_mul_pd(_mm256_mul_pd(v, wrv), _mm256_loadu_pd(wcol + o));
    _mm256_storeu_pd(acc + o, _mm256_add_pd(_mm256_loadu_pd(acc + o), t));
  }
  add_term_scalar(row, idx + o, wcol + o, wr, W - o, acc + o);
}

void add_term(const double* row, const Index* idx, const double* wcol, double wr, Index W, double* acc) {
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) add_term_avx2(row, idx, wcol, wr, W, acc);
  else add_term_scalar(row, idx, wcol, wr, W, acc);
}
#else
void add_term(const double* row, const Index* idx, const double* wcol, double wr, Index W, double* acc) {
  add_term_scalar(row, idx, wcol, wr, W, acc);
}
#endif

// evaluate() on double coefficients, vectorised across the output row (K >= 1): the column
// taps are transposed once per call (tap b of every output contiguous).
template <int K, class O>
void evaluate_rows(const double* C, Index w, const AxisPlan& rows, const AxisPlan& cols, Index H, Index W, O lo,
                   O hi, O* out, std::vector<Index>& cidx, std::vector<double>& cw, std::vector<double>& acc) {
  constexpr int T = K + 1;
  const std::size_t Wn = static_cast<std::size_t>(W);
  cidx.resize(T * Wn);
  cw.resize(T * Wn);
  acc.resize(Wn);
  for (std::size_t o = 0; o < Wn; ++o)
    for (int b = 0; b < T; ++b) {
      cidx[b * Wn + o] = cols.idx[o * T + b];
      cw[b * Wn + o] = cols.w[o * T + b];
    }
  for (Index orow = 0; orow < H; ++orow) {
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int a = 0; a < T; ++a) {
      const double* rp = C + rows.idx[static_cast<std::size_t>(orow * T + a)] * w;
      const double wr = rows.w[static_cast<std::size_t>(orow * T + a)];
      for (int b = 0; b < T; ++b) add_term(rp, cidx.data() + b * Wn, cw.data() + b * Wn, wr, W, acc.data());
    }
    O* o = out + orow * W;
    for (std::size_t x = 0; x < Wn; ++x) {
      O v = static_cast<O>(acc[x]);
      v = v < lo ? lo : v;  // NaN passes both
      v = v > hi ? hi : v;
      o[x] = v;
    }
  }
}

template <class E, class O>
void evaluate_order(int k, const E* C, Index w, const AxisPlan& rows, const AxisPlan& cols, Index H, Index W, O lo,
                    O hi, O* out, std::vector<Index>& cidx, std::vector<double>& cw, std::vector<double>& acc) {
  if constexpr (std::is_same_v<E, double>) {
    switch (k) {
      case 0: break;
      case 1: return evaluate_rows<1>(C, w, rows, cols, H, W, lo, hi, out, cidx, cw, acc);
      case 2: return evaluate_rows<2>(C, w, rows, cols, H, W, lo, hi, out, cidx, cw, acc);
      case 3: return evaluate_rows<3>(C, w, rows, cols, H, W, lo, hi, out, cidx, cw, acc);
      case 4: return evaluate_rows<4>(C, w, rows, cols, H, W, lo, hi, out, cidx, cw, acc);
      default: return evaluate_rows<5>(C, w, rows, cols, H, W, lo, hi, out, cidx, cw, acc);
    }
  }
  switch (k) {
    case 0: return evaluate<0>(C, w, rows, cols, H, W, lo, hi, out);
    case 1: return evaluate<1>(C, w, rows, cols, H, W, lo, hi, out);
    case 2: return evaluate<2>(C, w, rows, cols, H, W, lo, hi, out);
    case 3: return evaluate<3>(C, w, rows, cols, H, W, lo, hi, out);
    case 4: return evaluate<4>(C, w, rows, cols, H, W, lo, hi, out);
    default: return evaluate<5>(C, w, rows, cols, H, W, lo, hi, out);
  }
}

// ---- channel access ----------------------------------------------------------------------

// Channel c of the source (CHW or HWC) converted to D, contiguous H x W.
template <class S, class D>
void load_channel(const SrcImage& s, std::uint32_t c, D* dst) {
  const S* p = static_cast<const S*>(s.data);
  const std::size_t n = s.height * s.width;
  if (s.chw || s.channels == 1) {
    const S* q = p + c * n;
    for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<D>(q[i]);
  } else {
    const std::size_t C = s.channels;
    for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<D>(p[i * C + c]);
  }
}

// dst[i] = q[i] converted, and the running min/max of q (stride 1, so it vectorises).
template <class S, class D>
void convert_range(const S* q, std::size_t n, D* dst, S& mn, S& mx) {
  S a = mn, b = mx;
  for (std::size_t i = 0; i < n; ++i) {
    const S v = q[i];
    a = v < a ? v : a;
    b = v > b ? v : b;
    dst[i] = static_cast<D>(v);
  }
  mn = a;
  mx = b;
}

// The 8-bit case (PNG/JPEG channels) also gets an AVX2 build.
I2Z_SIMD_CLONES void convert_range_u8(const std::uint8_t* q, std::size_t n, double* dst, std::uint8_t& mn,
                                      std::uint8_t& mx) {
  convert_range<std::uint8_t, double>(q, n, dst, mn, mx);
}

// load_channel for integer sources, which also returns the channel's min and max (no NaN or
// infinity to skip, so no scan of the converted values is needed). Interleaved channels are
// first gathered into a small contiguous block, so that the conversion runs at stride 1.
template <class S, class D>
void load_channel_range(const SrcImage& s, std::uint32_t c, D* dst, D& lo, D& hi) {
  const S* p = static_cast<const S*>(s.data);
  const std::size_t n = s.height * s.width;
  const bool planar = s.chw || s.channels == 1;
  const S* q = planar ? p + c * n : p + c;
  S mn = q[0], mx = q[0];
  auto convert = [&](const S* from, std::size_t m, D* to) {
    if constexpr (std::is_same_v<S, std::uint8_t> && std::is_same_v<D, double>) convert_range_u8(from, m, to, mn, mx);
    else convert_range<S, D>(from, m, to, mn, mx);
  };
  if (planar) {
    convert(q, n, dst);
  } else {
    constexpr std::size_t kBlock = 1024;
    S block[kBlock];
    const std::size_t step = s.channels;
    for (std::size_t i0 = 0; i0 < n; i0 += kBlock) {
      const std::size_t m = std::min(kBlock, n - i0);
      const S* from = q + i0 * step;
      if (step == 3) {  // RGB
        for (std::size_t j = 0; j < m; ++j) block[j] = from[3 * j];
      } else {
        for (std::size_t j = 0; j < m; ++j, from += step) block[j] = *from;
      }
      convert(block, m, dst + i0);
    }
  }
  lo = static_cast<D>(mn);  // conversion is monotonic: the min of the converted values
  hi = static_cast<D>(mx);
}

// Order 0 on integers: nearest sample copied in its own dtype (no anti-aliasing, no cast).
template <class S>
void gather_channel(const SrcImage& s, std::uint32_t c, const AxisPlan& rows, const AxisPlan& cols, Index H, Index W,
                    S* out) {
  const S* p = static_cast<const S*>(s.data);
  const Index w = static_cast<Index>(s.width);
  const bool planar = s.chw || s.channels == 1;
  const Index step = planar ? 1 : static_cast<Index>(s.channels);
  const S* base = planar ? p + static_cast<std::size_t>(c) * s.height * s.width : p + c;
  for (Index orow = 0; orow < H; ++orow) {
    const S* r = base + rows.idx[static_cast<std::size_t>(orow)] * w * step;
    for (Index ocol = 0; ocol < W; ++ocol) out[orow * W + ocol] = r[cols.idx[static_cast<std::size_t>(ocol)] * step];
  }
}

// ---- the float pipeline for one call -----------------------------------------------------

template <class Wt>
struct Workspace {
  std::vector<Wt> img, tmp, orig, out1;
  std::vector<double> coef, acc, line, cw;
  std::vector<Index> cidx;  // evaluate_rows' transposed column taps
  std::vector<std::uint8_t> u8;  // one 8-bit channel, planar (fused Gaussian path)
  AxisPlan rows, cols, rows1, cols1;
  Gaussian grow, gcol;

  // Keeps buffers for the next call unless they grew large (a worker thread must not
  // hold on to the memory of one huge image).
  void trim() {
    constexpr std::size_t kKeep = std::size_t{64} << 20;
    const std::size_t bytes = (img.capacity() + tmp.capacity() + orig.capacity() + out1.capacity()) * sizeof(Wt) +
                              coef.capacity() * sizeof(double) + u8.capacity();
    if (bytes > kKeep) {
      img = {};
      tmp = {};
      orig = {};
      out1 = {};
      coef = {};
      u8 = {};
    }
  }
};

// Gaussian (when planned), prefilter (k >= 2) and evaluation of one channel held in `img`
// (h x w, overwritten), written as H x W into out.
// Prefilter (k >= 2) and evaluation of a filtered channel `cur` (h x w), written as H x W into out.
template <class Wt>
void evaluate_channel(Workspace<Wt>& ws, Wt* cur, Index h, Index w, Index H, Index W, int k, const AxisPlan& rows,
                      const AxisPlan& cols, Wt lo, Wt hi, Wt* out) {
  if (k < 2) return evaluate_order(k, cur, w, rows, cols, H, W, lo, hi, out, ws.cidx, ws.cw, ws.acc);
  double* c;
  if constexpr (std::is_same_v<Wt, double>) {
    c = cur;  // prefilter in place
  } else {
    c = ws.coef.data();
    for (Index i = 0; i < h * w; ++i) c[i] = static_cast<double>(cur[i]);
  }
  prefilter(c, h, w, k);
  evaluate_order(k, static_cast<const double*>(c), w, rows, cols, H, W, lo, hi, out, ws.cidx, ws.cw, ws.acc);
}

// Both Gaussian passes can run fused, one row at a time (gaussian_both).
bool fuse_gaussians(const Gaussian& g0, const Gaussian& g1, Index w) {
  return g0.r >= 0 && g1.r >= 0 && g0.r <= kMaxRadius && w >= 32;
}

// Gaussian (when planned), prefilter (k >= 2) and evaluation of one channel held in `img`
// (h x w, overwritten), written as H x W into out.
template <class Wt>
void resample_channel(Workspace<Wt>& ws, Wt* img, Index h, Index w, Index H, Index W, int k, const AxisPlan& rows,
                      const AxisPlan& cols, Wt lo, Wt hi, Wt* out) {
  Wt* cur = img;
  bool fused = false;
  if constexpr (std::is_same_v<Wt, double>) {
    fused = fuse_gaussians(ws.grow, ws.gcol, w);
    if (fused) {
      gaussian_both(img, ws.tmp.data(), h, w, ws.grow, ws.gcol, ws.line);
      cur = ws.tmp.data();
    }
  }
  if (!fused && ws.grow.r >= 0) {
    gaussian_axis0(cur, ws.tmp.data(), h, w, ws.grow, ws.line, ws.acc);
    cur = ws.tmp.data();
  }
  if (!fused && ws.gcol.r >= 0) gaussian_axis1(cur, h, w, ws.gcol, ws.line, ws.acc);
  evaluate_channel(ws, cur, h, w, H, W, k, rows, cols, lo, hi, out);
}

template <class Wt>
void resize_float(const SrcImage& src, Index H, Index W, int k, Wt* out) {
  thread_local Workspace<Wt> ws;
  const Index h = static_cast<Index>(src.height), w = static_cast<Index>(src.width);
  const std::size_t n = static_cast<std::size_t>(h * w), plane = static_cast<std::size_t>(H * W);
  plan_axis(h, H, k, ws.rows);
  plan_axis(w, W, k, ws.cols);
  plan_gaussian(h, H, ws.grow);
  plan_gaussian(w, W, ws.gcol);
  if (ws.grow.r >= 0) ws.tmp.resize(n);
  if (k >= 2 && !std::is_same_v<Wt, double>) ws.coef.resize(n);
  bool have_order1 = false;

  // 8-bit channels with both Gaussian passes: never converted to double as a whole image; the
  // fused passes read the 8-bit samples (8x less memory traffic).
  if constexpr (std::is_same_v<Wt, double>) {
    if (src.dtype == DType::u8 && fuse_gaussians(ws.grow, ws.gcol, w)) {
      ws.u8.resize(n);
      const auto* p = static_cast<const std::uint8_t*>(src.data);
      const bool planar = src.chw || src.channels == 1;
      for (std::uint32_t ch = 0; ch < src.channels; ++ch) {
        const std::uint8_t* q = planar ? p + ch * n : p + ch;
        const std::size_t step = planar ? 1 : src.channels;
        std::uint8_t* d = ws.u8.data();
        if (step == 1) std::memcpy(d, q, n);
        else if (step == 3) for (std::size_t i = 0; i < n; ++i) d[i] = q[3 * i];  // RGB
        else for (std::size_t i = 0; i < n; ++i) d[i] = q[i * step];
        std::uint8_t mn = d[0], mx = d[0];
        for (std::size_t i = 0; i < n; ++i) {  // contiguous: vectorised min/max
          mn = d[i] < mn ? d[i] : mn;
          mx = d[i] > mx ? d[i] : mx;
        }
        gaussian_both(ws.u8.data(), ws.tmp.data(), h, w, ws.grow, ws.gcol, ws.line);
        evaluate_channel(ws, ws.tmp.data(), h, w, H, W, k, ws.rows, ws.cols, static_cast<double>(mn),
                         static_cast<double>(mx), out + ch * plane);
      }
      ws.trim();
      return;
    }
  }
  ws.img.resize(n);
  for (std::uint32_t ch = 0; ch < src.channels; ++ch) {
    Wt* img = ws.img.data();
    // Clip bounds: min/max ignoring NaN (infinities count), taken before any filtering.
    Wt lo = 0, hi = 0;
    bool any = true;
    std::size_t nonfinite = 0, finite = 0;
    double sum = 0;
    if (!dtype_is_float(src.dtype)) {
      dispatch_dtype(src.dtype, [&](auto tag) {
        using S = decltype(tag);
        if constexpr (std::is_integral_v<S>) load_channel_range<S, Wt>(src, ch, img, lo, hi);
      });
    } else {
      dispatch_dtype(src.dtype, [&](auto tag) { load_channel<decltype(tag), Wt>(src, ch, img); });
      any = false;
      for (std::size_t i = 0; i < n; ++i) {
        const Wt v = img[i];
        if (std::isnan(v)) {
          ++nonfinite;
          continue;
        }
        if (!any || v < lo) lo = v;
        if (!any || v > hi) hi = v;
        any = true;
        if (std::isinf(v)) {
          ++nonfinite;
        } else {
          sum += static_cast<double>(v);
          ++finite;
        }
      }
    }
    if (!any) lo = hi = static_cast<Wt>(NAN);
    Wt* o = out + ch * plane;
    if (k < 2 || nonfinite == 0) {
      resample_channel(ws, img, h, w, H, W, k, ws.rows, ws.cols, lo, hi, o);
      continue;
    }
    // NaN policy for orders 2-5 (see the top of this file).
    if (!have_order1) {
      plan_axis(h, H, 1, ws.rows1);
      plan_axis(w, W, 1, ws.cols1);
      have_order1 = true;
    }
    ws.orig.assign(img, img + n);
    ws.out1.resize(plane);
    resample_channel(ws, ws.orig.data(), h, w, H, W, 1, ws.rows1, ws.cols1, lo, hi, ws.out1.data());
    const Wt fill = finite ? static_cast<Wt>(sum / static_cast<double>(finite)) : Wt{0};
    for (std::size_t i = 0; i < n; ++i)
      if (!std::isfinite(img[i])) img[i] = fill;
    resample_channel(ws, img, h, w, H, W, k, ws.rows, ws.cols, lo, hi, o);
    for (std::size_t i = 0; i < plane; ++i)
      if (!std::isfinite(ws.out1[i])) o[i] = ws.out1[i];
  }
  ws.trim();
}

}  // namespace

void resize_image(const SrcImage& src, std::uint64_t H, std::uint64_t W, int order, std::vector<std::uint8_t>& out,
                  DType& out_dtype) {
  if (order < 0 || order > 5)
    fail(ErrorKind::Value, "interpolation order must be between 0 and 5, got " + std::to_string(order));
  if (H == 0 || W == 0)
    fail(ErrorKind::Value, "resize target must be at least 1x1, got " + std::to_string(H) + "x" + std::to_string(W));
  if (src.height == 0 || src.width == 0 || src.channels == 0)
    fail(ErrorKind::Value, "cannot resize an empty image (" + std::to_string(src.height) + "x" +
                               std::to_string(src.width) + ")");
  const bool is_float = dtype_is_float(src.dtype);
  out_dtype = (order == 0 && !is_float) ? src.dtype : (src.dtype == DType::f32 ? DType::f32 : DType::f64);
  const std::size_t plane = H * W;
  out.resize(src.channels * plane * dtype_size(out_dtype));

  // Same size: nothing shrinks, so no Gaussian; scipy >= 1.16 returns the input itself.
  if (src.height == H && src.width == W) {
    dispatch_dtype(src.dtype, [&](auto tag) {
      using S = decltype(tag);
      for (std::uint32_t c = 0; c < src.channels; ++c) {
        if (out_dtype == src.dtype)
          load_channel<S, S>(src, c, reinterpret_cast<S*>(out.data()) + c * plane);
        else
          load_channel<S, double>(src, c, reinterpret_cast<double*>(out.data()) + c * plane);
      }
    });
    return;
  }

  const Index h = static_cast<Index>(src.height), w = static_cast<Index>(src.width);
  if (order == 0 && !is_float) {
    AxisPlan rows, cols;
    plan_axis(h, static_cast<Index>(H), 0, rows);
    plan_axis(w, static_cast<Index>(W), 0, cols);
    dispatch_dtype(src.dtype, [&](auto tag) {
      using S = decltype(tag);
      for (std::uint32_t c = 0; c < src.channels; ++c)
        gather_channel<S>(src, c, rows, cols, static_cast<Index>(H), static_cast<Index>(W),
                          reinterpret_cast<S*>(out.data()) + c * plane);
    });
    return;
  }
  if (out_dtype == DType::f32)
    resize_float<float>(src, static_cast<Index>(H), static_cast<Index>(W), order,
                        reinterpret_cast<float*>(out.data()));
  else
    resize_float<double>(src, static_cast<Index>(H), static_cast<Index>(W), order,
                         reinterpret_cast<double*>(out.data()));
}

}  // namespace i2z
