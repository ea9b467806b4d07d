// CodecChain: the "bytes" array -> bytes step (byte order only; chunks are already in C order)
// followed by the bytes -> bytes codecs, applied first to last when encoding.
#include <algorithm>
#include <cstring>
#include <string>

#include "codecs/codec.hpp"
#include "i2z/error.hpp"

namespace i2z {

namespace {

using nlohmann::json;

std::string entry_name(const json& e) {
  if (e.is_string()) return e.get<std::string>();
  if (e.is_object()) {
    auto it = e.find("name");
    if (it != e.end() && it->is_string()) return it->get<std::string>();
  }
  fail(ErrorKind::Value, "codec entry must be a name or an object with a \"name\", got " + e.dump());
}

// Returns true for big endian. Missing configuration/endian = little (zarr-python < 3.3 wrote none).
bool parse_bytes_codec(const json& e) {
  if (!e.is_object()) return false;
  bool big = false;
  for (const auto& [k, v] : e.items()) {
    if (k == "name" || k == "must_understand") continue;
    if (k != "configuration") fail(ErrorKind::Value, "bytes codec has unknown key '" + k + "'");
    if (v.is_null()) continue;
    if (!v.is_object()) fail(ErrorKind::Value, "bytes codec configuration must be an object, got " + v.dump());
    for (const auto& [ck, cv] : v.items()) {
      if (ck != "endian") fail(ErrorKind::Value, "bytes codec has unknown configuration key '" + ck + "'");
      if (cv == "big") big = true;
      else if (cv != "little")
        fail(ErrorKind::Value, "bytes codec: invalid endian " + cv.dump() + " (expected \"little\" or \"big\")");
    }
  }
  return big;
}

template <class T>
void swap_as(std::uint8_t* p, std::size_t n) {
  for (std::size_t i = 0; i + sizeof(T) <= n; i += sizeof(T)) {
    T v;
    std::memcpy(&v, p + i, sizeof(T));
    if constexpr (sizeof(T) == 2) v = __builtin_bswap16(v);
    else if constexpr (sizeof(T) == 4) v = __builtin_bswap32(v);
    else v = __builtin_bswap64(v);
    std::memcpy(p + i, &v, sizeof(T));
  }
}

void byteswap(std::uint8_t* p, std::size_t n, std::size_t typesize) {
  switch (typesize) {
    case 2: return swap_as<std::uint16_t>(p, n);
    case 4: return swap_as<std::uint32_t>(p, n);
    case 8: return swap_as<std::uint64_t>(p, n);
    default:
      for (std::size_t i = 0; i + typesize <= n; i += typesize) std::reverse(p + i, p + i + typesize);
  }
}

[[noreturn]] void wrong_size(std::size_t got, std::size_t want) {
  fail(ErrorKind::Corrupt, "chunk decodes to " + std::to_string(got) + " bytes, expected " + std::to_string(want));
}

}  // namespace

void BytesCodec::decode_into(std::span<const std::uint8_t> in, std::uint8_t* out, std::size_t n) const {
  std::vector<std::uint8_t> tmp;
  decode(in, tmp, n);
  if (tmp.size() != n) wrong_size(tmp.size(), n);
  if (n) std::memcpy(out, tmp.data(), n);
}

CodecChain CodecChain::from_json(const json& codecs, std::size_t typesize) {
  if (!codecs.is_array() || codecs.empty())
    fail(ErrorKind::Value, "codecs must be a non-empty list starting with the \"bytes\" codec, got " + codecs.dump());
  bool big = false;
  std::vector<std::unique_ptr<BytesCodec>> list;
  for (std::size_t i = 0; i < codecs.size(); ++i) {
    const json& e = codecs[i];
    const std::string name = entry_name(e);
    if (name == "transpose") fail(ErrorKind::Value, "transpose codec is not supported");
    if (name == "sharding_indexed")
      fail(ErrorKind::Value, "sharding_indexed inside a sharded chunk (nested sharding) is not supported");
    if (name == "bytes") {
      if (i != 0) fail(ErrorKind::Value, "codecs must contain exactly one \"bytes\" codec, placed first");
      big = parse_bytes_codec(e);
    } else {
      if (i == 0) fail(ErrorKind::Value, "codecs must start with the \"bytes\" codec, got '" + name + "'");
      list.push_back(make_codec(e, typesize));
    }
  }
  // Byte order is meaningless for 1-byte elements.
  return CodecChain(big && typesize > 1, typesize, std::move(list));
}

json CodecChain::to_json() const {
  json out = json::array();
  if (typesize_ > 1)
    out.push_back({{"name", "bytes"}, {"configuration", {{"endian", big_endian_ ? "big" : "little"}}}});
  else
    out.push_back({{"name", "bytes"}});
  for (const auto& c : codecs_) out.push_back(c->to_json());
  return out;
}

std::size_t CodecChain::max_encoded_size(std::size_t n) const {
  for (const auto& c : codecs_) n = c->max_encoded_size(n);
  return n;
}

template <class Buf>
void CodecChain::encode(std::span<const std::uint8_t> raw, Buf& out, Buf& scratch) const {
  const std::size_t k = codecs_.size();
  if (k == 0) {
    out.assign(raw.begin(), raw.end());
    if (big_endian_) byteswap(out.data(), out.size(), typesize_);
    return;
  }
  // Ping-pong between out and scratch so that the last codec writes into out.
  auto dst_of = [&](std::size_t i) -> Buf& { return (k - 1 - i) % 2 == 0 ? out : scratch; };
  const std::uint8_t* src = raw.data();
  std::size_t n = raw.size();
  if (big_endian_) {
    auto& tmp = &dst_of(0) == &out ? scratch : out;  // any buffer codec 0 does not write to
    tmp.assign(raw.begin(), raw.end());
    byteswap(tmp.data(), n, typesize_);
    src = tmp.data();
  }
  for (std::size_t i = 0; i < k; ++i) {
    auto& dst = dst_of(i);
    dst.resize(codecs_[i]->max_encoded_size(n));
    n = codecs_[i]->encode(src, n, dst.data(), dst.size());
    dst.resize(n);
    src = dst.data();
  }
}

template void CodecChain::encode(std::span<const std::uint8_t>, std::vector<std::uint8_t>&,
                                 std::vector<std::uint8_t>&) const;
template void CodecChain::encode(std::span<const std::uint8_t>, ByteBuffer&, ByteBuffer&) const;

void CodecChain::decode(std::span<const std::uint8_t> encoded, std::vector<std::uint8_t>& out, std::size_t raw_size,
                        std::vector<std::uint8_t>& scratch) const {
  const std::size_t k = codecs_.size();
  if (k == 0) {
    out.assign(encoded.begin(), encoded.end());
  } else {
    // Decode last to first; codec 0 writes into out. Only its output size is known in advance.
    std::span<const std::uint8_t> src = encoded;
    for (std::size_t i = k; i-- > 0;) {
      auto& dst = i % 2 == 0 ? out : scratch;
      codecs_[i]->decode(src, dst, i == 0 ? raw_size : 0);
      src = dst;
    }
  }
  if (out.size() != raw_size) wrong_size(out.size(), raw_size);
  if (big_endian_) byteswap(out.data(), out.size(), typesize_);
}

void CodecChain::decode_into(std::span<const std::uint8_t> encoded, std::uint8_t* dst, std::size_t raw_size,
                             std::vector<std::uint8_t>& tmp, std::vector<std::uint8_t>& scratch) const {
  const std::size_t k = codecs_.size();
  if (k == 0) {
    if (encoded.size() != raw_size) wrong_size(encoded.size(), raw_size);
    if (raw_size) std::memcpy(dst, encoded.data(), raw_size);
  } else {
    // Codecs k-1 .. 1 ping-pong through tmp and scratch; codec 0 writes into dst.
    std::span<const std::uint8_t> src = encoded;
    for (std::size_t i = k; i-- > 1;) {
      auto& buf = i % 2 == 0 ? tmp : scratch;
      codecs_[i]->decode(src, buf, 0);
      src = buf;
    }
    codecs_[0]->decode_into(src, dst, raw_size);
  }
  if (big_endian_) byteswap(dst, raw_size, typesize_);
}

}  // namespace i2z
