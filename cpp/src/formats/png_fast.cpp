// The fast PNG path (issue 18): chunks walked in memory, CRCs checked with libdeflate's crc32,
// the concatenated IDAT data inflated in one libdeflate call into a buffer of the exact size,
// then unfiltered with SSE2 kernels (one pixel per vector for 3, 4, 6 and 8 bytes per pixel;
// scalar for 1 and 2), straight into the caller's rows for 8-bit images. Why libdeflate and
// not ISA-L or zlib: BENCHMARKS.md, "PNG inflate library".
//
// It only ever accepts inputs that libpng decodes to the same pixels: it refuses (the caller
// then runs libpng, which gives today's pixels or today's error) whenever anything is not
// exactly as expected, checking more than libpng does (every chunk up to the end of the IDAT
// run must have a good CRC, the zlib stream must end with a good Adler-32 inside that run and
// give exactly height * (1 + row bytes) bytes) and accepting less (only the chunks libpng is
// told to skip unread, see kPngIgnoredChunks; no PLTE, tRNS or unknown chunks; chunk lengths
// within libpng's default limits). gAMA/iCCP/sBIT/sRGB/cHRM never change pixels here: Pillow
// and png.cpp ignore them (png.cpp tells libpng to skip them), so they are accepted.
#include "formats/png_fast.hpp"

#include <libdeflate.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace i2z {
namespace {

using u8 = unsigned char;

std::uint32_t be32(const u8* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}

bool is_ignored_chunk(const u8* name) {
  for (std::size_t i = 0; i + 4 < sizeof kPngIgnoredChunks; i += 5)
    if (std::memcmp(name, kPngIgnoredChunks + i, 4) == 0) return true;
  return false;
}

// ---- unfiltering (PNG spec 9.2) ----------------------------------------------------------
// raw: the filtered bytes of this row; prev: the previous unfiltered row (zeros for row 0);
// cur: where the unfiltered row goes (may be raw itself). n = row bytes, a multiple of BPP.

template <int BPP>
void unfilter_scalar(int filter, const u8* raw, const u8* prev, u8* cur, std::size_t n) {
  switch (filter) {
    case 1:
      for (std::size_t i = 0; i < BPP; ++i) cur[i] = raw[i];
      for (std::size_t i = BPP; i < n; ++i) cur[i] = static_cast<u8>(raw[i] + cur[i - BPP]);
      break;
    case 3:
      for (std::size_t i = 0; i < BPP; ++i) cur[i] = static_cast<u8>(raw[i] + (prev[i] >> 1));
      for (std::size_t i = BPP; i < n; ++i) cur[i] = static_cast<u8>(raw[i] + ((cur[i - BPP] + prev[i]) >> 1));
      break;
    case 4:
      for (std::size_t i = 0; i < BPP; ++i) cur[i] = static_cast<u8>(raw[i] + prev[i]);
      for (std::size_t i = BPP; i < n; ++i) {
        const int a = cur[i - BPP], b = prev[i], c = prev[i - BPP];
        const int pa0 = b - c, pb0 = a - c;
        const int pa = pa0 < 0 ? -pa0 : pa0, pb = pb0 < 0 ? -pb0 : pb0;
        const int pc = pa0 + pb0 < 0 ? -(pa0 + pb0) : pa0 + pb0;
        const int p = (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
        cur[i] = static_cast<u8>(raw[i] + p);
      }
      break;
    default: break;
  }
}

#if defined(__SSE2__)
// One pixel (BPP <= 8 bytes) per vector: the left-neighbour dependency makes Sub, Average and
// Paeth serial across pixels, so the lanes are the pixel's bytes (as libpng's SSE2 filters do).
// Loads are 4 or 8 bytes wide, i.e. up to 2 bytes past the pixel: the buffers are padded (see
// kPad) and the extra lanes never mix into the pixel's lanes. Stores are wide too except for
// the last pixel of a row, or everywhere when unfiltering in place (cur == raw), where a wide
// store would overwrite the next pixel's input.
constexpr int kLoadBytes(int bpp) { return bpp <= 4 ? 4 : 8; }

template <int BPP>
__m128i load_px(const u8* p) {
  if constexpr (kLoadBytes(BPP) == 4) {
    std::uint32_t v;
    std::memcpy(&v, p, 4);
    return _mm_cvtsi32_si128(static_cast<int>(v));
  } else {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    return _mm_cvtsi64_si128(static_cast<long long>(v));
  }
}

template <int BPP>
void store_px_exact(u8* p, __m128i x) {
  auto v = static_cast<std::uint64_t>(_mm_cvtsi128_si64(x));
  if constexpr (BPP == 4 || BPP == 8) {
    std::memcpy(p, &v, BPP);
  } else {  // 3 or 6: whole 2-byte pieces, in registers (a 3-byte memcpy goes through the stack)
    for (int i = 0; i < BPP; i += 2, v >>= 16) {
      const auto piece = static_cast<std::uint16_t>(v);
      if (i + 1 < BPP) std::memcpy(p + i, &piece, 2);
      else p[i] = static_cast<u8>(piece);
    }
  }
}

template <int BPP>
void store_px_wide(u8* p, __m128i x) {
  if constexpr (kLoadBytes(BPP) == 4) {
    const auto v = static_cast<std::uint32_t>(_mm_cvtsi128_si32(x));
    std::memcpy(p, &v, 4);
  } else {
    const auto v = static_cast<std::uint64_t>(_mm_cvtsi128_si64(x));
    std::memcpy(p, &v, 8);
  }
}

__m128i abs16(__m128i x) { return _mm_max_epi16(x, _mm_sub_epi16(_mm_setzero_si128(), x)); }
__m128i select(__m128i m, __m128i t, __m128i e) { return _mm_or_si128(_mm_and_si128(m, t), _mm_andnot_si128(m, e)); }

// Sub / Average / Paeth over one row; Step(i, a) -> the pixel at byte i given `a`, its left
// neighbour, in the representation Step keeps (8-bit or 16-bit lanes).
template <int BPP, class Step, class Pack>
void serial_row(const u8* raw, u8* cur, std::size_t n, __m128i a, Step step, Pack pack) {
  const std::size_t last = n - BPP;
  std::size_t i = 0;
  if (cur != raw)
    for (; i < last; i += BPP) {
      a = step(i, a);
      store_px_wide<BPP>(cur + i, pack(a));
    }
  for (; i <= last; i += BPP) {
    a = step(i, a);
    store_px_exact<BPP>(cur + i, pack(a));
  }
}

template <int BPP>
void unfilter_simd(int filter, const u8* raw, const u8* prev, u8* cur, std::size_t n) {
  const __m128i zero = _mm_setzero_si128();
  const auto same = [](__m128i x) { return x; };
  switch (filter) {
    case 1:
      serial_row<BPP>(raw, cur, n, zero, [&](std::size_t i, __m128i a) { return _mm_add_epi8(load_px<BPP>(raw + i), a); },
                      same);
      break;
    case 3: {
      const __m128i one = _mm_set1_epi8(1);
      serial_row<BPP>(
          raw, cur, n, zero,
          [&](std::size_t i, __m128i a) {
            const __m128i b = load_px<BPP>(prev + i);
            // floor((a + b) / 2): the rounded-up average minus the odd bit
            const __m128i avg = _mm_sub_epi8(_mm_avg_epu8(a, b), _mm_and_si128(_mm_xor_si128(a, b), one));
            return _mm_add_epi8(load_px<BPP>(raw + i), avg);
          },
          same);
      break;
    }
    case 4: {
      // 16-bit lanes throughout, so that the chain from one pixel to the next carries no
      // pack/unpack; c (up-left) and b - c do not depend on the left neighbour.
      const __m128i low = _mm_set1_epi16(0xff);
      __m128i c = zero;
      serial_row<BPP>(
          raw, cur, n, zero,
          [&](std::size_t i, __m128i a) {
            const __m128i b = _mm_unpacklo_epi8(load_px<BPP>(prev + i), zero);
            const __m128i x = _mm_unpacklo_epi8(load_px<BPP>(raw + i), zero);
            const __m128i pa0 = _mm_sub_epi16(b, c), pb0 = _mm_sub_epi16(a, c);
            const __m128i pa = abs16(pa0), pb = abs16(pb0), pc = abs16(_mm_add_epi16(pa0, pb0));
            const __m128i smallest = _mm_min_epi16(pc, _mm_min_epi16(pa, pb));
            const __m128i nearest =
                select(_mm_cmpeq_epi16(pa, smallest), a, select(_mm_cmpeq_epi16(pb, smallest), b, c));
            c = b;
            return _mm_and_si128(_mm_add_epi16(x, nearest), low);
          },
          [&](__m128i a) { return _mm_packus_epi16(a, a); });
      break;
    }
    default: break;
  }
}
#endif

template <int BPP>
void unfilter_row(int filter, const u8* raw, const u8* prev, u8* cur, std::size_t n) {
  if (filter == 0) {
    if (cur != raw) std::memcpy(cur, raw, n);
    return;
  }
  if (filter == 2) {
    for (std::size_t i = 0; i < n; ++i) cur[i] = static_cast<u8>(raw[i] + prev[i]);
    return;
  }
#if defined(__SSE2__)
  if constexpr (BPP >= 3) return unfilter_simd<BPP>(filter, raw, prev, cur, n);
#endif
  unfilter_scalar<BPP>(filter, raw, prev, cur, n);
}

using UnfilterFn = void (*)(int, const u8*, const u8*, u8*, std::size_t);

UnfilterFn unfilter_for(int bpp) {
  switch (bpp) {
    case 1: return unfilter_row<1>;
    case 2: return unfilter_row<2>;
    case 3: return unfilter_row<3>;
    case 4: return unfilter_row<4>;
    case 6: return unfilter_row<6>;
    case 8: return unfilter_row<8>;
    default: return nullptr;
  }
}

// ---- per-thread state ------------------------------------------------------------------

struct DecompressorDeleter {
  void operator()(libdeflate_decompressor* d) const { libdeflate_free_decompressor(d); }
};

struct Scratch {
  std::unique_ptr<libdeflate_decompressor, DecompressorDeleter> inflater;
  std::vector<u8> idat, inflated, zeros;

  // A worker keeps its buffers for the next image unless one huge image grew them.
  void trim() {
    constexpr std::size_t kKeep = std::size_t{32} << 20;
    if (idat.capacity() + inflated.capacity() + zeros.capacity() > kKeep) idat = inflated = zeros = {};
  }
};

// Slack after the inflated rows and the zero row for the SIMD kernels' wide loads.
constexpr std::size_t kPad = 16;
// Beyond this the inflated copy would double a large image's memory: libpng streams it instead.
constexpr std::uint64_t kMaxInflated = std::uint64_t{256} << 20;
// libpng 1.6's default user_chunk_malloc_max: longer chunks are an error there (IDAT aside).
constexpr std::uint64_t kChunkMallocMax = 8000000;

struct Ihdr {
  std::uint32_t width = 0, height = 0;
  int depth = 0, color = 0;
  int png_channels = 0;  // samples per pixel in the file
  std::uint32_t out_channels = 0;
  DType dtype = DType::u8;
};

bool parse_ihdr(const u8* d, Ihdr& h) {
  h.width = be32(d);
  h.height = be32(d + 4);
  h.depth = d[8];
  h.color = d[9];
  if (d[10] != 0 || d[11] != 0 || d[12] != 0) return false;  // compression, filter, interlace
  if (h.width == 0 || h.height == 0 || h.width > 0x7fffffffu || h.height > 0x7fffffffu) return false;
  if (h.depth != 8 && h.depth != 16) return false;
  switch (h.color) {
    case 0: h.png_channels = 1; h.out_channels = 1; break;
    case 2: h.png_channels = 3; h.out_channels = 3; break;
    case 4: h.png_channels = 2; h.out_channels = h.depth == 16 ? 4 : 2; break;
    case 6: h.png_channels = 4; h.out_channels = 4; break;
    default: return false;
  }
  h.dtype = (h.color == 0 && h.depth == 16) ? DType::u16 : DType::u8;
  return true;
}

// libpng's png_check_chunk_length() bound for IDAT (non-interlaced), with 8,000,000 as the base.
std::uint64_t idat_length_limit(const Ihdr& h) {
  std::uint64_t row_factor = std::uint64_t{h.width} * static_cast<std::uint64_t>(h.png_channels) *
                                 (h.depth > 8 ? 2 : 1) + 1;
  std::uint64_t limit = h.height > 0xffffffffu / row_factor ? 0x7fffffffu : h.height * row_factor;
  row_factor = row_factor > 32566 ? 32566 : row_factor;
  limit += 6 + 5 * (limit / row_factor + 1);
  if (limit > 0x7fffffffu) limit = 0x7fffffffu;
  return limit > kChunkMallocMax ? limit : kChunkMallocMax;
}

// 16-bit rows (unfiltered, big endian) to what png.cpp's libpng transforms give.
void convert_row16(const Ihdr& h, const u8* in, u8* out) {
  const std::size_t w = h.width;
  switch (h.color) {
    case 0:  // native-endian uint16 (png_set_swap on little-endian hosts)
      for (std::size_t x = 0; x < w; ++x) {
        const auto v = static_cast<std::uint16_t>((in[2 * x] << 8) | in[2 * x + 1]);
        std::memcpy(out + 2 * x, &v, 2);
      }
      break;
    case 4:  // G,G,G,A high bytes (png_set_gray_to_rgb + png_set_strip_16)
      for (std::size_t x = 0; x < w; ++x) {
        out[4 * x] = out[4 * x + 1] = out[4 * x + 2] = in[4 * x];
        out[4 * x + 3] = in[4 * x + 2];
      }
      break;
    default: {  // RGB / RGBA: high byte of each sample (png_set_strip_16)
      const std::size_t n = w * static_cast<std::size_t>(h.png_channels);
      for (std::size_t i = 0; i < n; ++i) out[i] = in[2 * i];
    }
  }
}

}  // namespace

bool png_decode_fast(const unsigned char* data, std::size_t size, const FormatOptions& options,
                     const ImageInfo& info, unsigned char* out) noexcept {
  static constexpr u8 kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (size < 8 + 25 || std::memcmp(data, kSignature, 8) != 0) return false;
  const u8* p = data + 8;
  const u8* const end = data + size;
  // IHDR first, exactly 13 bytes.
  if (be32(p) != 13 || std::memcmp(p + 4, "IHDR", 4) != 0) return false;
  if (libdeflate_crc32(0, p + 4, 17) != be32(p + 21)) return false;
  Ihdr h;
  if (!parse_ihdr(p + 8, h)) return false;
  if (info.layout != PixelLayout::HWC || info.height != h.height || info.width != h.width ||
      info.channels != h.out_channels || info.dtype != h.dtype)
    return false;
  if (info.pixel_count() > options.max_pixels) return false;
  const int bpp = h.png_channels * (h.depth / 8);
  const std::size_t row_bytes = std::size_t{h.width} * static_cast<std::size_t>(bpp);
  const std::uint64_t inflated_size = std::uint64_t{h.height} * (row_bytes + 1);
  if (inflated_size > kMaxInflated) return false;
  p += 25;

  thread_local Scratch s;
  // Walk the chunks up to the end of the first IDAT run; collect where the IDAT data lies.
  const u8* first_idat = nullptr;
  std::size_t idat_chunks = 0, first_len = 0;
  const std::uint64_t idat_max = idat_length_limit(h);
  s.idat.clear();
  for (;;) {
    if (end - p < 12) {
      if (idat_chunks > 0 && p == end) break;  // file ends right after the IDAT run (no IEND)
      return false;
    }
    const std::uint32_t len = be32(p);
    const u8* name = p + 4;
    const bool is_idat = std::memcmp(name, "IDAT", 4) == 0;
    if (!is_idat && idat_chunks > 0) break;  // end of the IDAT run: libpng reads no further
    if (len > 0x7fffffffu || static_cast<std::uint64_t>(end - p - 12) < len) return false;
    if (is_idat ? len > idat_max : (len > kChunkMallocMax || !is_ignored_chunk(name))) return false;
    if (libdeflate_crc32(0, name, std::size_t{len} + 4) != be32(p + 8 + len)) return false;
    if (is_idat) {
      if (idat_chunks == 0) {
        first_idat = p + 8;
        first_len = len;
      } else {
        if (idat_chunks == 1) s.idat.assign(first_idat, first_idat + first_len);
        s.idat.insert(s.idat.end(), p + 8, p + 8 + len);
      }
      ++idat_chunks;
    }
    p += 12 + std::size_t{len};
  }
  const u8* z = idat_chunks == 1 ? first_idat : s.idat.data();

  if (!s.inflater) s.inflater.reset(libdeflate_alloc_decompressor());
  if (!s.inflater) return false;
  if (s.inflated.size() < inflated_size + kPad) s.inflated.resize(inflated_size + kPad);
  std::size_t consumed = 0;
  // No actual_out pointer: anything but exactly inflated_size bytes is a failure.
  if (libdeflate_zlib_decompress_ex(s.inflater.get(), z, idat_chunks == 1 ? first_len : s.idat.size(),
                                    s.inflated.data(), inflated_size, &consumed, nullptr) != LIBDEFLATE_SUCCESS)
    return false;

  const UnfilterFn unfilter = unfilter_for(bpp);
  if (unfilter == nullptr) return false;
  if (s.zeros.size() < row_bytes + kPad) s.zeros.assign(row_bytes + kPad, 0);
  const std::size_t stride = row_bytes + 1;
  u8* const inf = s.inflated.data();
  bool ok = true;
  if (h.depth == 8) {
    // Straight into the caller's rows; the previous output row is the Up/Average/Paeth input.
    for (std::size_t y = 0; y < h.height; ++y) {
      const u8* row = inf + y * stride;
      if (row[0] > 4) {
        ok = false;
        break;
      }
      unfilter(row[0], row + 1, y ? out + (y - 1) * row_bytes : s.zeros.data(), out + y * row_bytes, row_bytes);
    }
  } else {
    const std::size_t out_row = std::size_t{h.width} * h.out_channels * dtype_size(h.dtype);
    for (std::size_t y = 0; y < h.height; ++y) {
      u8* row = inf + y * stride;
      if (row[0] > 4) {
        ok = false;
        break;
      }
      unfilter(row[0], row + 1, y ? row + 1 - stride : s.zeros.data(), row + 1, row_bytes);
      convert_row16(h, row + 1, out + y * out_row);
    }
  }
  s.trim();
  return ok;
}

}  // namespace i2z
