#include "pipeline/log.hpp"

#include <mutex>

namespace i2z {

namespace {
std::mutex g_mu;
std::vector<std::string> g_pending;
}  // namespace

void log_warning(std::string message) {
  std::lock_guard lk(g_mu);
  g_pending.push_back(std::move(message));
}

std::vector<std::string> take_warnings() {
  std::lock_guard lk(g_mu);
  std::vector<std::string> out;
  out.swap(g_pending);
  return out;
}

}  // namespace i2z
