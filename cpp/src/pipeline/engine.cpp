#include "pipeline/engine.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <iterator>
#include <map>
#include <mutex>
#include <thread>

#include "codecs/codec.hpp"
#include "i2z/error.hpp"
#include "pipeline/geometry.hpp"
#include "pipeline/log.hpp"
#include "zarr/shard_index.hpp"

namespace i2z {

namespace {

using Geometry = ArrayGeometry;

// Copies tile (yi, xi) of n images (each C x H x W) into a dense n x C x h x w buffer,
// zero-padding past the image edges.
void gather_tile(const Geometry& g, const std::uint8_t* rowbuf, std::uint64_t yi, std::uint64_t xi,
                 std::uint8_t* tile) {
  const std::uint64_t y0 = yi * g.h, x0 = xi * g.w;
  const std::uint64_t hh = std::min(g.h, g.H - y0), ww = std::min(g.w, g.W - x0);
  if (hh < g.h || ww < g.w) std::memset(tile, 0, g.tile_bytes());
  for (std::uint64_t i = 0; i < g.n; ++i)
    for (std::uint64_t c = 0; c < g.C; ++c) {
      const std::uint8_t* src = rowbuf + ((i * g.C + c) * g.H + y0) * g.W * g.item + x0 * g.item;
      std::uint8_t* dst = tile + (i * g.C + c) * g.h * g.w * g.item;
      for (std::uint64_t y = 0; y < hh; ++y) std::memcpy(dst + y * g.w * g.item, src + y * g.W * g.item, ww * g.item);
    }
}

struct EncodedRow {
  std::vector<ByteBuffer> tiles;     // recycled through the engine's free list
  std::vector<ImageRecord> records;  // of the row's images (fewer than n past the array end)
};

class OrderedWriter {
 public:
  OrderedWriter(const EngineJob& job, const Geometry& g) : job_(job), g_(g) {}

  void write_row(std::uint64_t row, EncodedRow& r) {
    const std::uint64_t shard = row / g_.rows_per_shard;
    const std::uint64_t local = row % g_.rows_per_shard;
    if (!writer_) {
      const std::string key = chunk_key(job_.array_prefix, {shard, 0, 0, 0});
      writer_ = job_.store->open_writer(key);
      index_.assign(g_.rows_per_shard * g_.tiles_per_row(), ChunkLocation{});
      if (shard == job_.first_shard && job_.carry_rows > 0) copy_carried_rows(key);
      shard_first_image_ = row * g_.n;
    }
    std::move(r.records.begin(), r.records.end(), std::back_inserter(records_));
    for (std::uint64_t t = 0; t < r.tiles.size(); ++t) {
      auto& bytes = r.tiles[t];
      index_[local * g_.tiles_per_row() + t] = {writer_->size(), bytes.size()};
      writer_->write(bytes);
    }
    const std::uint64_t shard_end_row = std::min(g_.rows, (shard + 1) * g_.rows_per_shard);
    if (row + 1 == shard_end_row) {
      const auto idx = encode_shard_index(index_);
      writer_->write(idx);
      writer_->commit();
      writer_.reset();
      std::vector<ImageRecord> done = std::move(records_);
      records_.clear();
      if (job_.on_shard_done) job_.on_shard_done(shard, shard_first_image_, std::move(done));
    }
  }

 private:
  // Streams the existing chunks of the carried rows into the new object, one chunk at a time.
  void copy_carried_rows(const std::string& key) {
    const std::uint64_t n_chunks = index_.size();
    const auto size = job_.store->size(key);
    const auto raw = job_.store->get_suffix(key, shard_index_size(n_chunks));
    if (!size || !raw) fail(ErrorKind::Corrupt, "shard '" + key + "' to append to is missing");
    const auto old = decode_shard_index(*raw, n_chunks, *size);
    for (std::uint64_t i = 0; i < job_.carry_rows * g_.tiles_per_row(); ++i) {
      if (old[i].empty()) continue;
      const auto bytes = job_.store->get_range(key, old[i].offset, old[i].nbytes);
      if (!bytes || bytes->size() != old[i].nbytes) fail(ErrorKind::Corrupt, "shard '" + key + "' is truncated");
      index_[i] = {writer_->size(), bytes->size()};
      writer_->write(*bytes);
    }
  }

  const EngineJob& job_;
  const Geometry& g_;
  std::unique_ptr<ObjectWriter> writer_;
  std::vector<ChunkLocation> index_;
  std::vector<ImageRecord> records_;  // of the open shard
  std::uint64_t shard_first_image_ = 0;
};

}  // namespace

std::string engine_layout_problem(const ArrayMeta& m) {
  auto text = [](const std::vector<std::uint64_t>& v) {
    std::string t = "(";
    for (std::size_t i = 0; i < v.size(); ++i) t += (i ? ", " : "") + std::to_string(v[i]);
    return t + ")";
  };
  if (m.shape.size() != 4) return "the array is " + std::to_string(m.shape.size()) + "-D, not (N, C, H, W)";
  if (!m.sharded) return "the array is not sharded";
  if (!m.index_at_end) return "its shard index is at the start (this tool writes it at the end)";
  const auto &s = m.shape, &k = m.inner_chunk, &g = m.chunk_grid;
  if (k[1] != s[1])
    return "its inner chunks " + text(k) + " split the " + std::to_string(s[1]) +
           " channels (this tool writes chunks of all channels)";
  if (g[1] != s[1] || g[0] % k[0] != 0 || g[2] != (s[2] + k[2] - 1) / k[2] * k[2] ||
      g[3] != (s[3] + k[3] - 1) / k[3] * k[3])
    return "its shards " + text(g) + " do not hold whole chunk rows of the full " + std::to_string(s[2]) + "x" +
           std::to_string(s[3]) + " image plane in chunks " + text(k);
  return "";
}

std::uint64_t engine_first_image(const EngineJob& job) {
  const Geometry g(*job.meta);
  return (job.first_shard * g.rows_per_shard + job.carry_rows) * g.n;
}

void run_engine(const EngineJob& job, const ProgressFn& progress) {
  const ArrayMeta& meta = *job.meta;
  const Geometry g(meta);
  const std::uint64_t row_begin = job.first_shard * g.rows_per_shard + job.carry_rows;
  const std::uint64_t row_end = std::min(g.rows, job.end_shard * g.rows_per_shard);
  const std::uint64_t total_images =
      row_end > row_begin ? std::min(g.N, row_end * g.n) - row_begin * g.n : 0;
  const unsigned workers = std::max(1u, job.workers);
  // Rows in flight: enough that workers keep decoding while one of them writes, bounded in
  // bytes (about 64 MiB of raw rows) so memory stays independent of N and of the shard size.
  const std::uint64_t row_bytes = g.row_bytes();
  const std::uint64_t window = std::max<std::uint64_t>(2 * workers + 2, std::min<std::uint64_t>(256, (64ull << 20) / row_bytes));

  std::mutex mu;
  std::condition_variable cv_window, cv_main;
  std::map<std::uint64_t, EncodedRow> ready;
  // Encoded tile buffers the writer is done with. Reusing them (capacity kept, never
  // zero-filled) avoids an mmap + page faults + memset per chunk for chunks above glibc's
  // mmap threshold; their number is bounded by the tiles in flight.
  std::vector<ByteBuffer> spare;
  std::uint64_t next_write = row_begin;
  bool writing = false;
  std::exception_ptr error;
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> next_row{row_begin}, images_done{0}, images_failed{0};
  OrderedWriter writer(job, g);
  auto cancel = [&](std::exception_ptr e) {
    std::lock_guard lk(mu);
    if (!error) error = e;
    stop = true;
    cv_window.notify_all();
    cv_main.notify_all();
  };

  WarningSink* sink = current_sink();
  auto worker = [&] {
    SinkScope scope(sink);
    const bool whole = g.h == g.H && g.w == g.W;
    // One image, one channel, full-width tiles: every tile but a partial last one is a band of
    // whole rows, contiguous in the row buffer, so it is encoded in place without gathering.
    const bool bands = g.w == g.W && g.n * g.C == 1;
    try {  // allocations too: bad_alloc cancels the run with an error, never std::terminate
      std::vector<std::uint8_t> rowbuf(g.row_bytes()), tile;
      ByteBuffer scratch;
      if (!whole) tile.resize(g.tile_bytes());
      for (;;) {
        const std::uint64_t row = next_row.fetch_add(1);
        if (row >= row_end || stop) break;
        EncodedRow enc;
        enc.tiles.reserve(g.tiles_per_row());
        {
          std::unique_lock lk(mu);
          cv_window.wait(lk, [&] { return stop || row < next_write + window; });
          if (stop) break;
          while (!spare.empty() && enc.tiles.size() < g.tiles_per_row()) {
            enc.tiles.push_back(std::move(spare.back()));
            spare.pop_back();
          }
        }
        enc.tiles.resize(g.tiles_per_row());
        const std::uint64_t first = row * g.n;
        const std::uint64_t count = std::min(g.n, g.N - first);
        enc.records.resize(count);
        const std::uint8_t* data = job.source->fill(first, count, rowbuf.data(), enc.records.data());
        if (count < g.n) {
          // Past the array end: fill value. Copy first if the source handed us foreign memory.
          if (data != rowbuf.data()) std::memcpy(rowbuf.data(), data, count * g.image_bytes());
          std::memset(rowbuf.data() + count * g.image_bytes(), 0, (g.n - count) * g.image_bytes());
          data = rowbuf.data();
        }
        for (std::uint64_t yi = 0; yi < g.ty; ++yi)
          for (std::uint64_t xi = 0; xi < g.tx; ++xi) {
            const std::uint8_t* raw = data;
            if (bands && (yi + 1) * g.h <= g.H) {
              raw = data + yi * g.h * g.W * g.item;
            } else if (!whole) {
              gather_tile(g, data, yi, xi, tile.data());
              raw = tile.data();
            }
            meta.chain->encode({raw, g.tile_bytes()}, enc.tiles[yi * g.tx + xi], scratch);
          }
        std::uint64_t failed = 0;
        for (const auto& r : enc.records) failed += !r.error.empty();
        images_failed += failed;
        images_done += count;

        std::unique_lock lk(mu);
        ready.emplace(row, std::move(enc));
        if (writing) continue;
        writing = true;
        while (!stop) {
          auto it = ready.find(next_write);
          if (it == ready.end()) break;
          EncodedRow item = std::move(it->second);
          ready.erase(it);
          lk.unlock();
          writer.write_row(next_write, item);
          lk.lock();
          for (auto& b : item.tiles) spare.push_back(std::move(b));
          ++next_write;
          cv_window.notify_all();
        }
        writing = false;
        if (next_write == row_end) cv_main.notify_all();
      }
    } catch (const std::bad_alloc&) {
      cancel(std::make_exception_ptr(Error(ErrorKind::Runtime, "out of memory while converting (chunk rows of " +
                                                                   mib_text(g.row_bytes()) + " per worker); lower "
                                                                   "num_parallel_workers or the image size")));
    } catch (...) {
      cancel(std::current_exception());
    }
  };

  std::vector<std::thread> threads;
  threads.reserve(workers);
  for (unsigned t = 0; t < workers; ++t) threads.emplace_back(worker);

  Progress p;
  p.total = total_images;
  try {
    std::unique_lock lk(mu);
    while (!stop && next_write < row_end) {
      cv_main.wait_for(lk, std::chrono::milliseconds(100));
      lk.unlock();
      poll_interrupt();
      if (progress) {
        p.done = images_done;
        p.failed = images_failed;
        p.warnings = take_warnings();
        progress(p);
      }
      lk.lock();
    }
  } catch (...) {
    cancel(std::current_exception());
  }
  for (auto& t : threads) t.join();
  if (error) std::rethrow_exception(error);
  if (progress) {
    p.done = images_done;
    p.failed = images_failed;
    p.warnings = take_warnings();
    progress(p);
  }
}

}  // namespace i2z
