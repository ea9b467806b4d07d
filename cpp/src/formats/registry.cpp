#include <algorithm>
#include <cctype>

#include "formats/format.hpp"

namespace i2z {

const std::vector<const Format*>& all_formats() {
  // One line per format.
  static const std::vector<const Format*> formats{
      &png_format(),
      &jpeg_format(),
      &tiff_format(),
      &fits_format(),
  };
  return formats;
}

static bool ends_with_ci(std::string_view s, std::string_view suffix) {
  if (suffix.size() > s.size()) return false;
  return std::equal(suffix.rbegin(), suffix.rend(), s.rbegin(), [](char a, char b) {
    return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
  });
}

const Format* format_for_path(std::string_view path) {
  for (const Format* f : all_formats())
    for (const auto& ext : f->extensions())
      if (ends_with_ci(path, ext)) return f;
  return nullptr;
}

const std::vector<std::string>& supported_extensions() {
  static const std::vector<std::string> exts = [] {
    std::vector<std::string> v;
    for (const Format* f : all_formats()) v.insert(v.end(), f->extensions().begin(), f->extensions().end());
    return v;
  }();
  return exts;
}

}  // namespace i2z
