#include "pipeline/commit.hpp"

#include <algorithm>
#include <filesystem>
#include <optional>

#include "i2z/error.hpp"
#include "i2z/s3.hpp"
#include "pipeline/lock.hpp"
#include "zarr/metadata.hpp"

namespace i2z {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kProgress = ".i2z-progress";
constexpr const char* kJournal = ".i2z-progress/commit.json";
constexpr const char* kStaged = ".i2z-progress/sidecar";

std::string strip_slash(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

std::string sidecar_name(const std::string& store_name) {
  const std::string stem = store_name.ends_with(".zarr") ? store_name.substr(0, store_name.size() - 5)
                                                         : fs::path(store_name).stem().string();
  return stem + "_metadata.parquet";
}

// A side-car part name, "part-<12 digits>.parquet" -> its first image index.
std::optional<std::uint64_t> part_first(const std::string& name) {
  if (name.size() != 25 || !name.starts_with("part-") || !name.ends_with(".parquet")) return std::nullopt;
  std::uint64_t v = 0;
  for (std::size_t i = 5; i < 17; ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    v = v * 10 + static_cast<std::uint64_t>(name[i] - '0');
  }
  return v;
}

json parse_journal(const std::string& text, const std::string& where) {
  json j = json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("kind"))
    fail(ErrorKind::Corrupt, "unreadable commit journal '" + where + "': remove it to discard the interrupted commit");
  return j;
}

// Documents first, the journal last: a writer killed while clearing is completed again.
void clear_progress_keys(Store& s) {
  for (const auto& k : s.list(std::string(kProgress) + "/"))
    if (k != kJournal) s.erase(k);
  s.erase(kJournal);
}

void write_documents(Store& s, const json& journal) {
  s.set("images/zarr.json", text_bytes(journal.at("array").get<std::string>()));
  s.set("zarr.json", text_bytes(journal.at("group").get<std::string>()));
}

// ------------------------------------------------------------------------------------------
// Local folders: lock file beside the real path; a new store is staged in "<store>.i2z-tmp".
class LocalTarget final : public Target {
 public:
  LocalTarget(StorePaths p, WriteMode mode, bool resume, const std::function<bool(const std::string&)>& resume_check)
      : P_(p.store), S_(p.sidecar), T_(P_ + ".i2z-tmp"), old_(P_ + ".i2z-old"), mode_(mode), lock_(P_) {
    paths_ = std::move(p);
    recover();
    if (resume && resume_check && resume_check(committed_group_json())) {
      unchanged_ = true;
      work_path_ = P_;
      work_ = open_local_store(P_);
      return;
    }
    if (mode == WriteMode::Append) {
      if (!exists(P_)) fail(ErrorKind::FileNotFound, "cannot append: store '" + P_ + "' does not exist");
      if (!is_zarr_store(P_)) fail(ErrorKind::Value, "cannot append: '" + P_ + "' is not a Zarr store");
      adopt_legacy_sidecar();
      work_path_ = P_;
    } else {
      if (exists(P_)) {
        if (mode == WriteMode::Create)
          fail(ErrorKind::FileExists,
               "store '" + P_ + "' already exists; pass overwrite=True to replace it or append=True to add to it");
        if (!is_zarr_store(P_)) fail(ErrorKind::Value, "refusing to overwrite '" + P_ + "': it is not a Zarr store");
      }
      check_sidecar_replaceable();
      if (exists(old_)) refuse_foreign(old_);
      if (exists(T_)) {
        if (!ours_staging(T_)) refuse_foreign(T_);
        if (!resume) remove_all(T_);
      }
      work_path_ = T_;  // created with its progress folder by the first write (ours_staging)
    }
    work_ = open_local_store(work_path_);
  }

  Store& work() override { return *work_; }
  const std::string& work_path() const override { return work_path_; }
  std::string sidecar_staging() const override { return work_path_ + "/" + kStaged; }

  std::string committed_group_json() override {
    if (!is_zarr_store(P_)) return "";
    return get_text(*open_local_store(P_), "zarr.json").value_or("");
  }

  void before_write(std::uint64_t n_old) override {
    // Parts of a killed append (at or beyond the committed count) and temporaries are ours.
    if (mode_ != WriteMode::Append || !fs::is_directory(S_)) return;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(S_, ec)) {
      const std::string name = e.path().filename().string();
      const auto first = part_first(name);
      if ((first && *first >= n_old) || (!first && name.find(".i2z-part-") != std::string::npos)) fs::remove(e.path(), ec);
    }
  }

  void commit(const std::string& array_json, const std::string& group_json) override {
    if (mode_ == WriteMode::Append) {
      json j{{"kind", "append"}, {"array", array_json}, {"group", group_json}};
      work_->set(kJournal, text_bytes(j.dump()));
      append_forward(j);
    } else {
      work_->set(kJournal, text_bytes(json{{"kind", "replace"}}.dump()));
      replace_with_rollback();
    }
    release();
  }

  void close_unchanged() override {
    work_->remove_incomplete();  // we hold the lock: partial objects are a dead writer's
    if (exists(fs::path(P_) / kProgress)) clear_progress(P_);
    release();
  }

  void release() override { lock_.release(); }

 private:
  static bool exists(const fs::path& p) {
    std::error_code ec;
    return fs::exists(fs::symlink_status(p, ec));
  }
  static bool is_zarr_store(const fs::path& p) {
    std::error_code ec;
    return fs::is_directory(p, ec) && fs::exists(p / "zarr.json", ec);
  }
  static void remove_all(const fs::path& p) {
    std::error_code ec;
    fs::remove_all(p, ec);
    if (ec) fail(ErrorKind::IO, "cannot remove '" + p.string() + "': " + ec.message());
  }
  static void rename(const fs::path& a, const fs::path& b) {
    std::error_code ec;
    fs::rename(a, b, ec);
    if (ec) fail(ErrorKind::IO, "cannot rename '" + a.string() + "' to '" + b.string() + "': " + ec.message());
  }
  [[noreturn]] static void refuse_foreign(const std::string& p) {
    fail(ErrorKind::FileExists, "refusing to replace '" + p +
                                    "': it was not created by images_to_zarr (move or remove it yourself)");
  }
  // Our staging folder: empty (killed right after mkdir) or holding our progress folder.
  static bool ours_staging(const fs::path& p) {
    std::error_code ec;
    if (!fs::is_directory(fs::symlink_status(p, ec))) return false;
    return fs::is_empty(p, ec) || fs::is_directory(p / kProgress, ec);
  }
  // A side-car folder of ours: only part files and our temporaries.
  static bool ours_sidecar_dir(const fs::path& p) {
    std::error_code ec;
    if (!fs::is_directory(fs::symlink_status(p, ec))) return false;
    for (const auto& e : fs::directory_iterator(p, ec)) {
      const std::string name = e.path().filename().string();
      if (!part_first(name) && name.find(".i2z-part-") == std::string::npos) return false;
    }
    return !ec;
  }

  // What may stand at the side-car's name of a store being created or replaced: our folder, or
  // (beside a store being overwritten) the single file of an earlier version.
  void check_sidecar_replaceable() const {
    if (!exists(S_)) return;
    std::error_code ec;
    const auto st = fs::symlink_status(S_, ec);
    if (ours_sidecar_dir(S_)) return;
    if (mode_ == WriteMode::Overwrite && is_zarr_store(P_) && fs::is_regular_file(st)) return;
    refuse_foreign(S_);
  }

  // A single-file side-car of an earlier version becomes part 0 of the folder, by renames only.
  void adopt_legacy_sidecar() {
    std::error_code ec;
    if (!fs::is_regular_file(fs::symlink_status(S_, ec))) return;
    const std::string dir = S_ + ".i2z-dir";
    fs::create_directories(dir, ec);
    if (ec) fail(ErrorKind::IO, "cannot create '" + dir + "': " + ec.message());
    rename(S_, fs::path(dir) / "part-000000000000.parquet");
    rename(dir, S_);
  }

  // Completes what a killed writer journaled (we hold the lock, so it is dead).
  void recover() {
    if (exists(fs::path(T_) / kJournal)) replace_forward();
    if (exists(fs::path(P_) / kJournal)) {
      auto j = parse_journal(get_text(*open_local_store(P_), kJournal).value_or(""), P_ + "/" + kJournal);
      if (j["kind"] == "append") append_forward(j);
      else finish_replace();
    }
    const std::string dir = S_ + ".i2z-dir";
    if (exists(dir) && !exists(S_)) rename(dir, S_);
  }

  // Steps of a replace, each skipped when already done: the old side-car goes inside the old
  // store, the old store aside, the staged store in place, then the staged side-car in place.
  void move_old_aside() {
    const fs::path inner = fs::path(P_) / ".i2z-old-sidecar";
    if (exists(S_) && exists(P_) && !exists(inner)) rename(S_, inner);
    if (exists(P_)) rename(P_, old_);
  }
  void replace_forward() {
    move_old_aside();
    rename(T_, P_);
    finish_replace();
  }
  void replace_with_rollback() {
    const bool had_sidecar = exists(S_), had_store = exists(P_);
    try {
      move_old_aside();
      rename(T_, P_);
    } catch (const Error&) {
      // Nothing is published yet: put the old store and side-car back, keep the staged work.
      std::error_code ec;
      if (had_store && !exists(P_) && exists(old_)) fs::rename(old_, P_, ec);
      if (had_sidecar && !exists(S_)) fs::rename(fs::path(P_) / ".i2z-old-sidecar", S_, ec);
      fs::remove(fs::path(T_) / kJournal, ec);
      throw;
    }
    finish_replace();
  }
  void finish_replace() {
    const fs::path staged = fs::path(P_) / kStaged;
    if (exists(staged)) {
      if (exists(S_)) {  // a half-removed folder of ours from an earlier kill
        if (!ours_sidecar_dir(S_)) refuse_foreign(S_);
        remove_all(S_);
      }
      rename(staged, S_);
    }
    remove_all(old_);
    clear_progress(P_);
  }

  void append_forward(const json& j) {
    const fs::path staged = fs::path(P_) / kStaged;
    std::error_code ec;
    if (fs::is_directory(staged, ec)) {
      fs::create_directories(S_, ec);
      for (const auto& e : fs::directory_iterator(staged, ec))
        if (part_first(e.path().filename().string())) rename(e.path(), fs::path(S_) / e.path().filename());
    }
    auto store = open_local_store(P_);
    write_documents(*store, j);  // images/zarr.json first: the commit point
    clear_progress(P_);
  }

  static void clear_progress(const std::string& root) {
    clear_progress_keys(*open_local_store(root));
    std::error_code ec;
    fs::remove_all(fs::path(root) / kProgress, ec);  // the emptied folders
  }

  std::string P_, S_, T_, old_;
  WriteMode mode_;
  WriterLock lock_;
  std::string work_path_;
  std::shared_ptr<Store> work_;
};

// ------------------------------------------------------------------------------------------
// Object stores (S3): no rename and no lock. Shards and side-car parts go to their final keys
// (invisible: readers use zarr.json's image count), the documents last.
class ObjectTarget final : public Target {
 public:
  ObjectTarget(StorePaths p, WriteMode mode, bool resume, const std::map<std::string, std::string>& so,
               const std::function<bool(const std::string&)>& resume_check)
      : mode_(mode) {
    paths_ = std::move(p);
    work_ = open_store_url(paths_.store, so);
    sidecar_ = open_store_url(paths_.sidecar, so);
    const auto slash = paths_.sidecar.rfind('/');
    parent_ = open_store_url(paths_.sidecar.substr(0, slash), so);
    legacy_key_ = paths_.sidecar.substr(slash + 1);
    if (auto j = get_text(*work_, kJournal)) {
      write_documents(*work_, parse_journal(*j, paths_.store + "/" + kJournal));
      clear_progress_keys(*work_);
    }
    if (resume && resume_check && resume_check(committed_group_json())) {
      unchanged_ = true;
      return;
    }
    const bool is_store = work_->exists("zarr.json");
    if (mode == WriteMode::Append) {
      if (!is_store) fail(ErrorKind::FileNotFound, "cannot append: store '" + paths_.store + "' does not exist");
      return;
    }
    if (is_store && mode == WriteMode::Create)
      fail(ErrorKind::FileExists,
           "store '" + paths_.store + "' already exists; pass overwrite=True to replace it or append=True to add to it");
    std::vector<std::string> keys = work_->list("");
    const bool ours_only = std::all_of(keys.begin(), keys.end(), [](const std::string& k) {
      return k == "zarr.json" || k.starts_with("images/") || k.starts_with(kProgress);
    });
    if (!ours_only)
      fail(ErrorKind::Value, "refusing to write to '" + paths_.store + "': it holds objects that are not a Zarr store of ours");
    const auto side = sidecar_->list("");
    if (std::any_of(side.begin(), side.end(), [](const std::string& k) { return !part_first(k); }) ||
        (parent_->exists(legacy_key_) && !is_store))
      fail(ErrorKind::FileExists, "refusing to replace '" + paths_.sidecar + "': it was not created by images_to_zarr");
    if (is_store || !resume) {
      // The old store (or an abandoned run) goes first, its documents before its shards, so
      // an interruption never leaves zarr.json pointing at missing data.
      work_->erase("zarr.json");
      work_->erase("images/zarr.json");
      for (const auto& k : keys) work_->erase(k);
      for (const auto& k : side) sidecar_->erase(k);
      parent_->erase(legacy_key_);
    }
  }

  Store& work() override { return *work_; }
  const std::string& work_path() const override { return paths_.store; }
  std::string sidecar_staging() const override { return paths_.sidecar; }
  std::string committed_group_json() override { return get_text(*work_, "zarr.json").value_or(""); }

  void before_write(std::uint64_t n_old) override {
    for (const auto& k : sidecar_->list("")) {
      const auto first = part_first(k);
      if (first && *first >= n_old) sidecar_->erase(k);
    }
  }

  void commit(const std::string& array_json, const std::string& group_json) override {
    json j{{"kind", mode_ == WriteMode::Append ? "append" : "replace"}, {"array", array_json}, {"group", group_json}};
    work_->set(kJournal, text_bytes(j.dump()));
    write_documents(*work_, j);
    clear_progress_keys(*work_);
  }
  void close_unchanged() override { clear_progress_keys(*work_); }
  void release() override {}

 private:
  WriteMode mode_;
  std::shared_ptr<Store> work_, sidecar_, parent_;
  std::string legacy_key_;
};

}  // namespace

StorePaths store_paths(const std::string& path_or_url) {
  StorePaths p;
  const std::string path = strip_slash(path_or_url);
  if (is_s3_url(path)) {
    const auto slash = path.rfind('/');
    if (slash == std::string::npos || slash < 5) fail(ErrorKind::Value, "invalid store URL '" + path + "'");
    p.store = path;
    p.sidecar = path.substr(0, slash + 1) + sidecar_name(path.substr(slash + 1));
    p.remote = true;
    return p;
  }
  std::error_code ec;
  fs::path real;
  if (fs::exists(path, ec)) {
    real = fs::canonical(path, ec);
  } else {
    fs::path abs = fs::absolute(path, ec);
    fs::create_directories(abs.parent_path(), ec);
    real = fs::canonical(abs.parent_path(), ec) / abs.filename();
  }
  if (ec) fail(ErrorKind::IO, "cannot resolve the store path '" + path + "': " + ec.message());
  p.store = real.string();
  p.sidecar = (real.parent_path() / sidecar_name(real.filename().string())).string();
  return p;
}

std::unique_ptr<Target> open_target(const std::string& path_or_url, WriteMode mode, bool resume,
                                    const std::map<std::string, std::string>& storage_options,
                                    const std::function<bool(const std::string&)>& resume_check) {
  StorePaths p = store_paths(path_or_url);
  if (p.remote) return std::make_unique<ObjectTarget>(std::move(p), mode, resume, storage_options, resume_check);
  if (!storage_options.empty())
    fail(ErrorKind::Value, "storage_options apply to s3:// stores only, not to '" + path_or_url + "'");
  return std::make_unique<LocalTarget>(std::move(p), mode, resume, resume_check);
}

}  // namespace i2z
