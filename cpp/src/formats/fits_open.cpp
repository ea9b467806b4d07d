// Opening a FITS file (see fits.cpp): sniff, gunzip with a bound, pad, then cfitsio.
#include <fcntl.h>
#include <sys/mman.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "formats/fits_guard.hpp"
#include "formats/fits_internal.hpp"

namespace i2z::fits {

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

FitsFile::FitsFile(const std::string& path, std::uint64_t max_pixels) {
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

// cfitsio opens its own description of the file; `fd` may be closed afterwards.
void FitsFile::open(const Fd& fd) {
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

}  // namespace i2z::fits
