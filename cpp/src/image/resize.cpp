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

template <class E, class O>
void evaluate_order(int k, const E* C, Index w, const AxisPlan& rows, const AxisPlan& cols, Index H, Index W, O lo,
                    O hi, O* out) {
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

// load_channel for integer sources, which also returns the channel's min and max (no NaN or
// infinity to skip, so no scan of the converted values is needed).
template <class S, class D>
void load_channel_range(const SrcImage& s, std::uint32_t c, D* dst, D& lo, D& hi) {
  const S* p = static_cast<const S*>(s.data);
  const std::size_t n = s.height * s.width;
  const bool planar = s.chw || s.channels == 1;
  const std::size_t step = planar ? 1 : s.channels;
  const S* q = planar ? p + c * n : p + c;
  S mn = q[0], mx = q[0];
  for (std::size_t i = 0; i < n; ++i) {
    const S v = q[i * step];
    mn = v < mn ? v : mn;
    mx = v > mx ? v : mx;
    dst[i] = static_cast<D>(v);
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
  std::vector<double> coef, acc, line;
  AxisPlan rows, cols, rows1, cols1;
  Gaussian grow, gcol;

  // Keeps buffers for the next call unless they grew large (a worker thread must not
  // hold on to the memory of one huge image).
  void trim() {
    constexpr std::size_t kKeep = std::size_t{64} << 20;
    const std::size_t bytes = (img.capacity() + tmp.capacity() + orig.capacity() + out1.capacity()) * sizeof(Wt) +
                              coef.capacity() * sizeof(double);
    if (bytes > kKeep) {
      img = {};
      tmp = {};
      orig = {};
      out1 = {};
      coef = {};
    }
  }
};

// Gaussian (when planned), prefilter (k >= 2) and evaluation of one channel held in `img`
// (h x w, overwritten), written as H x W into out.
template <class Wt>
void resample_channel(Workspace<Wt>& ws, Wt* img, Index h, Index w, Index H, Index W, int k, const AxisPlan& rows,
                      const AxisPlan& cols, Wt lo, Wt hi, Wt* out) {
  Wt* cur = img;
  if (ws.grow.r >= 0) {
    gaussian_axis0(cur, ws.tmp.data(), h, w, ws.grow, ws.line, ws.acc);
    cur = ws.tmp.data();
  }
  if (ws.gcol.r >= 0) gaussian_axis1(cur, h, w, ws.gcol, ws.line, ws.acc);
  if (k < 2) return evaluate_order(k, cur, w, rows, cols, H, W, lo, hi, out);
  double* c;
  if constexpr (std::is_same_v<Wt, double>) {
    c = cur;  // prefilter in place
  } else {
    c = ws.coef.data();
    for (Index i = 0; i < h * w; ++i) c[i] = static_cast<double>(cur[i]);
  }
  prefilter(c, h, w, k);
  evaluate_order(k, static_cast<const double*>(c), w, rows, cols, H, W, lo, hi, out);
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
  ws.img.resize(n);
  if (ws.grow.r >= 0) ws.tmp.resize(n);
  if (k >= 2 && !std::is_same_v<Wt, double>) ws.coef.resize(n);
  bool have_order1 = false;

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
