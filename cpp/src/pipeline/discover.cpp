// Discovery of input files: supported extensions, sorted by path, symlink loops skipped.
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "formats/format.hpp"
#include "i2z/convert.hpp"

namespace i2z {
namespace fs = std::filesystem;

std::vector<std::string> discover_files(const std::vector<std::string>& folders, bool recursive,
                                        std::vector<std::string>* warnings) {
  std::vector<std::string> out;
  std::set<std::pair<dev_t, ino_t>> seen_dirs;  // symlink loops and folders given twice
  auto walk = [&](auto&& self, const fs::path& dir) -> void {
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0 || !seen_dirs.insert({st.st_dev, st.st_ino}).second) return;
    std::error_code ec;
    std::vector<fs::path> subdirs;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      const fs::path& p = it->path();
      std::error_code e2;
      if (fs::is_directory(p, e2)) {
        if (recursive) subdirs.push_back(p);
      } else if (fs::is_regular_file(p, e2) && format_for_path(p.filename().string())) {
        out.push_back(p.string());
      }
    }
    if (ec && warnings) warnings->push_back("cannot list folder '" + dir.string() + "': " + ec.message());
    for (const auto& s : subdirs) self(self, s);
  };
  for (const auto& f : folders) {
    std::error_code ec;
    if (fs::is_directory(f, ec)) {
      walk(walk, fs::path(f));
    } else if (fs::is_regular_file(f, ec) && format_for_path(f)) {
      out.push_back(f);
    } else if (warnings) {
      warnings->push_back("folder '" + f + "' does not exist; skipped");
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace i2z
