// Key/value storage behind a Zarr store. A backend implements these primitives; everything
// else (streamed shard objects, commit by rename) is built on them. Keys use '/' separators
// and are relative to the store root. Implementations are safe to call from several threads.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace i2z {

using Bytes = std::vector<std::uint8_t>;

// A streamed object: bytes are appended in order; nothing is visible under the key until
// commit() succeeds. Destroying an uncommitted writer discards what was written.
class ObjectWriter {
 public:
  virtual ~ObjectWriter() = default;
  virtual void write(std::span<const std::uint8_t> data) = 0;
  virtual std::uint64_t size() const = 0;
  virtual void commit() = 0;  // throws i2z::Error (IO) on failure
};

class Store {
 public:
  virtual ~Store() = default;
  // Whole object, or nullopt when the key does not exist.
  virtual std::optional<Bytes> get(const std::string& key) = 0;
  // Bytes [offset, offset+length) clipped to the object; nullopt when the key does not exist.
  virtual std::optional<Bytes> get_range(const std::string& key, std::uint64_t offset, std::uint64_t length) = 0;
  // The last `length` bytes (the whole object if shorter).
  virtual std::optional<Bytes> get_suffix(const std::string& key, std::uint64_t length) = 0;
  virtual std::optional<std::uint64_t> size(const std::string& key) = 0;
  // Atomic replace: readers see the old or the new object, never a mix.
  virtual void set(const std::string& key, std::span<const std::uint8_t> data) = 0;
  virtual std::unique_ptr<ObjectWriter> open_writer(const std::string& key) = 0;
  virtual void erase(const std::string& key) = 0;  // no error when missing
  // Every key under prefix (recursively), sorted.
  virtual std::vector<std::string> list(const std::string& prefix) = 0;
  bool exists(const std::string& key) { return size(key).has_value(); }
  // Removes what writers killed before commit() left behind (partial files, multipart uploads).
  // Call only while holding the store's writer lock.
  virtual void remove_incomplete() {}
  // A human-readable location for messages ("/data/x.zarr", "s3://b/x.zarr").
  virtual std::string describe() const = 0;
};

// A text object (JSON documents, progress records): its bytes, and the object read as text.
inline std::span<const std::uint8_t> text_bytes(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}
inline std::optional<std::string> get_text(Store& store, const std::string& key) {
  auto b = store.get(key);
  if (!b) return std::nullopt;
  return std::string(b->begin(), b->end());
}

// Filesystem store rooted at a directory (created on first write).
std::shared_ptr<Store> open_local_store(const std::string& root);

}  // namespace i2z
