#include "pipeline/records_io.hpp"

#include <cmath>

#include <nlohmann/json.hpp>

#include "formats/format.hpp"
#include "i2z/error.hpp"
#include "pipeline/sources.hpp"

namespace i2z {

using nlohmann::json;

namespace {
// JSON has no NaN: keep it as null and restore it.
json num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }
double num_back(const json& v) { return v.is_number() ? v.get<double>() : NAN; }

json record_json(const ImageRecord& r) {
  return {{"p", r.source_path}, {"f", r.format}, {"b", r.file_size_bytes}, {"d", r.dtype}, {"s", r.shape},
          {"x", r.fits_extension}, {"h", r.fits_header_json}, {"lo", num(r.min_value)},
          {"hi", num(r.max_value)}, {"mu", num(r.mean_value)}, {"e", r.error}};
}

ImageRecord record_from(const json& o) {
  ImageRecord r;
  r.source_path = o.at("p");
  r.format = o.at("f");
  r.file_size_bytes = o.at("b");
  r.dtype = o.at("d");
  r.shape = o.at("s").get<std::vector<std::uint64_t>>();
  r.fits_extension = o.at("x");
  r.fits_header_json = o.at("h");
  r.min_value = num_back(o.at("lo"));
  r.max_value = num_back(o.at("hi"));
  r.mean_value = num_back(o.at("mu"));
  r.error = o.at("e");
  return r;
}

}  // namespace

// Serialised record by record (no document of the whole shard): this runs once per shard on
// the writer thread, and a DOM of a large shard would be its biggest transient allocation.
std::string records_to_json(std::span<const ImageRecord> records) {
  std::string out = "[";
  for (const auto& r : records) {
    if (out.size() > 1) out += ',';
    out += record_json(r).dump(-1, ' ', false, json::error_handler_t::replace);
  }
  out += ']';
  return out;
}

std::vector<ImageRecord> records_from_json(const std::string& text) {
  std::vector<ImageRecord> out;
  try {
    for (const auto& o : json::parse(text)) out.push_back(record_from(o));
  } catch (const json::exception& e) {
    fail(ErrorKind::Corrupt, std::string("saved progress records are damaged: ") + e.what());
  }
  return out;
}

std::string probes_to_json(std::span<const std::string> files, std::span<const Probed> probed) {
  json a = json::array();
  for (std::size_t i = 0; i < probed.size(); ++i) {
    const Probed& p = probed[i];
    a.push_back({{"p", files[i]}, {"b", p.file_size}, {"e", p.error()}, {"ok", p.ok}, {"ph", p.height},
                 {"pw", p.width}, {"pc", p.channels}, {"pd", std::string(dtype_name(p.dtype))}});
  }
  return a.dump(-1, ' ', false, json::error_handler_t::replace);
}

void probes_from_json(const std::string& text, std::span<const std::string> files, std::vector<Probed>& probed) {
  try {
    for (const auto& o : json::parse(text)) {
      const std::size_t i = probed.size();
      if (i >= files.size() || o.at("p").get<std::string>() != files[i])
        fail(ErrorKind::Value, "probe results do not match the input files");
      Probed p;
      p.file_size = o.at("b");
      p.set_error(o.at("e").get<std::string>());
      p.ok = o.at("ok");
      p.height = o.at("ph");
      p.width = o.at("pw");
      p.channels = o.at("pc");
      p.dtype = dtype_from_name(o.at("pd").get<std::string>());
      p.format = format_for_path(files[i]);
      probed.push_back(std::move(p));
    }
  } catch (const json::exception& e) {
    fail(ErrorKind::Value, std::string("invalid probe results: ") + e.what());
  }
}

}  // namespace i2z
