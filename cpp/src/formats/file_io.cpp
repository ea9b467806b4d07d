#include "formats/file_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "i2z/error.hpp"

namespace i2z {

void fail_errno(const std::string& what, const std::string& path) {
  const int err = errno;
  fail(err == ENOENT ? ErrorKind::FileNotFound : ErrorKind::IO,
       what + " '" + path + "': " + std::generic_category().message(err));
}

int open_input(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) fail_errno("cannot open", path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    errno = err;
    fail_errno("cannot stat", path);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(ErrorKind::IO, "cannot read '" + path + "': not a regular file (" +
                            (S_ISFIFO(st.st_mode) ? "a named pipe" : S_ISDIR(st.st_mode) ? "a directory"
                                                                                         : "a device or socket") +
                            ")");
  }
  // Regular files never block; clear the flag so reads behave as usual.
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

std::FILE* fopen_input(const std::string& path) {
  const int fd = open_input(path);
  std::FILE* fp = ::fdopen(fd, "rb");
  if (fp == nullptr) {
    ::close(fd);
    fail_errno("cannot open", path);
  }
  return fp;
}

std::vector<unsigned char> read_whole_file(const std::string& path, std::uint64_t budget, const Extent& extent) {
  struct Fd {
    int fd;
    ~Fd() { ::close(fd); }
  } f{open_input(path)};
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) fail_errno("cannot stat", path);
  std::uint64_t want = static_cast<std::uint64_t>(st.st_size);
  if (extent) want = std::min(want, extent(f.fd, want));
  if (want > budget)
    fail(ErrorKind::Value, "'" + path + "': reading " + mib_text(want) + " is over the per-worker memory budget of " +
                               mib_text(budget) + " (max_memory / num_parallel_workers)");
  std::vector<unsigned char> data(static_cast<std::size_t>(want));
  std::size_t got = 0;
  while (got < data.size()) {
    const ssize_t n = ::read(f.fd, data.data() + got, data.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_errno("cannot read", path);
    }
    if (n == 0) break;  // shrank while reading: the decoder reports it as truncated
    got += static_cast<std::size_t>(n);
  }
  data.resize(got);
  return data;
}

Extent png_extent(std::uint64_t raw_bytes) {
  return [raw_bytes](int fd, std::uint64_t size) -> std::uint64_t {
    // zlib overhead, filter bytes and ancillary chunks: far below this for any real file.
    if (size <= raw_bytes + raw_bytes / 4 + (std::uint64_t{4} << 20)) return size;
    std::uint64_t pos = 8;
    unsigned char hdr[8];
    while (pos + 12 <= size) {
      if (::pread(fd, hdr, sizeof hdr, static_cast<off_t>(pos)) != static_cast<ssize_t>(sizeof hdr)) return size;
      const std::uint64_t len = (std::uint64_t{hdr[0]} << 24) | (hdr[1] << 16) | (hdr[2] << 8) | hdr[3];
      pos += 12 + len;
      if (std::memcmp(hdr + 4, "IEND", 4) == 0) return std::min(pos, size);
    }
    return size;  // no IEND: the decoder reports the truncation
  };
}

}  // namespace i2z
