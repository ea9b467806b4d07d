#include "zarr/metadata.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "i2z/error.hpp"

namespace i2z {

using nlohmann::json;

std::uint64_t ArrayMeta::chunks_per_shard() const {
  if (!sharded) return 1;
  std::uint64_t n = 1;
  for (std::size_t d = 0; d < chunk_grid.size(); ++d) n *= chunk_grid[d] / inner_chunk[d];
  return n;
}

std::uint64_t ArrayMeta::read_chunk_bytes() const {
  std::uint64_t n = dtype_size(dtype);
  for (auto v : read_chunk()) n *= v;
  return n;
}

// An integer fill value clamped into the dtype's range (NaN -> 0), as the reader does: a parsed
// document may hold any number (zarr-python writes 2^63 for uint64), and casting an out-of-range
// double to an integer is undefined.
static json integer_fill(double v, DType t) {
  if (std::isnan(v)) return 0;
  const bool is_signed = dtype_is_signed(t);
  if (v <= dtype_min(t)) return is_signed ? json(static_cast<std::int64_t>(dtype_min(t))) : json(0);
  if (v >= dtype_max(t))
    return is_signed ? (t == DType::i64 ? json(std::numeric_limits<std::int64_t>::max())
                                        : json(static_cast<std::int64_t>(dtype_max(t))))
                     : (t == DType::u64 ? json(std::numeric_limits<std::uint64_t>::max())
                                        : json(static_cast<std::uint64_t>(dtype_max(t))));
  if (is_signed) return static_cast<std::int64_t>(v);
  return static_cast<std::uint64_t>(v);
}

static json index_codecs_json() {
  return json::array({{{"name", "bytes"}, {"configuration", {{"endian", "little"}}}}, {{"name", "crc32c"}}});
}

json array_meta_to_json(const ArrayMeta& m) {
  json j;
  j["zarr_format"] = 3;
  j["node_type"] = "array";
  j["shape"] = m.shape;
  j["data_type"] = std::string(dtype_name(m.dtype));
  j["chunk_grid"] = {{"name", "regular"}, {"configuration", {{"chunk_shape", m.chunk_grid}}}};
  j["chunk_key_encoding"] = {{"name", "default"}, {"configuration", {{"separator", "/"}}}};
  if (dtype_is_float(m.dtype))
    j["fill_value"] = m.fill_value;
  else
    j["fill_value"] = integer_fill(m.fill_value, m.dtype);
  json chain = m.chain ? m.chain->to_json() : json::array({{{"name", "bytes"}}});
  if (m.sharded) {
    j["codecs"] = json::array({{{"name", "sharding_indexed"},
                                {"configuration",
                                 {{"chunk_shape", m.inner_chunk},
                                  {"codecs", chain},
                                  {"index_codecs", index_codecs_json()},
                                  {"index_location", m.index_at_end ? "end" : "start"}}}}});
  } else {
    j["codecs"] = chain;
  }
  j["attributes"] = m.attributes;
  j["storage_transformers"] = json::array();
  if (!m.dimension_names.empty()) j["dimension_names"] = m.dimension_names;
  return j;
}

namespace {

[[noreturn]] void bad(const std::string& where, const std::string& what) {
  fail(ErrorKind::Value, where + ": " + what);
}

std::vector<std::uint64_t> uint_list(const json& v, const std::string& where, const char* field) {
  if (!v.is_array()) bad(where, std::string(field) + " must be a list of non-negative integers");
  std::vector<std::uint64_t> out;
  for (const auto& e : v) {
    if (!e.is_number_integer() || e.get<std::int64_t>() < 0)
      bad(where, std::string(field) + " must be a list of non-negative integers, got " + v.dump());
    out.push_back(e.get<std::uint64_t>());
  }
  return out;
}

std::string codec_name(const json& e) {
  if (e.is_string()) return e.get<std::string>();
  if (e.is_object() && e.contains("name") && e["name"].is_string()) return e["name"].get<std::string>();
  return {};
}

double parse_fill(const json& v, DType t, const std::string& where) {
  if (v.is_number()) return v.get<double>();
  if (v.is_boolean()) return v.get<bool>() ? 1 : 0;
  if (v.is_string() && dtype_is_float(t)) {
    const auto s = v.get<std::string>();
    if (s == "NaN") return std::nan("");
    if (s == "Infinity") return INFINITY;
    if (s == "-Infinity") return -INFINITY;
    if (s.rfind("0x", 0) == 0) {
      const std::uint64_t bits = std::stoull(s.substr(2), nullptr, 16);
      if (t == DType::f32) {
        float f;
        const auto b32 = static_cast<std::uint32_t>(bits);
        std::memcpy(&f, &b32, 4);
        return f;
      }
      double d;
      std::memcpy(&d, &bits, 8);
      return d;
    }
  }
  bad(where, "unsupported fill_value " + v.dump());
}

}  // namespace

namespace {

ArrayMeta parse_array_meta_unchecked(const std::string& text, const std::string& where) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    bad(where, std::string("not valid JSON (") + e.what() + ")");
  }
  if (!j.is_object()) bad(where, "not a JSON object");
  if (j.value("zarr_format", 0) != 3) bad(where, "not a Zarr v3 document (zarr_format != 3)");
  if (j.value("node_type", "") != "array") bad(where, "not an array (node_type != \"array\")");
  static const char* known[] = {"zarr_format", "node_type", "shape", "data_type", "chunk_grid",
                                "chunk_key_encoding", "fill_value", "codecs", "attributes",
                                "dimension_names", "storage_transformers"};
  for (const auto& [k, v] : j.items()) {
    if (std::find(std::begin(known), std::end(known), k) != std::end(known)) continue;
    if (v.is_object() && v.value("must_understand", true) == false) continue;
    bad(where, "unknown metadata key '" + k + "'");
  }
  ArrayMeta m;
  m.shape = uint_list(j.value("shape", json()), where, "shape");
  if (!j.contains("data_type") || !j["data_type"].is_string()) bad(where, "data_type must be a string");
  m.dtype = dtype_from_name(j["data_type"].get<std::string>());
  const json& grid = j.value("chunk_grid", json());
  if (!grid.is_object() || grid.value("name", "") != "regular")
    bad(where, "only the regular chunk grid is supported");
  m.chunk_grid = uint_list(grid.value("configuration", json::object()).value("chunk_shape", json()), where,
                           "chunk_grid.chunk_shape");
  if (m.chunk_grid.size() != m.shape.size()) bad(where, "chunk_shape rank differs from shape rank");
  for (auto c : m.chunk_grid)
    if (c == 0) bad(where, "chunk_shape entries must be >= 1");
  const json& cke = j.value("chunk_key_encoding", json::object());
  if (cke.value("name", "default") != "default")
    bad(where, "unsupported chunk_key_encoding " + cke.dump());
  if (cke.value("configuration", json::object()).value("separator", "/") != "/")
    bad(where, "only the '/' chunk key separator is supported");
  if (j.contains("storage_transformers") && !j["storage_transformers"].empty())
    bad(where, "storage_transformers are not supported");
  if (j.contains("fill_value")) m.fill_value = parse_fill(j["fill_value"], m.dtype, where);
  if (j.contains("attributes") && j["attributes"].is_object()) m.attributes = j["attributes"];
  if (j.contains("dimension_names") && j["dimension_names"].is_array())
    for (const auto& n : j["dimension_names"]) m.dimension_names.push_back(n.is_string() ? n.get<std::string>() : "");
  const json& codecs = j.value("codecs", json());
  if (!codecs.is_array() || codecs.empty()) bad(where, "codecs must be a non-empty list");
  const std::size_t ts = dtype_size(m.dtype);
  if (codec_name(codecs[0]) == "sharding_indexed") {
    if (codecs.size() != 1) bad(where, "codecs after sharding_indexed are not supported");
    const json cfg = codecs[0].value("configuration", json::object());
    m.sharded = true;
    m.inner_chunk = uint_list(cfg.value("chunk_shape", json()), where, "sharding_indexed.chunk_shape");
    if (m.inner_chunk.size() != m.shape.size()) bad(where, "inner chunk_shape rank differs from shape rank");
    for (std::size_t d = 0; d < m.shape.size(); ++d)
      if (m.inner_chunk[d] == 0 || m.chunk_grid[d] % m.inner_chunk[d] != 0)
        bad(where, "shard shape is not a multiple of the inner chunk shape");
    m.index_at_end = cfg.value("index_location", "end") != "start";
    const json ic = cfg.value("index_codecs", json());
    bool ok = ic.is_array() && ic.size() == 2 && codec_name(ic[0]) == "bytes" && codec_name(ic[1]) == "crc32c";
    if (ok && ic[0].is_object() && ic[0].contains("configuration"))
      ok = ic[0]["configuration"].value("endian", "little") == "little";
    if (!ok) bad(where, "only index_codecs [bytes(little), crc32c] are supported, got " + ic.dump());
    m.chain = std::make_shared<CodecChain>(CodecChain::from_json(cfg.value("codecs", json()), ts));
  } else {
    m.chain = std::make_shared<CodecChain>(CodecChain::from_json(codecs, ts));
  }
  return m;
}

}  // namespace

// Every failure becomes a Value error naming the document: wrongly typed fields make nlohmann's
// value()/get() throw json::exception, a bad hex fill makes std::stoull throw, and the codec and
// dtype parsers do not know the document's name.
ArrayMeta parse_array_meta(const std::string& text, const std::string& where) {
  try {
    return parse_array_meta_unchecked(text, where);
  } catch (const Error& e) {
    if (std::string_view(e.what()).starts_with(where)) throw;
    fail(e.kind(), where + ": " + e.what());
  } catch (const json::exception& e) {
    bad(where, std::string("malformed array document (") + e.what() + ")");
  } catch (const std::logic_error& e) {
    bad(where, std::string("malformed array document (") + e.what() + ")");
  }
}

json group_json(const json& attributes, const json& children) {
  json g = {{"zarr_format", 3}, {"node_type", "group"}, {"attributes", attributes}};
  // zarr-python 3's inline consolidated metadata: readers (xarray) find every child's document
  // here without listing the store; readers that do not know the key ignore it.
  if (!children.empty())
    g["consolidated_metadata"] = {{"kind", "inline"}, {"must_understand", false}, {"metadata", children}};
  return g;
}

std::string chunk_key(const std::string& prefix, const std::vector<std::uint64_t>& coords) {
  std::string k = prefix + "c";
  for (auto c : coords) k += "/" + std::to_string(c);
  return k;
}

std::string dump_json(const json& j) { return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n"; }

}  // namespace i2z
