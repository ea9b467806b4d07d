// FITS via cfitsio 4.2, matching astropy 8's `fits.getdata(path, ext)`:
//   * HDU choice: the first image HDU with data (NAXIS > 0), tables and empty HDUs skipped
//     (getdata stops at HDU 1, and returns a table there). A tile-compressed image (BINTABLE
//     with ZIMAGE = T) counts as an image and is read as the image it holds, as astropy does.
//   * BZERO / BSCALE that are present but not finite numbers ('abc', NAN) are errors, as in
//     astropy.
//   * Selectors: an int is an HDU index (0 = primary, negative counts from the end, as
//     `hdul[i]`); a string is an EXTNAME, case-insensitive, first match, EXTVER ignored, and
//     "PRIMARY" always names HDU 0 (as `hdul["SCI"]`). Several selectors stack 2-D HDUs as the
//     channels of one (C,H,W) image whose dtype is the numpy promotion of theirs; the header
//     reported is the first HDU's.
//   * dtypes (astropy's `_ImageBaseHDU._scale_data`): BITPIX 8/16/32/64/-32/-64 ->
//     uint8/int16/int32/int64/float32/float64. With BSCALE = 1 and BZERO = 2^(bits-1)
//     (the unsigned convention): 16/32/64 -> uint16/uint32/uint64, and BITPIX 8 with
//     BZERO = -128 -> int8. Any other BSCALE/BZERO, or a BLANK keyword on integer data ->
//     float32 (BITPIX 8, 16) or float64 (32, 64), computed as astropy does: convert, multiply
//     by BSCALE, add BZERO, in that float type (float32 arithmetic for float32, so results
//     are bit-identical), then raw == BLANK -> NaN when BLANK != 0 (astropy skips BLANK = 0).
//     Float data are scaled in their own type; BLANK is ignored there, as astropy does.
//   * Axes: NAXIS1 is the fastest. 1-D -> (W,), 2-D -> (H,W), 3-D -> (C,H,W), all CHW.
//
// Files: fits_open.cpp (opening), fits_header.cpp (cards), fits_hdu.cpp (HDU choice, scaling,
// pixels), fits_guard.cpp (header walk and tile checks), fits_internal.hpp (what they share).
//
// Differences from astropy, on purpose:
//   * NAXIS > 3 is accepted when the axes past the third have length 1, and reported squeezed
//     to (C,H,W) (astropy: (1,...,C,H,W)); otherwise it is an error.
//   * A zero-length axis, or a table where an image is expected, is an error (astropy returns
//     an empty array or the table's records).
//   * BITPIX 8 + BZERO -128 + BLANK gives int8 with BLANK ignored (astropy raises).
//   * fits_header_json of a tile-compressed HDU is cfitsio's image view of the header, which
//     keeps an EXTNAME = 'COMPRESSED_IMAGE' that astropy hides. Where cfitsio's converter
//     (fits_convert_hdr2str) refuses a valid header (ZTENSION late, BSCALE before it), the view
//     is built from fits_hdr2str's table header as astropy's CompImageHeader does.
//
// cfitsio quirks handled here:
//   * Thread safety: Debian builds cfitsio reentrant (checked at run time with
//     fits_is_reentrant(); a non-reentrant build is serialised by one mutex). Every call opens
//     its own fitsfile*; a READONLY open never attaches to another thread's open handle of
//     the same file (cfitsio only shares FITSfile structures for write access).
//   * Errors are status codes; the message is fits_get_errstatus() plus what we were doing.
//     cfitsio's error-message stack is one process-wide list shared by all threads (bounded at
//     25 entries), so reading it could report another thread's error: it is not used.
//   * Files: cfitsio gets "/proc/self/fd/N" of a descriptor we opened (its extended filename
//     syntax, leading-blank stripping and 1024-byte name limit never see the real path). It
//     would transparently gunzip any compressed file into unbounded memory, so the file is
//     sniffed first: "SIMPLE  =" is read from disk, gzip (.fits.gz) is inflated here with a size
//     bound (max_pixels * 8 + 64 MiB) into an anonymous file, anything else is rejected.
//     cfitsio reads whole 2880-byte blocks, so a file whose last block lacks its padding
//     (astropy reads those) is given as a zero-padded anonymous copy. cfitsio's memory driver
//     is avoided: on a truncated file it read past its buffer under AddressSanitizer.
//   * Pixels are read raw (fits_set_bscale(1, 0), no null checks) and scaled here, so plain
//     and tile-compressed HDUs share astropy's rules exactly; cfitsio still dequantises
//     lossy-compressed floats (the same algorithm astropy ports), with ZBLANK pixels -> NaN.
//   * cfitsio 4.2's tile decoders trust their input (overreads, unbounded growth, a heap
//     overflow found by fuzzing), so every tile is checked before cfitsio decodes an HDU
//     (validate_tiles, fits_guard.cpp); this costs about as much again as cfitsio's own RICE/GZIP decode.
//     Only the header of HCOMPRESS streams and nothing of PLIO streams is checked, and cfitsio
//     leaks a few bytes per corrupt HCOMPRESS tile.
#include <cstdint>
#include <string>

#include "formats/fits_internal.hpp"
#include "formats/format.hpp"

namespace i2z {
namespace {

using namespace fits;

class FitsFormat final : public Format {
 public:
  std::string_view name() const override { return "fits"; }
  const std::vector<std::string>& extensions() const override {
    static const std::vector<std::string> exts{".fits", ".fit", ".fts", ".fz", ".fits.gz", ".fit.gz", ".fts.gz"};
    return exts;
  }

  ImageInfo probe(const std::string& path, const FormatOptions& options) const override {
    auto lock = cfitsio_lock();
    FitsFile file(path, options.max_pixels);
    Plan p = plan(file.get(), options);
    int hdutype = 0;
    move_to(file.get(), p.hdus[0].number, &hdutype);
    p.info.fits_header_json = header_json(read_cards(file.get()));
    return std::move(p.info);
  }

  void decode(const std::string& path, const FormatOptions& options, const ImageInfo& info,
              void* out) const override {
    decode_impl(path, options, info, out, nullptr);
  }

  void decode_with_header(const std::string& path, const FormatOptions& options, const ImageInfo& info, void* out,
                          std::string& fits_header_json) const override {
    decode_impl(path, options, info, out, &fits_header_json);
  }

 private:
  void decode_impl(const std::string& path, const FormatOptions& options, const ImageInfo& info, void* out,
                   std::string* header) const {
    auto lock = cfitsio_lock();
    FitsFile file(path, options.max_pixels);
    const Plan p = plan(file.get(), options);
    if (header) {  // as probe() reads it
      int hdutype = 0;
      move_to(file.get(), p.hdus[0].number, &hdutype);
      *header = header_json(read_cards(file.get()));
    }
    if (p.info.shape != info.shape || p.info.dtype != info.dtype || p.info.channels != info.channels)
      fail(ErrorKind::Corrupt, "FITS file changed since it was probed: now " + shape_text(p.info.shape) + " " +
                                   std::string(dtype_name(p.info.dtype)) + ", was " + shape_text(info.shape) + " " +
                                   std::string(dtype_name(info.dtype)));
    if (reinterpret_cast<std::uintptr_t>(out) % dtype_size(info.dtype) != 0)
      fail(ErrorKind::Runtime, "decode buffer is not aligned to its dtype");
    auto* base = static_cast<unsigned char*>(out);
    if (p.hdus.size() == 1) {
      read_hdu(file.get(), file.padded_from(), p.hdus[0], info.dtype, base,
               static_cast<std::size_t>(info.pixel_count()));
      return;
    }
    const std::size_t plane = static_cast<std::size_t>(info.height * info.width);
    for (std::size_t c = 0; c < p.hdus.size(); ++c)
      read_hdu(file.get(), file.padded_from(), p.hdus[c], info.dtype,
               base + c * plane * dtype_size(info.dtype), plane);
  }
};

}  // namespace

const Format& fits_format() {
  static const FitsFormat format;
  return format;
}

}  // namespace i2z
