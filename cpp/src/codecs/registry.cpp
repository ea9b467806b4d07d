// The explicit table of bytes -> bytes codecs (no self-registering statics: they vanish from a
// static library), and the mapping of convert()'s user-facing compressor names onto them.
#include <array>
#include <string>

#include "codecs/codec.hpp"
#include "i2z/error.hpp"

namespace i2z {

namespace {

struct Entry {
  std::string_view name;
  CodecFactory factory;
};

constexpr std::array<Entry, 4> kCodecs{{
    {"blosc", make_blosc_codec},
    {"zstd", make_zstd_codec},
    {"gzip", make_gzip_codec},
    {"crc32c", make_crc32c_codec},
}};

void check_level(std::string_view name, int clevel, int lo, int hi) {
  if (clevel < lo || clevel > hi)
    fail(ErrorKind::Value, "clevel " + std::to_string(clevel) + " is out of range for compressor '" +
                               std::string(name) + "' (valid: " + std::to_string(lo) + ".." + std::to_string(hi) + ")");
}

}  // namespace

std::unique_ptr<BytesCodec> make_codec(const nlohmann::json& entry, std::size_t typesize) {
  // Zarr 3.1 readers accept a bare string and a "must_understand" member (zarr-v3-format.md §3).
  const nlohmann::json* name = &entry;
  nlohmann::json config = nlohmann::json::object();
  if (entry.is_object()) {
    auto it = entry.find("name");
    if (it == entry.end()) fail(ErrorKind::Value, "codec entry has no \"name\": " + entry.dump());
    name = &*it;
    for (const auto& [k, v] : entry.items()) {
      if (k == "configuration") config = v;
      else if (k != "name" && k != "must_understand")
        fail(ErrorKind::Value, "codec entry has unknown key '" + k + "': " + entry.dump());
    }
  }
  if (!name->is_string()) fail(ErrorKind::Value, "codec entry must be a name or an object, got " + entry.dump());
  const auto& n = name->get_ref<const std::string&>();
  for (const auto& c : kCodecs)
    if (c.name == n) return c.factory(config, typesize);
  fail(ErrorKind::Value, "unsupported codec '" + n + "' (supported: blosc, zstd, gzip, crc32c)");
}

std::unique_ptr<BytesCodec> make_compressor(std::string_view name, int clevel, std::size_t typesize) {
  using nlohmann::json;
  if (name == "lz4" || name == "blosc") {  // design: "blosc" means blosc with lz4
    check_level(name, clevel, 0, 9);
    // Byte shuffle for every dtype (design §"Compressors"). For 1-byte types c-blosc skips it
    // (nothing to shuffle), which keeps lz4 at full speed; bitshuffle there made the codec about
    // 5x more expensive for ~10 % smaller output on 8-bit images.
    return make_blosc_codec({{"typesize", typesize},
                             {"cname", "lz4"},
                             {"clevel", clevel},
                             {"shuffle", "shuffle"},
                             {"blocksize", 0}},
                            typesize);
  }
  if (name == "zstd") {
    check_level(name, clevel, -131072, 22);
    return make_zstd_codec({{"level", clevel}, {"checksum", false}}, typesize);
  }
  if (name == "gzip" || name == "zlib") {  // Zarr v3 has no zlib codec; the gzip container is portable
    check_level(name, clevel, 0, 9);
    return make_gzip_codec({{"level", clevel}}, typesize);
  }
  if (name == "none") return nullptr;
  fail(ErrorKind::Value, "unknown compressor '" + std::string(name) + "'; valid: lz4, blosc, zstd, gzip, zlib, none");
}

const std::vector<std::string>& compressor_names() {
  static const std::vector<std::string> names{"lz4", "blosc", "zstd", "gzip", "zlib", "none"};
  return names;
}

}  // namespace i2z
