// A fixed pool of worker threads that helps callers run index loops (the reader's chunk and
// index fetches). Split out of zarr/reader.cpp so other stages can share it.
#pragma once
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace i2z {

// A fixed pool of worker threads that helps callers run index loops. The caller of run() also
// works on its own loop, so nested or concurrent calls cannot deadlock.
class TaskPool {
 public:
  using Fn = void (*)(void* ctx, std::size_t i);

  explicit TaskPool(unsigned workers) : workers_(workers) {}
  ~TaskPool() {
    if (threads_.empty()) return;
    if (::getpid() != pid_.load()) {
      // A forked child: these threads do not exist here and the mutex may be held; leak them.
      new std::vector<std::thread>(std::move(threads_));
      return;
    }
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

  // Calls fn(ctx, i) for every i in [0, n) and returns when all calls have finished. The first
  // exception is rethrown; items not yet started when it happened are skipped.
  void run(std::size_t n, Fn fn, void* ctx) {
    if (n == 0) return;
    if (n == 1 || !start()) {
      for (std::size_t i = 0; i < n; ++i) fn(ctx, i);
      return;
    }
    auto b = std::make_shared<Batch>();
    b->fn = fn;
    b->ctx = ctx;
    b->n = n;
    {
      std::lock_guard lk(mu_);
      queue_.push_back(b);
    }
    if (n - 1 >= threads_.size()) cv_.notify_all();
    else
      for (std::size_t i = 0; i + 1 < n; ++i) cv_.notify_one();
    work(*b);
    {
      std::lock_guard lk(mu_);
      auto it = std::find(queue_.begin(), queue_.end(), b);
      if (it != queue_.end()) queue_.erase(it);
    }
    std::unique_lock lk(b->mu);
    b->cv.wait(lk, [&] { return b->done == b->n; });
    if (b->error) std::rethrow_exception(b->error);
  }

 private:
  struct Batch {
    Fn fn = nullptr;
    void* ctx = nullptr;
    std::size_t n = 0;
    std::atomic<std::size_t> next{0};
    std::atomic<bool> failed{false};
    std::mutex mu;
    std::condition_variable cv;
    std::size_t done = 0;  // guarded by mu
    std::exception_ptr error;
  };

  // Starts the workers once; false when there are none or in a forked child.
  bool start() {
    if (workers_ == 0) return false;
    const pid_t me = ::getpid();
    const pid_t owner = pid_.load();
    if (owner != 0) return owner == me && !threads_.empty();
    std::lock_guard lk(mu_);
    if (pid_.load() == 0) {
      try {
        for (unsigned i = 0; i < workers_; ++i) threads_.emplace_back([this] { loop(); });
      } catch (const std::system_error&) {  // out of threads: run with what started
      }
      pid_.store(me);
    }
    return !threads_.empty();
  }

  static void work(Batch& b) {
    std::size_t finished = 0;
    for (;;) {
      const std::size_t i = b.next.fetch_add(1);
      if (i >= b.n) break;
      if (!b.failed.load(std::memory_order_relaxed)) {
        try {
          b.fn(b.ctx, i);
        } catch (...) {
          std::lock_guard lk(b.mu);
          if (!b.error) b.error = std::current_exception();
          b.failed = true;
        }
      }
      ++finished;
    }
    if (finished == 0) return;
    std::lock_guard lk(b.mu);
    b.done += finished;
    if (b.done == b.n) b.cv.notify_all();
  }

  void loop() {
    std::unique_lock lk(mu_);
    for (;;) {
      cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      std::shared_ptr<Batch> b = queue_.front();
      if (b->next.load() >= b->n) {
        queue_.pop_front();
        continue;
      }
      lk.unlock();
      work(*b);
      lk.lock();
    }
  }

  const unsigned workers_;
  std::atomic<pid_t> pid_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Batch>> queue_;
  std::vector<std::thread> threads_;
  bool stop_ = false;
};

}  // namespace i2z
