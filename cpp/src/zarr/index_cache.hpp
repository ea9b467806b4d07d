// Shard indexes as the reader keeps them: a bounded LRU keyed by the shard's linear grid
// position (split out of zarr/reader.cpp).
#pragma once
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "zarr/shard_index.hpp"

namespace i2z {

// A decoded shard index; `missing` when the shard object does not exist (all fill).
struct ShardIndex {
  std::string key;
  bool missing = false;
  std::vector<ChunkLocation> locs;
};

// Bounded LRU of shard indexes keyed by the shard's linear grid position.
class IndexCache {
 public:
  explicit IndexCache(std::size_t budget) : budget_(budget) {}

  std::shared_ptr<const ShardIndex> find(std::uint64_t id) {
    std::lock_guard lk(mu_);
    auto it = map_.find(id);
    if (it == map_.end()) return nullptr;
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->second;
  }

  void insert(std::uint64_t id, std::shared_ptr<const ShardIndex> idx) {
    const std::size_t cost = cost_of(*idx);
    std::lock_guard lk(mu_);
    if (map_.count(id)) return;  // another thread fetched it meanwhile
    lru_.emplace_front(id, std::move(idx));
    map_.emplace(id, lru_.begin());
    used_ += cost;
    while (used_ > budget_ && lru_.size() > 1) {
      used_ -= cost_of(*lru_.back().second);
      map_.erase(lru_.back().first);
      lru_.pop_back();
    }
  }

 private:
  static std::size_t cost_of(const ShardIndex& s) { return 96 + s.key.size() + s.locs.size() * sizeof(ChunkLocation); }

  const std::size_t budget_;
  std::mutex mu_;
  std::list<std::pair<std::uint64_t, std::shared_ptr<const ShardIndex>>> lru_;
  std::unordered_map<std::uint64_t, decltype(lru_)::iterator> map_;
  std::size_t used_ = 0;
};

}  // namespace i2z
