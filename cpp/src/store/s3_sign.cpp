#include "store/s3_sign.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cctype>

#include "i2z/error.hpp"

namespace i2z::s3 {

namespace {

constexpr char kHex[] = "0123456789abcdef";
constexpr char kHexUpper[] = "0123456789ABCDEF";

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// SigV4 canonical header value: leading/trailing spaces trimmed, runs of spaces collapsed.
std::string trim_value(std::string_view v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t') {
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  return out;
}

struct Header {
  std::string name, value;
};

std::vector<Header> sorted_headers(const Params& headers) {
  std::vector<Header> hs;
  hs.reserve(headers.size());
  for (const auto& [k, v] : headers) hs.push_back({lower(k), trim_value(v)});
  std::sort(hs.begin(), hs.end(), [](const Header& a, const Header& b) { return a.name < b.name; });
  return hs;
}

std::string signed_header_list(const std::vector<Header>& hs) {
  std::string out;
  for (const auto& h : hs) {
    if (!out.empty()) out.push_back(';');
    out += h.name;
  }
  return out;
}

}  // namespace

std::string to_hex(std::string_view raw) {
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char c : raw) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

std::string sha256_hex(std::span<const std::uint8_t> data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1)
    fail(ErrorKind::Runtime, "SHA-256 failed (OpenSSL EVP_Digest)");
  return to_hex(std::string_view(reinterpret_cast<const char*>(md), len));
}

std::string sha256_hex(std::string_view data) {
  return sha256_hex(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(data.data()), data.size()));
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
            data.size(), md, &len))
    fail(ErrorKind::Runtime, "HMAC-SHA256 failed (OpenSSL HMAC)");
  return std::string(reinterpret_cast<const char*>(md), len);
}

std::string uri_encode(std::string_view s, bool encode_slash) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    const bool alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (alnum || c == '-' || c == '.' || c == '_' || c == '~' || (c == '/' && !encode_slash)) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHexUpper[c >> 4]);
      out.push_back(kHexUpper[c & 15]);
    }
  }
  return out;
}

std::string canonical_query(const Params& params) {
  std::vector<std::pair<std::string, std::string>> enc;
  enc.reserve(params.size());
  for (const auto& [k, v] : params) enc.emplace_back(uri_encode(k, true), uri_encode(v, true));
  std::sort(enc.begin(), enc.end());
  std::string out;
  for (const auto& [k, v] : enc) {
    if (!out.empty()) out.push_back('&');
    out += k;
    out.push_back('=');
    out += v;
  }
  return out;
}

std::string amz_datetime(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

std::string canonical_request(const SigningInput& in) {
  const auto hs = sorted_headers(in.headers);
  std::string out = in.method + "\n" + in.canonical_uri + "\n" + canonical_query(in.query) + "\n";
  for (const auto& h : hs) out += h.name + ":" + h.value + "\n";
  out += "\n" + signed_header_list(hs) + "\n" + in.payload_hash;
  return out;
}

std::string credential_scope(std::string_view amz_datetime, std::string_view region, std::string_view service) {
  std::string out(amz_datetime.substr(0, 8));
  out += "/";
  out += region;
  out += "/";
  out += service;
  out += "/aws4_request";
  return out;
}

std::string string_to_sign(std::string_view amz_datetime, std::string_view scope, std::string_view canonical_request) {
  std::string out = "AWS4-HMAC-SHA256\n";
  out += amz_datetime;
  out += "\n";
  out += scope;
  out += "\n";
  out += sha256_hex(canonical_request);
  return out;
}

std::string signature(const SigningInput& in, std::string_view secret, std::string_view amz_datetime,
                      std::string_view region, std::string_view service) {
  const std::string scope = credential_scope(amz_datetime, region, service);
  std::string k = hmac_sha256("AWS4" + std::string(secret), amz_datetime.substr(0, 8));
  k = hmac_sha256(k, region);
  k = hmac_sha256(k, service);
  k = hmac_sha256(k, "aws4_request");
  return to_hex(hmac_sha256(k, string_to_sign(amz_datetime, scope, canonical_request(in))));
}

std::string authorization(const SigningInput& in, const Credentials& creds, std::string_view amz_datetime,
                          std::string_view region, std::string_view service) {
  return "AWS4-HMAC-SHA256 Credential=" + creds.access_key_id + "/" + credential_scope(amz_datetime, region, service) +
         ",SignedHeaders=" + signed_header_list(sorted_headers(in.headers)) +
         ",Signature=" + signature(in, creds.secret_access_key, amz_datetime, region, service);
}

}  // namespace i2z::s3
