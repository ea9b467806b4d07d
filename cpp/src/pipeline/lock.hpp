// The single-writer lock of a store: an flock()ed file "<store>.i2z-lock" beside the store's real
// path (the caller resolves symlinks, so every path to a store takes the same lock). The kernel
// drops the lock when the process dies, so a crash never leaves a stale lock behind; the file
// itself is never removed (see release()).
#pragma once
#include <string>

namespace i2z {

class WriterLock {
 public:
  // Takes the lock or throws i2z::Error(IO) naming the lock file and the holder's pid.
  explicit WriterLock(std::string store_path);
  ~WriterLock();
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;
  void release();

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace i2z
