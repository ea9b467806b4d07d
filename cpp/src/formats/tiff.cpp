// TIFF via libtiff (>= 4.5): the first page (IFD 0) only, matching tifffile's
// `TiffFile(p).pages[0].asarray()`:
//   * raw sample values: no MINISWHITE inversion, palette images give their indices (H,W),
//     extra samples (alpha, ...) are kept as channels;
//   * shape (H,W) for one sample, (H,W,C) for PLANARCONFIG_CONTIG (layout HWC) and (C,H,W) for
//     PLANARCONFIG_SEPARATE (layout CHW);
//   * 1/2/4-bit unsigned samples are unpacked to one uint8 per sample (tifffile returns bool for
//     1-bit; we store 0/1 as uint8);
//   * JPEG-compressed YCbCr is returned as RGB (libtiff's JPEGCOLORMODE_RGB, like tifffile);
//     other YCbCr only without chroma subsampling, as stored samples (like tifffile).
//   * 12-bit unsigned samples are unpacked to uint16 (as tifffile);
//   * a strip or tile with no bytes decodes as zeros (as tifffile), e.g. an empty extra-sample plane.
// Unsupported (clear Value error): other bit depths (24, ...), complex / float16 samples,
// volumetric ImageDepth > 1, subsampled YCbCr without JPEG, codecs this libtiff lacks.
//
// libtiff quirks handled here:
//   * Its global error/warning handlers print to stderr and are process-wide: they are set to
//     no-ops once, and each handle gets its own handlers (TIFFOpenOptions) that record the first
//     error text into a per-call buffer, used in the exception message.
//   * TIFFFdOpenExt leaves the descriptor open when it fails (TIFFOpenExt would close it).
//   * Byte swapping, FillOrder, predictors (2 and 3) are undone by libtiff inside
//     TIFFReadEncodedStrip/Tile.
#include <tiffio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "formats/file_io.hpp"
#include "formats/format.hpp"
#include "i2z/error.hpp"

namespace i2z {
namespace {

// First libtiff error reported on one handle. Fixed-size: the handler runs inside C code and
// must neither throw nor allocate.
struct ErrorSink {
  char text[512] = {};
  bool set = false;
};

int on_tiff_error(TIFF*, void* user, const char* module, const char* fmt, va_list ap) {
  auto* sink = static_cast<ErrorSink*>(user);
  if (sink != nullptr && !sink->set) {
    int n = 0;
    if (module != nullptr && *module != '\0') n = std::snprintf(sink->text, sizeof sink->text, "%s: ", module);
    if (n < 0 || static_cast<std::size_t>(n) >= sizeof sink->text) n = 0;
    std::vsnprintf(sink->text + n, sizeof sink->text - static_cast<std::size_t>(n), fmt, ap);
    sink->set = true;
  }
  return 1;  // handled: do not call the global handlers
}

int on_tiff_warning(TIFF*, void*, const char*, const char*, va_list) { return 1; }

void silence_global_handlers() {
  // Some libtiff code paths (codecs, early failures) still use the global handlers, which
  // default to printing on stderr.
  static std::once_flag once;
  std::call_once(once, [] {
    TIFFSetErrorHandler(nullptr);
    TIFFSetWarningHandler(nullptr);
  });
}

struct OptionsFree {
  void operator()(TIFFOpenOptions* o) const noexcept { TIFFOpenOptionsFree(o); }
};
struct TiffClose {
  void operator()(TIFF* t) const noexcept { TIFFClose(t); }
};

// One open TIFF handle with its error sink. Not movable: libtiff keeps a pointer to `sink_`.
class TiffHandle {
 public:
  explicit TiffHandle(const std::string& path) {
    silence_global_handlers();
    std::unique_ptr<TIFFOpenOptions, OptionsFree> opts(TIFFOpenOptionsAlloc());
    if (!opts) fail(ErrorKind::Runtime, "out of memory (TIFFOpenOptionsAlloc)");
    TIFFOpenOptionsSetErrorHandlerExtR(opts.get(), on_tiff_error, &sink_);
    TIFFOpenOptionsSetWarningHandlerExtR(opts.get(), on_tiff_warning, nullptr);
    // A regular file only, opened without blocking (file_io.hpp). "rm": read-only, not
    // memory-mapped (a file truncated meanwhile must give an error, not SIGBUS), first IFD
    // read at open. The handle copies the options; on failure the descriptor stays ours.
    const int fd = open_input(path);
    tif_.reset(TIFFFdOpenExt(fd, path.c_str(), "rm", opts.get()));
    if (!tif_) {
      ::close(fd);
      // libtiff reports nothing when the header points at no directory (offset 0).
      corrupt(sink_.set ? "not a readable TIFF file" : "not a readable TIFF file (no image directory)");
    }
  }
  TiffHandle(const TiffHandle&) = delete;
  TiffHandle& operator=(const TiffHandle&) = delete;

  TIFF* get() const noexcept { return tif_.get(); }

  // Throws Corrupt with `what` plus libtiff's first error message, if any.
  [[noreturn]] void corrupt(const std::string& what) const {
    if (sink_.set) fail(ErrorKind::Corrupt, what + " (" + sink_.text + ")");
    fail(ErrorKind::Corrupt, what);
  }

 private:
  ErrorSink sink_;
  std::unique_ptr<TIFF, TiffClose> tif_;
};

// What page 0 holds, in the terms decode needs.
struct Geometry {
  std::uint32_t width = 0, height = 0;
  std::uint32_t samples = 1;  // samples per pixel (= channels)
  std::uint32_t bits = 8;     // bits per sample: 1, 2, 4 (unpacked to uint8), 12 (to uint16) or 8..64
  bool separate = false;      // planar configuration SEPARATE with samples > 1
  bool tiled = false;
  std::uint32_t tile_width = 0, tile_height = 0;  // tiled only
  std::uint32_t rows_per_strip = 0;               // striped only, clamped to height
  DType dtype = DType::u8;

  std::uint32_t planes() const { return separate ? samples : 1; }
  std::uint32_t samples_per_plane_pixel() const { return separate ? 1 : samples; }
  std::size_t sample_bytes() const { return dtype_size(dtype); }
  bool packed() const { return bits < 8 || bits == 12; }
  // Bytes of `n` pixels of one plane as stored (packed bit depths round up to whole bytes).
  std::uint64_t stored_bytes(std::uint64_t n) const {
    return (n * samples_per_plane_pixel() * bits + 7) / 8;
  }
};

template <typename T>
T field_defaulted(TIFF* tif, ttag_t tag) {
  T value{};
  if (TIFFGetFieldDefaulted(tif, tag, &value) != 1) return T{};
  return value;
}

DType dtype_for(std::uint16_t sample_format, std::uint32_t bits) {
  switch (sample_format) {
    case SAMPLEFORMAT_UINT:
      switch (bits) {
        case 1: case 2: case 4: case 8: return DType::u8;
        case 12: case 16: return DType::u16;  // 12-bit: unpacked to uint16, as tifffile does
        case 32: return DType::u32;
        case 64: return DType::u64;
        default: break;
      }
      break;
    case SAMPLEFORMAT_INT:
      switch (bits) {
        case 8: return DType::i8;
        case 16: return DType::i16;
        case 32: return DType::i32;
        case 64: return DType::i64;
        default: break;
      }
      break;
    case SAMPLEFORMAT_IEEEFP:
      if (bits == 32) return DType::f32;
      if (bits == 64) return DType::f64;
      break;
    default: {
      const char* name = sample_format == SAMPLEFORMAT_VOID ? "void"
                         : sample_format == SAMPLEFORMAT_COMPLEXINT ? "complex integer"
                         : sample_format == SAMPLEFORMAT_COMPLEXIEEEFP ? "complex float"
                                                                        : "unknown";
      fail(ErrorKind::Value, "TIFF sample format " + std::to_string(sample_format) + " (" + name +
                                 ") is not supported");
    }
  }
  const char* kind = sample_format == SAMPLEFORMAT_UINT ? "unsigned integer"
                     : sample_format == SAMPLEFORMAT_INT ? "signed integer"
                                                         : "floating-point";
  fail(ErrorKind::Value, "TIFF with " + std::to_string(bits) + "-bit " + kind +
                             " samples is not supported (supported: 8/16/32/64-bit, 1/2/4/12-bit unsigned, "
                             "32/64-bit float)");
}

std::string compression_name(std::uint16_t c) {
  if (const TIFFCodec* codec = TIFFFindCODEC(c)) return std::string(codec->name);
  return "unknown";
}

// Reads and validates the tags of the current (first) directory. Also switches JPEG YCbCr to
// RGB output, so it must run on every handle before reading pixels.
Geometry read_geometry(const TiffHandle& h, const FormatOptions& options) {
  TIFF* tif = h.get();
  Geometry g;
  if (TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &g.width) != 1 || TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &g.height) != 1)
    h.corrupt("TIFF has no image width/length");
  if (g.width == 0 || g.height == 0) h.corrupt("TIFF image has zero width or height");
  if (field_defaulted<std::uint32_t>(tif, TIFFTAG_IMAGEDEPTH) > 1)
    fail(ErrorKind::Value, "volumetric TIFF (ImageDepth > 1) is not supported");

  const auto samples = field_defaulted<std::uint16_t>(tif, TIFFTAG_SAMPLESPERPIXEL);
  const auto bits = field_defaulted<std::uint16_t>(tif, TIFFTAG_BITSPERSAMPLE);
  const auto sample_format = field_defaulted<std::uint16_t>(tif, TIFFTAG_SAMPLEFORMAT);
  const auto planar = field_defaulted<std::uint16_t>(tif, TIFFTAG_PLANARCONFIG);
  const auto compression = field_defaulted<std::uint16_t>(tif, TIFFTAG_COMPRESSION);
  std::uint16_t photometric = PHOTOMETRIC_MINISBLACK;
  TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &photometric);  // absent: libtiff guessed, or keep default
  if (samples == 0) h.corrupt("TIFF has SamplesPerPixel = 0");
  g.samples = samples;
  g.bits = bits;
  g.dtype = dtype_for(sample_format == 0 ? SAMPLEFORMAT_UINT : sample_format, bits);
  g.separate = planar == PLANARCONFIG_SEPARATE && samples > 1;

  if (compression == COMPRESSION_OJPEG)
    fail(ErrorKind::Value, "old-style JPEG compressed TIFF (compression 6) is not supported");
  // These codecs convert samples (log-luminance, ...) instead of returning them as stored.
  if (compression == COMPRESSION_PIXARLOG || compression == COMPRESSION_SGILOG ||
      compression == COMPRESSION_SGILOG24 || !TIFFIsCODECConfigured(compression))
    fail(ErrorKind::Value, "TIFF compression " + std::to_string(compression) + " (" + compression_name(compression) +
                               ") is not supported");
  if (photometric == PHOTOMETRIC_YCBCR && compression == COMPRESSION_JPEG) {
    if (g.separate || samples != 3 || bits != 8)
      fail(ErrorKind::Value, "JPEG-compressed YCbCr TIFF is only supported with 3 contiguous 8-bit samples");
    // libjpeg converts to RGB (upsampling chroma), as tifffile does.
    if (TIFFSetField(tif, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB) != 1) h.corrupt("cannot set JPEG color mode");
  } else if (photometric == PHOTOMETRIC_YCBCR) {
    // Without JPEG, tifffile returns the stored YCbCr samples, which we can do only when the
    // chroma is not subsampled (libtiff's default, absent the tag, is 2x2).
    std::uint16_t sub_h = 2, sub_v = 2;
    TIFFGetFieldDefaulted(tif, TIFFTAG_YCBCRSUBSAMPLING, &sub_h, &sub_v);
    if (sub_h != 1 || sub_v != 1)
      fail(ErrorKind::Value, "subsampled YCbCr TIFF without JPEG compression is not supported");
  }

  check_pixel_limit(g.height, g.width, g.samples, options.max_pixels);

  // libtiff's own idea of a row must agree with ours, or its sizes would not fit our buffer.
  const std::uint64_t row_bytes = g.stored_bytes(g.width);
  if (TIFFScanlineSize64(tif) != row_bytes) h.corrupt("TIFF row size does not match its width and samples");

  g.tiled = TIFFIsTiled(tif) != 0;
  if (g.tiled) {
    if (TIFFGetField(tif, TIFFTAG_TILEWIDTH, &g.tile_width) != 1 ||
        TIFFGetField(tif, TIFFTAG_TILELENGTH, &g.tile_height) != 1 || g.tile_width == 0 || g.tile_height == 0)
      h.corrupt("TIFF has invalid tile dimensions");
    // A hostile header can declare huge tiles for a tiny image; a tile never needs to exceed
    // the image (rounded up to the 16-pixel tile grid) unless it is modest anyway.
    const std::uint64_t tile_bytes = std::uint64_t{g.tile_height} * g.stored_bytes(g.tile_width);
    const bool within_image = g.tile_width <= (std::uint64_t{g.width} + 15) / 16 * 16 &&
                              g.tile_height <= (std::uint64_t{g.height} + 15) / 16 * 16;
    if (!within_image && tile_bytes > (std::uint64_t{64} << 20))
      h.corrupt("TIFF tiles of " + std::to_string(g.tile_width) + "x" + std::to_string(g.tile_height) +
                " are too large for an image of " + std::to_string(g.width) + "x" + std::to_string(g.height));
    if (static_cast<std::uint64_t>(TIFFTileSize64(tif)) != tile_bytes)
      h.corrupt("TIFF tile size does not match its tile dimensions");
    const std::uint64_t across = (std::uint64_t{g.width} + g.tile_width - 1) / g.tile_width;
    const std::uint64_t down = (std::uint64_t{g.height} + g.tile_height - 1) / g.tile_height;
    if (TIFFNumberOfTiles(tif) != across * down * g.planes()) h.corrupt("TIFF tile count does not match the image");
  } else {
    g.rows_per_strip = std::min(field_defaulted<std::uint32_t>(tif, TIFFTAG_ROWSPERSTRIP), g.height);
    if (g.rows_per_strip == 0) h.corrupt("TIFF has RowsPerStrip = 0");
    const std::uint64_t per_plane = (std::uint64_t{g.height} + g.rows_per_strip - 1) / g.rows_per_strip;
    if (TIFFNumberOfStrips(tif) != per_plane * g.planes()) h.corrupt("TIFF strip count does not match the image");
  }
  return g;
}

ImageInfo info_from(const Geometry& g) {
  ImageInfo info;
  info.height = g.height;
  info.width = g.width;
  info.channels = g.samples;
  info.dtype = g.dtype;
  info.layout = g.separate ? PixelLayout::CHW : PixelLayout::HWC;
  if (g.samples == 1)
    info.shape = {g.height, g.width};
  else if (g.separate)
    info.shape = {g.samples, g.height, g.width};
  else
    info.shape = {g.height, g.width, g.samples};
  return info;
}

// Unpacks the first `count` samples of `Bits` bits (MSB first, as libtiff returns them
// whatever the FillOrder) of a row into one byte each.
template <unsigned Bits>
void unpack_samples(const std::uint8_t* src, std::uint64_t count, std::uint8_t* dst) {
  constexpr unsigned per_byte = 8 / Bits;
  constexpr unsigned mask = (1u << Bits) - 1;
  for (std::uint64_t i = 0; i < count; ++i) {
    const unsigned shift = 8 - Bits - static_cast<unsigned>(i % per_byte) * Bits;
    dst[i] = static_cast<std::uint8_t>((src[i / per_byte] >> shift) & mask);
  }
}

// 12-bit samples, packed MSB first (two samples in three bytes), to native uint16.
void unpack12(const std::uint8_t* src, std::uint64_t count, std::uint8_t* dst) {
  for (std::uint64_t i = 0; i < count; ++i) {
    const std::uint8_t* b = src + i * 3 / 2;
    const std::uint16_t v = i % 2 == 0 ? static_cast<std::uint16_t>((b[0] << 4) | (b[1] >> 4))
                                       : static_cast<std::uint16_t>(((b[0] & 0x0F) << 8) | b[1]);
    std::memcpy(dst + 2 * i, &v, 2);
  }
}

void unpack(unsigned bits, const std::uint8_t* src, std::uint64_t count, std::uint8_t* dst) {
  switch (bits) {
    case 12: unpack12(src, count, dst); break;
    case 1: unpack_samples<1>(src, count, dst); break;
    case 2: unpack_samples<2>(src, count, dst); break;
    default: unpack_samples<4>(src, count, dst); break;
  }
}

// A strip or tile with no bytes (offset or byte count 0, or beyond the declared ones): tifffile
// decodes it as zeros, and so do we (e.g. an empty extra-sample plane).
bool absent(TIFF* tif, std::uint32_t strile) {
  int err = 0;
  const std::uint64_t count = TIFFGetStrileByteCountWithErr(tif, strile, &err);
  if (err) return true;
  const std::uint64_t offset = TIFFGetStrileOffsetWithErr(tif, strile, &err);
  return err || count == 0 || offset == 0;
}

void decode_strips(const TiffHandle& h, const Geometry& g, std::uint8_t* out) {
  TIFF* tif = h.get();
  const std::uint64_t spp = g.samples_per_plane_pixel();
  const std::uint64_t out_row = std::uint64_t{g.width} * spp * g.sample_bytes();  // unpacked
  const std::uint64_t in_row = g.stored_bytes(g.width);                             // as stored
  const std::uint64_t plane_bytes = out_row * g.height;
  const std::uint32_t per_plane = (g.height + g.rows_per_strip - 1) / g.rows_per_strip;
  // Packed bit depths decode one strip into scratch and unpack; others decode in place.
  std::vector<std::uint8_t> scratch(g.packed() ? in_row * g.rows_per_strip : 0);
  for (std::uint32_t p = 0; p < g.planes(); ++p) {
    for (std::uint32_t s = 0; s < per_plane; ++s) {
      const std::uint64_t y0 = std::uint64_t{s} * g.rows_per_strip;
      const std::uint64_t rows = std::min<std::uint64_t>(g.rows_per_strip, g.height - y0);
      std::uint8_t* dst = out + p * plane_bytes + y0 * out_row;
      const tmsize_t want = static_cast<tmsize_t>(rows * in_row);
      if (absent(tif, p * per_plane + s)) {
        std::memset(dst, 0, rows * out_row);
        continue;
      }
      const tmsize_t got = TIFFReadEncodedStrip(tif, p * per_plane + s, g.packed() ? scratch.data() : dst, want);
      if (got != want) h.corrupt("TIFF strip " + std::to_string(p * per_plane + s) + " could not be decoded");
      if (g.packed())
        for (std::uint64_t r = 0; r < rows; ++r)
          unpack(g.bits, scratch.data() + r * in_row, g.width * spp, dst + r * out_row);
    }
  }
}

void decode_tiles(const TiffHandle& h, const Geometry& g, std::uint8_t* out) {
  TIFF* tif = h.get();
  const std::uint64_t spp = g.samples_per_plane_pixel();
  const std::uint64_t px_bytes = spp * g.sample_bytes();  // output bytes per pixel of one plane
  const std::uint64_t out_row = std::uint64_t{g.width} * px_bytes;
  const std::uint64_t plane_bytes = out_row * g.height;
  const std::uint64_t tile_row = g.stored_bytes(g.tile_width);
  const tmsize_t tile_bytes = static_cast<tmsize_t>(tile_row * g.tile_height);
  // Tiles overhang the right/bottom edges: decode each into scratch and copy the part inside.
  std::vector<std::uint8_t> scratch(static_cast<std::size_t>(tile_bytes));
  for (std::uint32_t p = 0; p < g.planes(); ++p) {
    for (std::uint32_t y = 0; y < g.height; y += g.tile_height) {
      const std::uint64_t rows = std::min<std::uint64_t>(g.tile_height, g.height - y);
      for (std::uint32_t x = 0; x < g.width; x += g.tile_width) {
        const std::uint64_t cols = std::min<std::uint64_t>(g.tile_width, g.width - x);
        const std::uint32_t tile = TIFFComputeTile(tif, x, y, 0, static_cast<std::uint16_t>(p));
        std::uint8_t* dst = out + p * plane_bytes + std::uint64_t{y} * out_row + std::uint64_t{x} * px_bytes;
        if (absent(tif, tile)) {
          for (std::uint64_t r = 0; r < rows; ++r) std::memset(dst + r * out_row, 0, cols * px_bytes);
          continue;
        }
        if (TIFFReadEncodedTile(tif, tile, scratch.data(), tile_bytes) != tile_bytes)
          h.corrupt("TIFF tile " + std::to_string(tile) + " could not be decoded");
        for (std::uint64_t r = 0; r < rows; ++r) {
          const std::uint8_t* src = scratch.data() + r * tile_row;
          if (g.packed())
            unpack(g.bits, src, cols * spp, dst + r * out_row);
          else
            std::memcpy(dst + r * out_row, src, cols * px_bytes);
        }
      }
    }
  }
}

class TiffFormat final : public Format {
 public:
  std::string_view name() const override { return "tiff"; }
  const std::vector<std::string>& extensions() const override { return extensions_; }

  ImageInfo probe(const std::string& path, const FormatOptions& options) const override {
    TiffHandle h(path);
    return info_from(read_geometry(h, options));
  }

  void decode(const std::string& path, const FormatOptions& options, const ImageInfo& info,
              void* out) const override {
    TiffHandle h(path);
    const Geometry g = read_geometry(h, options);
    const ImageInfo now = info_from(g);
    if (now.height != info.height || now.width != info.width || now.channels != info.channels ||
        now.dtype != info.dtype || now.layout != info.layout)
      fail(ErrorKind::Corrupt, "TIFF file changed since it was probed");
    auto* dst = static_cast<std::uint8_t*>(out);
    if (g.tiled)
      decode_tiles(h, g, dst);
    else
      decode_strips(h, g, dst);
  }

 private:
  std::vector<std::string> extensions_{".tif", ".tiff"};
};

}  // namespace

const Format& tiff_format() {
  static const TiffFormat format;
  return format;
}

}  // namespace i2z
