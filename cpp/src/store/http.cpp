#include "store/http.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cstdio>
#include <cctype>
#include <mutex>

#include "i2z/error.hpp"

namespace i2z::http {

namespace {

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) fail(ErrorKind::Runtime, "libcurl initialisation failed");
  });
}

struct Transfer {
  std::span<const std::uint8_t> body;
  std::size_t sent = 0;
  Response* response = nullptr;
};

std::size_t on_write(char* data, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  try {
    t->response->body.insert(t->response->body.end(), data, data + size * n);
  } catch (...) {
    return 0;  // CURLE_WRITE_ERROR
  }
  return size * n;
}

std::size_t on_read(char* buffer, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const std::size_t take = std::min(size * n, t->body.size() - t->sent);
  std::copy_n(t->body.data() + t->sent, take, buffer);
  t->sent += take;
  return take;
}

// libcurl rewinds the body when it resends a request on a fresh connection (a reused
// keep-alive connection that turned out dead); without this it fails with
// CURLE_SEND_FAIL_REWIND.
int on_seek(void* user, curl_off_t offset, int origin) {
  auto* t = static_cast<Transfer*>(user);
  if (origin != SEEK_SET || offset < 0 || static_cast<std::uint64_t>(offset) > t->body.size())
    return CURL_SEEKFUNC_CANTSEEK;
  t->sent = static_cast<std::size_t>(offset);
  return CURL_SEEKFUNC_OK;
}

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const std::size_t len = size * n;
  std::string_view line(data, len);
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.remove_suffix(1);
  try {
    if (line.starts_with("HTTP/")) {
      t->response->headers.clear();  // a new status line (after 100 Continue): start over
      return len;
    }
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) return len;
    std::string name(line.substr(0, colon));
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    t->response->headers.emplace_back(std::move(name), std::string(value));
    if (t->response->headers.back().first == "content-length") {
      const auto expected = std::stoull(t->response->headers.back().second);
      if (expected <= (std::uint64_t{1} << 28)) t->response->body.reserve(expected);  // a hint, not a promise
    }
  } catch (...) {
    // A malformed Content-Length is caught by libcurl itself; nothing to record here.
  }
  return len;
}

struct HeaderList {
  curl_slist* list = nullptr;
  ~HeaderList() { curl_slist_free_all(list); }
  void add(const std::string& h) {
    curl_slist* next = curl_slist_append(list, h.c_str());
    if (!next) fail(ErrorKind::Runtime, "out of memory building HTTP headers");
    list = next;
  }
};

}  // namespace

std::string Response::header(std::string_view lower_name) const {
  for (const auto& [k, v] : headers)
    if (k == lower_name) return v;
  return {};
}

struct Client::Pool {
  std::mutex mu;
  std::vector<CURL*> idle;
  ~Pool() {
    for (CURL* h : idle) curl_easy_cleanup(h);
  }
  CURL* acquire() {
    {
      std::lock_guard lock(mu);
      if (!idle.empty()) {
        CURL* h = idle.back();
        idle.pop_back();
        curl_easy_reset(h);  // keeps the connection and DNS caches
        return h;
      }
    }
    CURL* h = curl_easy_init();
    if (!h) fail(ErrorKind::Runtime, "libcurl: cannot create a transfer handle");
    return h;
  }
  void release(CURL* h) {
    std::lock_guard lock(mu);
    idle.push_back(h);
  }
};

Client::Client(ClientConfig config) : config_(config), pool_(std::make_unique<Pool>()) { global_init(); }
Client::~Client() = default;

Outcome Client::perform(const Request& req) const {
  CURL* h = pool_->acquire();
  struct Return {
    Pool& pool;
    CURL* h;
    ~Return() { pool.release(h); }
  } give_back{*pool_, h};

  Outcome out;
  Transfer t{req.body, 0, &out.response};
  HeaderList headers;
  for (const auto& line : req.headers) headers.add(line);
  // libcurl adds these by itself; they are not signed, but "Expect: 100-continue" costs a
  // round trip per upload and a default Content-Type would become the object's type.
  headers.add("Expect:");
  headers.add("Accept:");
  char errbuf[CURL_ERROR_SIZE] = {0};

  curl_easy_setopt(h, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);  // object keys may contain "//" or "/./": send as signed
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);  // several threads; timeouts must not use signals
  curl_easy_setopt(h, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, config_.connect_timeout_ms);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, config_.request_timeout_ms);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, config_.stall_timeout_s);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, config_.verify_tls ? 1L : 0L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, config_.verify_tls ? 2L : 0L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
  if (req.method == "HEAD") {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if (req.method == "PUT" || req.method == "POST") {
    // Upload mode for both (POST via the custom verb): the body streams from memory with an
    // exact Content-Length, never chunked encoding, which S3 rejects for signed payloads.
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(h, CURLOPT_READDATA, &t);
    curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
    curl_easy_setopt(h, CURLOPT_SEEKDATA, &t);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
    if (req.method == "POST") curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "POST");
  } else if (req.method != "GET") {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.list);

  const CURLcode rc = curl_easy_perform(h);
  out.curl_code = static_cast<int>(rc);
  if (rc != CURLE_OK) {
    out.curl_error = errbuf[0] ? std::string(errbuf) : std::string(curl_easy_strerror(rc));
    while (!out.curl_error.empty() && out.curl_error.back() == '\n') out.curl_error.pop_back();
  }
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out.response.status);
  return out;
}

bool retryable_curl_code(int code) {
  switch (static_cast<CURLcode>(code)) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return true;
    default:
      return false;
  }
}

bool retryable_status(long status, std::string_view s3_code) {
  if (status == 429) return true;
  if (status >= 500 && status <= 599) return status != 501;
  // S3 reports some transient conditions with 4xx statuses (or inside a 200 response to
  // CompleteMultipartUpload): the error code decides.
  return s3_code == "RequestTimeout" || s3_code == "SlowDown" || s3_code == "InternalError" ||
         s3_code == "ServiceUnavailable" || s3_code == "OperationAborted" ||
         s3_code == "Throttling" || s3_code == "ThrottlingException";
}

std::chrono::milliseconds backoff_delay(int attempt, std::chrono::milliseconds base, std::chrono::milliseconds cap,
                                        std::uint64_t random) {
  const auto b = static_cast<std::uint64_t>(std::max<std::int64_t>(base.count(), 0));
  const auto c = static_cast<std::uint64_t>(std::max<std::int64_t>(cap.count(), 0));
  std::uint64_t ceiling = b;
  for (int i = 0; i < attempt && ceiling < c; ++i) ceiling *= 2;
  ceiling = std::min(ceiling, c);
  return std::chrono::milliseconds(static_cast<std::int64_t>(random % (ceiling + 1)));
}

}  // namespace i2z::http
