#include "formats/fits_guard.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <limits>
#include <string>
#include <string_view>
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
    bool groups = false;
    std::vector<std::uint64_t> axes;  // NAXIS1.. as declared (0 when absent or invalid)
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
        }
      }
    }
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
