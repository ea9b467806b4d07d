// JPEG via libjpeg-turbo, matching Pillow 13's `np.asarray(Image.open(p))`:
//   * 1 component -> (H,W) uint8; 3 components (YCbCr or RGB) -> (H,W,3) uint8 RGB;
//   * 4 components (CMYK or YCCK) -> (H,W,4) uint8 CMYK, INVERTED (255 - v): Pillow always
//     unpacks 4-component JPEGs with rawmode "CMYK;I" ("assume Adobe conventions"), whether
//     or not an Adobe marker is present; libjpeg itself converts YCCK to CMYK but never inverts;
//   * other component counts and 12-bit / lossless data are errors (Pillow refuses them too).
// Decoding uses the same settings as Pillow (JDCT_ISLOW, fancy upsampling, block smoothing
// for progressive files: the library defaults). Pillow 13 bundles libjpeg-turbo 3.2.0; the
// system library here is 2.1.5; their output has been identical on every test image.
//
// Corrupt data: libjpeg only *warns* about missing or damaged entropy data and fills the
// rest of the image with gray. Pillow refuses truncated files ("image file is truncated")
// but silently accepts damaged ones. Here both are errors (see kFatalWarnings): a slot that
// is partly gray is worse than a slot marked as failed. Harmless warnings (extraneous bytes
// before a marker, unknown Adobe transform, bad ICC or JFIF data, ...) are ignored.
// jpeg_finish_decompress() is not called: nothing after the last scanline affects the pixels.
//
// libjpeg quirks handled here:
//   * Its default error_exit() calls exit() and its warnings print to stderr: error_exit and
//     emit_message are replaced; they record the message and longjmp. Throwing through
//     libjpeg's C frames would be undefined, so every libjpeg call runs inside a small
//     function (`read_header`, `read_pixels`) whose frame holds the setjmp and only trivially
//     destructible locals; the C++ caller turns the failure into i2z::Error.
//   * jpeg_destroy_decompress() is safe on a zeroed struct or after a failed
//     jpeg_create_decompress(), so the RAII holder calls it unconditionally.
#include <cstdio>  // before jpeglib.h, which uses FILE and size_t without including them
// clang-format off
#include <jpeglib.h>
#include <jerror.h>
// clang-format on

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csetjmp>
#include <climits>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include "formats/file_io.hpp"
#include "formats/format.hpp"
#include "i2z/error.hpp"

namespace i2z {
namespace {

// Warnings meaning that pixel data is missing or damaged.
bool is_fatal_warning(int code) {
  switch (code) {
    case JWRN_JPEG_EOF:          // "Premature end of JPEG file" (truncated)
    case JWRN_HIT_MARKER:        // "Corrupt JPEG data: premature end of data segment"
    case JWRN_HUFF_BAD_CODE:     // "Corrupt JPEG data: bad Huffman code"
    case JWRN_ARITH_BAD_CODE:    // "Corrupt JPEG data: bad arithmetic code"
    case JWRN_MUST_RESYNC:       // "Corrupt JPEG data: found marker ... instead of RST"
    case JWRN_NOT_SEQUENTIAL:    // "Invalid SOS parameters for sequential JPEG"
    case JWRN_BOGUS_PROGRESSION: // "Inconsistent progression sequence ..."
      return true;
    default: return false;
  }
}

struct ErrorManager {
  jpeg_error_mgr pub;  // first member: libjpeg hands back a jpeg_error_mgr*
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void on_error_exit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void on_emit_message(j_common_ptr cinfo, int level) {
  if (level >= 0) return;  // trace messages
  cinfo->err->num_warnings++;
  if (is_fatal_warning(cinfo->err->msg_code)) on_error_exit(cinfo);
}

void on_output_message(j_common_ptr) {}

// One decompressor. Not movable: libjpeg keeps a pointer to `err`.
struct Decompressor {
  jpeg_decompress_struct cinfo;
  ErrorManager err;
  Decompressor() {
    std::memset(&cinfo, 0, sizeof cinfo);
    std::memset(&err, 0, sizeof err);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = on_error_exit;
    err.pub.emit_message = on_emit_message;
    err.pub.output_message = on_output_message;
  }
  ~Decompressor() { jpeg_destroy_decompress(&cinfo); }
  Decompressor(const Decompressor&) = delete;
  Decompressor& operator=(const Decompressor&) = delete;
  [[noreturn]] void raise() const { fail(ErrorKind::Corrupt, std::string("corrupt JPEG: ") + err.message); }
};

struct Header {
  JDIMENSION width = 0, height = 0;
  int components = 0;
};

// The libjpeg frames. Either `fp` or (`data`, `size`) is the source. Return false when
// libjpeg reported an error (message in d.err).
bool read_header(Decompressor& d, std::FILE* fp, const unsigned char* data, unsigned long size,
                 Header* out) noexcept {
  if (setjmp(d.err.jump)) return false;
  jpeg_create_decompress(&d.cinfo);
  if (fp != nullptr) jpeg_stdio_src(&d.cinfo, fp);
  else jpeg_mem_src(&d.cinfo, data, size);
  jpeg_read_header(&d.cinfo, TRUE);
  out->width = d.cinfo.image_width;
  out->height = d.cinfo.image_height;
  out->components = d.cinfo.num_components;
  return true;
}

enum class PixelsResult { ok, libjpeg_error, layout_mismatch };

PixelsResult read_pixels(Decompressor& d, int channels, unsigned char* out) noexcept {
  jpeg_decompress_struct& cinfo = d.cinfo;
  if (setjmp(d.err.jump)) return PixelsResult::libjpeg_error;
  cinfo.out_color_space = channels == 1 ? JCS_GRAYSCALE : channels == 3 ? JCS_RGB : JCS_CMYK;
  cinfo.dct_method = JDCT_ISLOW;
  cinfo.do_fancy_upsampling = TRUE;
  jpeg_start_decompress(&cinfo);
  if (cinfo.output_components != channels) return PixelsResult::layout_mismatch;
  const std::size_t row_bytes = std::size_t{cinfo.output_width} * static_cast<std::size_t>(channels);
  constexpr JDIMENSION kBatch = 16;  // >= rec_outbuf_height (at most 4 in libjpeg-turbo)
  JSAMPROW rows[kBatch];
  while (cinfo.output_scanline < cinfo.output_height) {
    const JDIMENSION first = cinfo.output_scanline;
    const JDIMENSION n = std::min(kBatch, cinfo.output_height - first);
    for (JDIMENSION i = 0; i < n; ++i) rows[i] = out + (first + i) * row_bytes;
    const JDIMENSION got = jpeg_read_scanlines(&cinfo, rows, n);
    if (channels == 4)  // Pillow's "CMYK;I": Adobe-style inverted CMYK
      for (unsigned char *p = rows[0], *end = p + got * row_bytes; p != end; ++p)
        *p = static_cast<unsigned char>(255 - *p);
  }
  return PixelsResult::ok;
}

ImageInfo info_from_header(const Header& hdr, const FormatOptions& options) {
  if (hdr.components != 1 && hdr.components != 3 && hdr.components != 4)
    fail(ErrorKind::Value, "unsupported JPEG with " + std::to_string(hdr.components) + " components");
  ImageInfo info;
  info.height = hdr.height;
  info.width = hdr.width;
  info.channels = static_cast<std::uint32_t>(hdr.components);
  info.dtype = DType::u8;
  info.layout = PixelLayout::HWC;
  if (info.channels == 1) info.shape = {info.height, info.width};
  else info.shape = {info.height, info.width, info.channels};
  check_pixel_limit(info.height, info.width, info.channels, options.max_pixels);
  return info;
}


class JpegFormat final : public Format {
 public:
  std::string_view name() const override { return "jpeg"; }
  const std::vector<std::string>& extensions() const override {
    static const std::vector<std::string> exts{".jpg", ".jpeg"};
    return exts;
  }

  ImageInfo probe(const std::string& path, const FormatOptions& options) const override {
    FileCloser file{fopen_input(path)};
    Decompressor d;
    Header hdr;
    if (!read_header(d, file.fp, nullptr, 0, &hdr)) d.raise();
    return info_from_header(hdr, options);
  }

  void decode(const std::string& path, const FormatOptions& options, const ImageInfo& info,
              void* out) const override {
    // Streamed: libjpeg reads only up to the end of the image, whatever follows it.
    FileCloser file{fopen_input(path)};
    Decompressor d;
    Header hdr;
    if (!read_header(d, file.fp, nullptr, 0, &hdr)) d.raise();
    // libjpeg's own buffers (a progressive file's coefficients) within the worker's budget.
    d.cinfo.mem->max_memory_to_use = static_cast<long>(std::min<std::uint64_t>(options.memory_budget, LONG_MAX));
    const ImageInfo now = info_from_header(hdr, options);
    if (now.height != info.height || now.width != info.width || now.channels != info.channels ||
        info.dtype != DType::u8 || info.layout != PixelLayout::HWC)
      fail(ErrorKind::Corrupt, "JPEG changed since it was probed: now " + std::to_string(now.height) + "x" +
                                   std::to_string(now.width) + "x" + std::to_string(now.channels));
    switch (read_pixels(d, static_cast<int>(info.channels), static_cast<unsigned char*>(out))) {
      case PixelsResult::ok: return;
      case PixelsResult::libjpeg_error: d.raise();
      case PixelsResult::layout_mismatch:
        fail(ErrorKind::Runtime, "JPEG: libjpeg output does not match the expected layout");
    }
  }
};

}  // namespace

const Format& jpeg_format() {
  static const JpegFormat format;
  return format;
}

}  // namespace i2z
