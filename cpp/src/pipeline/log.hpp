// Warnings raised on worker threads, collected and handed to Python in batches by the
// progress callback (so no worker ever needs the GIL), and the interrupt check of a run.
//
// Each conversion (and each probe or shard task) has its own WarningSink, made current on its
// calling thread by a SinkScope and inherited by the worker threads it starts, so two runs in
// one process never see each other's warnings. Without a scope the process-wide sink is used.
#pragma once
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace i2z {

class WarningSink {
 public:
  void add(std::string message);
  std::vector<std::string> take();

 private:
  std::mutex mu_;
  std::vector<std::string> pending_;
};

// The calling thread's sink (never null).
WarningSink* current_sink();

class SinkScope {
 public:
  explicit SinkScope(WarningSink* sink);
  ~SinkScope();
  SinkScope(const SinkScope&) = delete;
  SinkScope& operator=(const SinkScope&) = delete;

 private:
  WarningSink* previous_;
};

void log_warning(std::string message);
std::vector<std::string> take_warnings();  // of the current sink

// Interrupt check: the Python binding installs one on its calling thread that throws
// Error(Cancelled) for a pending Ctrl-C. Loops that wait for workers call poll_interrupt() on
// the calling thread about every 100 ms; the workers then stop at the next image.
class InterruptScope {
 public:
  explicit InterruptScope(std::function<void()> check);
  ~InterruptScope();
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;

 private:
  std::function<void()> previous_;
};
void poll_interrupt();

}  // namespace i2z
