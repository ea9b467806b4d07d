#include "pipeline/lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "i2z/error.hpp"

namespace i2z {

WriterLock::WriterLock(std::string store_path) : path_(std::move(store_path) + ".i2z-lock") {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path_).parent_path(), ec);
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) fail(ErrorKind::IO, "cannot create lock file '" + path_ + "': " + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {};
    const ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
    ::close(fd_);
    fd_ = -1;
    fail(ErrorKind::IO, "another writer holds the lock '" + path_ + "'" +
                            (n > 0 ? " (pid " + std::string(buf, static_cast<std::size_t>(n)) + ")" : std::string()) +
                            "; wait for it to finish");
  }
  const std::string pid = std::to_string(::getpid());
  if (::ftruncate(fd_, 0) == 0 && ::pwrite(fd_, pid.data(), pid.size(), 0) < 0) {
    // The pid is only for the message of a second writer; the lock itself is held.
  }
}

// The file stays: unlinking it would let a waiting writer lock the old inode while a third
// creates a new file and locks that one (two writers at once).
void WriterLock::release() {
  if (fd_ < 0) return;
  ::close(fd_);
  fd_ = -1;
}

WriterLock::~WriterLock() { release(); }

}  // namespace i2z
