// FITS via cfitsio 4.2, matching astropy 8's `fits.getdata(path, ext)`:
//   * HDU choice: the primary HDU if it has data (NAXIS > 0), else HDU 1 (getdata's fallback;
//     like getdata, HDUs past 1 are not searched). HDU 1 may be a tile-compressed image
//     (BINTABLE with ZIMAGE = T), which is read as the image it holds, as astropy does.
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
// Differences from astropy, on purpose:
//   * NAXIS > 3 is accepted when the axes past the third have length 1, and reported squeezed
//     to (C,H,W) (astropy: (1,...,C,H,W)); otherwise it is an error.
//   * A zero-length axis, or a table where an image is expected, is an error (astropy returns
//     an empty array or the table's records).
//   * BITPIX 8 + BZERO -128 + BLANK gives int8 with BLANK ignored (astropy raises).
//   * fits_header_json of a tile-compressed HDU is cfitsio's image view of the header, which
//     keeps an EXTNAME = 'COMPRESSED_IMAGE' that astropy hides.
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
//     (see "Tile checks"); this costs about as much again as cfitsio's own RICE/GZIP decode.
//     Only the header of HCOMPRESS streams and nothing of PLIO streams is checked, and cfitsio
//     leaks a few bytes per corrupt HCOMPRESS tile.
#include <fitsio.h>
#include <zlib.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <system_error>
#include <type_traits>
#include <vector>

#include "formats/file_io.hpp"
#include "formats/fits_guard.hpp"
#include "formats/format.hpp"
#include "i2z/error.hpp"

namespace i2z {
namespace {

constexpr std::uint64_t kGzipSlack = std::uint64_t{64} << 20;  // headers and other HDUs

std::string status_text(int status) {
  char text[FLEN_STATUS] = {0};
  fits_get_errstatus(status, text);
  std::string t = text;
  if (t.rfind("unknown error", 0) == 0) {  // 4.2 has no text for the tile-compression codes
    if (status == DATA_COMPRESSION_ERR) t = "error in the tile compression routines";
    if (status == DATA_DECOMPRESSION_ERR) t = "error decompressing a tile";
    if (status == NO_COMPRESSED_TILE) t = "a compressed tile is missing";
  }
  return t + " (cfitsio status " + std::to_string(status) + ")";
}

// The file itself was opened and read by us first, so a cfitsio read error means a short file.
[[noreturn]] void fits_fail(int status, const std::string& what) {
  if (status == READ_ERROR || status == END_OF_FILE)
    fail(ErrorKind::Corrupt, "FITS file is truncated (" + what + ": " + status_text(status) + ")");
  fail(status == FILE_NOT_OPENED ? ErrorKind::IO : ErrorKind::Corrupt, "FITS " + what + ": " + status_text(status));
}

// A reentrant cfitsio allows concurrent calls on separate handles; otherwise serialise them.
std::unique_lock<std::mutex> cfitsio_lock() {
  static const bool reentrant = fits_is_reentrant() != 0;
  static std::mutex mutex;
  return reentrant ? std::unique_lock<std::mutex>() : std::unique_lock<std::mutex>(mutex);
}

std::uint64_t sat_mul(std::uint64_t a, std::uint64_t b) {
  std::uint64_t r;
  return __builtin_mul_overflow(a, b, &r) ? std::numeric_limits<std::uint64_t>::max() : r;
}

std::uint64_t sat_add(std::uint64_t a, std::uint64_t b) {
  std::uint64_t r;
  return __builtin_add_overflow(a, b, &r) ? std::numeric_limits<std::uint64_t>::max() : r;
}

// ---------------------------------------------------------------------------------------------
// Opening: sniff, then cfitsio's disk driver on a file descriptor.
//
// (See the top of the file.) Content cfitsio must not read as is goes to an anonymous file.

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  explicit Fd(const std::string& path) : fd_(open_input(path)) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  // Reads up to n bytes at offset; returns how many were read (short only at end of file).
  std::size_t pread_full(void* buf, std::size_t n, std::uint64_t offset) const {
    std::size_t got = 0;
    while (got < n) {
      const ssize_t r = ::pread(fd_, static_cast<char*>(buf) + got, n - got, static_cast<off_t>(offset + got));
      if (r < 0) {
        if (errno == EINTR) continue;
        fail(ErrorKind::IO, "cannot read FITS file: " + std::generic_category().message(errno));
      }
      if (r == 0) break;
      got += static_cast<std::size_t>(r);
    }
    return got;
  }
  void write_full(const void* buf, std::size_t n) const {
    std::size_t done = 0;
    while (done < n) {
      const ssize_t r = ::write(fd_, static_cast<const char*>(buf) + done, n - done);
      if (r < 0) {
        if (errno == EINTR) continue;
        fail(ErrorKind::IO, "cannot write a temporary FITS copy: " + std::generic_category().message(errno));
      }
      done += static_cast<std::size_t>(r);
    }
  }
  std::uint64_t size() const {
    struct stat st;
    if (::fstat(fd_, &st) != 0) fail(ErrorKind::IO, "cannot stat FITS file: " + std::generic_category().message(errno));
    return static_cast<std::uint64_t>(st.st_size);
  }

 private:
  int fd_;
};

// An unnamed temporary file (memfd on Linux), gone when its last descriptor closes.
Fd anonymous_file() {
#ifdef __linux__
  if (int fd = ::memfd_create("i2z-fits", MFD_CLOEXEC); fd >= 0) return Fd(fd);
#endif
  const char* dir = std::getenv("TMPDIR");
  std::string name = std::string(dir && *dir ? dir : "/tmp") + "/i2z-fits-XXXXXX";
  const int fd = ::mkstemp(name.data());
  if (fd < 0) fail(ErrorKind::IO, "cannot create a temporary FITS copy: " + std::generic_category().message(errno));
  ::unlink(name.c_str());
  return Fd(fd);
}

std::string fd_path(int fd) {
#ifdef __linux__
  return "/proc/self/fd/" + std::to_string(fd);
#else
  return "/dev/fd/" + std::to_string(fd);
#endif
}

// Pads `out` (holding `size` bytes) with zeros to whole 2880-byte FITS blocks.
void pad_to_blocks(const Fd& out, std::uint64_t size) {
  const std::uint64_t padded = (size + 2879) / 2880 * 2880;
  if (padded != size && ::ftruncate(out.get(), static_cast<off_t>(padded)) != 0)
    fail(ErrorKind::IO, "cannot write a temporary FITS copy: " + std::generic_category().message(errno));
}

bool is_fits_start(const unsigned char* p, std::size_t n) { return n >= 9 && std::memcmp(p, "SIMPLE  =", 9) == 0; }

// Inflates a whole gzip file (all members) into `out`, refusing more than `bound` bytes;
// returns the decompressed size (before padding).
std::uint64_t gunzip(const Fd& in, const Fd& out, std::uint64_t bound) {
  const std::uint64_t in_size = in.size();
  if (in_size > (std::uint64_t{1} << 40)) fail(ErrorKind::Value, "gzip file too large");
  std::vector<unsigned char> src(static_cast<std::size_t>(in_size));
  if (in.pread_full(src.data(), src.size(), 0) != src.size()) fail(ErrorKind::IO, "FITS file shrank while reading");
  std::vector<unsigned char> chunk(std::size_t{1} << 20);

  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) fail(ErrorKind::Runtime, "zlib inflateInit2 failed");
  struct End {
    z_stream* z;
    ~End() { inflateEnd(z); }
  } end{&zs};
  zs.next_in = src.data();
  std::size_t in_left = src.size();
  std::uint64_t total = 0;
  bool first = true;
  for (;;) {
    const std::size_t in_chunk = std::min<std::size_t>(in_left, 1u << 30);
    zs.avail_in = static_cast<uInt>(in_chunk);
    zs.next_out = chunk.data();
    zs.avail_out = static_cast<uInt>(chunk.size());
    const int rc = inflate(&zs, Z_NO_FLUSH);
    in_left -= in_chunk - zs.avail_in;
    const std::size_t produced = chunk.size() - zs.avail_out;
    if (first && produced > 0) {
      if (!is_fits_start(chunk.data(), produced)) fail(ErrorKind::Corrupt, "not a FITS file inside the gzip stream");
      first = false;
    }
    total += produced;
    if (total > bound)
      fail(ErrorKind::Value, "decompressed .fits.gz exceeds the limit of " + std::to_string(bound) +
                                 " bytes (max_pixels * 8 + 64 MiB)");
    out.write_full(chunk.data(), produced);
    if (rc == Z_STREAM_END) {
      // Another gzip member may follow (as `cat a.gz b.gz`); other trailing bytes are ignored.
      if (in_left >= 2 && zs.next_in[0] == 0x1f && zs.next_in[1] == 0x8b) {
        inflateReset(&zs);
        continue;
      }
      break;
    }
    if (rc == Z_BUF_ERROR && in_left == 0) fail(ErrorKind::Corrupt, "truncated gzip stream");
    if (rc != Z_OK && rc != Z_BUF_ERROR)
      fail(ErrorKind::Corrupt, std::string("corrupt gzip stream: ") + (zs.msg ? zs.msg : "inflate failed"));
  }
  if (first) fail(ErrorKind::Corrupt, "empty gzip stream");
  pad_to_blocks(out, total);
  return total;
}

// One open FITS file (one cfitsio handle, never shared).
class FitsFile {
 public:
  FitsFile(const std::string& path, std::uint64_t max_pixels) {
    Fd fd(path);
    unsigned char head[9];
    const std::size_t n = fd.pread_full(head, sizeof head, 0);
    if (n == 0) fail(ErrorKind::Corrupt, "empty FITS file");
    const std::uint64_t bound = sat_add(sat_mul(max_pixels, 8), kGzipSlack);
    if (n >= 2 && head[0] == 0x1f && head[1] == 0x8b) {
      Fd copy = anonymous_file();
      real_size_ = gunzip(fd, copy, bound);
      open(copy);
      return;
    }
    if (!is_fits_start(head, n)) fail(ErrorKind::Corrupt, "not a FITS file (no SIMPLE keyword at the start)");
    const std::uint64_t size = fd.size();
    if (size % 2880 != 0 && size <= bound) {
      // cfitsio reads whole 2880-byte blocks, so a file missing only the padding of its last
      // block (astropy reads those) would fail; hand it a zero-padded copy.
      Fd copy = anonymous_file();
      std::vector<unsigned char> buf(std::min<std::uint64_t>(size, std::uint64_t{1} << 20));
      for (std::uint64_t off = 0; off < size;) {
        const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), size - off));
        const std::size_t got = fd.pread_full(buf.data(), want, off);
        if (got == 0) break;
        copy.write_full(buf.data(), got);
        off += got;
      }
      pad_to_blocks(copy, size);
      real_size_ = size;
      open(copy);
      return;
    }
    open(fd);
  }
  ~FitsFile() {
    if (f_) {
      int status = 0;
      fits_close_file(f_, &status);
    }
  }
  FitsFile(const FitsFile&) = delete;
  FitsFile& operator=(const FitsFile&) = delete;
  fitsfile* get() const { return f_; }
  // Bytes of real content when cfitsio reads a zero-padded copy, else 0 (nothing to check).
  std::uint64_t padded_from() const { return real_size_ % 2880 ? real_size_ : 0; }

 private:
  // cfitsio opens its own description of the file; `fd` may be closed afterwards.
  void open(const Fd& fd) {
    check_fits_headers(fd.get(), fd.size());  // cfitsio 4.2 overflows on NAXIS > 99 (fits_guard.hpp)
    int status = 0;
    fits_open_diskfile(&f_, fd_path(fd.get()).c_str(), READONLY, &status);
    if (status) {
      if (f_) {
        int ignored = 0;
        fits_close_file(f_, &ignored);
        f_ = nullptr;
      }
      fits_fail(status, "open failed");
    }
  }
  fitsfile* f_ = nullptr;
  std::uint64_t real_size_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Header cards -> typed values (astropy's parsing rules).

struct Card {
  std::string key;
  nlohmann::ordered_json value;  // null, bool, integer, float, string
  bool commentary = false;       // COMMENT / HISTORY
};

std::string rstrip(std::string_view s) {
  std::size_t e = s.size();
  while (e > 0 && s[e - 1] == ' ') --e;
  return std::string(s.substr(0, e));
}

std::string_view strip(std::string_view s) {
  std::size_t b = 0, e = s.size();
  while (b < e && s[b] == ' ') ++b;
  while (e > b && s[e - 1] == ' ') --e;
  return s.substr(b, e - b);
}

// Parses a FITS quoted string starting at s[0] == '\''; returns the text ('' -> ') with
// trailing blanks removed, as astropy does. A missing closing quote ends at the card's end.
std::string parse_quoted(std::string_view s) {
  std::string out;
  for (std::size_t i = 1; i < s.size(); ++i) {
    if (s[i] == '\'') {
      if (i + 1 < s.size() && s[i + 1] == '\'') {
        out += '\'';
        ++i;
        continue;
      }
      break;
    }
    out += s[i];
  }
  return rstrip(out);
}

nlohmann::ordered_json number_or_string(std::string_view tok) {
  std::string_view t = tok;
  if (!t.empty() && t[0] == '+') t.remove_prefix(1);
  const bool has_digit = std::any_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!has_digit) return std::string(tok);
  if (t.find_first_of(".EeDd") == std::string_view::npos) {
    std::int64_t i;
    auto r = std::from_chars(t.data(), t.data() + t.size(), i);
    if (r.ec == std::errc() && r.ptr == t.data() + t.size()) return i;
    std::uint64_t u;
    r = std::from_chars(t.data(), t.data() + t.size(), u);
    if (r.ec == std::errc() && r.ptr == t.data() + t.size()) return u;
  }
  std::string f(t);
  for (char& c : f)
    if (c == 'D' || c == 'd') c = 'E';
  double d;
  const auto r = std::from_chars(f.data(), f.data() + f.size(), d);
  if (r.ptr != f.data() + f.size()) return std::string(tok);
  if (r.ec == std::errc::result_out_of_range) {
    // astropy (Python's float()) gives inf for 1E400; JSON has no inf, so it is a string.
    // Underflow (1E-400, or a subnormal from_chars refuses) keeps the card's text.
    const std::size_t e = f.find_first_of('E');
    const bool overflow = e == std::string::npos || e + 1 >= f.size() || f[e + 1] != '-';
    if (overflow) return f[0] == '-' ? "-inf" : "inf";
    return std::string(tok);
  }
  if (r.ec != std::errc() || !std::isfinite(d)) return std::string(tok);
  return d;
}

// Value field (after "= ") -> typed value. Comments after '/' are dropped.
nlohmann::ordered_json parse_value(std::string_view v) {
  std::size_t b = 0;
  while (b < v.size() && v[b] == ' ') ++b;
  v.remove_prefix(b);
  if (v.empty() || v[0] == '/') return nullptr;  // undefined value
  if (v[0] == '\'') return parse_quoted(v);
  const std::size_t slash = v.find('/');
  std::string_view tok = strip(v.substr(0, slash));
  if (tok == "T") return true;
  if (tok == "F") return false;
  if (!tok.empty() && tok[0] == '(') return std::string(tok);  // complex: no JSON type
  return number_or_string(tok);
}

// The image view of a tile-compressed HDU's table header, as astropy's CompImageHeader: the
// Z-prefixed image keywords under their image names (first, in FITS order), the table's own
// structure keywords dropped, every other card kept in order. Used where cfitsio's
// fits_convert_hdr2str refuses a valid header (ZTENSION late, BSCALE before it, ...).
std::string compressed_image_header(std::string_view table) {
  auto key_of = [](std::string_view card) { return rstrip(card.substr(0, 8)); };
  auto indexed = [](const std::string& k, std::string_view prefix) {
    if (k.size() <= prefix.size() || k.compare(0, prefix.size(), prefix) != 0) return false;
    return std::all_of(k.begin() + static_cast<std::ptrdiff_t>(prefix.size()), k.end(),
                       [](char c) { return c >= '0' && c <= '9'; });
  };
  std::vector<std::string_view> cards;
  for (std::size_t off = 0; off + 80 <= table.size(); off += 80) {
    const std::string_view card = table.substr(off, 80);
    if (key_of(card) == "END") break;
    cards.push_back(card);
  }
  auto find = [&](const std::string& key) -> std::string_view {
    for (auto c : cards)
      if (key_of(c) == key) return c;
    return {};
  };
  auto renamed = [](std::string_view card, const std::string& key) {
    std::string out = key;
    out.resize(8, ' ');
    out += card.substr(8);
    return out;
  };
  std::string out;
  const bool primary = !find("ZSIMPLE").empty();
  out += primary ? renamed(find("ZSIMPLE"), "SIMPLE") : "XTENSION= 'IMAGE   '" + std::string(60, ' ');
  for (const char* k : {"ZBITPIX", "ZNAXIS"})
    if (auto c = find(k); !c.empty()) out += renamed(c, k + 1);
  for (auto c : cards)
    if (const std::string k = key_of(c); indexed(k, "ZNAXIS")) out += renamed(c, k.substr(1));
  if (!primary)
    for (const char* k : {"ZPCOUNT", "ZGCOUNT"}) {
      if (auto c = find(k); !c.empty()) {
        out += renamed(c, k + 1);
      } else {  // absent: the image defaults, PCOUNT = 0 and GCOUNT = 1
        std::string card = std::string(k + 1) + "  = " + std::string(19, ' ') + (k[1] == 'P' ? "0" : "1");
        card.resize(80, ' ');
        out += card;
      }
    }
  static const char* const kDropped[] = {"XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "TFIELDS", "THEAP",
                                         "ZIMAGE", "ZSIMPLE", "ZTENSION", "ZBITPIX", "ZNAXIS", "ZPCOUNT",
                                         "ZGCOUNT", "ZCMPTYPE", "ZQUANTIZ", "ZDITHER0", "ZMASKCMP", "CHECKSUM",
                                         "DATASUM", "ZHECKSUM", "ZDATASUM", "ZEXTEND", "ZBLOCKED"};
  static const char* const kIndexed[] = {"NAXIS", "ZNAXIS", "TTYPE", "TFORM", "TUNIT", "TNULL", "TSCAL", "TZERO",
                                         "TDIM", "TDISP", "ZTILE", "ZNAME", "ZVAL"};
  for (auto c : cards) {
    const std::string k = key_of(c);
    if (std::any_of(std::begin(kDropped), std::end(kDropped), [&](const char* d) { return k == d; })) continue;
    if (std::any_of(std::begin(kIndexed), std::end(kIndexed), [&](const char* d) { return indexed(k, d); })) continue;
    out += c;
  }
  for (const char* k : {"ZEXTEND", "ZBLOCKED", "ZHECKSUM", "ZDATASUM"})
    if (auto c = find(k); !c.empty()) out += renamed(c, k[1] == 'H' ? "CHECKSUM" : k + 1);
  return out + "END" + std::string(77, ' ');
}

// The header text of the current HDU: for a tile-compressed HDU, that of the image it holds.
std::string header_text(fitsfile* f) {
  struct Free {
    char* p = nullptr;
    ~Free() {
      int s = 0;
      if (p) fits_free_memory(p, &s);
    }
  };
  Free converted;
  int ncards = 0, status = 0;
  fits_convert_hdr2str(f, 0, nullptr, 0, &converted.p, &ncards, &status);
  if (status == 0) return converted.p ? std::string(converted.p) : std::string();
  int st = 0;
  if (!fits_is_compressed_image(f, &st) || st) fits_fail(status, "cannot read the header");
  Free raw;
  status = 0;
  fits_hdr2str(f, 0, nullptr, 0, &raw.p, &ncards, &status);
  if (status) fits_fail(status, "cannot read the header");
  return compressed_image_header(raw.p ? std::string_view(raw.p) : std::string_view());
}

// All cards of the current HDU; for a tile-compressed HDU, those of the image it holds.
std::vector<Card> read_cards(fitsfile* f) {
  const std::string header = header_text(f);
  const char* text = header.c_str();
  std::vector<Card> cards;
  cards.reserve(header.size() / 80);
  const std::size_t len = header.size();
  for (std::size_t off = 0; off + 8 <= len; off += 80) {
    const std::string_view card(text + off, std::min<std::size_t>(80, len - off));
    std::string key = rstrip(card.substr(0, 8));
    if (key == "END") break;
    if (key.empty()) continue;  // blank keyword
    const std::string_view rest = card.substr(8);
    if (key == "COMMENT" || key == "HISTORY") {
      cards.push_back({key, rstrip(rest), true});
      continue;
    }
    if (key == "CONTINUE") {
      // Long-string convention: a string ending in '&' continues in the next CONTINUE card.
      std::string_view v = strip(rest);
      if (!cards.empty() && cards.back().value.is_string() && !v.empty() && v[0] == '\'') {
        std::string& prev = cards.back().value.get_ref<std::string&>();
        if (!prev.empty() && prev.back() == '&') {
          prev.pop_back();
          prev += parse_quoted(v);
          continue;
        }
      }
      cards.push_back({key, rstrip(rest), false});
      continue;
    }
    if (key == "HIERARCH") {
      const std::size_t eq = rest.find('=');
      if (eq != std::string_view::npos) {
        cards.push_back({std::string(strip(rest.substr(0, eq))), parse_value(rest.substr(eq + 1)), false});
        continue;
      }
    }
    if (rest.size() >= 2 && rest[0] == '=' && rest[1] == ' ')
      cards.push_back({key, parse_value(rest.substr(2)), false});
    else
      cards.push_back({key, std::string(strip(rest)), false});  // no value indicator: the text
  }
  return cards;
}

std::string header_json(const std::vector<Card>& cards) {
  nlohmann::ordered_json obj = nlohmann::ordered_json::object();
  for (const Card& c : cards) {
    if (c.commentary) {
      auto& list = obj[c.key];
      if (!list.is_array()) list = nlohmann::ordered_json::array();
      list.push_back(c.value);
    } else if (!obj.contains(c.key)) {  // a repeated keyword: astropy's header[key] is the first
      obj[c.key] = c.value;
    }
  }
  return obj.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

// ---------------------------------------------------------------------------------------------
// HDU selection and description.

enum class Mode { Copy, Unsigned, Scale };

struct Hdu {
  int number = 0;  // cfitsio's 1-based HDU number
  bool compressed = false;
  int bitpix = 0;
  std::vector<std::uint64_t> axes;  // NAXIS1 first
  double bscale = 1.0, bzero = 0.0;
  std::optional<std::int64_t> blank;
  DType raw = DType::u8, dtype = DType::u8;
  Mode mode = Mode::Copy;
};

void move_to(fitsfile* f, int number, int* hdutype) {
  int status = 0;
  fits_movabs_hdu(f, number, hdutype, &status);
  if (status) fits_fail(status, "cannot read HDU " + std::to_string(number - 1));
}

// HDU count; moves to the last HDU.
int count_hdus(fitsfile* f) {
  int n = 0, status = 0;
  fits_get_num_hdus(f, &n, &status);
  if (status) fits_fail(status, "cannot count HDUs");
  return n;
}

// Moves to HDU `number` (1-based); false when the file has fewer HDUs.
bool try_move(fitsfile* f, int number, int* hdutype) {
  int status = 0;
  fits_movabs_hdu(f, number, hdutype, &status);
  if (status == END_OF_FILE) return false;
  if (status) fits_fail(status, "cannot read HDU " + std::to_string(number - 1));
  return true;
}

std::string upper_strip(std::string_view s) {
  std::string out(strip(s));
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

int resolve(fitsfile* f, const FitsSelector& sel) {
  int hdutype = 0;
  if (const int* index = std::get_if<int>(&sel)) {
    if (*index >= 0) {
      if (*index < std::numeric_limits<int>::max() && try_move(f, *index + 1, &hdutype)) return *index + 1;
      fail(ErrorKind::Value, "FITS HDU index " + std::to_string(*index) + " out of range (the file has " +
                                 std::to_string(count_hdus(f)) + " HDUs)");
    }
    const int n = count_hdus(f);
    if (-static_cast<long long>(*index) > n)
      fail(ErrorKind::Value, "FITS HDU index " + std::to_string(*index) + " out of range (the file has " +
                                 std::to_string(n) + " HDUs)");
    return n + *index + 1;
  }
  const std::string want = upper_strip(std::get<std::string>(sel));
  if (want == "PRIMARY") return 1;
  for (int number = 1; try_move(f, number, &hdutype); ++number) {
    char value[FLEN_VALUE] = {0};
    int status = 0;
    fits_read_key_str(f, "EXTNAME", value, nullptr, &status);
    std::string name;
    if (status == 0) {
      name = upper_strip(value);
    } else if (status == KEY_NO_EXIST) {
      status = 0;
      if (number == 1) name = "PRIMARY";
      else if (fits_is_compressed_image(f, &status)) name = "COMPRESSED_IMAGE";  // astropy's default
    } else {
      fits_fail(status, "cannot read EXTNAME of HDU " + std::to_string(number - 1));
    }
    if (name == want) return number;
  }
  fail(ErrorKind::Value, "no FITS HDU with EXTNAME '" + std::get<std::string>(sel) + "' (the file has " +
                             std::to_string(count_hdus(f)) + " HDUs)");
}

// Whether the current HDU (number `number`) is an image with NAXIS > 0; if not, *why_not says why.
bool image_hdu(fitsfile* f, int number, int hdutype, std::string* why_not) {
  int status = 0;
  const bool compressed = fits_is_compressed_image(f, &status) != 0;
  if (status) fits_fail(status, "cannot read HDU " + std::to_string(number - 1));
  if (hdutype != IMAGE_HDU && !compressed) {
    *why_not = "HDU " + std::to_string(number - 1) + " is " +
               (hdutype == ASCII_TBL ? "an ASCII table" : "a binary table") + ", not an image";
    return false;
  }
  int naxis = 0;
  fits_get_img_dim(f, &naxis, &status);
  if (status) fits_fail(status, "cannot read the image dimensions of HDU " + std::to_string(number - 1));
  if (naxis == 0) {
    *why_not = "HDU " + std::to_string(number - 1) + " has no image data";
    return false;
  }
  return true;
}

DType raw_dtype(int bitpix) {
  switch (bitpix) {
    case BYTE_IMG: return DType::u8;
    case SHORT_IMG: return DType::i16;
    case LONG_IMG: return DType::i32;
    case LONGLONG_IMG: return DType::i64;
    case FLOAT_IMG: return DType::f32;
    case DOUBLE_IMG: return DType::f64;
    default: fail(ErrorKind::Corrupt, "invalid FITS BITPIX " + std::to_string(bitpix));
  }
}

Hdu describe(fitsfile* f, int number) {
  Hdu h;
  h.number = number;
  int hdutype = 0, status = 0;
  move_to(f, number, &hdutype);
  std::string why_not;
  if (!image_hdu(f, number, hdutype, &why_not)) fail(ErrorKind::Value, why_not);
  h.compressed = fits_is_compressed_image(f, &status) != 0;
  int naxis = 0;
  LONGLONG naxes[999];
  fits_get_img_paramll(f, 999, &h.bitpix, &naxis, naxes, &status);
  if (status) fits_fail(status, "cannot read the image parameters of HDU " + std::to_string(number - 1));
  for (int i = 0; i < naxis; ++i) {
    if (naxes[i] <= 0)
      fail(ErrorKind::Value, "HDU " + std::to_string(number - 1) + " has no image data (an axis of length 0)");
    h.axes.push_back(static_cast<std::uint64_t>(naxes[i]));
  }
  h.raw = raw_dtype(h.bitpix);
  // Read from the HDU's own header: a tile-compressed HDU keeps the image's BSCALE, BZERO and
  // BLANK under those names (cfitsio's image view of the header copies them).
  // A present but unreadable or non-finite value ('abc', NAN) is an error, as in astropy; only
  // an absent keyword takes the default.
  auto number_key = [&](const char* key, double fallback) {
    double v = fallback;
    int st = 0;
    fits_read_key_dbl(f, key, &v, nullptr, &st);
    if (st == KEY_NO_EXIST) return fallback;
    if (st || !std::isfinite(v)) {
      char text[FLEN_VALUE] = {0};
      int ignored = 0;
      fits_read_keyword(f, key, text, nullptr, &ignored);
      fail(ErrorKind::Corrupt, "HDU " + std::to_string(number - 1) + " has an invalid " + key + " value: " +
                                   std::string(strip(text)));
    }
    return v;
  };
  h.bscale = number_key("BSCALE", 1.0);
  h.bzero = number_key("BZERO", 0.0);
  if (h.bitpix > 0) {
    LONGLONG blank = 0;
    int st = 0;
    fits_read_key_lnglng(f, "BLANK", &blank, nullptr, &st);
    if (st == 0) h.blank = blank;
  }

  // astropy's _dtype_for_bitpix / _convert_pseudo_integer / _scale_data.
  const bool scaled = !(h.bzero == 0.0 && h.bscale == 1.0);
  h.mode = Mode::Copy;
  h.dtype = h.raw;
  if (h.bscale == 1.0 && h.bitpix > 0 && scaled) {
    if (h.bitpix == 8 && h.bzero == -128.0) h.mode = Mode::Unsigned, h.dtype = DType::i8;
    if (h.bitpix == 16 && h.bzero == 32768.0) h.mode = Mode::Unsigned, h.dtype = DType::u16;
    if (h.bitpix == 32 && h.bzero == 2147483648.0) h.mode = Mode::Unsigned, h.dtype = DType::u32;
    if (h.bitpix == 64 && h.bzero == 9223372036854775808.0) h.mode = Mode::Unsigned, h.dtype = DType::u64;
  }
  if (h.mode == Mode::Copy && (scaled || (h.blank && h.bitpix > 0))) {
    h.mode = Mode::Scale;
    if (h.bitpix > 0) h.dtype = h.bitpix > 16 ? DType::f64 : DType::f32;
  }
  return h;
}

// (C,H,W) of one HDU after squeezing length-1 axes past the third; `stack` wants 2-D.
std::vector<std::uint64_t> hdu_shape(const Hdu& h, bool stack) {
  const auto& a = h.axes;
  for (std::size_t i = 3; i < a.size(); ++i)
    if (a[i] != 1)
      fail(ErrorKind::Value, "HDU " + std::to_string(h.number - 1) + " has " + std::to_string(a.size()) +
                                 " axes; only 1-3 (plus axes of length 1) are supported");
  if (stack) {
    if (a.size() < 2 || (a.size() >= 3 && a[2] != 1))
      fail(ErrorKind::Value, "HDU " + std::to_string(h.number - 1) +
                                 " is not a 2-D image; only 2-D HDUs can be stacked as channels");
    return {a[1], a[0]};
  }
  if (a.size() == 1) return {a[0]};
  if (a.size() == 2) return {a[1], a[0]};
  return {a[2], a[1], a[0]};
}

std::string shape_text(const std::vector<std::uint64_t>& s) {
  std::string t = "(";
  for (std::size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + (s.size() == 1 ? ",)" : ")");
}

std::string selector_text(const FitsSelector& s) {
  if (const int* i = std::get_if<int>(&s)) return std::to_string(*i);
  return std::get<std::string>(s);
}

struct Plan {
  std::vector<Hdu> hdus;
  ImageInfo info;
};

// Selection + description shared by probe and decode.
Plan plan(fitsfile* f, const FormatOptions& options) {
  Plan p;
  ImageInfo& info = p.info;
  const auto& sel = options.fits_extension;
  if (sel.empty()) {
    // The first image HDU with data (tables and empty HDUs skipped; a tile-compressed image
    // counts as an image).
    int hdutype = 0, number = 1;
    std::string why_not, first_why_not;
    for (; try_move(f, number, &hdutype); ++number) {
      if (image_hdu(f, number, hdutype, &why_not)) break;
      if (first_why_not.empty() && number > 1) first_why_not = why_not;
    }
    if (!try_move(f, number, &hdutype)) {
      if (number <= 2) fail(ErrorKind::Value, "no image data in the primary HDU and no extension HDU");
      fail(ErrorKind::Value, "no image HDU with data among the " + std::to_string(number - 1) +
                                 " HDUs (no image data in the primary HDU, and " + first_why_not + ")");
    }
    p.hdus.push_back(describe(f, number));
    info.fits_extension = std::to_string(number - 1);
  } else {
    for (const FitsSelector& s : sel) p.hdus.push_back(describe(f, resolve(f, s)));
    if (sel.size() == 1) {
      info.fits_extension = selector_text(sel[0]);
    } else {
      info.fits_extension = "[";
      for (std::size_t i = 0; i < sel.size(); ++i) {
        if (i) info.fits_extension += ", ";
        info.fits_extension += std::holds_alternative<int>(sel[i]) ? selector_text(sel[i])
                                                                    : nlohmann::json(selector_text(sel[i])).dump();
      }
      info.fits_extension += "]";
    }
  }

  info.layout = PixelLayout::CHW;
  if (p.hdus.size() == 1) {
    info.shape = hdu_shape(p.hdus[0], false);
    info.dtype = p.hdus[0].dtype;
  } else {
    const auto first = hdu_shape(p.hdus[0], true);
    info.dtype = p.hdus[0].dtype;
    for (std::size_t i = 1; i < p.hdus.size(); ++i) {
      const auto s = hdu_shape(p.hdus[i], true);
      if (s != first)
        fail(ErrorKind::Value, "FITS HDU " + std::to_string(p.hdus[i].number - 1) + " has shape " + shape_text(s) +
                                   " but HDU " + std::to_string(p.hdus[0].number - 1) + " has shape " +
                                   shape_text(first) + "; stacked HDUs must have the same shape");
      info.dtype = dtype_promote(info.dtype, p.hdus[i].dtype);
    }
    info.shape = {p.hdus.size(), first[0], first[1]};
  }
  const auto& s = info.shape;
  info.width = s.back();
  info.height = s.size() >= 2 ? s[s.size() - 2] : 1;
  const std::uint64_t channels = s.size() == 3 ? s[0] : 1;
  std::uint64_t pixels = 1;
  for (auto d : s) pixels = sat_mul(pixels, d);
  if (pixels > options.max_pixels || channels > std::numeric_limits<std::uint32_t>::max()) {
    std::string dims;
    for (std::size_t i = 0; i < s.size(); ++i) dims += (i ? "x" : "") + std::to_string(s[i]);
    fail(ErrorKind::Value, "image of " + dims + " pixels exceeds the limit of " + std::to_string(options.max_pixels) +
                               " (max_pixels)");
  }
  info.channels = static_cast<std::uint32_t>(channels);
  return p;
}

// ---------------------------------------------------------------------------------------------
// Pixels: raw read by cfitsio, then astropy's scaling and the cast to the output dtype, in
// place (the raw values sit at the end of the output region, and sizeof(raw) <= sizeof(out)).

template <class T>
struct Tag {
  using type = T;
};

template <class F>
void with_dtype(DType t, F&& f) {
  switch (t) {
    case DType::u8: return f(Tag<std::uint8_t>{});
    case DType::u16: return f(Tag<std::uint16_t>{});
    case DType::u32: return f(Tag<std::uint32_t>{});
    case DType::u64: return f(Tag<std::uint64_t>{});
    case DType::i8: return f(Tag<std::int8_t>{});
    case DType::i16: return f(Tag<std::int16_t>{});
    case DType::i32: return f(Tag<std::int32_t>{});
    case DType::i64: return f(Tag<std::int64_t>{});
    case DType::f32: return f(Tag<float>{});
    case DType::f64: return f(Tag<double>{});
  }
}

int cfitsio_type(DType raw) {
  switch (raw) {
    case DType::u8: return TBYTE;
    case DType::i16: return TSHORT;
    case DType::i32: return TINT;
    case DType::i64: return TLONGLONG;
    case DType::f32: return TFLOAT;
    case DType::f64: return TDOUBLE;
    default: fail(ErrorKind::Runtime, "internal error: no cfitsio type for this raw dtype");
  }
}

template <class Raw, class Mid, class Out>
void convert_copy(const Raw* in, Out* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(static_cast<Mid>(in[i]));
}

// The unsigned convention: raw + 2^(bits-1) == raw with the sign bit flipped.
template <class Raw, class Mid, class Out>
void convert_unsigned(const Raw* in, Out* out, std::size_t n) {
  using U = std::make_unsigned_t<Raw>;
  constexpr U flip = U(U(1) << (sizeof(U) * 8 - 1));
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(static_cast<Mid>(static_cast<U>(in[i]) ^ flip));
}

// astropy scales in numpy: one rounding for the multiply and one for the add, so they must
// not be contracted into an FMA (GCC's default in C++ on targets that have one, e.g. aarch64).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif
template <class Raw, class Mid, class Out>
void convert_scale(const Raw* in, Out* out, std::size_t n, const Hdu& h) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
  const Mid scale = static_cast<Mid>(h.bscale), zero = static_cast<Mid>(h.bzero);
  const bool mul = h.bscale != 1.0, add = h.bzero != 0.0;
  const bool blank = h.blank && *h.blank != 0;  // astropy: `if self._blank:` skips BLANK = 0
  const Raw blank_value = blank ? static_cast<Raw>(*h.blank) : Raw{};
  const bool blank_fits = blank && static_cast<std::int64_t>(blank_value) == *h.blank;
  for (std::size_t i = 0; i < n; ++i) {
    const Raw r = in[i];
    Mid v = static_cast<Mid>(r);
    if (mul) v = v * scale;
    if (add) v = v + zero;
    if constexpr (std::is_integral_v<Raw>) {
      if (blank_fits && r == blank_value) v = std::numeric_limits<Mid>::quiet_NaN();
    }
    out[i] = static_cast<Out>(v);
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

template <class Out>
void convert_hdu(const void* raw, Out* out, std::size_t n, const Hdu& h) {
  // (raw type, mode) fixes astropy's type (Mid); see describe().
  auto run = [&](auto raw_tag, auto unsigned_tag, auto scaled_tag) {
    using Raw = typename decltype(raw_tag)::type;
    const Raw* in = static_cast<const Raw*>(raw);
    if (h.mode == Mode::Scale) {
      convert_scale<Raw, typename decltype(scaled_tag)::type, Out>(in, out, n, h);
    } else if (h.mode == Mode::Unsigned) {
      using Unsigned = typename decltype(unsigned_tag)::type;
      if constexpr (std::is_integral_v<Raw>) convert_unsigned<Raw, Unsigned, Out>(in, out, n);
    } else {
      convert_copy<Raw, Raw, Out>(in, out, n);
    }
  };
  switch (h.raw) {
    case DType::u8: return run(Tag<std::uint8_t>{}, Tag<std::int8_t>{}, Tag<float>{});
    case DType::i16: return run(Tag<std::int16_t>{}, Tag<std::uint16_t>{}, Tag<float>{});
    case DType::i32: return run(Tag<std::int32_t>{}, Tag<std::uint32_t>{}, Tag<double>{});
    case DType::i64: return run(Tag<std::int64_t>{}, Tag<std::uint64_t>{}, Tag<double>{});
    case DType::f32: return run(Tag<float>{}, Tag<float>{}, Tag<float>{});
    case DType::f64: return run(Tag<double>{}, Tag<double>{}, Tag<double>{});
    default: fail(ErrorKind::Runtime, "internal error: unexpected raw FITS dtype");
  }
}

// Reads HDU `h` (n pixels) into `region`, which holds n values of `out_dtype`.
// The zero padding of a copy must stand in for block padding only: data of the current HDU
// reaching into it means a truncated file (and zeros would be fed to cfitsio's tile decoders,
// whose RICE decoder runs past its buffer on long runs of zero bytes).
void require_unpadded_data(fitsfile* f, std::uint64_t real_size) {
  LONGLONG head = 0, data = 0, end = 0, bitpix = 0, naxis = 0, pcount = 0, gcount = 1;
  int status = 0;
  fits_get_hduaddrll(f, &head, &data, &end, &status);
  fits_read_key_lnglng(f, "BITPIX", &bitpix, nullptr, &status);
  fits_read_key_lnglng(f, "NAXIS", &naxis, nullptr, &status);
  if (status) fits_fail(status, "cannot read the data layout");
  std::uint64_t elements = naxis > 0 ? 1 : 0;
  for (LONGLONG i = 1; i <= naxis; ++i) {
    LONGLONG len = 0;
    fits_read_key_lnglng(f, ("NAXIS" + std::to_string(i)).c_str(), &len, nullptr, &status);
    elements = sat_mul(elements, static_cast<std::uint64_t>(std::max<LONGLONG>(len, 0)));
  }
  int optional = 0;
  fits_read_key_lnglng(f, "PCOUNT", &pcount, nullptr, &optional);
  optional = 0;
  fits_read_key_lnglng(f, "GCOUNT", &gcount, nullptr, &optional);
  if (status) fits_fail(status, "cannot read the data layout");
  const std::uint64_t bytes = sat_mul(sat_mul(static_cast<std::uint64_t>(std::llabs(bitpix)) / 8,
                                              static_cast<std::uint64_t>(std::max<LONGLONG>(gcount, 0))),
                                      sat_add(static_cast<std::uint64_t>(std::max<LONGLONG>(pcount, 0)), elements));
  if (sat_add(static_cast<std::uint64_t>(data), bytes) > real_size)
    fail(ErrorKind::Corrupt, "FITS file is truncated (the data ends " +
                                 std::to_string(sat_add(static_cast<std::uint64_t>(data), bytes)) +
                                 " bytes in, the file has " + std::to_string(real_size) + ")");
}

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

// Whether a gzip tile inflates completely to at most `max_bytes`, a whole number of pixels.
bool gzip_stream_ok(const unsigned char* c, std::size_t clen, std::uint64_t pixels, std::uint64_t max_bytes) {
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
    if (rc == Z_STREAM_END) return total > 0 && total % pixels == 0;
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
        if (glen == 0 || !gzip_stream_ok(buf.data(), buf.size(), pixels, sat_mul(pixels, 8)))
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

void read_hdu(fitsfile* f, std::uint64_t padded_from, const Hdu& h, DType out_dtype, unsigned char* region,
              std::size_t n) {
  int hdutype = 0, status = 0, anynul = 0;
  move_to(f, h.number, &hdutype);
  if (padded_from) require_unpadded_data(f, padded_from);
  if (h.compressed) validate_tiles(f, h);
  fits_set_bscale(f, 1.0, 0.0, &status);  // raw values; astropy's scaling is applied below
  const std::size_t raw_size = dtype_size(h.raw), out_size = dtype_size(out_dtype);
  unsigned char* raw = region + n * (out_size - raw_size);
  // Only tile-compressed floats need null handling: cfitsio writes NaN for their ZBLANK pixels.
  float fnan = std::numeric_limits<float>::quiet_NaN();
  double dnan = std::numeric_limits<double>::quiet_NaN();
  void* nulval = nullptr;
  if (h.compressed && h.raw == DType::f32) nulval = &fnan;
  if (h.compressed && h.raw == DType::f64) nulval = &dnan;
  fits_read_img(f, cfitsio_type(h.raw), 1, static_cast<LONGLONG>(n), nulval, raw, &anynul, &status);
  if (status) fits_fail(status, "cannot read the pixels of HDU " + std::to_string(h.number - 1));
  if (h.mode == Mode::Copy && h.raw == out_dtype) return;
  with_dtype(out_dtype, [&](auto out_tag) {
    using Out = typename decltype(out_tag)::type;
    convert_hdu<Out>(raw, reinterpret_cast<Out*>(region), n, h);
  });
}

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
