// The store/commit layer: where a conversion writes (its work store and its side-car staging
// area) and how the store and its Parquet side-car are published as one unit. One strategy per
// kind of store, chosen by open_target() (the registry): a local folder (writer lock, staged
// folder, renames under a journal) or an object store (objects first, documents last).
//
// The side-car is the folder "<store stem>_metadata.parquet" beside the store's real location;
// the caller writes its parts ("part-<12-digit first index>.parquet") into sidecar_staging().
// A commit writes a journal first; a writer killed after it is completed by the next writer
// (recover(), under the lock), one killed before it left only staged work behind.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "i2z/convert.hpp"
#include "i2z/store.hpp"

namespace i2z {

// The real location of a store (symlinks and ".." resolved locally) and of its side-car.
struct StorePaths {
  std::string store, sidecar;
  bool remote = false;
};
StorePaths store_paths(const std::string& path_or_url);

class Target {
 public:
  virtual ~Target() = default;
  const StorePaths& paths() const { return paths_; }
  // Where the shards and the progress records go (the store, or its staging folder).
  virtual Store& work() = 0;
  virtual const std::string& work_path() const = 0;
  // Where the caller writes this run's side-car parts.
  virtual std::string sidecar_staging() const = 0;
  // A group zarr.json of a committed store at the final location ("" when there is none).
  virtual std::string committed_group_json() = 0;
  // Once planned: an append's old image count is known, so parts of a killed append are dropped.
  virtual void before_write(std::uint64_t n_old) = 0;
  // Publishes the store and this run's side-car parts. `array_json`/`group_json` are the new
  // documents (a replace has them in the staged folder already, written by stage_documents()).
  virtual void commit(const std::string& array_json, const std::string& group_json) = 0;
  // A run with nothing to write (a resume of a committed run): removes leftovers, releases.
  virtual void close_unchanged() = 0;
  virtual void release() = 0;
  // True when the committed store is already this run's result (see open_target).
  bool unchanged() const { return unchanged_; }

 protected:
  StorePaths paths_;
  bool unchanged_ = false;
};

// Takes the writer lock (local), repairs a killed writer's commit, refuses what is not ours,
// and prepares the work store for `mode`. `resume` keeps staged work. `resume_check(group)`
// returns true when the committed store is already this run's result: then no staging happens
// and the caller must close_unchanged().
std::unique_ptr<Target> open_target(const std::string& path_or_url, WriteMode mode, bool resume,
                                    const std::map<std::string, std::string>& storage_options,
                                    const std::function<bool(const std::string&)>& resume_check);

}  // namespace i2z
