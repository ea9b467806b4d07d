// A small libcurl client for the S3 store: one request = one attempt (the caller owns the
// retry loop), plus the retry policy as pure functions so it can be tested without a network.
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace i2z::http {

struct Request {
  std::string method;                    // "GET", "HEAD", "PUT", "POST", "DELETE"
  std::string url;                       // absolute, already percent-encoded
  std::vector<std::string> headers;      // "Name: value"; the client adds no others it signs
  std::span<const std::uint8_t> body;    // sent with Content-Length for PUT/POST; must outlive perform()
};

struct Response {
  long status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased, values trimmed
  std::vector<std::uint8_t> body;
  // First value of a header (name in lower case), "" when absent.
  std::string header(std::string_view lower_name) const;
  std::string_view text() const { return {reinterpret_cast<const char*>(body.data()), body.size()}; }
};

struct Outcome {
  int curl_code = 0;       // CURLcode; 0 = a complete HTTP response was received
  std::string curl_error;  // libcurl's description when curl_code != 0 (never contains headers)
  Response response;
};

struct ClientConfig {
  long connect_timeout_ms = 10'000;
  long request_timeout_ms = 0;  // whole attempt; 0 = unlimited (large uploads), stalls still abort
  long stall_timeout_s = 30;    // abort an attempt that moves < 1 byte/s for this long
  bool verify_tls = true;
};

// Thread-safe: each perform() borrows an easy handle from a pool, so connections (and TLS
// sessions) are reused across requests and threads. Never throws for HTTP statuses.
class Client {
 public:
  explicit Client(ClientConfig config);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  Outcome perform(const Request& request) const;

 private:
  struct Pool;
  ClientConfig config_;
  std::unique_ptr<Pool> pool_;
};

// --- Retry policy ---
// Transport failures worth another attempt: refused/reset connections, timeouts, truncated
// or empty responses. DNS failures and TLS/certificate errors are configuration mistakes and
// fail at once.
bool retryable_curl_code(int curl_code);
// HTTP outcomes worth another attempt: any 5xx except 501, 429, and the S3 error codes that
// mean "try again" on other statuses (RequestTimeout, SlowDown, InternalError,
// OperationAborted, ...). s3_code is the <Code> of the error body ("" if none).
bool retryable_status(long status, std::string_view s3_code);
// Exponential back-off with full jitter: a delay uniform in [0, min(cap, base * 2^attempt)],
// attempt counted from 0; `random` is any uniformly distributed 64-bit value.
std::chrono::milliseconds backoff_delay(int attempt, std::chrono::milliseconds base, std::chrono::milliseconds cap,
                                        std::uint64_t random);

}  // namespace i2z::http
