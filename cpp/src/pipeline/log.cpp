#include "pipeline/log.hpp"

namespace i2z {

namespace {
WarningSink g_process_sink;
thread_local WarningSink* t_sink = nullptr;
thread_local std::function<void()> t_interrupt;
}  // namespace

void WarningSink::add(std::string message) {
  std::lock_guard lk(mu_);
  pending_.push_back(std::move(message));
}

std::vector<std::string> WarningSink::take() {
  std::lock_guard lk(mu_);
  std::vector<std::string> out;
  out.swap(pending_);
  return out;
}

WarningSink* current_sink() { return t_sink != nullptr ? t_sink : &g_process_sink; }

SinkScope::SinkScope(WarningSink* sink) : previous_(t_sink) { t_sink = sink; }
SinkScope::~SinkScope() { t_sink = previous_; }

void log_warning(std::string message) { current_sink()->add(std::move(message)); }
std::vector<std::string> take_warnings() { return current_sink()->take(); }

InterruptScope::InterruptScope(std::function<void()> check) : previous_(std::move(t_interrupt)) {
  t_interrupt = std::move(check);
}
InterruptScope::~InterruptScope() { t_interrupt = std::move(previous_); }

void poll_interrupt() {
  if (t_interrupt) t_interrupt();
}

}  // namespace i2z
