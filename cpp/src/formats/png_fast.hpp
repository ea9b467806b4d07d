// The two PNG decoders behind png_format(): the fast path (png_fast.cpp) and libpng (png.cpp).
// Exposed for the differential fuzz harness, the tests and the "libpng decode" bench row.
#pragma once
#include <cstddef>

#include "formats/format.hpp"

namespace i2z {

// Ancillary chunks that cannot change the pixels png_format() returns: libpng is told to skip
// them unread (CRC still checked), and the fast path accepts exactly these besides IHDR/IDAT.
inline constexpr char kPngIgnoredChunks[] =
    "bKGD\0cHRM\0eXIf\0gAMA\0hIST\0iCCP\0iTXt\0oFFs\0pCAL\0pHYs\0sBIT\0sCAL\0sPLT\0sRGB\0tEXt\0tIME\0zTXt";

// Decodes a whole PNG file held in memory into `out` (info.byte_size() bytes, as png_format()
// lays it out) when the file is one of the common layouts (non-interlaced 8/16-bit gray,
// gray+alpha, RGB, RGBA; no tRNS, no PLTE) AND every chunk up to the end of the IDAT run is
// well formed with a good CRC AND the zlib stream inflates to exactly the expected size with a
// good Adler-32. Returns false otherwise ("refused": the caller decodes with libpng, which
// gives the pixels or the error it always gave); `out` may then hold garbage. Never throws.
// Whenever it returns true, the pixels are those libpng gives (fuzz_png_diff checks this).
bool png_decode_fast(const unsigned char* data, std::size_t size, const FormatOptions& options,
                     const ImageInfo& info, unsigned char* out) noexcept;

// The libpng decode of png_format() alone (no fast path): same contract as Format::decode
// on a file already in memory (signature included). Throws i2z::Error.
void png_decode_libpng(const unsigned char* data, std::size_t size, const FormatOptions& options,
                       const ImageInfo& info, unsigned char* out);

}  // namespace i2z
