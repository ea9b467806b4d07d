#include "formats/fits_guard.hpp"

#include <zlib.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <charconv>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "formats/fits_internal.hpp"
#include "i2z/error.hpp"

namespace i2z {
namespace {

constexpr std::size_t kBlock = 2880, kCard = 80;
constexpr long long kMaxAxes = 99;            // FITSfile::imgnaxis[99] in cfitsio 4.2
constexpr int kMaxHdus = 100000;              // bounds the walk over a file of tiny HDUs
constexpr std::uint64_t kSaturated = ~std::uint64_t{0};

std::uint64_t sat_mul(std::uint64_t a, std::uint64_t b) {
  std::uint64_t r;
  return __builtin_mul_overflow(a, b, &r) ? kSaturated : r;
}
std::uint64_t sat_add(std::uint64_t a, std::uint64_t b) {
  std::uint64_t r;
  return __builtin_add_overflow(a, b, &r) ? kSaturated : r;
}

bool read_block(int fd, std::uint64_t pos, char* out) {
  std::size_t got = 0;
  while (got < kBlock) {
    const ssize_t n = ::pread(fd, out + got, kBlock - got, static_cast<off_t>(pos + got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    got += static_cast<std::size_t>(n);
  }
  return true;
}

// The keyword as cfitsio matches it (ffgcrd): the name ends at the first blank, so to cfitsio
// "BITPIX )=" is BITPIX (fuzz_fits finding 15: the guard saw no BITPIX, stopped its walk after
// that HDU and missed a bad ZNAXIS1 that overflows cfitsio's ffc2j message buffer).
std::string_view keyword(std::string_view card) {
  std::string_view k = card.substr(0, 8);
  if (const auto blank = k.find(' '); blank != std::string_view::npos) k = k.substr(0, blank);
  return k;
}

// Where cfitsio's ffpsvc starts the value: column 11 after "= ", else right after the '='
// ("ZTILE2  =0   1" has the value "0   1" to cfitsio; fuzz_fits finding 16).
std::size_t value_start(std::string_view card) { return card[9] == ' ' ? 10 : 9; }

// The integer value of a "KEYWORD = value / comment" card, if it has one.
bool int_value(std::string_view card, long long* out) {
  if (card[8] != '=') return false;
  std::size_t i = value_start(card);
  while (i < card.size() && card[i] == ' ') ++i;
  if (i < card.size() && card[i] == '+') ++i;
  const char* first = card.data() + i;
  const char* last = card.data() + card.size();
  const auto r = std::from_chars(first, last, *out);
  return r.ec == std::errc() && r.ptr != first;
}

// The value as cfitsio's ffpsvc extracts it: a quoted string with its quotes, a complex value
// "(...)" through the first ')' (even one inside the comment), else the text up to a '/'
// comment, without surrounding blanks.
std::string_view value_text(std::string_view card) {
  if (card[8] != '=') return {};
  std::string_view v = card.substr(value_start(card));
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  if (!v.empty() && v.front() == '(') {
    const std::size_t close = v.find(')');
    if (close != std::string_view::npos) return v.substr(0, close + 1);
  }
  if (!v.empty() && v.front() == '\'') {
    std::size_t i = 1;
    while (i < v.size()) {
      if (v[i] != '\'') {
        ++i;
      } else if (i + 1 < v.size() && v[i + 1] == '\'') {
        i += 2;
      } else {
        ++i;
        break;
      }
    }
    return v.substr(0, i);
  }
  v = v.substr(0, v.find('/'));
  while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
  return v;
}

// "PREFIXn" -> n (>= 1), else 0.
long long suffix_number(std::string_view key, std::string_view prefix) {
  if (key.size() <= prefix.size() || key.substr(0, prefix.size()) != prefix) return 0;
  long long n = 0;
  const auto r = std::from_chars(key.data() + prefix.size(), key.data() + key.size(), n);
  return r.ec == std::errc() && r.ptr == key.data() + key.size() && n >= 1 ? n : 0;
}

// At most 28 characters of a header value for a message, bytes outside printable ASCII as '?'
// (messages reach Python as UTF-8 text).
std::string shown(std::string_view text) {
  std::string out(text.substr(0, 28));
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7E) c = '?';
  return text.size() > 28 ? out + "..." : out;
}

// Keywords cfitsio or the FITS reader read as 64-bit integers. (Not TNULLn: a string in ASCII
// tables, and cfitsio survives a long one in either kind of table.)
bool integer_key(std::string_view key) {
  static constexpr std::string_view kPlain[] = {"BITPIX", "NAXIS",   "PCOUNT", "GCOUNT", "BLANK",   "THEAP",
                                                "TFIELDS", "EXTVER", "EXTLEVEL", "ZBITPIX", "ZNAXIS", "ZBLANK",
                                                "ZDITHER0", "ZPCOUNT", "ZGCOUNT"};
  for (auto k : kPlain)
    if (key == k) return true;
  for (auto prefix : {"NAXIS", "ZNAXIS", "ZTILE", "ZVAL"})
    if (suffix_number(key, prefix)) return true;
  return false;
}

// Characters from column 11 to the end of the value (leading blanks included, as cfitsio may
// keep them).
std::size_t raw_value_length(std::string_view card) {
  if (card[8] != '=') return 0;
  const std::string_view text = value_text(card);
  return static_cast<std::size_t>(text.data() + text.size() - (card.data() + value_start(card)));
}

// Whether cfitsio converts `text` to a 64-bit integer without error: an integer in range, or a
// number (FITS also writes D exponents) whose value is in range.
bool fits_long_long(std::string_view text) {
  if (!text.empty() && text.front() == '+') text.remove_prefix(1);
  long long i = 0;
  auto r = std::from_chars(text.data(), text.data() + text.size(), i);
  if (r.ec == std::errc() && r.ptr == text.data() + text.size()) return true;
  std::string t(text);
  for (char& c : t)
    if (c == 'D' || c == 'd') c = 'E';
  double d = 0;
  const auto rd = std::from_chars(t.data(), t.data() + t.size(), d);
  return rd.ec == std::errc() && rd.ptr == t.data() + t.size() && d > -9.2e18 && d < 9.2e18;
}

bool logical_true(std::string_view card) {
  if (card[8] != '=') return false;
  std::size_t i = value_start(card);
  while (i < card.size() && card[i] == ' ') ++i;
  return i < card.size() && card[i] == 'T';
}

}  // namespace

void check_fits_headers(int fd, std::uint64_t size) {
  std::vector<char> block(kBlock);
  std::uint64_t pos = 0;
  for (int hdu = 0; hdu < kMaxHdus && pos < size; ++hdu) {
    long long naxis = 0, bitpix = 0, pcount = 0, gcount = 1;
    bool groups = false, zimage = false, rice = false;
    std::vector<std::uint64_t> axes;  // NAXIS1.. as declared (0 when absent or invalid)
    // Problems that matter only in a tile-compressed HDU (ZIMAGE = T may come later).
    std::vector<std::string> compressed_problems;
    std::vector<std::pair<long long, std::string>> znames, zvals;  // (n, value text)
    for (bool end = false; !end;) {
      if (size - pos < kBlock || !read_block(fd, pos, block.data())) return;
      pos += kBlock;
      for (std::size_t c = 0; c < kBlock / kCard && !end; ++c) {
        const std::string_view card(block.data() + c * kCard, kCard);
        const std::string_view key = keyword(card);
        long long v = 0;
        if (key == "END") {
          end = true;
        } else if (key == "NAXIS") {
          if (!int_value(card, &v)) continue;
          if (v > kMaxAxes)
            fail(ErrorKind::Value, "FITS HDU " + std::to_string(hdu) + " declares NAXIS = " + std::to_string(v) +
                                       "; at most " + std::to_string(kMaxAxes) + " axes are supported");
          naxis = v;
          axes.assign(static_cast<std::size_t>(std::max(v, 0LL)), 0);
        } else if (key.size() > 5 && key.substr(0, 5) == "NAXIS") {
          long long n = 0;
          const auto r = std::from_chars(key.data() + 5, key.data() + key.size(), n);
          if (r.ec == std::errc() && r.ptr == key.data() + key.size() && n >= 1 && n <= naxis &&
              int_value(card, &v) && v >= 0)
            axes[static_cast<std::size_t>(n - 1)] = static_cast<std::uint64_t>(v);
        } else if (key == "BITPIX") {
          int_value(card, &bitpix);
        } else if (key == "PCOUNT") {
          int_value(card, &pcount);
        } else if (key == "GCOUNT") {
          int_value(card, &gcount);
        } else if (key == "GROUPS") {
          groups = logical_true(card);
        } else if (key == "ZIMAGE") {
          // Any T counts: with repeated cards cfitsio may read an earlier one than the last.
          zimage = zimage || logical_true(card);
        } else if (key == "ZCMPTYPE") {
          rice = rice || value_text(card).find("RICE") != std::string_view::npos;
        }
        // cfitsio (and the FITS reader through it) reads these as 64-bit integers. ffc2j builds
        // the error message for a value it cannot convert in an 81-byte buffer with room for 28
        // characters of it, so a longer bad value overflows it (glibc's fortify check aborts).
        const std::string_view text = value_text(card);
        if (integer_key(key) && raw_value_length(card) > 28 && !fits_long_long(text))
          fail(ErrorKind::Value, "FITS HDU " + std::to_string(hdu) + " has an invalid " + std::string(key) +
                                     " value (" + shown(text) + ")");
        // A table column's name or format as bare text filling the value field: cfitsio's ffgtbp
        // strcpy()s it into a 70-byte ttype (or 10-byte tform) field, one byte short.
        const bool column_text_key = suffix_number(key, "TTYPE") || suffix_number(key, "TUNIT") ||
                                     suffix_number(key, "TFORM") || suffix_number(key, "TDIM") ||
                                     suffix_number(key, "TNULL") || suffix_number(key, "TDISP");
        if (column_text_key && !text.empty() && text.front() != '\'' && raw_value_length(card) >= 69)
          fail(ErrorKind::Value, "FITS HDU " + std::to_string(hdu) + " has an invalid " + std::string(key) +
                                     " value (" + shown(text) + "; a quoted string is expected)");
        // cfitsio divides by ZTILEn while reading the header (imcomp_get_compressed_image_par):
        // 0, or a value it cannot read as an integer (the size stays 0), is SIGFPE. It looks a
        // keyword up from its current position in the header, so every card of the name counts.
        if (suffix_number(key, "ZTILE") && (!int_value(card, &v) || v <= 0))
          compressed_problems.push_back(std::string(key) + " = " + shown(text) +
                                        " (tile sizes must be positive integers)");
        if (const long long n = suffix_number(key, "ZNAME")) znames.emplace_back(n, text);
        if (const long long n = suffix_number(key, "ZVAL")) zvals.emplace_back(n, text);
      }
    }
    // The RICE block size is a divisor too (SIGFPE when 0). cfitsio takes it from ZVAL1 of a
    // RICE HDU whatever ZNAME1 says, and from a ZVALn whose ZNAMEn is BLOCKSIZE.
    for (const auto& [m, val] : zvals) {
      bool block_size = rice && m == 1;
      for (const auto& [n, name] : znames) block_size = block_size || (n == m && name.find("BLOCKSIZE") != std::string::npos);
      long long b = 0;
      const auto r = std::from_chars(val.data(), val.data() + val.size(), b);
      if (block_size && (r.ec != std::errc() || b <= 0))
        compressed_problems.push_back("a RICE block size ZVAL" + std::to_string(m) + " = " + shown(val) +
                                      " (must be a positive integer)");
    }
    if (zimage && !compressed_problems.empty())
      fail(ErrorKind::Value, "FITS HDU " + std::to_string(hdu) + " is a tile-compressed image with " +
                                 compressed_problems[0]);
    // Data unit: |BITPIX|/8 * GCOUNT * (PCOUNT + NAXIS1 * ... * NAXISn), NAXIS1 = 0 skipped
    // for random groups; padded to whole blocks.
    if ((bitpix != 8 && bitpix != 16 && bitpix != 32 && bitpix != 64 && bitpix != -32 && bitpix != -64) ||
        pcount < 0 || gcount < 0)
      return;
    std::uint64_t pixels = naxis > 0 ? 1 : 0;
    for (std::size_t i = 0; i < axes.size(); ++i)
      if (!(i == 0 && groups && axes[0] == 0)) pixels = sat_mul(pixels, axes[i]);
    const std::uint64_t bytes = sat_mul(sat_mul(static_cast<std::uint64_t>(bitpix < 0 ? -bitpix : bitpix) / 8,
                                                static_cast<std::uint64_t>(gcount)),
                                        sat_add(static_cast<std::uint64_t>(pcount), pixels));
    if (bytes > size - pos) return;  // also catches a saturated size
    pos += (bytes + kBlock - 1) / kBlock * kBlock;
  }
}

}  // namespace i2z

namespace i2z::fits {

// ---------------------------------------------------------------------------------------------
// Tile checks. cfitsio 4.2's tile decoders trust their input: the RICE decoder checks for the
// end of its buffer only after each block and scans runs of zero bytes without any bound, a
// truncated or corrupt GZIP tile makes it grow its output buffer without limit, and HCOMPRESS
// takes the tile size from the stream (a mismatch overflows the tile buffer); a tile of length
// 0 reaches the decoders too. So before cfitsio decodes a tile-compressed HDU, every tile is
// checked here: descriptors inside the heap, RICE streams decoded dry with bounds checks (the
// same byte consumption as cfitsio's decoder), GZIP streams inflated with the tile's size as
// the bound, the HCOMPRESS header against the tile size. PLIO and the rest of the HCOMPRESS
// stream are still decoded unchecked by cfitsio.

// Whether cfitsio's RICE decoder (fits_rdecomp*, bytepix 1/2/4) decodes `nx` pixels in blocks
// of `nblock` using exactly the bytes c[0..clen). Mirrors its bit reader step by step.
bool rice_stream_ok(const unsigned char* c, std::size_t clen, std::uint64_t nx, int nblock, int bytepix) {
  const int fsbits = bytepix == 1 ? 3 : bytepix == 2 ? 4 : 5;
  const int fsmax = bytepix == 1 ? 6 : bytepix == 2 ? 14 : 25;
  const int bbits = 1 << fsbits;
  std::size_t pos = static_cast<std::size_t>(bytepix);  // the first pixel, stored as is
  if (clen <= pos) return false;
  std::uint32_t b = c[pos++];
  int nbits = 8;
  auto next = [&](std::uint32_t* byte) {
    if (pos >= clen) return false;
    *byte = c[pos++];
    return true;
  };
  std::uint32_t byte = 0;
  for (std::uint64_t i = 0; i < nx;) {
    nbits -= fsbits;
    while (nbits < 0) {
      if (!next(&byte)) return false;
      b = (b << 8) | byte;
      nbits += 8;
    }
    const int fs = static_cast<int>(b >> nbits) - 1;
    b &= (1u << nbits) - 1;
    const std::uint64_t imax = std::min<std::uint64_t>(i + static_cast<std::uint64_t>(nblock), nx);
    if (fs < 0) {
      i = imax;
    } else if (fs == fsmax) {
      for (; i < imax; ++i) {
        for (int k = bbits - nbits - 8; k >= 0; k -= 8)
          if (!next(&b)) return false;
        if (nbits > 0) {
          if (!next(&b)) return false;
          b &= (1u << nbits) - 1;
        } else {
          b = 0;
        }
      }
    } else {
      for (; i < imax; ++i) {
        while (b == 0) {
          nbits += 8;
          if (!next(&b)) return false;
        }
        const int nzero = nbits - static_cast<int>(std::bit_width(b));
        nbits -= nzero + 1;
        b ^= 1u << nbits;
        nbits -= fs;
        while (nbits < 0) {
          if (!next(&byte)) return false;
          b = (b << 8) | byte;
          nbits += 8;
        }
        b &= (1u << nbits) - 1;
      }
    }
  }
  // cfitsio only warns about unused bytes; astropy (same decoder) treats that as an error.
  return pos == clen;
}

// Whether a gzip tile inflates completely to at most `max_bytes`, a whole number of pixels
// (`exact`: to exactly `max_bytes`).
bool gzip_stream_ok(const unsigned char* c, std::size_t clen, std::uint64_t pixels, std::uint64_t max_bytes,
                    bool exact = false) {
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) return false;
  struct End {
    z_stream* z;
    ~End() { inflateEnd(z); }
  } end{&zs};
  unsigned char scratch[16384];
  zs.next_in = const_cast<unsigned char*>(c);
  zs.avail_in = static_cast<uInt>(clen);
  std::uint64_t total = 0;
  for (;;) {
    zs.next_out = scratch;
    zs.avail_out = sizeof scratch;
    const int rc = inflate(&zs, Z_NO_FLUSH);
    total += sizeof scratch - zs.avail_out;
    if (total > max_bytes) return false;
    if (rc == Z_STREAM_END) return total > 0 && total % pixels == 0 && (!exact || total == max_bytes);
    if (rc != Z_OK) return false;  // corrupt, or truncated (Z_BUF_ERROR)
  }
}

std::string read_string_key(fitsfile* f, const char* key) {
  char value[FLEN_VALUE] = {0};
  int status = 0;
  fits_read_key_str(f, key, value, nullptr, &status);
  return status ? std::string() : std::string(strip(value));
}

LONGLONG read_int_key(fitsfile* f, const std::string& key, LONGLONG fallback) {
  LONGLONG v = fallback;
  int status = 0;
  fits_read_key_lnglng(f, key.c_str(), &v, nullptr, &status);
  return status ? fallback : v;
}

void validate_tiles(fitsfile* f, const Hdu& h) {
  const std::string where = "tile-compressed HDU " + std::to_string(h.number - 1);
  auto bad = [&](const std::string& why) { fail(ErrorKind::Corrupt, "corrupt " + where + ": " + why); };
  const std::string type = upper_strip(read_string_key(f, "ZCMPTYPE"));
  const std::size_t ndim = h.axes.size();
  std::vector<std::uint64_t> tile(ndim);
  std::uint64_t ntiles = 1;
  for (std::size_t d = 0; d < ndim; ++d) {
    const LONGLONG t = read_int_key(f, "ZTILE" + std::to_string(d + 1), d == 0 ? static_cast<LONGLONG>(h.axes[0]) : 1);
    if (t <= 0) bad("ZTILE" + std::to_string(d + 1) + " is not positive");
    tile[d] = std::min<std::uint64_t>(static_cast<std::uint64_t>(t), h.axes[d]);
    ntiles = sat_mul(ntiles, (h.axes[d] + tile[d] - 1) / tile[d]);
  }
  const LONGLONG rows = read_int_key(f, "NAXIS2", -1);
  if (rows < 0 || static_cast<std::uint64_t>(rows) != ntiles)
    bad("the table has " + std::to_string(rows) + " rows for " + std::to_string(ntiles) + " tiles");
  const LONGLONG row_bytes = read_int_key(f, "NAXIS1", 0), pcount = read_int_key(f, "PCOUNT", 0);
  const LONGLONG theap = read_int_key(f, "THEAP", row_bytes * rows);
  const LONGLONG heap_size = pcount - (theap - row_bytes * rows);

  int nblock = 32, bytepix = 4;
  if (type == "RICE_1" || type == "RICE_ONE") {
    // As cfitsio: ZVAL1 is the block size and ZVAL2 the bytes per pixel, whatever ZNAMEn say,
    // swapped when they look swapped.
    nblock = static_cast<int>(read_int_key(f, "ZVAL1", 32));
    bytepix = static_cast<int>(read_int_key(f, "ZVAL2", 4));
    if (nblock < 16 && bytepix > 8) std::swap(nblock, bytepix);
    if (nblock <= 0) bad("BLOCKSIZE " + std::to_string(nblock) + " is not positive");  // cfitsio would spin
    if (bytepix != 1 && bytepix != 2 && bytepix != 4 && bytepix != 8) bad("BYTEPIX " + std::to_string(bytepix));
    if (bytepix == 8) bytepix = 4;  // cfitsio decodes anything but 1 and 2 as 4-byte pixels
  }

  auto column = [&](const char* name) {
    int col = 0, status = 0;
    fits_get_colnum(f, CASEINSEN, const_cast<char*>(name), &col, &status);
    return status ? 0 : col;
  };
  const int ccol = column("COMPRESSED_DATA"), gcol = column("GZIP_COMPRESSED_DATA"), ucol = column("UNCOMPRESSED_DATA");
  if (!ccol) bad("no COMPRESSED_DATA column");
  auto element_size = [&](int col) {
    int typecode = 0, status = 0;
    LONGLONG repeat = 0, width = 0;
    fits_get_coltypell(f, col, &typecode, &repeat, &width, &status);
    if (status || typecode >= 0) bad("column " + std::to_string(col) + " is not a variable-length array");
    return std::pair<int, LONGLONG>(-typecode, width);
  };
  const auto [ctype, csize] = element_size(ccol);
  const bool byte_stream = type == "RICE_1" || type == "RICE_ONE" || type == "GZIP_1" || type == "GZIP_2" ||
                           type == "HCOMPRESS_1";
  if (byte_stream && ctype != TBYTE) bad("COMPRESSED_DATA of " + type + " is not a byte array");

  std::vector<unsigned char> buf;
  auto descriptor = [&](int col, LONGLONG row, LONGLONG elem_size) {
    LONGLONG length = 0, offset = 0;
    int status = 0;
    fits_read_descriptll(f, col, row, &length, &offset, &status);
    if (status) fits_fail(status, "cannot read the tile descriptors of HDU " + std::to_string(h.number - 1));
    if (length < 0 || offset < 0) bad("tile " + std::to_string(row - 1) + " has a negative descriptor");
    const std::uint64_t bytes = sat_mul(static_cast<std::uint64_t>(length), static_cast<std::uint64_t>(elem_size));
    const std::uint64_t end = sat_add(static_cast<std::uint64_t>(offset), bytes);
    if (end > static_cast<std::uint64_t>(std::max<LONGLONG>(heap_size, 0)))
      bad("tile " + std::to_string(row - 1) + " lies outside the heap");
    return length;
  };
  auto bytes_of = [&](int col, LONGLONG row, LONGLONG length) {
    buf.resize(static_cast<std::size_t>(length));
    int status = 0, anynul = 0;
    fits_read_col(f, TBYTE, col, row, 1, length, nullptr, buf.data(), &anynul, &status);
    if (status)
      fits_fail(status, "cannot read tile " + std::to_string(row - 1) + " of HDU " + std::to_string(h.number - 1));
  };

  std::vector<std::uint64_t> index(ndim, 0);  // tile coordinates, first axis fastest
  for (LONGLONG row = 1; row <= rows; ++row) {
    std::uint64_t pixels = 1;
    std::vector<std::uint64_t> dims(ndim);
    for (std::size_t d = 0; d < ndim; ++d) {
      dims[d] = std::min(tile[d], h.axes[d] - index[d] * tile[d]);
      pixels *= dims[d];
    }
    for (std::size_t d = 0; d < ndim && ++index[d] * tile[d] >= h.axes[d]; ++d) index[d] = 0;

    const LONGLONG length = descriptor(ccol, row, csize);
    if (length == 0) {
      // cfitsio falls back to these columns for tiles that did not compress.
      if (gcol) {
        const LONGLONG glen = descriptor(gcol, row, element_size(gcol).second);
        bytes_of(gcol, row, glen);
        // These hold the tile's raw pixels of the image type. cfitsio trusts the inflated size:
        // 4 bytes per pixel in a ZBITPIX = -64 image makes it convert from a buffer it never
        // allocated (fuzz_fits finding 14, SIGSEGV in fffr4r8), so the size must be exact.
        const std::uint64_t pixel_bytes = static_cast<std::uint64_t>(std::abs(h.bitpix) / 8);
        if (glen == 0 || pixel_bytes == 0 ||
            !gzip_stream_ok(buf.data(), buf.size(), pixels, sat_mul(pixels, pixel_bytes), true))
          bad("tile " + std::to_string(row - 1) + " has a corrupt GZIP_COMPRESSED_DATA stream");
      } else if (ucol) {
        descriptor(ucol, row, element_size(ucol).second);  // cfitsio checks the element count itself
      } else {
        bad("tile " + std::to_string(row - 1) + " is empty");
      }
      continue;
    }
    if (!byte_stream) continue;  // PLIO and others: cfitsio's own checks only
    bytes_of(ccol, row, length);
    if (type == "GZIP_1" || type == "GZIP_2") {
      if (!gzip_stream_ok(buf.data(), buf.size(), pixels, sat_mul(pixels, 8)))
        bad("tile " + std::to_string(row - 1) + " has a corrupt or truncated gzip stream");
    } else if (type == "HCOMPRESS_1") {
      // Stream header: magic DD 99, nx, ny, scale (big-endian int32), sum (int64), 3 bit-plane counts.
      auto be32 = [&](std::size_t at) {
        return (std::uint32_t{buf[at]} << 24) | (std::uint32_t{buf[at + 1]} << 16) | (std::uint32_t{buf[at + 2]} << 8) |
               buf[at + 3];
      };
      if (buf.size() < 25 || buf[0] != 0xDD || buf[1] != 0x99 || ndim < 2 ||
          std::uint64_t{be32(2)} * be32(6) != pixels || be32(2) == 0)
        bad("tile " + std::to_string(row - 1) + " has a corrupt HCOMPRESS header");
    } else if (!rice_stream_ok(buf.data(), buf.size(), pixels, nblock, bytepix)) {
      bad("tile " + std::to_string(row - 1) + " has a corrupt or truncated RICE stream");
    }
  }
}

}  // namespace i2z::fits
