// Filesystem store. Objects are written to "<path>.i2z-part-<n>" and renamed into place, so a
// reader (or a crash) never sees half an object. No fsync: the guarantee is against a killed
// process, not a power cut (documented in the README).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "i2z/error.hpp"
#include "i2z/store.hpp"

namespace i2z {
namespace fs = std::filesystem;

namespace {

constexpr const char* kPartTag = ".i2z-part-";

[[noreturn]] void io_fail(const std::string& what, const std::string& path) {
  fail(ErrorKind::IO, what + " '" + path + "': " + std::strerror(errno));
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

void write_all(int fd, const std::uint8_t* p, std::size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      io_fail("cannot write", path);
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

std::string part_name(const std::string& path) {
  static std::atomic<std::uint64_t> counter{0};
  return path + kPartTag + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

void ensure_parent(const std::string& path) {
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  if (ec) fail(ErrorKind::IO, "cannot create directory '" + fs::path(path).parent_path().string() + "': " + ec.message());
}

class LocalWriter final : public ObjectWriter {
 public:
  explicit LocalWriter(std::string path) : path_(std::move(path)), tmp_(part_name(path_)) {
    ensure_parent(path_);
    fd_.fd = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_.fd < 0) io_fail("cannot create", tmp_);
  }
  ~LocalWriter() override {
    if (!committed_) {
      ::close(fd_.fd);
      fd_.fd = -1;
      ::unlink(tmp_.c_str());
    }
  }
  void write(std::span<const std::uint8_t> data) override {
    write_all(fd_.fd, data.data(), data.size(), tmp_);
    size_ += data.size();
  }
  std::uint64_t size() const override { return size_; }
  void commit() override {
    if (::close(fd_.fd) != 0) {
      fd_.fd = -1;
      io_fail("cannot write", tmp_);
    }
    fd_.fd = -1;
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) io_fail("cannot rename into", path_);
    committed_ = true;
  }

 private:
  std::string path_, tmp_;
  Fd fd_;
  std::uint64_t size_ = 0;
  bool committed_ = false;
};

class LocalStore final : public Store {
 public:
  explicit LocalStore(std::string root) : root_(std::move(root)) {
    while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
  }

  std::optional<Bytes> get(const std::string& key) override { return read(key, 0, ~std::uint64_t{0}, false); }
  std::optional<Bytes> get_range(const std::string& key, std::uint64_t off, std::uint64_t len) override {
    return read(key, off, len, false);
  }
  std::optional<Bytes> get_suffix(const std::string& key, std::uint64_t len) override {
    return read(key, 0, len, true);
  }
  std::optional<std::uint64_t> size(const std::string& key) override {
    struct stat st;
    if (::stat(path(key).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
    return static_cast<std::uint64_t>(st.st_size);
  }
  void set(const std::string& key, std::span<const std::uint8_t> data) override {
    LocalWriter w(path(key));
    w.write(data);
    w.commit();
  }
  std::unique_ptr<ObjectWriter> open_writer(const std::string& key) override {
    return std::make_unique<LocalWriter>(path(key));
  }
  void erase(const std::string& key) override {
    if (::unlink(path(key).c_str()) != 0 && errno != ENOENT) io_fail("cannot delete", path(key));
  }
  std::vector<std::string> list(const std::string& prefix) override {
    std::vector<std::string> keys;
    const fs::path base(root_);
    std::error_code ec;
    const fs::path start = prefix.empty() ? base : base / prefix;
    if (!fs::is_directory(start, ec)) return keys;
    for (auto it = fs::recursive_directory_iterator(start, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      if (!it->is_regular_file(ec)) continue;
      std::string rel = fs::relative(it->path(), base, ec).generic_string();
      if (rel.find(kPartTag) != std::string::npos) continue;
      keys.push_back(std::move(rel));
    }
    std::sort(keys.begin(), keys.end());
    return keys;
  }
  std::string describe() const override { return root_; }

  void remove_incomplete() override {
    std::error_code ec;
    std::vector<fs::path> stale;
    for (auto it = fs::recursive_directory_iterator(root_, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
      if (it->path().filename().string().find(kPartTag) != std::string::npos) stale.push_back(it->path());
    for (const auto& p : stale) fs::remove(p, ec);
  }

 private:
  std::string path(const std::string& key) const { return key.empty() ? root_ : root_ + "/" + key; }

  std::optional<Bytes> read(const std::string& key, std::uint64_t off, std::uint64_t len, bool suffix) {
    const std::string p = path(key);
    Fd f;
    f.fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (f.fd < 0) {
      if (errno == ENOENT || errno == ENOTDIR) return std::nullopt;
      io_fail("cannot open", p);
    }
    struct stat st;
    if (::fstat(f.fd, &st) != 0) io_fail("cannot stat", p);
    if (!S_ISREG(st.st_mode)) return std::nullopt;
    const auto total = static_cast<std::uint64_t>(st.st_size);
    if (suffix) {
      off = len >= total ? 0 : total - len;
      len = total - off;
    }
    if (off >= total) return Bytes{};
    len = std::min(len, total - off);
    Bytes out(len);
    std::uint64_t got = 0;
    while (got < len) {
      const ssize_t r = ::pread(f.fd, out.data() + got, len - got, static_cast<off_t>(off + got));
      if (r < 0) {
        if (errno == EINTR) continue;
        io_fail("cannot read", p);
      }
      if (r == 0) break;
      got += static_cast<std::uint64_t>(r);
    }
    out.resize(got);
    return out;
  }

  std::string root_;
};

}  // namespace

std::shared_ptr<Store> open_local_store(const std::string& root) { return std::make_shared<LocalStore>(root); }

}  // namespace i2z
