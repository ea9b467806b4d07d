// Parquet append by byte copy + footer merge; the contract is in parquet_append.hpp. Field ids
// are those of apache/parquet-format src/main/thrift/parquet.thrift.
#include "sidecar/parquet_append.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "i2z/error.hpp"
#include "sidecar/thrift_compact.hpp"

namespace i2z {
namespace {

using thrift::CType;
using thrift::Value;

// FileMetaData
constexpr std::int16_t kFmSchema = 2, kFmNumRows = 3, kFmRowGroups = 4, kFmKeyValue = 5, kFmColumnOrders = 7,
                       kFmEncAlgo = 8, kFmFooterSigningKey = 9;
// KeyValue
constexpr std::int16_t kKvKey = 1, kKvValue = 2;
// RowGroup
constexpr std::int16_t kRgColumns = 1, kRgNumRows = 3, kRgFileOffset = 5, kRgOrdinal = 7;
// ColumnChunk
constexpr std::int16_t kCcFilePath = 1, kCcFileOffset = 2, kCcMetaData = 3, kCcOffsetIndexOffset = 4,
                       kCcOffsetIndexLength = 5, kCcColumnIndexOffset = 6, kCcCryptoMetaData = 8,
                       kCcEncryptedColumnMetaData = 9;
// ColumnMetaData
constexpr std::int16_t kCmTotalCompressedSize = 7, kCmDataPageOffset = 9, kCmIndexPageOffset = 10,
                       kCmDictionaryPageOffset = 11, kCmBloomFilterOffset = 14;
// OffsetIndex / PageLocation
constexpr std::int16_t kOiPageLocations = 1, kPlOffset = 1;

constexpr std::uint64_t kPiece = 4u << 20;   // copy granularity
constexpr std::uint64_t kTailGuess = 64u << 10;  // one read usually gets footer + trailer

// Signals "not possible": caught at the top and turned into `false`.
struct NotPossible {
  std::string why;
};
[[noreturn]] void not_possible(std::string why) { throw NotPossible{std::move(why)}; }

// Random-access bytes of one Parquet file.
class Source {
 public:
  virtual ~Source() = default;
  virtual std::uint64_t size() const = 0;
  virtual Bytes read(std::uint64_t off, std::uint64_t len) = 0;  // exactly len bytes or throws
};

class StoreSource final : public Source {
 public:
  StoreSource(Store& s, std::string key, std::uint64_t size) : s_(s), key_(std::move(key)), size_(size) {}
  std::uint64_t size() const override { return size_; }
  Bytes read(std::uint64_t off, std::uint64_t len) override {
    auto b = s_.get_range(key_, off, len);
    if (!b || b->size() != len)
      fail(ErrorKind::IO, "'" + key_ + "' in " + s_.describe() + " vanished or shrank while being appended to");
    return std::move(*b);
  }

 private:
  Store& s_;
  std::string key_;
  std::uint64_t size_;
};

class SpanSource final : public Source {
 public:
  explicit SpanSource(std::span<const std::uint8_t> d) : d_(d) {}
  std::uint64_t size() const override { return d_.size(); }
  Bytes read(std::uint64_t off, std::uint64_t len) override {
    return Bytes(d_.begin() + static_cast<std::ptrdiff_t>(off), d_.begin() + static_cast<std::ptrdiff_t>(off + len));
  }

 private:
  std::span<const std::uint8_t> d_;
};

class FileSource final : public Source {
 public:
  explicit FileSource(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) fail(ErrorKind::IO, "cannot open '" + path_ + "': " + std::strerror(errno));
    struct stat st;
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd_);
      fail(ErrorKind::IO, "'" + path_ + "' is not a regular file");
    }
    size_ = static_cast<std::uint64_t>(st.st_size);
  }
  ~FileSource() override { ::close(fd_); }
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;
  std::uint64_t size() const override { return size_; }
  Bytes read(std::uint64_t off, std::uint64_t len) override {
    Bytes out(len);
    std::uint64_t got = 0;
    while (got < len) {
      const ssize_t r = ::pread(fd_, out.data() + got, len - got, static_cast<off_t>(off + got));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) fail(ErrorKind::IO, "cannot read '" + path_ + "'" + (r < 0 ? std::string(": ") + std::strerror(errno) : ""));
      got += static_cast<std::uint64_t>(r);
    }
    return out;
  }

 private:
  std::string path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

struct Footer {
  std::uint64_t start = 0;  // offset of the FileMetaData = end of the data part
  Value meta;
};

Footer read_footer(Source& src, const char* which) {
  const std::string w(which);
  const std::uint64_t n = src.size();
  if (n < 12) not_possible(w + " file is too short to be Parquet");
  const std::uint64_t tail_len = std::min(n, kTailGuess);
  Bytes tail = src.read(n - tail_len, tail_len);
  const std::uint8_t* trailer = tail.data() + tail_len - 8;
  if (std::memcmp(trailer + 4, "PARE", 4) == 0) not_possible(w + " file has an encrypted footer");
  if (std::memcmp(trailer + 4, "PAR1", 4) != 0) not_possible(w + " file does not end with PAR1");
  const std::uint64_t len = static_cast<std::uint64_t>(trailer[0]) | (static_cast<std::uint64_t>(trailer[1]) << 8) |
                            (static_cast<std::uint64_t>(trailer[2]) << 16) |
                            (static_cast<std::uint64_t>(trailer[3]) << 24);
  if (len > n - 12) not_possible(w + " file's footer length exceeds the file");
  Footer f;
  f.start = n - 8 - len;
  Bytes more;
  std::span<const std::uint8_t> bytes;
  if (len + 8 <= tail_len) {
    bytes = std::span<const std::uint8_t>(tail).subspan(tail_len - 8 - len, len);
  } else {
    more = src.read(f.start, len);
    bytes = more;
  }
  try {
    f.meta = thrift::decode_struct(bytes);
  } catch (const Error& e) {
    not_possible(w + " file's footer is malformed (" + e.what() + ")");
  }
  return f;
}

// The value stored under `key` in the file's key/value metadata, or nullopt.
std::optional<std::string> kv_value(const Value& meta, const std::string& key) {
  const thrift::Field* kv = meta.find(kFmKeyValue);
  if (!kv || kv->value.type != CType::List) return std::nullopt;
  for (const Value& e : kv->value.items) {
    const thrift::Field* k = e.find(kKvKey);
    if (!k || k->value.bin != key) continue;
    const thrift::Field* v = e.find(kKvValue);
    return v ? v->value.bin : std::string();
  }
  return std::nullopt;
}

Value& field(Value& s, std::int16_t id, CType t, const char* what) {
  thrift::Field* f = s.find(id);
  if (!f || f->value.type != t) not_possible(std::string("missing or mistyped ") + what);
  return f->value;
}

std::optional<std::int64_t> opt_i64(const Value& s, std::int16_t id) {
  const thrift::Field* f = s.find(id);
  if (!f) return std::nullopt;
  if (f->value.type != CType::I64) not_possible("mistyped field " + std::to_string(id));
  return f->value.i;
}

// Offsets below 4 are "unset" markers some writers use (0); a real page cannot start there.
void shift(Value& s, std::int16_t id, std::int64_t delta) {
  thrift::Field* f = s.find(id);
  if (!f) return;
  if (f->value.type != CType::I64) not_possible("mistyped offset field " + std::to_string(id));
  if (f->value.i >= 4) f->value.i += delta;
}

void check_chunk(Value& cc) {
  if (cc.type != CType::Struct) not_possible("column chunk is not a struct");
  if (cc.find(kCcFilePath)) not_possible("column chunk stored in another file");
  if (cc.find(kCcCryptoMetaData) || cc.find(kCcEncryptedColumnMetaData)) not_possible("encrypted column");
  field(cc, kCcMetaData, CType::Struct, "ColumnChunk.meta_data");
}

std::int64_t row_count(Value& rg) {
  if (rg.type != CType::Struct) not_possible("row group is not a struct");
  const std::int64_t n = field(rg, kRgNumRows, CType::I64, "RowGroup.num_rows").i;
  if (n < 0) not_possible("negative row count");
  return n;
}

class Appender {
 public:
  Appender(Store& store, std::string old_key, std::uint64_t keep, Source& fresh, std::string out_key)
      : store_(store), old_key_(std::move(old_key)), keep_(keep), new_(fresh), out_key_(std::move(out_key)) {}

  void run() {
    const auto old_size = store_.size(old_key_);
    if (!old_size) not_possible("'" + old_key_ + "' does not exist");
    StoreSource old(store_, old_key_, *old_size);
    Footer of = read_footer(old, "old");
    Footer nf = read_footer(new_, "new");
    if (std::memcmp(new_.read(0, 4).data(), "PAR1", 4) != 0) not_possible("new file does not start with PAR1");
    Value& om = of.meta;
    Value& nm = nf.meta;
    for (Value* m : {&om, &nm})
      if (m->find(kFmEncAlgo) || m->find(kFmFooterSigningKey)) not_possible("encrypted file");
    if (thrift::encode_struct(wrap(field(om, kFmSchema, CType::List, "schema"))) !=
        thrift::encode_struct(wrap(field(nm, kFmSchema, CType::List, "schema"))))
      not_possible("the schemas differ");
    const thrift::Field* oco = om.find(kFmColumnOrders);
    const thrift::Field* nco = nm.find(kFmColumnOrders);
    if (!oco != !nco || (oco && thrift::encode_struct(wrap(oco->value)) != thrift::encode_struct(wrap(nco->value))))
      not_possible("the column orders differ");
    // Readers apply the old file's Arrow schema to every row group: the new rows must have been
    // written under the same one (one Parquet schema can carry several Arrow types).
    if (kv_value(om, "ARROW:schema") != kv_value(nm, "ARROW:schema")) not_possible("the Arrow schemas differ");

    // Old row groups wholly inside the first keep_ rows.
    Value& old_rgs = field(om, kFmRowGroups, CType::List, "row_groups");
    std::uint64_t rows = 0;
    std::size_t kept = 0;
    for (; kept < old_rgs.items.size(); ++kept) {
      const auto n = static_cast<std::uint64_t>(row_count(old_rgs.items[kept]));
      if (rows + n > keep_) break;
      rows += n;
    }
    while (kept < old_rgs.items.size() && rows == keep_ && row_count(old_rgs.items[kept]) == 0) ++kept;
    if (rows != keep_)
      not_possible(keep_ > rows ? "keep_rows is not on a row-group boundary or exceeds the old row count"
                                : "keep_rows is not on a row-group boundary");
    old_rgs.items.resize(kept);

    // New row groups, shifted to sit after the old data part.
    const std::int64_t delta = static_cast<std::int64_t>(of.start) - 4;
    Value& new_rgs = field(nm, kFmRowGroups, CType::List, "row_groups");
    std::vector<std::pair<Value*, Bytes>> offset_indexes;  // column chunk, re-encoded index
    for (Value& rg : new_rgs.items) {
      rows += static_cast<std::uint64_t>(row_count(rg));
      shift(rg, kRgFileOffset, delta);
      for (Value& cc : field(rg, kRgColumns, CType::List, "RowGroup.columns").items) {
        check_chunk(cc);
        Value& md = field(cc, kCcMetaData, CType::Struct, "ColumnChunk.meta_data");
        check_extent(md, nf.start);
        for (std::int16_t id : {kCmDataPageOffset, kCmIndexPageOffset, kCmDictionaryPageOffset, kCmBloomFilterOffset})
          shift(md, id, delta);
        shift(cc, kCcFileOffset, delta);
        shift(cc, kCcColumnIndexOffset, delta);
        if (cc.find(kCcOffsetIndexOffset)) offset_indexes.emplace_back(&cc, shifted_offset_index(cc, nf.start, delta));
      }
    }
    for (Value& rg : old_rgs.items)
      for (Value& cc : field(rg, kRgColumns, CType::List, "RowGroup.columns").items) check_chunk(cc);

    // Lay out part 3 and finish the footer.
    std::uint64_t pos = of.start + (nf.start - 4);
    for (auto& [cc, bytes] : offset_indexes) {
      field(*cc, kCcOffsetIndexOffset, CType::I64, "offset_index_offset").i = static_cast<std::int64_t>(pos);
      Value& len = field(*cc, kCcOffsetIndexLength, CType::I32, "offset_index_length");
      len.i = static_cast<std::int64_t>(bytes.size());
      pos += bytes.size();
    }
    for (Value& rg : new_rgs.items) old_rgs.items.push_back(std::move(rg));
    if (old_rgs.items.size() > 32767) {
      for (const Value& rg : old_rgs.items)
        if (rg.find(kRgOrdinal)) not_possible("more than 32767 row groups");
    }
    for (std::size_t k = 0; k < old_rgs.items.size(); ++k)
      if (thrift::Field* o = old_rgs.items[k].find(kRgOrdinal)) {
        if (o->value.type != CType::I16) not_possible("mistyped RowGroup.ordinal");
        o->value.i = static_cast<std::int64_t>(k);
      }
    if (rows > static_cast<std::uint64_t>(INT64_MAX)) not_possible("row count overflow");
    field(om, kFmNumRows, CType::I64, "num_rows").i = static_cast<std::int64_t>(rows);
    std::string footer = thrift::encode_struct(om);
    if (footer.size() > 0xffffffffu) not_possible("footer too large");

    // Write: nothing is visible until commit().
    auto out = store_.open_writer(out_key_);
    copy(old, 0, of.start, *out, true);
    copy(new_, 4, nf.start, *out, false);
    for (auto& [cc, bytes] : offset_indexes) out->write(bytes);
    const auto flen = static_cast<std::uint32_t>(footer.size());
    footer.push_back(static_cast<char>(flen & 0xff));
    footer.push_back(static_cast<char>((flen >> 8) & 0xff));
    footer.push_back(static_cast<char>((flen >> 16) & 0xff));
    footer.push_back(static_cast<char>(flen >> 24));
    footer += "PAR1";
    out->write({reinterpret_cast<const std::uint8_t*>(footer.data()), footer.size()});
    if (out->size() != pos + footer.size()) fail(ErrorKind::Runtime, "parquet_append: output size mismatch");
    out->commit();
  }

 private:
  // A bare list can only be compared through an encoder that takes a struct.
  static Value wrap(const Value& v) {
    Value s;
    s.type = CType::Struct;
    s.fields.push_back(thrift::Field{1, v});
    return s;
  }

  // The chunk's pages must lie inside the new file's data part, or the copy would not hold them.
  static void check_extent(const Value& md, std::uint64_t data_end) {
    const auto size = opt_i64(md, kCmTotalCompressedSize);
    const auto data = opt_i64(md, kCmDataPageOffset);
    if (!size || !data) not_possible("column chunk without data offset or size");
    std::int64_t start = *data;
    if (auto dict = opt_i64(md, kCmDictionaryPageOffset); dict && *dict >= 4) start = std::min(start, *dict);
    if (start < 4 || *size < 0 || static_cast<std::uint64_t>(start) > data_end ||
        static_cast<std::uint64_t>(*size) > data_end - static_cast<std::uint64_t>(start))
      not_possible("column chunk extends outside the new file's data");
  }

  Bytes shifted_offset_index(Value& cc, std::uint64_t data_end, std::int64_t delta) {
    const auto off = opt_i64(cc, kCcOffsetIndexOffset);
    const thrift::Field* lf = cc.find(kCcOffsetIndexLength);
    if (!off || !lf || lf->value.type != CType::I32) not_possible("offset index without length");
    const std::int64_t len = lf->value.i;
    if (*off < 4 || len <= 0 || static_cast<std::uint64_t>(*off) > data_end ||
        static_cast<std::uint64_t>(len) > data_end - static_cast<std::uint64_t>(*off))
      not_possible("offset index outside the new file's data");
    Bytes raw = new_.read(static_cast<std::uint64_t>(*off), static_cast<std::uint64_t>(len));
    Value oi;
    try {
      oi = thrift::decode_struct(raw);
    } catch (const Error& e) {
      not_possible(std::string("malformed offset index (") + e.what() + ")");
    }
    for (Value& loc : field(oi, kOiPageLocations, CType::List, "OffsetIndex.page_locations").items) {
      if (loc.type != CType::Struct) not_possible("page location is not a struct");
      field(loc, kPlOffset, CType::I64, "PageLocation.offset").i += delta;
    }
    const std::string enc = thrift::encode_struct(oi);
    return Bytes(enc.begin(), enc.end());
  }

  static void copy(Source& src, std::uint64_t from, std::uint64_t to, ObjectWriter& out, bool check_magic) {
    for (std::uint64_t at = from; at < to;) {
      const std::uint64_t n = std::min(kPiece, to - at);
      Bytes piece = src.read(at, n);
      if (check_magic && at == 0 && (n < 4 || std::memcmp(piece.data(), "PAR1", 4) != 0))
        not_possible("old file does not start with PAR1");
      out.write(piece);
      at += n;
    }
  }

  Store& store_;
  std::string old_key_;
  std::uint64_t keep_;
  Source& new_;
  std::string out_key_;
};

}  // namespace

bool parquet_append(Store& store, const std::string& old_key, std::uint64_t keep_rows, const ParquetInput& new_rows,
                    const std::string& out_key, std::string* why_not) {
  std::unique_ptr<Source> fresh;
  if (const auto* path = std::get_if<std::string>(&new_rows))
    fresh = std::make_unique<FileSource>(*path);
  else
    fresh = std::make_unique<SpanSource>(std::get<std::span<const std::uint8_t>>(new_rows));
  try {
    Appender(store, old_key, keep_rows, *fresh, out_key).run();
    return true;
  } catch (const NotPossible& np) {
    if (why_not) *why_not = np.why;
    return false;
  }
}

}  // namespace i2z
