#include "formats/fits_guard.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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

std::string_view keyword(std::string_view card) {
  std::string_view k = card.substr(0, 8);
  while (!k.empty() && k.back() == ' ') k.remove_suffix(1);
  return k;
}

// The integer value of a "KEYWORD = value / comment" card, if it has one.
bool int_value(std::string_view card, long long* out) {
  if (card[8] != '=') return false;
  std::size_t i = 10;
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
  std::string_view v = card.substr(10);
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
  return static_cast<std::size_t>(text.data() + text.size() - (card.data() + 10));
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
  std::size_t i = 10;
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
