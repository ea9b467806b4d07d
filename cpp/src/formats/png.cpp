// PNG via libpng 1.6 (classic API with explicit transforms), matching Pillow 13's
// `np.asarray(Image.open(p))`, with palettes expanded:
//   * gray 8-bit -> (H,W) uint8; gray 16-bit -> (H,W) uint16 (Pillow mode "I;16");
//   * gray 2/4-bit -> (H,W) uint8 scaled to 0..255 (x85, x17), as Pillow's mode "L";
//   * gray 1-bit -> (H,W) uint8 holding 0/1 (Pillow gives mode "1", a bool array);
//   * gray+alpha 8-bit -> (H,W,2); gray+alpha 16-bit -> (H,W,4) uint8 G,G,G,A (Pillow opens
//     it as "RGBA" from rawmode "LA;16B");
//   * RGB / RGBA 8-bit -> (H,W,3) / (H,W,4) uint8;
//   * RGB / RGBA 16-bit -> uint8 with the HIGH byte of each sample (Pillow 13 opens them as
//     "RGB"/"RGBA" from rawmodes "RGB;16B"/"RGBA;16B", i.e. truncation, not rounding);
//   * palette -> (H,W,3) RGB, or (H,W,4) RGBA when a valid tRNS chunk exists, like
//     `Image.open(p).convert("RGBA" if "transparency" in im.info else "RGB")`; indices past
//     the end of PLTE give black (and alpha 255), as in Pillow;
//   * tRNS of gray and RGB images is ignored (Pillow keeps "L"/"I;16"/"RGB" and only records
//     it in im.info); gAMA, sBIT, iCCP... are ignored, as Pillow does.
// Known differences: a zero-length or over-long palette tRNS is invalid for libpng (ignored,
// giving RGB) while Pillow turns it into RGBA; a bad CRC anywhere up to the last IDAT is an
// error here (Pillow does not check IDAT CRCs). Chunks after the last IDAT are not read, so a
// file that lacks only its IEND still decodes, as in Pillow.
//
// Common layouts first go through the fast path (png_fast.cpp), which refuses whatever it
// cannot decode to exactly libpng's pixels; libpng below then decodes (or rejects) the file.
//
// libpng quirks handled here:
//   * Errors: libpng requires its error callback not to return. Throwing a C++ exception
//     through libpng's C frames is undefined, so the callback records the message and
//     longjmps. Every libpng call runs inside a small function (`read_header`,
//     `read_pixels`) whose frame holds the setjmp and only trivially destructible locals, so
//     no destructor is ever skipped; the C++ caller turns the failure into i2z::Error.
//   * Warnings and benign errors (libpng's default on read) go to a no-op callback.
//   * libpng's default user limits reject images wider or taller than 1,000,000 pixels;
//     they are raised to the PNG maximum, and max_pixels is our bound instead.
#include <png.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include "formats/file_io.hpp"
#include "formats/format.hpp"
#include "formats/png_fast.hpp"
#include "i2z/error.hpp"

namespace i2z {
namespace {

// Where libpng reads from: a FILE* (probe: only the chunks before IDAT are read) or the whole
// file in memory (decode: one read() instead of many small ones).
struct Source {
  std::FILE* fp = nullptr;
  const unsigned char* data = nullptr;
  std::size_t size = 0, pos = 0;
};

// One libpng read handle. Not movable: libpng keeps pointers to it.
class PngHandle {
 public:
  explicit PngHandle(Source* source) : source_(source) {
    png_ = png_create_read_struct(PNG_LIBPNG_VER_STRING, this, on_error, on_warning);
    if (png_ == nullptr) fail(ErrorKind::Runtime, "PNG: cannot create a libpng read struct");
    info_ = png_create_info_struct(png_);
    if (info_ == nullptr) {
      png_destroy_read_struct(&png_, nullptr, nullptr);
      fail(ErrorKind::Runtime, "PNG: cannot create a libpng info struct");
    }
    png_set_read_fn(png_, this, on_read);
  }
  ~PngHandle() { png_destroy_read_struct(&png_, &info_, nullptr); }
  PngHandle(const PngHandle&) = delete;
  PngHandle& operator=(const PngHandle&) = delete;

  png_structp png() const { return png_; }
  png_infop info() const { return info_; }

  [[noreturn]] void raise() const {
    fail(io_error_ ? ErrorKind::IO : ErrorKind::Corrupt, std::string("corrupt PNG: ") + message_);
  }

 private:
  static void on_error(png_structp png, png_const_charp msg) {
    auto* self = static_cast<PngHandle*>(png_get_error_ptr(png));
    std::snprintf(self->message_, sizeof self->message_, "%s", msg != nullptr ? msg : "unknown libpng error");
    png_longjmp(png, 1);
  }
  static void on_warning(png_structp, png_const_charp) {}

  static void on_read(png_structp png, png_bytep out, png_size_t n) {
    auto* self = static_cast<PngHandle*>(png_get_io_ptr(png));
    Source& s = *self->source_;
    if (s.fp != nullptr) {
      const std::size_t got = std::fread(out, 1, n, s.fp);
      if (got == n) return;
      if (std::ferror(s.fp)) {
        self->io_error_ = true;
        png_error(png, "read error");
      }
    } else if (n <= s.size - s.pos) {
      std::memcpy(out, s.data + s.pos, n);
      s.pos += n;
      return;
    }
    png_error(png, "file is truncated");
  }

  Source* source_;
  png_structp png_ = nullptr;
  png_infop info_ = nullptr;
  bool io_error_ = false;
  char message_[256] = {};
};

struct Header {
  png_uint_32 width = 0, height = 0;
  int bit_depth = 0, color_type = 0;
  bool trns = false;
};

void configure(png_structp png) {
  png_set_user_limits(png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
  // Critical chunks already fail on a bad CRC; ancillary ones would only be dropped with a warning.
  png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
  png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, reinterpret_cast<png_const_bytep>(kPngIgnoredChunks),
                              sizeof kPngIgnoredChunks / 5);
}

// The libpng frames: setjmp here, only trivially destructible locals. Return false when
// libpng reported an error (message in the handle).
bool read_header(PngHandle& h, Header* out) noexcept {
  png_structp png = h.png();
  png_infop info = h.info();
  if (setjmp(png_jmpbuf(png))) return false;
  configure(png);
  png_read_info(png, info);
  out->width = png_get_image_width(png, info);
  out->height = png_get_image_height(png, info);
  out->bit_depth = png_get_bit_depth(png, info);
  out->color_type = png_get_color_type(png, info);
  out->trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
  return true;
}

enum class PixelsResult { ok, libpng_error, layout_mismatch };

PixelsResult read_pixels(PngHandle& h, const Header& hdr, std::size_t row_bytes,
                         unsigned char* out) noexcept {
  png_structp png = h.png();
  png_infop info = h.info();
  if (setjmp(png_jmpbuf(png))) return PixelsResult::libpng_error;
  switch (hdr.color_type) {
    case PNG_COLOR_TYPE_PALETTE:
      png_set_palette_to_rgb(png);  // also turns a tRNS chunk into an alpha channel
      break;
    case PNG_COLOR_TYPE_GRAY:
      // Not png_set_expand(): that would add an alpha channel from tRNS.
      if (hdr.bit_depth == 1) png_set_packing(png);  // one byte per pixel, values 0/1
      else if (hdr.bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
      break;
    case PNG_COLOR_TYPE_GRAY_ALPHA:
      if (hdr.bit_depth == 16) png_set_gray_to_rgb(png);
      break;
    default: break;
  }
  if (hdr.bit_depth == 16) {
    if (hdr.color_type == PNG_COLOR_TYPE_GRAY) {
      if constexpr (std::endian::native == std::endian::little) png_set_swap(png);
    } else {
      png_set_strip_16(png);  // drops the low byte (png_set_scale_16 would round)
    }
  }
  const int passes = png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != row_bytes) return PixelsResult::layout_mismatch;
  // Straight into the caller's rows. For Adam7 each pass fills its own pixels of a row, like
  // png_read_image() does, without needing an array of row pointers.
  for (int pass = 0; pass < passes; ++pass)
    for (png_uint_32 y = 0; y < hdr.height; ++y) png_read_row(png, out + y * row_bytes, nullptr);
  return PixelsResult::ok;
}

ImageInfo info_from_header(const Header& hdr, const FormatOptions& options) {
  ImageInfo info;
  info.height = hdr.height;
  info.width = hdr.width;
  info.layout = PixelLayout::HWC;
  info.dtype = DType::u8;
  switch (hdr.color_type) {
    case PNG_COLOR_TYPE_GRAY:
      info.channels = 1;
      if (hdr.bit_depth == 16) info.dtype = DType::u16;
      break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: info.channels = hdr.bit_depth == 16 ? 4 : 2; break;
    case PNG_COLOR_TYPE_RGB: info.channels = 3; break;
    case PNG_COLOR_TYPE_RGB_ALPHA: info.channels = 4; break;
    case PNG_COLOR_TYPE_PALETTE: info.channels = hdr.trns ? 4 : 3; break;
    default: fail(ErrorKind::Corrupt, "corrupt PNG: unknown color type " + std::to_string(hdr.color_type));
  }
  if (info.channels == 1) info.shape = {info.height, info.width};
  else info.shape = {info.height, info.width, info.channels};
  // H, W < 2^31 and C <= 4: the product fits in 64 bits.
  check_pixel_limit(info.height, info.width, info.channels, options.max_pixels);
  return info;
}


void check_signature(PngHandle& h, const unsigned char* sig, std::size_t n) {
  if (n < 8 || png_sig_cmp(sig, 0, 8) != 0) fail(ErrorKind::Corrupt, "not a PNG file (bad signature)");
  png_set_sig_bytes(h.png(), 8);
}

class PngFormat final : public Format {
 public:
  std::string_view name() const override { return "png"; }
  const std::vector<std::string>& extensions() const override {
    static const std::vector<std::string> exts{".png"};
    return exts;
  }

  ImageInfo probe(const std::string& path, const FormatOptions& options) const override {
    FileCloser file{fopen_input(path)};
    unsigned char sig[8];
    const std::size_t n = std::fread(sig, 1, sizeof sig, file.fp);
    Source source;
    source.fp = file.fp;
    PngHandle h(&source);
    check_signature(h, sig, n);
    Header hdr;
    if (!read_header(h, &hdr)) h.raise();
    return info_from_header(hdr, options);
  }

  void decode(const std::string& path, const FormatOptions& options, const ImageInfo& info,
              void* out) const override {
    const std::vector<unsigned char> data =
        read_whole_file(path, options.memory_budget, png_extent(info.byte_size() + info.height));
    auto* pixels = static_cast<unsigned char*>(out);
    if (png_decode_fast(data.data(), data.size(), options, info, pixels)) return;
    png_decode_libpng(data.data(), data.size(), options, info, pixels);
  }
};

}  // namespace

void png_decode_libpng(const unsigned char* data, std::size_t size, const FormatOptions& options,
                       const ImageInfo& info, unsigned char* out) {
  Source source;
  source.data = data;
  source.size = size;
  source.pos = 8;
  PngHandle h(&source);
  check_signature(h, data, size);
  Header hdr;
  if (!read_header(h, &hdr)) h.raise();
  const ImageInfo now = info_from_header(hdr, options);
  if (now.height != info.height || now.width != info.width || now.channels != info.channels ||
      now.dtype != info.dtype || info.layout != PixelLayout::HWC)
    fail(ErrorKind::Corrupt, "PNG changed since it was probed: now " + std::to_string(now.height) + "x" +
                                 std::to_string(now.width) + "x" + std::to_string(now.channels) + " " +
                                 std::string(dtype_name(now.dtype)));
  const std::size_t row_bytes = static_cast<std::size_t>(info.width) * info.channels * dtype_size(info.dtype);
  switch (read_pixels(h, hdr, row_bytes, out)) {
    case PixelsResult::ok: return;
    case PixelsResult::libpng_error: h.raise();
    case PixelsResult::layout_mismatch:
      fail(ErrorKind::Runtime, "PNG: libpng row size does not match the expected layout");
  }
}

const Format& png_format() {
  static const PngFormat format;
  return format;
}

}  // namespace i2z
