#include "formats/file_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "i2z/error.hpp"

namespace i2z {

void fail_errno(const std::string& what, const std::string& path) {
  const int err = errno;
  fail(err == ENOENT ? ErrorKind::FileNotFound : ErrorKind::IO,
       what + " '" + path + "': " + std::generic_category().message(err));
}

std::vector<unsigned char> read_whole_file(const std::string& path) {
  struct Fd {
    int fd;
    ~Fd() {
      if (fd >= 0) ::close(fd);
    }
  } f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) fail_errno("cannot open", path);
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) fail_errno("cannot stat", path);
  std::vector<unsigned char> data(static_cast<std::size_t>(st.st_size));
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

void check_pixel_limit(std::uint64_t height, std::uint64_t width, std::uint64_t channels, std::uint64_t max_pixels) {
  const bool over = width != 0 && channels != 0 &&
                    (height > max_pixels / width || height * width > max_pixels / channels);
  if (over)
    fail(ErrorKind::Value, "image of " + std::to_string(height) + "x" + std::to_string(width) + "x" +
                               std::to_string(channels) + " pixels exceeds the limit of " + std::to_string(max_pixels) +
                               " (max_pixels)");
}

}  // namespace i2z
