// ArrayReader: plan a read (which chunks, which shards), fetch shard indexes through a bounded
// LRU cache (zarr/index_cache.hpp), then fetch + decode + scatter chunks on a small task pool
// (pipeline/task_pool.hpp) (format note §2.3, §4).
#include "i2z/reader.hpp"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>
#include <thread>

#include "codecs/codec.hpp"
#include "i2z/error.hpp"
#include "pipeline/task_pool.hpp"
#include "zarr/index_cache.hpp"
#include "zarr/metadata.hpp"
#include "zarr/shard_index.hpp"

namespace i2z {

namespace {

constexpr std::size_t kMaxRank = 32;
constexpr std::uint64_t kMaxChunksPerShard = std::uint64_t{1} << 26;  // a 1 GiB index
constexpr std::uint64_t kNone = ~std::uint64_t{0};

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return a / b + (a % b != 0); }

// CPUs this process may run on (its affinity mask: taskset, container cpusets), else the
// hardware threads. More decode threads than that only contend.
unsigned available_cpus() {
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return static_cast<unsigned>(CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

std::uint64_t checked_mul(std::uint64_t a, std::uint64_t b, const std::string& where) {
  std::uint64_t r;
  if (__builtin_mul_overflow(a, b, &r)) fail(ErrorKind::Value, where + ": array or chunk too large");
  return r;
}

// zarr-python >= 3.1 may write bare NaN / Infinity / -Infinity tokens into attributes (invalid
// JSON, format note §5.4). Rewrite them, outside strings, as the strings zarr-python 3.0 wrote.
std::string quote_bare_nonfinite(const std::string& text) {
  std::string out;
  bool in_string = false, escaped = false, changed = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      out += c;
      continue;
    }
    if (c == '"') in_string = true;
    bool replaced = false;
    for (std::string_view tok : {"-Infinity", "Infinity", "NaN"}) {
      if (text.compare(i, tok.size(), tok) == 0) {
        out += '"';
        out += tok;
        out += '"';
        i += tok.size() - 1;
        replaced = changed = true;
        break;
      }
    }
    if (!replaced) out += c;
  }
  return changed ? out : text;
}

// Output slots [slot, slot + count) receive chunk rows [row, row + count) along axis 0.
struct Run {
  std::uint64_t slot, row, count;
};
// One read-chunk row g0 along axis 0 and its runs runs[begin, end).
struct Group {
  std::uint64_t g0;
  std::size_t begin, end;
};

// How one chunk's valid region maps into an output item: `loops` outer dimensions (extent,
// source stride, destination stride) around a contiguous block of `inner` bytes.
struct TileCopy {
  std::size_t dst_off = 0, inner = 0;
  std::size_t loops = 0;
  std::uint64_t extent[kMaxRank];
  std::size_t src_stride[kMaxRank], dst_stride[kMaxRank];
  bool rows_contiguous = false;  // chunk rows and output items are the same bytes
};

// Per-thread decode buffers, reused across chunks and calls.
struct DecodeBuffers {
  std::vector<std::uint8_t> out, scratch;
};
thread_local DecodeBuffers tls_buffers;

}  // namespace

struct ArrayReader::Impl {
  std::shared_ptr<Store> store;
  std::string prefix, where;
  ArrayMeta meta;
  std::size_t rank = 0, dsize = 0;
  std::vector<std::uint64_t> shape, ch;        // array shape, read-chunk shape
  std::vector<std::uint64_t> grid;             // read-chunk grid
  std::uint64_t tiles = 1;                     // read chunks per row g0 (trailing grid product)
  std::size_t item_bytes = 0, chunk_bytes = 0, chunk_row_bytes = 0;
  std::vector<std::size_t> out_stride, chunk_stride;  // bytes, per dimension
  // Sharding.
  std::vector<std::uint64_t> cps, shard_grid;
  std::uint64_t n_inner = 1, index_bytes = 0;
  std::vector<std::uint8_t> fill;  // one element
  bool fill_zero = true;
  bool whole_items = false;  // a chunk row is exactly one output item (chunk == array past axis 0)
  unsigned threads = 1;
  mutable TaskPool pool;
  mutable IndexCache cache;
  mutable std::atomic<std::uint64_t> index_reads{0}, chunk_reads{0};

  Impl(std::shared_ptr<Store> s, std::string p, const ReaderOptions& o)
      : store(std::move(s)),
        prefix(std::move(p)),
        threads(o.threads ? o.threads : std::min(available_cpus(), 8u)),
        pool(threads - 1),
        cache(o.index_cache_bytes) {
    where = store->describe() + "/" + prefix;
    if (!where.empty() && where.back() == '/') where.pop_back();
    const std::string doc_key = prefix + "zarr.json";
    auto doc = store->get(doc_key);
    if (!doc) fail(ErrorKind::FileNotFound, "no Zarr array at " + where + " (" + doc_key + " is missing)");
    meta = parse_array_meta(quote_bare_nonfinite(std::string(doc->begin(), doc->end())), where + "/zarr.json");
    layout();
  }

  void layout() {
    rank = meta.shape.size();
    if (rank == 0) fail(ErrorKind::Value, where + ": rank-0 arrays are not supported by the reader");
    if (rank > kMaxRank) fail(ErrorKind::Value, where + ": rank " + std::to_string(rank) + " is above the reader's limit");
    shape = meta.shape;
    ch = meta.read_chunk();
    dsize = dtype_size(meta.dtype);
    grid.resize(rank);
    for (std::size_t d = 0; d < rank; ++d) grid[d] = ceil_div(shape[d], ch[d]);
    std::uint64_t item = dsize, chunk_row = dsize;
    out_stride.assign(rank, 0);
    chunk_stride.assign(rank, 0);
    for (std::size_t d = rank; d-- > 1;) {
      out_stride[d] = item;
      chunk_stride[d] = chunk_row;
      item = checked_mul(item, shape[d], where);
      chunk_row = checked_mul(chunk_row, ch[d], where);
      tiles = checked_mul(tiles, grid[d], where);
    }
    checked_mul(item, shape[0], where);
    item_bytes = item;
    chunk_row_bytes = chunk_row;
    chunk_bytes = checked_mul(chunk_row, ch[0], where);
    if (meta.sharded) {
      cps.resize(rank);
      shard_grid.resize(rank);
      for (std::size_t d = 0; d < rank; ++d) {
        cps[d] = meta.chunk_grid[d] / ch[d];
        shard_grid[d] = ceil_div(shape[d], meta.chunk_grid[d]);
        n_inner = checked_mul(n_inner, cps[d], where);
      }
      if (n_inner > kMaxChunksPerShard)
        fail(ErrorKind::Value, where + ": " + std::to_string(n_inner) + " inner chunks per shard is above the reader's limit");
      index_bytes = shard_index_size(n_inner);
    }
    fill = fill_bytes();
    fill_zero = std::all_of(fill.begin(), fill.end(), [](std::uint8_t b) { return b == 0; });
    whole_items = true;
    for (std::size_t d = 1; d < rank; ++d) whole_items = whole_items && ch[d] == shape[d];
  }

  std::vector<std::uint8_t> fill_bytes() const {
    std::vector<std::uint8_t> out(dsize);
    const double v = meta.fill_value;
    auto put = [&](auto x) { std::memcpy(out.data(), &x, sizeof(x)); };
    // Integers: clamped into range (an out-of-range cast would be undefined), NaN -> 0.
    auto as_int = [&](auto zero) {
      using T = decltype(zero);
      const double lo = dtype_min(meta.dtype), hi = dtype_max(meta.dtype);
      if (std::isnan(v)) return T{0};
      if (v <= lo) return std::numeric_limits<T>::min();
      if (v >= hi) return std::numeric_limits<T>::max();
      return static_cast<T>(v);
    };
    switch (meta.dtype) {
      case DType::u8: put(as_int(std::uint8_t{})); break;
      case DType::u16: put(as_int(std::uint16_t{})); break;
      case DType::u32: put(as_int(std::uint32_t{})); break;
      case DType::u64: put(as_int(std::uint64_t{})); break;
      case DType::i8: put(as_int(std::int8_t{})); break;
      case DType::i16: put(as_int(std::int16_t{})); break;
      case DType::i32: put(as_int(std::int32_t{})); break;
      case DType::i64: put(as_int(std::int64_t{})); break;
      case DType::f32: put(static_cast<float>(v)); break;
      case DType::f64: put(v); break;
    }
    return out;
  }

  // ---- planning --------------------------------------------------------------------------------

  struct Job {
    std::size_t group;
    std::uint64_t tile;
    std::size_t shard = 0;  // position in Plan::shards (sharded only)
    ChunkLocation loc;      // sharded only; empty = fill
  };
  // A unit of work: jobs[first, last) served by one store request (or fills only).
  struct Unit {
    std::size_t first, last;
    std::uint64_t offset, nbytes;  // byte range in the shard; nbytes kNone = fill jobs
  };
  struct Plan {
    std::vector<Group> groups;
    std::vector<Run> runs;
    std::vector<Job> jobs;
    std::vector<std::shared_ptr<const ShardIndex>> shards;
    std::vector<Unit> units;
    std::uint8_t* out = nullptr;
  };

  // Trailing read-chunk coordinates of tile t (C order over grid[1..]).
  void tile_coords(std::uint64_t t, std::uint64_t* q) const {
    for (std::size_t d = rank; d-- > 1;) {
      q[d] = t % grid[d];
      t /= grid[d];
    }
  }

  void execute(Plan& p) const {
    if (p.groups.empty() || item_bytes == 0) return;
    p.jobs.reserve(p.groups.size() * tiles);
    for (std::size_t g = 0; g < p.groups.size(); ++g)
      for (std::uint64_t t = 0; t < tiles; ++t) p.jobs.push_back(Job{g, t, 0, {}});
    if (meta.sharded) plan_sharded(p);
    else
      for (std::size_t j = 0; j < p.jobs.size(); ++j) p.units.push_back(Unit{j, j + 1, 0, 0});
    struct Ctx {
      const Impl* self;
      Plan* plan;
    } ctx{this, &p};
    pool.run(
        p.units.size(),
        [](void* c, std::size_t i) {
          auto* x = static_cast<Ctx*>(c);
          x->self->run_unit(*x->plan, x->plan->units[i]);
        },
        &ctx);
  }

  void plan_sharded(Plan& p) const {
    // Which shard and which inner chunk each job needs.
    std::vector<std::uint64_t> shard_id(p.jobs.size()), inner(p.jobs.size());
    std::uint64_t q[kMaxRank];
    for (std::size_t j = 0; j < p.jobs.size(); ++j) {
      tile_coords(p.jobs[j].tile, q);
      q[0] = p.groups[p.jobs[j].group].g0;
      std::uint64_t sid = 0, in = 0;
      for (std::size_t d = 0; d < rank; ++d) {
        sid = sid * shard_grid[d] + q[d] / cps[d];
        in = in * cps[d] + q[d] % cps[d];
      }
      shard_id[j] = sid;
      inner[j] = in;
    }
    std::vector<std::uint64_t> ids = shard_id;
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    resolve_shards(ids, p.shards);
    for (std::size_t j = 0; j < p.jobs.size(); ++j) {
      auto& job = p.jobs[j];
      job.shard = static_cast<std::size_t>(std::lower_bound(ids.begin(), ids.end(), shard_id[j]) - ids.begin());
      const ShardIndex& s = *p.shards[job.shard];
      if (s.missing) continue;
      job.loc = s.locs[inner[j]];
      if (!job.loc.empty() && job.loc.nbytes > kNone - job.loc.offset)
        fail(ErrorKind::Corrupt, where + "/" + s.key.substr(prefix.size()) + ": index entry " + std::to_string(inner[j]) +
                                     " (offset " + std::to_string(job.loc.offset) + ", nbytes " +
                                     std::to_string(job.loc.nbytes) + ") lies beyond the shard");
    }
    // Fills first, then data by shard and offset, so that adjacent chunks can share one request.
    std::sort(p.jobs.begin(), p.jobs.end(), [](const Job& a, const Job& b) {
      const bool fa = a.loc.empty(), fb = b.loc.empty();
      if (fa != fb) return fa;
      if (a.shard != b.shard) return a.shard < b.shard;
      return a.loc.offset < b.loc.offset;
    });
    std::uint64_t total = 0;
    for (const auto& j : p.jobs)
      if (!j.loc.empty()) total += j.loc.nbytes;
    const std::uint64_t target = std::clamp<std::uint64_t>(total / threads, std::uint64_t{1} << 20, std::uint64_t{16} << 20);
    constexpr std::size_t kFillsPerUnit = 64;
    for (std::size_t j = 0; j < p.jobs.size();) {
      const Job& a = p.jobs[j];
      std::size_t e = j + 1;
      if (a.loc.empty()) {
        while (e < p.jobs.size() && p.jobs[e].loc.empty() && e - j < kFillsPerUnit) ++e;
        p.units.push_back(Unit{j, e, 0, kNone});
      } else {
        std::uint64_t end = a.loc.offset + a.loc.nbytes;
        while (e < p.jobs.size() && p.jobs[e].shard == a.shard && p.jobs[e].loc.offset == end &&
               end - a.loc.offset + p.jobs[e].loc.nbytes <= target) {
          end += p.jobs[e].loc.nbytes;
          ++e;
        }
        p.units.push_back(Unit{j, e, a.loc.offset, end - a.loc.offset});
      }
      j = e;
    }
  }

  // Shard indexes for the sorted, unique shard ids: from the cache, else fetched in parallel.
  void resolve_shards(const std::vector<std::uint64_t>& ids, std::vector<std::shared_ptr<const ShardIndex>>& out) const {
    out.assign(ids.size(), nullptr);
    std::vector<std::size_t> misses;
    for (std::size_t i = 0; i < ids.size(); ++i)
      if (!(out[i] = cache.find(ids[i]))) misses.push_back(i);
    if (misses.empty()) return;
    struct Ctx {
      const Impl* self;
      const std::vector<std::uint64_t>* ids;
      std::vector<std::shared_ptr<const ShardIndex>>* out;
      const std::vector<std::size_t>* misses;
    } ctx{this, &ids, &out, &misses};
    pool.run(
        misses.size(),
        [](void* c, std::size_t i) {
          auto* x = static_cast<Ctx*>(c);
          const std::size_t k = (*x->misses)[i];
          auto idx = x->self->fetch_index((*x->ids)[k]);
          x->self->cache.insert((*x->ids)[k], idx);
          (*x->out)[k] = std::move(idx);
        },
        &ctx);
  }

  std::shared_ptr<const ShardIndex> fetch_index(std::uint64_t id) const {
    std::vector<std::uint64_t> coords(rank);
    for (std::size_t d = rank; d-- > 0;) {
      coords[d] = id % shard_grid[d];
      id /= shard_grid[d];
    }
    auto s = std::make_shared<ShardIndex>();
    s->key = chunk_key(prefix, coords);
    index_reads.fetch_add(1, std::memory_order_relaxed);
    auto bytes = meta.index_at_end ? store->get_suffix(s->key, index_bytes) : store->get_range(s->key, 0, index_bytes);
    if (!bytes) {
      s->missing = true;
      return s;
    }
    try {
      s->locs = decode_shard_index(*bytes, n_inner, 0);
    } catch (const Error& e) {
      fail(ErrorKind::Corrupt, where + "/" + s->key.substr(prefix.size()) + ": " + e.what());
    }
    return s;
  }

  // ---- execution -------------------------------------------------------------------------------

  void run_unit(const Plan& p, const Unit& u) const {
    if (!meta.sharded) return run_chunk_object(p, p.jobs[u.first]);
    if (u.nbytes == kNone) {
      for (std::size_t j = u.first; j < u.last; ++j) scatter(p, p.jobs[j], nullptr);
      return;
    }
    const ShardIndex& s = *p.shards[p.jobs[u.first].shard];
    chunk_reads.fetch_add(1, std::memory_order_relaxed);
    auto bytes = store->get_range(s.key, u.offset, u.nbytes);
    if (!bytes) fail(ErrorKind::Corrupt, where + "/" + s.key.substr(prefix.size()) + ": shard disappeared while reading");
    if (bytes->size() != u.nbytes)
      fail(ErrorKind::Corrupt, where + "/" + s.key.substr(prefix.size()) + ": truncated shard (wanted " +
                                   std::to_string(u.nbytes) + " bytes at offset " + std::to_string(u.offset) + ", got " +
                                   std::to_string(bytes->size()) + ")");
    for (std::size_t j = u.first; j < u.last; ++j) {
      const Job& job = p.jobs[j];
      const std::span<const std::uint8_t> enc(bytes->data() + (job.loc.offset - u.offset), job.loc.nbytes);
      if (std::uint8_t* dst = direct_slot(p, job)) decode_to(enc, s.key, j, p, dst);
      else scatter(p, job, decode(enc, s.key, j, p));
    }
  }

  void run_chunk_object(const Plan& p, const Job& job) const {
    std::uint64_t q[kMaxRank];
    tile_coords(job.tile, q);
    q[0] = p.groups[job.group].g0;
    const std::string key = chunk_key(prefix, std::vector<std::uint64_t>(q, q + rank));
    chunk_reads.fetch_add(1, std::memory_order_relaxed);
    auto bytes = store->get(key);
    if (!bytes) return scatter(p, job, nullptr);
    if (std::uint8_t* dst = direct_slot(p, job)) return decode_to(*bytes, key, kNone, p, dst);
    scatter(p, job, decode(*bytes, key, kNone, p));
  }

  // Where the whole decoded chunk lands unchanged in the output, or null. True when its rows are
  // whole output items and one run takes all of them (e.g. one image per chunk, read alone):
  // then it is decoded straight into the output, without the per-thread buffer and a copy.
  std::uint8_t* direct_slot(const Plan& p, const Job& job) const {
    if (!whole_items || meta.chain->empty()) return nullptr;
    const Group& g = p.groups[job.group];
    if (g.end - g.begin != 1) return nullptr;
    const Run& r = p.runs[g.begin];
    if (r.row != 0 || r.count != ch[0]) return nullptr;
    return p.out + r.slot * item_bytes;
  }

  std::string chunk_name(const std::string& key, std::size_t job, const Plan& p) const {
    std::string s = where + "/" + key.substr(prefix.size());
    if (job != kNone) {
      std::uint64_t q[kMaxRank];
      tile_coords(p.jobs[job].tile, q);
      q[0] = p.groups[p.jobs[job].group].g0;
      s += " (inner chunk";
      for (std::size_t d = 0; d < rank; ++d) s += (d ? ", " : " [") + std::to_string(q[d] % cps[d]);
      s += "])";
    }
    return s;
  }

  void decode_to(std::span<const std::uint8_t> enc, const std::string& key, std::size_t job, const Plan& p,
                 std::uint8_t* dst) const {
    DecodeBuffers& b = tls_buffers;
    try {
      meta.chain->decode_into(enc, dst, chunk_bytes, b.out, b.scratch);
    } catch (const Error& e) {
      fail(ErrorKind::Corrupt, chunk_name(key, job, p) + ": " + e.what());
    }
  }

  // Raw chunk bytes (chunk_bytes long) of one encoded chunk; `job` is the job index in a shard.
  const std::uint8_t* decode(std::span<const std::uint8_t> enc, const std::string& key, std::size_t job,
                             const Plan& p) const {
    auto name = [&] { return chunk_name(key, job, p); };
    if (meta.chain->empty()) {
      if (enc.size() != chunk_bytes)
        fail(ErrorKind::Corrupt, name() + ": chunk is " + std::to_string(enc.size()) + " bytes, expected " +
                                     std::to_string(chunk_bytes));
      return enc.data();
    }
    DecodeBuffers& b = tls_buffers;
    try {
      meta.chain->decode(enc, b.out, chunk_bytes, b.scratch);
    } catch (const Error& e) {
      fail(ErrorKind::Corrupt, name() + ": " + e.what());
    }
    return b.out.data();
  }

  TileCopy tile_copy(std::uint64_t tile) const {
    TileCopy tc;
    std::uint64_t q[kMaxRank], e[kMaxRank];
    tile_coords(tile, q);
    for (std::size_t d = 1; d < rank; ++d) {
      const std::uint64_t o = q[d] * ch[d];
      e[d] = std::min(ch[d], shape[d] - o);
      tc.dst_off += o * out_stride[d];
    }
    if (rank == 1) {
      tc.inner = dsize;
      tc.rows_contiguous = chunk_row_bytes == item_bytes;
      return tc;
    }
    // Merge trailing dimensions that are contiguous in both the chunk and the output.
    std::size_t d = rank - 1;
    tc.inner = e[d] * dsize;
    while (d > 1 && tc.inner == chunk_stride[d - 1] && tc.inner == out_stride[d - 1]) {
      --d;
      tc.inner *= e[d];
    }
    tc.rows_contiguous = d == 1 && tc.inner == chunk_row_bytes && tc.inner == item_bytes;
    for (std::size_t k = 1; k < d; ++k) {
      tc.extent[tc.loops] = e[k];
      tc.src_stride[tc.loops] = chunk_stride[k];
      tc.dst_stride[tc.loops] = out_stride[k];
      ++tc.loops;
    }
    return tc;
  }

  void put(std::uint8_t* dst, const std::uint8_t* src, std::size_t n) const {
    if (src) std::memcpy(dst, src, n);
    else if (fill_zero) std::memset(dst, 0, n);
    else
      for (std::size_t i = 0; i < n; i += dsize) std::memcpy(dst + i, fill.data(), dsize);
  }

  // Copies the chunk's valid region (or the fill value when chunk is null) into every output
  // slot of the job's group.
  void scatter(const Plan& p, const Job& job, const std::uint8_t* chunk) const {
    const TileCopy tc = tile_copy(job.tile);
    const Group& g = p.groups[job.group];
    for (std::size_t r = g.begin; r < g.end; ++r) {
      const Run& run = p.runs[r];
      if (tc.rows_contiguous) {
        put(p.out + run.slot * item_bytes, chunk ? chunk + run.row * chunk_row_bytes : nullptr, run.count * item_bytes);
        continue;
      }
      for (std::uint64_t i = 0; i < run.count; ++i) {
        std::uint8_t* dst = p.out + (run.slot + i) * item_bytes + tc.dst_off;
        const std::uint8_t* src = chunk ? chunk + (run.row + i) * chunk_row_bytes : nullptr;
        copy_block(tc, dst, src);
      }
    }
  }

  void copy_block(const TileCopy& tc, std::uint8_t* dst, const std::uint8_t* src) const {
    if (tc.loops == 0) return put(dst, src, tc.inner);
    std::uint64_t idx[kMaxRank] = {};
    for (;;) {
      std::size_t so = 0, dof = 0;
      for (std::size_t k = 0; k < tc.loops; ++k) {
        so += idx[k] * tc.src_stride[k];
        dof += idx[k] * tc.dst_stride[k];
      }
      put(dst + dof, src ? src + so : nullptr, tc.inner);
      std::size_t k = tc.loops;
      while (k-- > 0) {
        if (++idx[k] < tc.extent[k]) break;
        idx[k] = 0;
      }
      if (k == kNone) return;
    }
  }

  // ---- entry points ----------------------------------------------------------------------------

  [[noreturn]] void out_of_range(std::uint64_t i) const {
    fail(ErrorKind::Index, "index " + std::to_string(i) + " is out of range for " + where + " with " +
                               std::to_string(shape[0]) + " items");
  }

  void read(std::span<const std::uint64_t> idx, void* out) const {
    for (auto i : idx)
      if (i >= shape[0]) out_of_range(i);
    if (idx.empty() || item_bytes == 0) return;
    const std::size_t k = idx.size();
    std::vector<std::size_t> order(k);
    for (std::size_t s = 0; s < k; ++s) order[s] = s;
    if (!std::is_sorted(idx.begin(), idx.end()))
      std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return idx[a] < idx[b]; });
    Plan p;
    p.out = static_cast<std::uint8_t*>(out);
    for (const std::size_t s : order) {
      const std::uint64_t g0 = idx[s] / ch[0], row = idx[s] % ch[0];
      if (p.groups.empty() || p.groups.back().g0 != g0) p.groups.push_back(Group{g0, p.runs.size(), p.runs.size()});
      Group& g = p.groups.back();
      if (g.end > g.begin) {
        Run& last = p.runs.back();
        if (last.slot + last.count == s && last.row + last.count == row) {
          ++last.count;
          continue;
        }
      }
      p.runs.push_back(Run{s, row, 1});
      g.end = p.runs.size();
    }
    execute(p);
  }

  void read_range(std::uint64_t begin, std::uint64_t end, void* out) const {
    if (begin > end) fail(ErrorKind::Index, "range start " + std::to_string(begin) + " is after its end " + std::to_string(end));
    if (end > shape[0]) out_of_range(end - 1);
    if (begin == end || item_bytes == 0) return;
    Plan p;
    p.out = static_cast<std::uint8_t*>(out);
    for (std::uint64_t g0 = begin / ch[0]; g0 <= (end - 1) / ch[0]; ++g0) {
      const std::uint64_t lo = std::max(begin, g0 * ch[0]), hi = std::min(end, (g0 + 1) * ch[0]);
      p.runs.push_back(Run{lo - begin, lo - g0 * ch[0], hi - lo});
      p.groups.push_back(Group{g0, p.runs.size() - 1, p.runs.size()});
    }
    execute(p);
  }
};

ArrayReader::ArrayReader(std::shared_ptr<Store> store, std::string prefix, ReaderOptions options)
    : impl_(std::make_unique<Impl>(std::move(store), std::move(prefix), options)) {}
ArrayReader::~ArrayReader() = default;

const std::vector<std::uint64_t>& ArrayReader::shape() const { return impl_->shape; }
DType ArrayReader::dtype() const { return impl_->meta.dtype; }
std::size_t ArrayReader::item_bytes() const { return impl_->item_bytes; }
std::string ArrayReader::attributes_json() const { return impl_->meta.attributes.dump(); }
std::string ArrayReader::describe() const { return impl_->where; }
void ArrayReader::read(std::span<const std::uint64_t> indices, void* out) const { impl_->read(indices, out); }
void ArrayReader::read_range(std::uint64_t begin, std::uint64_t end, void* out) const {
  impl_->read_range(begin, end, out);
}
ArrayReader::Stats ArrayReader::stats() const { return {impl_->index_reads.load(), impl_->chunk_reads.load()}; }

namespace {

nlohmann::json root_document(Store& store, bool required) {
  auto doc = store.get("zarr.json");
  if (!doc) {
    if (required) fail(ErrorKind::FileNotFound, "no Zarr store at " + store.describe() + " (zarr.json is missing)");
    return nullptr;
  }
  const auto j = nlohmann::json::parse(quote_bare_nonfinite(std::string(doc->begin(), doc->end())), nullptr, false);
  if (j.is_discarded() || !j.is_object())
    fail(ErrorKind::Value, store.describe() + "/zarr.json: not a valid JSON object");
  if (j.value("zarr_format", nlohmann::json()) != 3)
    fail(ErrorKind::Value, store.describe() + "/zarr.json: not a Zarr v3 document (zarr_format != 3)");
  return j;
}

}  // namespace

std::unique_ptr<ArrayReader> open_image_array(std::shared_ptr<Store> store, ReaderOptions options) {
  const auto root = root_document(*store, true);
  const auto type = root.value("node_type", nlohmann::json());
  if (type == "array") return std::make_unique<ArrayReader>(std::move(store), "", options);
  if (type != "group") fail(ErrorKind::Value, store->describe() + "/zarr.json: node_type is neither \"group\" nor \"array\"");
  if (!store->exists("images/zarr.json"))
    fail(ErrorKind::Value, store->describe() + ": the group has no \"images\" array (images/zarr.json is missing)");
  return std::make_unique<ArrayReader>(std::move(store), "images/", options);
}

std::string group_attributes_json(Store& store) {
  const auto root = root_document(store, false);
  if (root.is_null() || root.value("node_type", nlohmann::json()) != "group") return "{}";
  auto it = root.find("attributes");
  if (it == root.end() || !it->is_object()) return "{}";
  return it->dump();
}

}  // namespace i2z
