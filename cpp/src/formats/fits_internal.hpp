// Internals of the FITS reader shared by its files (fits.cpp has the overview):
//   fits_open.cpp    opening: sniffing, gunzip, padding, cfitsio's disk driver on our descriptor
//   fits_header.cpp  header cards -> typed values, the side-car's header JSON
//   fits_hdu.cpp     HDU selection and description, astropy's scaling, reading the pixels
//   fits_guard.cpp   checks before cfitsio parses headers or decodes tiles
#pragma once
#include <fitsio.h>

#include <cerrno>
#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "formats/file_io.hpp"
#include "formats/format.hpp"
#include "i2z/error.hpp"

namespace i2z::fits {

// ---- fits_open.cpp
[[noreturn]] void fits_fail(int status, const std::string& what);
std::unique_lock<std::mutex> cfitsio_lock();
std::uint64_t sat_mul(std::uint64_t a, std::uint64_t b);
std::uint64_t sat_add(std::uint64_t a, std::uint64_t b);

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

// One open FITS file (one cfitsio handle, never shared).
class FitsFile {
 public:
  FitsFile(const std::string& path, std::uint64_t max_pixels);
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
  void open(const Fd& fd);
  fitsfile* f_ = nullptr;
  std::uint64_t real_size_ = 0;
};

// ---- fits_header.cpp
struct Card {
  std::string key;
  nlohmann::ordered_json value;  // null, bool, integer, float, string
  bool commentary = false;       // COMMENT / HISTORY
};
std::string rstrip(std::string_view s);
std::string_view strip(std::string_view s);
// All cards of the current HDU; for a tile-compressed HDU, those of the image it holds.
std::vector<Card> read_cards(fitsfile* f);
std::string header_json(const std::vector<Card>& cards);

// ---- fits_hdu.cpp
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

struct Plan {
  std::vector<Hdu> hdus;
  ImageInfo info;
};

void move_to(fitsfile* f, int number, int* hdutype);
std::string upper_strip(std::string_view s);
std::string shape_text(const std::vector<std::uint64_t>& s);
// Selection + description shared by probe and decode.
Plan plan(fitsfile* f, const FormatOptions& options);
// Reads HDU `h` (n pixels) into `region`, which holds n values of `out_dtype`.
void read_hdu(fitsfile* f, std::uint64_t padded_from, const Hdu& h, DType out_dtype, unsigned char* region,
              std::size_t n);

// ---- fits_guard.cpp
// Every tile of the current tile-compressed HDU checked before cfitsio decodes it.
void validate_tiles(fitsfile* f, const Hdu& h);

}  // namespace i2z::fits
