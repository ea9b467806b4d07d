// S3 store: each Store call is one S3 request (or a multipart upload), signed with SigV4 and
// retried with back-off on transient failures. Request payloads are signed with their real
// SHA-256 rather than UNSIGNED-PAYLOAD: S3 then checks the bytes it received against the
// signed hash (XAmzContentSHA256Mismatch), which protects plain-http endpoints where TLS does
// not, and some S3-compatible servers reject UNSIGNED-PAYLOAD. Hashing costs ~1 ms per MiB,
// far less than sending the MiB.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <deque>
#include <future>
#include <random>
#include <thread>

#include "i2z/error.hpp"
#include "i2z/s3.hpp"
#include "store/http.hpp"
#include "store/s3_sign.hpp"
#include "store/s3_url.hpp"
#include "store/s3_xml.hpp"

namespace i2z {

namespace {

constexpr std::uint64_t kMinPartSize = std::uint64_t{5} << 20;  // S3: every part but the last
constexpr std::uint64_t kMaxPartSize = std::uint64_t{5} << 30;
constexpr int kMaxParts = 10'000;
constexpr int kPartsPerSizeStep = 1'000;  // part size doubles every 1000 parts (objects > 8 GiB)

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

std::uint64_t random_u64() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng();
}

struct Call {
  std::string method;
  std::string key;  // full object key; "" addresses the bucket
  s3::Params query;
  s3::Params headers;  // extra signed headers (range)
  std::span<const std::uint8_t> body;
  bool error_in_200 = false;  // CompleteMultipartUpload can report failure inside a 200
};

// Shared by the store and its writers (which may outlive the Store object).
class S3Client {
 public:
  S3Client(s3::Location loc, const S3Options& o, bool custom_endpoint, s3::Endpoint ep)
      : opt_(o),
        loc_(std::move(loc)),
        addr_(std::move(ep), loc_.bucket, o.addressing, custom_endpoint),
        http_(http::ClientConfig{static_cast<long>(o.connect_timeout_ms), static_cast<long>(o.request_timeout_ms),
                                 static_cast<long>(o.stall_timeout_s), o.verify_tls}),
        sign_(!o.anonymous && !o.access_key_id.empty()),
        creds_{o.access_key_id, o.secret_access_key, o.session_token},
        region_(o.region.empty() ? "us-east-1" : o.region) {}

  const S3Options& options() const { return opt_; }
  const s3::Location& location() const { return loc_; }
  std::string url_of(const std::string& key) const { return "s3://" + loc_.bucket + "/" + key; }

  // The final response: a success, or a status the caller interprets (404, 416, 403, ...).
  // Transient failures are retried; when retries run out, or on a transport error that is
  // not transient, throws Error(IO).
  http::Response send(const Call& c) const {
    const std::string payload_hash = s3::sha256_hex(c.body);
    const s3::Target t = addr_.target(c.key, c.query);
    for (int attempt = 0;; ++attempt) {
      const std::string date = s3::amz_datetime(std::time(nullptr));
      s3::Params signed_headers = {{"host", t.host}, {"x-amz-content-sha256", payload_hash}, {"x-amz-date", date}};
      if (sign_ && !creds_.session_token.empty()) signed_headers.emplace_back("x-amz-security-token", creds_.session_token);
      for (const auto& h : c.headers) signed_headers.push_back(h);
      http::Request req{c.method, t.url, {}, c.body};
      for (const auto& [k, v] : signed_headers) req.headers.push_back(k + ": " + v);
      if (sign_) {
        const s3::SigningInput in{c.method, t.canonical_uri, c.query, signed_headers, payload_hash};
        req.headers.push_back("Authorization: " + s3::authorization(in, creds_, date, region_));
      }
      http::Outcome out = http_.perform(req);

      std::string why;
      if (out.curl_code != 0) {
        if (!http::retryable_curl_code(out.curl_code))
          fail(ErrorKind::IO, "S3 " + c.method + " " + url_of(c.key) + " failed: " + out.curl_error + " (curl error " +
                                  std::to_string(out.curl_code) + ")");
        why = out.curl_error + " (curl error " + std::to_string(out.curl_code) + ")";
      } else {
        const long status = out.response.status;
        std::string code;
        if (status >= 300 || (status == 200 && c.error_in_200))
          if (auto e = s3::parse_error(out.response.text())) code = e->code;
        if (status < 300 && code.empty()) return std::move(out.response);
        if (!http::retryable_status(status, code)) return std::move(out.response);
        why = "HTTP " + std::to_string(status) + (code.empty() ? "" : " " + code);
      }
      if (attempt >= opt_.max_retries)
        fail(ErrorKind::IO, "S3 " + c.method + " " + url_of(c.key) + " failed after " + std::to_string(attempt + 1) +
                                " attempts: " + why);
      std::this_thread::sleep_for(http::backoff_delay(attempt, std::chrono::milliseconds(opt_.retry_base_ms),
                                                      std::chrono::milliseconds(opt_.retry_cap_ms), random_u64()));
    }
  }

  [[noreturn]] void fail_response(const Call& c, const http::Response& r) const {
    const auto err = s3::parse_error(r.text());
    const std::string code = err ? err->code : "";
    const std::string target = url_of(c.key);
    if (r.status == 401 || r.status == 403) {
      std::string msg = "access denied for " + target + " (check AWS credentials";
      if (!sign_) msg += "; the request was anonymous: no access key is configured";
      msg += ")";
      if (!code.empty()) msg += ": " + code;
      fail(ErrorKind::IO, msg);
    }
    if (r.status == 404 && code == "NoSuchBucket")
      fail(ErrorKind::FileNotFound, "S3 bucket '" + loc_.bucket + "' does not exist (" + target + ")");
    std::string msg = "S3 " + c.method + " " + target + " failed: HTTP " + std::to_string(r.status);
    if (!code.empty()) msg += " " + code;
    if (err && !err->message.empty()) msg += ": " + err->message;
    fail(ErrorKind::IO, msg);
  }

  http::Response send_ok(const Call& c) const {
    http::Response r = send(c);
    if (r.status < 200 || r.status > 299) fail_response(c, r);
    return r;
  }

  // 404 -> nullopt (a missing bucket is an error, not a missing key).
  std::optional<http::Response> send_found(const Call& c) const {
    http::Response r = send(c);
    if (r.status == 404) {
      const auto err = s3::parse_error(r.text());
      if (err && err->code == "NoSuchBucket") fail_response(c, r);
      return std::nullopt;
    }
    return r;
  }

  std::optional<std::uint64_t> head(const std::string& key) const {
    const Call c{"HEAD", key, {}, {}, {}, false};
    auto r = send_found(c);
    if (!r) return std::nullopt;
    if (r->status != 200) fail_response(c, *r);
    const std::string len = r->header("content-length");
    try {
      return std::stoull(len);
    } catch (...) {
      fail(ErrorKind::IO, "S3 HEAD " + url_of(key) + ": missing or bad Content-Length '" + len + "'");
    }
  }

  void put(const std::string& key, std::span<const std::uint8_t> data) const {
    send_ok(Call{"PUT", key, {}, {}, data, false});
  }

  std::string create_multipart(const std::string& key) const {
    const auto r = send_ok(Call{"POST", key, {{"uploads", ""}}, {}, {}, false});
    return s3::parse_upload_id(r.text());
  }

  std::string upload_part(const std::string& key, const std::string& upload_id, int part,
                          std::span<const std::uint8_t> data) const {
    const Call c{"PUT", key, {{"partNumber", std::to_string(part)}, {"uploadId", upload_id}}, {}, data, false};
    const auto r = send_ok(c);
    std::string etag = r.header("etag");
    if (etag.empty()) fail(ErrorKind::IO, "S3 UploadPart " + url_of(key) + ": no ETag in the response");
    return etag;
  }

  void complete_multipart(const std::string& key, const std::string& upload_id, const std::vector<std::string>& etags,
                          std::uint64_t total) const {
    const std::string xml = s3::complete_multipart_body(etags);
    const Call c{"POST", key, {{"uploadId", upload_id}}, {{"content-type", "application/xml"}},
                 {reinterpret_cast<const std::uint8_t*>(xml.data()), xml.size()}, true};
    const auto r = send(c);
    if (r.status == 200 && !s3::parse_error(r.text())) return;
    // A retried CompleteMultipartUpload whose first attempt succeeded but lost its response
    // finds the upload gone; the object is then in place with the expected size.
    if (r.status == 404) {
      const auto err = s3::parse_error(r.text());
      if (err && err->code == "NoSuchUpload") {
        const auto size = head(key);
        if (size && *size == total) return;
      }
    }
    if (r.status == 200) {
      const auto err = s3::parse_error(r.text());
      fail(ErrorKind::IO, "S3 CompleteMultipartUpload " + url_of(key) + " failed: " + err->code +
                              (err->message.empty() ? "" : ": " + err->message));
    }
    fail_response(c, r);
  }

  void abort_multipart(const std::string& key, const std::string& upload_id) const {
    const Call c{"DELETE", key, {{"uploadId", upload_id}}, {}, {}, false};
    const auto r = send(c);
    if (r.status == 404 || (r.status >= 200 && r.status <= 299)) return;  // 404: already gone
    fail_response(c, r);
  }

 private:
  S3Options opt_;
  s3::Location loc_;
  s3::Addresser addr_;
  http::Client http_;
  bool sign_;
  s3::Credentials creds_;
  std::string region_;
};

// Buffers up to one part; past that, a multipart upload with parts sent by background tasks
// (at most max_inflight_parts at once). The object appears only at commit().
class S3Writer final : public ObjectWriter {
 public:
  S3Writer(std::shared_ptr<const S3Client> c, std::string key)
      : c_(std::move(c)), key_(std::move(key)), part_size_(c_->options().part_size) {}

  ~S3Writer() override {
    drain_ignoring_errors();
    if (!committed_ && !upload_id_.empty()) {
      try {
        c_->abort_multipart(key_, upload_id_);
      } catch (...) {
        // Best effort: an orphaned upload is invisible and expires under a lifecycle rule.
      }
    }
  }

  void write(std::span<const std::uint8_t> data) override {
    check_usable();
    try {
      while (!data.empty()) {
        const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(data.size(), part_size_ - buf_.size()));
        buf_.insert(buf_.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(take));
        data = data.subspan(take);
        size_ += take;
        if (buf_.size() == part_size_) send_part();
      }
    } catch (...) {
      failed_ = true;
      throw;
    }
  }

  std::uint64_t size() const override { return size_; }

  void commit() override {
    check_usable();
    try {
      if (upload_id_.empty()) {
        c_->put(key_, buf_);
      } else {
        if (!buf_.empty()) send_part();
        while (!inflight_.empty()) wait_oldest();
        c_->complete_multipart(key_, upload_id_, etags_, size_);
      }
    } catch (...) {
      failed_ = true;
      throw;
    }
    committed_ = true;
    Bytes().swap(buf_);
  }

 private:
  void check_usable() const {
    if (committed_) fail(ErrorKind::Runtime, "S3 writer for " + c_->url_of(key_) + " used after commit()");
    if (failed_) fail(ErrorKind::IO, "S3 upload of " + c_->url_of(key_) + " already failed");
  }

  void send_part() {
    if (upload_id_.empty()) upload_id_ = c_->create_multipart(key_);
    if (static_cast<int>(etags_.size()) >= kMaxParts)
      fail(ErrorKind::IO, "S3 upload of " + c_->url_of(key_) + " exceeds " + std::to_string(kMaxParts) + " parts");
    while (static_cast<int>(inflight_.size()) >= c_->options().max_inflight_parts) wait_oldest();
    const int part = static_cast<int>(etags_.size()) + 1;
    etags_.emplace_back();
    auto data = std::make_shared<Bytes>(std::move(buf_));
    buf_ = Bytes();
    if (part % kPartsPerSizeStep == 0) part_size_ = std::min(part_size_ * 2, kMaxPartSize);
    buf_.reserve(part_size_);
    inflight_.push_back({part, std::async(std::launch::async, [c = c_, key = key_, id = upload_id_, part, data] {
                           return c->upload_part(key, id, part, *data);
                         })});
  }

  void wait_oldest() {
    auto [part, fut] = std::move(inflight_.front());
    inflight_.pop_front();
    etags_[static_cast<std::size_t>(part - 1)] = fut.get();
  }

  void drain_ignoring_errors() noexcept {
    for (auto& p : inflight_) {
      try {
        p.second.get();
      } catch (...) {
      }
    }
    inflight_.clear();
  }

  std::shared_ptr<const S3Client> c_;
  std::string key_;
  std::uint64_t part_size_;
  Bytes buf_;
  std::uint64_t size_ = 0;
  std::string upload_id_;
  std::vector<std::string> etags_;
  std::deque<std::pair<int, std::future<std::string>>> inflight_;
  bool committed_ = false;
  bool failed_ = false;
};

class S3Store final : public Store {
 public:
  explicit S3Store(std::shared_ptr<const S3Client> c)
      : c_(std::move(c)), root_(c_->location().prefix.empty() ? "" : c_->location().prefix + "/") {}

  std::optional<Bytes> get(const std::string& key) override {
    const std::string k = object_key(key);
    if (k.empty()) return std::nullopt;
    const Call c{"GET", k, {}, {}, {}, false};
    auto r = c_->send_found(c);
    if (!r) return std::nullopt;
    if (r->status != 200) c_->fail_response(c, *r);
    return std::move(r->body);
  }

  std::optional<Bytes> get_range(const std::string& key, std::uint64_t offset, std::uint64_t length) override {
    if (length == 0) return exists_empty(key);
    const bool open_end = length > ~std::uint64_t{0} - offset;
    const std::string range =
        "bytes=" + std::to_string(offset) + "-" + (open_end ? std::string() : std::to_string(offset + length - 1));
    return ranged(key, range, [&](Bytes& whole) { return slice(whole, offset, length); }, offset);
  }

  std::optional<Bytes> get_suffix(const std::string& key, std::uint64_t length) override {
    if (length == 0) return exists_empty(key);
    return ranged(
        key, "bytes=-" + std::to_string(length),
        [&](Bytes& whole) {
          const std::uint64_t n = whole.size();
          return slice(whole, length >= n ? 0 : n - length, length);
        },
        std::nullopt);
  }

  std::optional<std::uint64_t> size(const std::string& key) override {
    const std::string k = object_key(key);
    if (k.empty()) return std::nullopt;
    return c_->head(k);
  }

  void set(const std::string& key, std::span<const std::uint8_t> data) override {
    const std::string k = writable_key(key);
    if (data.size() <= c_->options().part_size) {
      c_->put(k, data);
      return;
    }
    S3Writer w(c_, k);  // one PUT is limited to 5 GiB; multipart completes atomically too
    w.write(data);
    w.commit();
  }

  std::unique_ptr<ObjectWriter> open_writer(const std::string& key) override {
    return std::make_unique<S3Writer>(c_, writable_key(key));
  }

  void erase(const std::string& key) override {
    const std::string k = writable_key(key);
    const Call c{"DELETE", k, {}, {}, {}, false};
    const auto r = c_->send_found(c);  // S3 answers 204 for a missing key; some servers 404
    if (r && (r->status < 200 || r->status > 299)) c_->fail_response(c, *r);
  }

  std::vector<std::string> list(const std::string& prefix) override {
    std::string p = prefix;
    if (!p.empty() && p.back() != '/') p.push_back('/');
    const std::string full = root_ + p;
    std::vector<std::string> keys;
    std::string token;
    for (;;) {
      s3::Params q = {{"list-type", "2"}, {"prefix", full}, {"max-keys", std::to_string(c_->options().list_max_keys)}};
      if (!token.empty()) q.emplace_back("continuation-token", token);
      const Call c{"GET", "", q, {}, {}, false};
      const auto r = c_->send_ok(c);
      s3::ListPage page;
      try {
        page = s3::parse_list_objects_v2(r.text());
      } catch (const Error& e) {
        fail(ErrorKind::IO, "S3 list " + c_->url_of(full) + ": " + e.what());
      }
      for (auto& k : page.keys) {
        // Folder markers ("a/b/") made by consoles are not objects of a Zarr store.
        if (!k.starts_with(full) || k.ends_with("/")) continue;
        keys.push_back(k.substr(root_.size()));
      }
      if (!page.truncated) break;
      if (page.next_token == token)
        fail(ErrorKind::IO, "S3 list " + c_->url_of(full) + ": the server repeated its continuation token");
      token = page.next_token;
    }
    std::sort(keys.begin(), keys.end());
    return keys;
  }

  // Aborts the multipart uploads left under this store's prefix by writers that died before
  // commit() (their parts are invisible but billed).
  void remove_incomplete() override {
    std::string key_marker, id_marker;
    for (;;) {
      s3::Params q = {{"uploads", ""}, {"prefix", root_}, {"max-uploads", std::to_string(c_->options().list_max_keys)}};
      if (!key_marker.empty()) q.emplace_back("key-marker", key_marker);
      if (!id_marker.empty()) q.emplace_back("upload-id-marker", id_marker);
      const auto r = c_->send_ok(Call{"GET", "", q, {}, {}, false});
      s3::UploadsPage page;
      try {
        page = s3::parse_list_multipart_uploads(r.text());
      } catch (const Error& e) {
        fail(ErrorKind::IO, "S3 list uploads " + c_->url_of(root_) + ": " + e.what());
      }
      for (const auto& [key, id] : page.uploads)
        if (key.starts_with(root_)) c_->abort_multipart(key, id);
      if (!page.truncated) break;
      if (page.next_key_marker == key_marker && page.next_upload_id_marker == id_marker)
        fail(ErrorKind::IO, "S3 list uploads " + c_->url_of(root_) + ": the server repeated its marker");
      key_marker = page.next_key_marker;
      id_marker = page.next_upload_id_marker;
    }
  }

  std::string describe() const override {
    const auto& loc = c_->location();
    return "s3://" + loc.bucket + (loc.prefix.empty() ? "" : "/" + loc.prefix);
  }

 private:
  std::string object_key(const std::string& key) const { return key.empty() ? c_->location().prefix : root_ + key; }

  std::string writable_key(const std::string& key) const {
    const std::string k = object_key(key);
    if (k.empty()) fail(ErrorKind::Value, "empty S3 object key in " + describe());
    return k;
  }

  std::optional<Bytes> exists_empty(const std::string& key) {
    if (!size(key)) return std::nullopt;
    return Bytes{};
  }

  static Bytes slice(Bytes& whole, std::uint64_t offset, std::uint64_t length) {
    const std::uint64_t n = whole.size();
    if (offset >= n) return {};
    const std::uint64_t end = length > n - offset ? n : offset + length;
    if (offset == 0 && end == n) return std::move(whole);
    return Bytes(whole.begin() + static_cast<std::ptrdiff_t>(offset), whole.begin() + static_cast<std::ptrdiff_t>(end));
  }

  // A ranged GET: 206 -> the bytes; 200 (a server that ignores Range) -> cut locally;
  // 416 -> the range starts past the end of an existing object -> empty.
  template <class Cut>
  std::optional<Bytes> ranged(const std::string& key, const std::string& range, Cut cut,
                              std::optional<std::uint64_t> expect_start) {
    const std::string k = object_key(key);
    if (k.empty()) return std::nullopt;
    const Call c{"GET", k, {}, {{"range", range}}, {}, false};
    auto r = c_->send_found(c);
    if (!r) return std::nullopt;
    if (r->status == 416) return Bytes{};
    if (r->status == 200) return cut(r->body);
    if (r->status != 206) c_->fail_response(c, *r);
    if (expect_start) {
      // "bytes <first>-<last>/<total>": a reply for other bytes than asked is an error.
      const std::string cr = r->header("content-range");
      const auto dash = cr.find('-');
      if (!cr.starts_with("bytes ") || dash == std::string::npos || cr.substr(6, dash - 6) != std::to_string(*expect_start))
        fail(ErrorKind::IO, "S3 GET " + c_->url_of(k) + ": asked for " + range + ", got Content-Range '" + cr + "'");
    }
    return std::move(r->body);
  }

  std::shared_ptr<const S3Client> c_;
  std::string root_;
};

bool parse_bool(const std::string& name, const std::string& v) {
  std::string s;
  for (char ch : v) s.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(ch))));
  if (s == "true" || s == "1" || s == "yes" || s == "on") return true;
  if (s == "false" || s == "0" || s == "no" || s == "off" || s.empty()) return false;
  fail(ErrorKind::Value, "storage_options['" + name + "'] must be a boolean, got '" + v + "'");
}

std::uint64_t parse_uint(const std::string& name, const std::string& v, std::uint64_t lo, std::uint64_t hi) {
  std::size_t used = 0;
  unsigned long long x = 0;
  try {
    x = std::stoull(v, &used);
  } catch (...) {
    used = 0;
  }
  if (used == 0 || used != v.size() || v.front() == '-' || x < lo || x > hi)
    fail(ErrorKind::Value, "storage_options['" + name + "'] must be an integer in [" + std::to_string(lo) + ", " +
                               std::to_string(hi) + "], got '" + v + "'");
  return x;
}

std::uint32_t parse_seconds_ms(const std::string& name, const std::string& v) {
  std::size_t used = 0;
  double s = -1;
  try {
    s = std::stod(v, &used);
  } catch (...) {
    used = 0;
  }
  if (used == 0 || used != v.size() || !(s >= 0) || s > 86400)
    fail(ErrorKind::Value, "storage_options['" + name + "'] must be a number of seconds in [0, 86400], got '" + v + "'");
  return static_cast<std::uint32_t>(s * 1000 + 0.5);
}

void validate(const S3Options& o) {
  if (o.part_size < kMinPartSize || o.part_size > kMaxPartSize)
    fail(ErrorKind::Value, "S3 part_size must be in [5 MiB, 5 GiB], got " + std::to_string(o.part_size));
  if (o.max_inflight_parts < 1 || o.max_inflight_parts > 64)
    fail(ErrorKind::Value, "S3 max_inflight_parts must be in [1, 64], got " + std::to_string(o.max_inflight_parts));
  if (o.list_max_keys < 1 || o.list_max_keys > 1000)
    fail(ErrorKind::Value, "S3 list_max_keys must be in [1, 1000], got " + std::to_string(o.list_max_keys));
  if (o.max_retries < 0 || o.max_retries > 100)
    fail(ErrorKind::Value, "S3 max_retries must be in [0, 100], got " + std::to_string(o.max_retries));
  if (!o.anonymous && !o.access_key_id.empty() && o.secret_access_key.empty())
    fail(ErrorKind::Value, "an S3 access key id is set but no secret access key (AWS_SECRET_ACCESS_KEY or "
                           "storage_options['secret'])");
}

}  // namespace

S3Options s3_options_from_env() {
  S3Options o;
  o.access_key_id = env("AWS_ACCESS_KEY_ID");
  o.secret_access_key = env("AWS_SECRET_ACCESS_KEY");
  o.session_token = env("AWS_SESSION_TOKEN");
  o.region = env("AWS_REGION");
  if (o.region.empty()) o.region = env("AWS_DEFAULT_REGION");
  o.endpoint_url = env("AWS_ENDPOINT_URL_S3");
  if (o.endpoint_url.empty()) o.endpoint_url = env("AWS_ENDPOINT_URL");
  return o;
}

void apply_storage_options(S3Options& o, const std::map<std::string, std::string>& kv) {
  bool new_key = false, has_token = false;
  for (const auto& [k, v] : kv) {
    if (k == "endpoint_url" || k == "endpoint") o.endpoint_url = v;
    else if (k == "region" || k == "region_name") o.region = v;
    else if (k == "key" || k == "aws_access_key_id" || k == "access_key_id") {
      o.access_key_id = v;
      new_key = true;
    } else if (k == "secret" || k == "aws_secret_access_key" || k == "secret_access_key") {
      o.secret_access_key = v;
      new_key = true;
    } else if (k == "token" || k == "aws_session_token" || k == "session_token") {
      o.session_token = v;
      has_token = true;
    } else if (k == "anon") o.anonymous = parse_bool(k, v);
    else if (k == "addressing" || k == "addressing_style") o.addressing = v;
    else if (k == "max_retries") o.max_retries = static_cast<int>(parse_uint(k, v, 0, 100));
    else if (k == "retry_base_ms") o.retry_base_ms = static_cast<std::uint32_t>(parse_uint(k, v, 0, 60'000));
    else if (k == "retry_cap_ms") o.retry_cap_ms = static_cast<std::uint32_t>(parse_uint(k, v, 0, 600'000));
    else if (k == "connect_timeout") o.connect_timeout_ms = parse_seconds_ms(k, v);
    else if (k == "read_timeout") o.stall_timeout_s = (parse_seconds_ms(k, v) + 999) / 1000;
    else if (k == "request_timeout") o.request_timeout_ms = parse_seconds_ms(k, v);
    else if (k == "verify") o.verify_tls = parse_bool(k, v);
    else if (k == "part_size") o.part_size = parse_uint(k, v, kMinPartSize, kMaxPartSize);
    else if (k == "max_concurrency" || k == "max_inflight_parts") o.max_inflight_parts = static_cast<int>(parse_uint(k, v, 1, 64));
    else if (k == "list_max_keys") o.list_max_keys = static_cast<int>(parse_uint(k, v, 1, 1000));
    else
      fail(ErrorKind::Value,
           "unknown storage_options key '" + k +
               "' (valid: endpoint_url, region, key, secret, token, anon, addressing_style, max_retries, "
               "retry_base_ms, retry_cap_ms, connect_timeout, read_timeout, request_timeout, verify, part_size, "
               "max_concurrency, list_max_keys)");
  }
  // Credentials given here replace the environment's as a set: a session token from the
  // environment belongs to the environment's key.
  if (new_key && !has_token) o.session_token.clear();
}

std::shared_ptr<Store> open_s3_store(const std::string& url, const S3Options& options) {
  validate(options);
  s3::Location loc = s3::parse_s3_url(url);
  const bool custom = !options.endpoint_url.empty();
  s3::Endpoint ep = custom ? s3::parse_endpoint(options.endpoint_url)
                           : s3::aws_endpoint(options.region.empty() ? "us-east-1" : options.region);
  auto client = std::make_shared<const S3Client>(std::move(loc), options, custom, std::move(ep));
  return std::make_shared<S3Store>(std::move(client));
}

bool is_s3_url(const std::string& path_or_url) { return path_or_url.starts_with("s3://"); }

}  // namespace i2z
