// Thrift compact protocol (the encoding of every Parquet footer): field headers carry the id as
// a delta from the previous id in the high nibble (0 = a zigzag varint id follows), integers are
// zigzag varints, binaries are varint-length-prefixed, list headers carry a short size in the
// high nibble (15 = a varint size follows).
#include "sidecar/thrift_compact.hpp"

#include <cstring>

#include "i2z/error.hpp"

namespace i2z::thrift {

Field* Value::find(std::int16_t id) {
  for (auto& f : fields)
    if (f.id == id) return &f;
  return nullptr;
}

const Field* Value::find(std::int16_t id) const {
  for (const auto& f : fields)
    if (f.id == id) return &f;
  return nullptr;
}

namespace {

constexpr int kMaxDepth = 64;

[[noreturn]] void corrupt(const std::string& what) { fail(ErrorKind::Corrupt, "Thrift compact data: " + what); }

class Reader {
 public:
  explicit Reader(std::span<const std::uint8_t> d) : d_(d) {}
  std::size_t pos() const { return pos_; }

  Value read_struct(int depth) {
    if (depth > kMaxDepth) corrupt("nesting too deep");
    Value v;
    v.type = CType::Struct;
    std::int16_t last = 0;
    for (;;) {
      const std::uint8_t h = byte();
      const auto t = static_cast<CType>(h & 0x0f);
      if (t == CType::Stop) {
        if (h != 0) corrupt("bad stop byte");
        return v;
      }
      const int delta = h >> 4;
      std::int64_t id = delta != 0 ? last + delta : zigzag();
      if (id < -32768 || id > 32767) corrupt("field id out of range");
      last = static_cast<std::int16_t>(id);
      Field f;
      f.id = last;
      f.value = read_value(t, depth, false);
      v.fields.push_back(std::move(f));
    }
  }

 private:
  std::uint8_t byte() {
    if (pos_ >= d_.size()) corrupt("truncated");
    return d_[pos_++];
  }
  std::size_t remaining() const { return d_.size() - pos_; }

  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
      const std::uint8_t b = byte();
      if (shift == 63 && b > 1) corrupt("varint overflow");
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return v;
    }
    corrupt("varint too long");
  }
  std::int64_t zigzag() {
    const std::uint64_t u = varint();
    return static_cast<std::int64_t>(u >> 1) ^ -static_cast<std::int64_t>(u & 1);
  }

  Value read_value(CType t, int depth, bool in_container) {
    Value v;
    v.type = t;
    switch (t) {
      case CType::True:
      case CType::False:
        if (in_container) v.i = byte();
        break;
      case CType::Byte:
        v.i = static_cast<std::int8_t>(byte());
        break;
      case CType::I16:
      case CType::I32:
      case CType::I64: {
        v.i = zigzag();
        const std::int64_t lim = t == CType::I16 ? 32767 : t == CType::I32 ? 2147483647LL : INT64_MAX;
        if (v.i > lim || v.i < -lim - 1) corrupt("integer out of range");
        break;
      }
      case CType::Double: {
        if (remaining() < 8) corrupt("truncated");
        std::uint64_t bits = 0;
        for (int k = 0; k < 8; ++k) bits |= static_cast<std::uint64_t>(d_[pos_ + k]) << (8 * k);
        pos_ += 8;
        v.i = static_cast<std::int64_t>(bits);
        break;
      }
      case CType::Binary: {
        const std::uint64_t n = varint();
        if (n > remaining()) corrupt("binary longer than the data");
        v.bin.assign(reinterpret_cast<const char*>(d_.data() + pos_), n);
        pos_ += n;
        break;
      }
      case CType::List:
      case CType::Set: {
        if (depth + 1 > kMaxDepth) corrupt("nesting too deep");
        const std::uint8_t h = byte();
        std::uint64_t n = h >> 4;
        v.elem = static_cast<CType>(h & 0x0f);
        if (n == 15) n = varint();
        // Every element takes at least one byte: a hostile size cannot make us allocate.
        if (n > remaining()) corrupt("list longer than the data");
        if (n > 0 && (v.elem == CType::Stop || static_cast<int>(v.elem) > 12)) corrupt("bad list element type");
        v.items.reserve(n);
        for (std::uint64_t k = 0; k < n; ++k) v.items.push_back(read_value(v.elem, depth + 1, true));
        break;
      }
      case CType::Map: {
        if (depth + 1 > kMaxDepth) corrupt("nesting too deep");
        const std::uint64_t n = varint();
        if (n == 0) break;
        if (n > remaining() / 2) corrupt("map longer than the data");
        const std::uint8_t kv = byte();
        v.elem = static_cast<CType>(kv >> 4);
        v.elem2 = static_cast<CType>(kv & 0x0f);
        if (v.elem == CType::Stop || v.elem2 == CType::Stop || static_cast<int>(v.elem2) > 12)
          corrupt("bad map types");
        if (static_cast<int>(v.elem) > 12) corrupt("bad map types");
        v.items.reserve(2 * n);
        for (std::uint64_t k = 0; k < n; ++k) {
          v.items.push_back(read_value(v.elem, depth + 1, true));
          v.items.push_back(read_value(v.elem2, depth + 1, true));
        }
        break;
      }
      case CType::Struct:
        v = read_struct(depth + 1);
        break;
      default:
        corrupt("unknown type code " + std::to_string(static_cast<int>(t)));
    }
    return v;
  }

  std::span<const std::uint8_t> d_;
  std::size_t pos_ = 0;
};

void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void put_zigzag(std::string& out, std::int64_t v) {
  put_varint(out, (static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63));
}

void write_value(const Value& v, std::string& out, bool in_container);

void write_struct(const Value& v, std::string& out) {
  std::int16_t last = 0;
  for (const auto& f : v.fields) {
    const auto t = static_cast<std::uint8_t>(f.value.type);
    const int delta = f.id - last;
    if (delta > 0 && delta <= 15) {
      out.push_back(static_cast<char>((delta << 4) | t));
    } else {
      out.push_back(static_cast<char>(t));
      put_zigzag(out, f.id);
    }
    last = f.id;
    write_value(f.value, out, false);
  }
  out.push_back(0);
}

void write_value(const Value& v, std::string& out, bool in_container) {
  switch (v.type) {
    case CType::True:
    case CType::False:
      if (in_container) out.push_back(static_cast<char>(v.i));
      break;
    case CType::Byte:
      out.push_back(static_cast<char>(v.i));
      break;
    case CType::I16:
    case CType::I32:
    case CType::I64:
      put_zigzag(out, v.i);
      break;
    case CType::Double:
      for (int k = 0; k < 8; ++k) out.push_back(static_cast<char>(static_cast<std::uint64_t>(v.i) >> (8 * k)));
      break;
    case CType::Binary:
      put_varint(out, v.bin.size());
      out += v.bin;
      break;
    case CType::List:
    case CType::Set: {
      const auto et = static_cast<std::uint8_t>(v.elem);
      if (v.items.size() < 15) {
        out.push_back(static_cast<char>((v.items.size() << 4) | et));
      } else {
        out.push_back(static_cast<char>(0xf0 | et));
        put_varint(out, v.items.size());
      }
      for (const auto& e : v.items) write_value(e, out, true);
      break;
    }
    case CType::Map:
      put_varint(out, v.items.size() / 2);
      if (!v.items.empty())
        out.push_back(static_cast<char>((static_cast<std::uint8_t>(v.elem) << 4) | static_cast<std::uint8_t>(v.elem2)));
      for (const auto& e : v.items) write_value(e, out, true);
      break;
    case CType::Struct:
      write_struct(v, out);
      break;
    default:
      fail(ErrorKind::Value, "Thrift compact: cannot encode type " + std::to_string(static_cast<int>(v.type)));
  }
}

}  // namespace

Value decode_struct_prefix(std::span<const std::uint8_t> data, std::size_t* used) {
  Reader r(data);
  Value v = r.read_struct(0);
  if (used) *used = r.pos();
  return v;
}

Value decode_struct(std::span<const std::uint8_t> data) {
  std::size_t used = 0;
  Value v = decode_struct_prefix(data, &used);
  if (used != data.size()) corrupt(std::to_string(data.size() - used) + " bytes after the struct");
  return v;
}

void encode_struct(const Value& v, std::string& out) { write_struct(v, out); }

std::string encode_struct(const Value& v) {
  std::string out;
  write_struct(v, out);
  return out;
}

}  // namespace i2z::thrift
