#include "pipeline/records_io.hpp"

#include <cmath>

#include <nlohmann/json.hpp>

#include "i2z/error.hpp"

namespace i2z {

using nlohmann::json;

namespace {
// JSON has no NaN: keep it as null and restore it.
json num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }
double num_back(const json& v) { return v.is_number() ? v.get<double>() : NAN; }
}  // namespace

std::string records_to_json(std::span<const ImageRecord> records) {
  json a = json::array();
  for (const auto& r : records)
    a.push_back({{"p", r.source_path}, {"f", r.format}, {"b", r.file_size_bytes}, {"d", r.dtype}, {"s", r.shape},
                 {"x", r.fits_extension}, {"h", r.fits_header_json}, {"lo", num(r.min_value)},
                 {"hi", num(r.max_value)}, {"mu", num(r.mean_value)}, {"e", r.error}});
  return a.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::vector<ImageRecord> records_from_json(const std::string& text) {
  std::vector<ImageRecord> out;
  try {
    for (const auto& o : json::parse(text)) {
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
      out.push_back(std::move(r));
    }
  } catch (const json::exception& e) {
    fail(ErrorKind::Corrupt, std::string("saved progress records are damaged: ") + e.what());
  }
  return out;
}

}  // namespace i2z
