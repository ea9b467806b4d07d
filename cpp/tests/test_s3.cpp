// Unit tests of the S3 store's parts, without a network: SigV4 signing against the published
// AWS examples, URL and addressing, XML parsing, retry policy, options. The end-to-end test
// against a local S3 server is tests/test_s3_store.py.
#include <curl/curl.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <algorithm>
#include <optional>
#include <random>
#include <string>

#include "i2z/error.hpp"
#include "i2z/s3.hpp"
#include "store/http.hpp"
#include "store/s3_sign.hpp"
#include "store/s3_url.hpp"
#include "store/s3_xml.hpp"

namespace i2z {
namespace {

using namespace std::chrono_literals;

constexpr const char* kEmptySha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const s3::Credentials kExampleCreds{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};
constexpr const char* kExampleDate = "20130524T000000Z";

template <class F>
ErrorKind error_kind_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.kind();
  }
  ADD_FAILURE() << "no i2z::Error thrown";
  return ErrorKind::Runtime;
}

template <class F>
std::string error_message_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no i2z::Error thrown";
  return {};
}

// --- SigV4: the four examples of the S3 documentation ("Signature Calculations for the
// Authorization Header: Transferring Payload in a Single Chunk"). ---

TEST(S3Sign, Sha256) {
  EXPECT_EQ(s3::sha256_hex(std::string_view{}), kEmptySha);
  EXPECT_EQ(s3::sha256_hex(std::string_view("Welcome to Amazon S3.")),
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
}

TEST(S3Sign, GetObjectExample) {
  const s3::SigningInput in{"GET",
                            "/test.txt",
                            {},
                            {{"Host", "examplebucket.s3.amazonaws.com"},
                             {"Range", "bytes=0-9"},
                             {"x-amz-content-sha256", kEmptySha},
                             {"x-amz-date", kExampleDate}},
                            kEmptySha};
  const std::string cr = s3::canonical_request(in);
  EXPECT_EQ(cr,
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
            "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
            "x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const std::string scope = s3::credential_scope(kExampleDate, "us-east-1", "s3");
  EXPECT_EQ(scope, "20130524/us-east-1/s3/aws4_request");
  EXPECT_EQ(s3::string_to_sign(kExampleDate, scope, cr),
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
            "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
  EXPECT_EQ(s3::signature(in, kExampleCreds.secret_access_key, kExampleDate, "us-east-1"),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  EXPECT_EQ(s3::authorization(in, kExampleCreds, kExampleDate, "us-east-1"),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

TEST(S3Sign, PutObjectExampleWithEncodedKey) {
  const std::string hash = s3::sha256_hex(std::string_view("Welcome to Amazon S3."));
  const s3::SigningInput in{"PUT",
                            "/" + s3::uri_encode("test$file.text", false),
                            {},
                            {{"Date", "Fri, 24 May 2013 00:00:00 GMT"},
                             {"Host", "examplebucket.s3.amazonaws.com"},
                             {"x-amz-date", kExampleDate},
                             {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
                             {"x-amz-content-sha256", hash}},
                            hash};
  EXPECT_EQ(in.canonical_uri, "/test%24file.text");
  EXPECT_EQ(s3::authorization(in, kExampleCreds, kExampleDate, "us-east-1"),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
            "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,"
            "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

TEST(S3Sign, GetBucketLifecycleExampleEmptyQueryValue) {
  const s3::SigningInput in{"GET",
                            "/",
                            {{"lifecycle", ""}},
                            {{"Host", "examplebucket.s3.amazonaws.com"},
                             {"x-amz-date", kExampleDate},
                             {"x-amz-content-sha256", kEmptySha}},
                            kEmptySha};
  EXPECT_EQ(s3::signature(in, kExampleCreds.secret_access_key, kExampleDate, "us-east-1"),
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

TEST(S3Sign, ListObjectsExampleSortedQuery) {
  // Parameters given out of order: the canonical query sorts them.
  const s3::SigningInput in{"GET",
                            "/",
                            {{"prefix", "J"}, {"max-keys", "2"}},
                            {{"Host", "examplebucket.s3.amazonaws.com"},
                             {"x-amz-date", kExampleDate},
                             {"x-amz-content-sha256", kEmptySha}},
                            kEmptySha};
  EXPECT_EQ(s3::canonical_query(in.query), "max-keys=2&prefix=J");
  EXPECT_EQ(s3::signature(in, kExampleCreds.secret_access_key, kExampleDate, "us-east-1"),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

TEST(S3Sign, UriEncoding) {
  EXPECT_EQ(s3::uri_encode("AZaz09-._~", true), "AZaz09-._~");
  EXPECT_EQ(s3::uri_encode("a b/c", false), "a%20b/c");
  EXPECT_EQ(s3::uri_encode("a b/c", true), "a%20b%2Fc");
  EXPECT_EQ(s3::uri_encode("+*=&%$?#", true), "%2B%2A%3D%26%25%24%3F%23");
  EXPECT_EQ(s3::uri_encode("\xC3\xA9t\xC3\xA9/\xE2\x82\xAC", false), "%C3%A9t%C3%A9/%E2%82%AC");  // été/€
  EXPECT_EQ(s3::uri_encode(std::string_view("\x00\xff", 2), true), "%00%FF");
}

TEST(S3Sign, CanonicalQueryEncodesAndSortsByEncodedKey) {
  EXPECT_EQ(s3::canonical_query({{"prefix", "a b/c"}, {"list-type", "2"}, {"continuation-token", "1/2+3="}}),
            "continuation-token=1%2F2%2B3%3D&list-type=2&prefix=a%20b%2Fc");
  EXPECT_EQ(s3::canonical_query({{"uploads", ""}}), "uploads=");
  EXPECT_EQ(s3::canonical_query({{"uploadId", "x"}, {"partNumber", "10"}}), "partNumber=10&uploadId=x");
  EXPECT_EQ(s3::canonical_query({}), "");
}

TEST(S3Sign, HeaderValuesAreTrimmedAndNamesLowerCased) {
  const s3::SigningInput in{"GET", "/", {}, {{"X-Amz-Meta-A", "  a   b  "}, {"Host", "h"}}, kEmptySha};
  EXPECT_EQ(s3::canonical_request(in), std::string("GET\n/\n\nhost:h\nx-amz-meta-a:a b\n\nhost;x-amz-meta-a\n") + kEmptySha);
}

TEST(S3Sign, AmzDatetime) {
  EXPECT_EQ(s3::amz_datetime(1369353600), "20130524T000000Z");
  EXPECT_EQ(s3::amz_datetime(0), "19700101T000000Z");
}

// --- URLs and addressing ---

TEST(S3Url, ParseS3Url) {
  auto loc = s3::parse_s3_url("s3://bucket/data/x.zarr/");
  EXPECT_EQ(loc.bucket, "bucket");
  EXPECT_EQ(loc.prefix, "data/x.zarr");
  loc = s3::parse_s3_url("s3://bucket");
  EXPECT_EQ(loc.bucket, "bucket");
  EXPECT_EQ(loc.prefix, "");
  EXPECT_EQ(s3::parse_s3_url("s3://b//a//").prefix, "a");
  EXPECT_EQ(error_kind_of([] { s3::parse_s3_url("s3:///x"); }), ErrorKind::Value);
  EXPECT_EQ(error_kind_of([] { s3::parse_s3_url("gs://b/x"); }), ErrorKind::Value);
  EXPECT_EQ(error_kind_of([] { s3::parse_s3_url("/local/path"); }), ErrorKind::Value);
}

TEST(S3Url, ParseEndpoint) {
  auto ep = s3::parse_endpoint("http://127.0.0.1:5000");
  EXPECT_EQ(ep.scheme, "http");
  EXPECT_EQ(ep.host, "127.0.0.1:5000");
  EXPECT_EQ(ep.base_path, "");
  ep = s3::parse_endpoint("HTTPS://Minio.Local:443/");
  EXPECT_EQ(ep.scheme, "https");
  EXPECT_EQ(ep.host, "minio.local");  // default port dropped: curl's Host header omits it too
  ep = s3::parse_endpoint("http://h:80/s3/");
  EXPECT_EQ(ep.host, "h");
  EXPECT_EQ(ep.base_path, "/s3");
  ep = s3::parse_endpoint("http://[::1]:9000");
  EXPECT_EQ(ep.host, "[::1]:9000");
  for (const char* bad : {"localhost:9000", "ftp://h", "http://", "http://h:abc", "http://h:99999", "http://u:p@h",
                          "http://h/?x=1", "http://h:"})
    EXPECT_EQ(error_kind_of([&] { s3::parse_endpoint(bad); }), ErrorKind::Value) << bad;
}

TEST(S3Url, PathStyleForCustomEndpoint) {
  const s3::Addresser a(s3::parse_endpoint("http://127.0.0.1:5000"), "my-bucket", "auto", true);
  EXPECT_FALSE(a.virtual_host());
  auto t = a.target("pre fix/x.zarr/zarr.json", {});
  EXPECT_EQ(t.url, "http://127.0.0.1:5000/my-bucket/pre%20fix/x.zarr/zarr.json");
  EXPECT_EQ(t.host, "127.0.0.1:5000");
  EXPECT_EQ(t.canonical_uri, "/my-bucket/pre%20fix/x.zarr/zarr.json");
  t = a.target("", {{"prefix", "x.zarr/"}, {"list-type", "2"}});
  EXPECT_EQ(t.url, "http://127.0.0.1:5000/my-bucket?list-type=2&prefix=x.zarr%2F");
  EXPECT_EQ(t.canonical_uri, "/my-bucket");
  t = a.target("k", {{"uploads", ""}});
  EXPECT_EQ(t.url, "http://127.0.0.1:5000/my-bucket/k?uploads=");
}

TEST(S3Url, VirtualHostForAws) {
  const s3::Addresser a(s3::aws_endpoint("eu-west-1"), "examplebucket", "auto", false);
  EXPECT_TRUE(a.virtual_host());
  auto t = a.target("a/b c", {});
  EXPECT_EQ(t.url, "https://examplebucket.s3.eu-west-1.amazonaws.com/a/b%20c");
  EXPECT_EQ(t.host, "examplebucket.s3.eu-west-1.amazonaws.com");
  EXPECT_EQ(t.canonical_uri, "/a/b%20c");
  t = a.target("", {{"list-type", "2"}});
  EXPECT_EQ(t.url, "https://examplebucket.s3.eu-west-1.amazonaws.com/?list-type=2");
  EXPECT_EQ(t.canonical_uri, "/");
}

TEST(S3Url, AddressingChoice) {
  // Dotted names break TLS wildcard certificates: path style even on AWS.
  EXPECT_FALSE(s3::Addresser(s3::aws_endpoint("us-east-1"), "my.bucket", "auto", false).virtual_host());
  EXPECT_FALSE(s3::Addresser(s3::aws_endpoint("us-east-1"), "Upper", "auto", false).virtual_host());
  EXPECT_TRUE(s3::Addresser(s3::parse_endpoint("http://minio:9000"), "b-1", "virtual", true).virtual_host());
  const s3::Addresser forced(s3::parse_endpoint("http://minio:9000/base"), "b-1", "virtual", true);
  EXPECT_EQ(forced.target("k", {}).url, "http://b-1.minio:9000/base/k");
  EXPECT_FALSE(s3::Addresser(s3::aws_endpoint("us-east-1"), "examplebucket", "path", false).virtual_host());
  EXPECT_EQ(s3::Addresser(s3::aws_endpoint("us-east-1"), "examplebucket", "path", false).target("k", {}).url,
            "https://s3.us-east-1.amazonaws.com/examplebucket/k");
  EXPECT_EQ(error_kind_of([] { s3::Addresser(s3::aws_endpoint("us-east-1"), "b", "sideways", false); }),
            ErrorKind::Value);
  EXPECT_TRUE(s3::virtual_host_compatible("abc"));
  EXPECT_FALSE(s3::virtual_host_compatible("ab"));
  EXPECT_FALSE(s3::virtual_host_compatible("-abc"));
  EXPECT_FALSE(s3::virtual_host_compatible("a_bc"));
}

// --- XML ---

TEST(S3Xml, ListObjectsV2Truncated) {
  const std::string xml = R"(<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>bucket</Name><Prefix>x.zarr/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>
  <IsTruncated>true</IsTruncated>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=&amp;x</NextContinuationToken>
  <Contents><Key>x.zarr/a &amp; b&lt;c&gt;</Key><LastModified>2009-10-12T17:50:30.000Z</LastModified>
    <ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag><Size>434234</Size>
    <StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key>x.zarr/&#233;t&#xE9;/&#x20AC;</Key><Size>1</Size></Contents>
</ListBucketResult>)";
  const auto page = s3::parse_list_objects_v2(xml);
  ASSERT_EQ(page.keys.size(), 2u);
  EXPECT_EQ(page.keys[0], "x.zarr/a & b<c>");
  EXPECT_EQ(page.keys[1], "x.zarr/\xC3\xA9t\xC3\xA9/\xE2\x82\xAC");
  EXPECT_TRUE(page.truncated);
  EXPECT_EQ(page.next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=&x");
}

TEST(S3Xml, ListObjectsV2LastPageAndEmpty) {
  auto page = s3::parse_list_objects_v2(
      "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>k</Key></Contents>"
      "<CommonPrefixes><Prefix>p/</Prefix></CommonPrefixes></ListBucketResult>");
  EXPECT_FALSE(page.truncated);
  EXPECT_EQ(page.keys, std::vector<std::string>{"k"});
  page = s3::parse_list_objects_v2("<ListBucketResult><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated>"
                                   "<Prefix/></ListBucketResult>");
  EXPECT_TRUE(page.keys.empty());
  page = s3::parse_list_objects_v2("<ListBucketResult><IsTruncated>false</IsTruncated>"
                                   "<Contents><Key><![CDATA[a<b]]></Key></Contents></ListBucketResult>");
  EXPECT_EQ(page.keys, std::vector<std::string>{"a<b"});
}

TEST(S3Xml, MalformedIsCorrupt) {
  for (const char* bad : {"", "not xml", "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
                          "<ListBucketResult><IsTruncated>maybe</IsTruncated></ListBucketResult>",
                          "<ListBucketResult><IsTruncated>false</IsTruncated>", "<ListBucketResult></Other>",
                          "<ListBucketResult><Key>&bogus;</Key></ListBucketResult>",
                          "<ListBucketResult><Key>&#xD800;</Key></ListBucketResult>",
                          "<Error><Code>AccessDenied</Code></Error>", "<a/><b/>"})
    EXPECT_EQ(error_kind_of([&] { s3::parse_list_objects_v2(bad); }), ErrorKind::Corrupt) << bad;
}

TEST(S3Xml, ErrorBodies) {
  auto e = s3::parse_error(R"(<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>NoSuchKey</Code><Message>The resource you requested does not exist</Message>
<Resource>/mybucket/myfoto.jpg</Resource><RequestId>4442587FB7D0A2F9</RequestId></Error>)");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, "NoSuchKey");
  EXPECT_EQ(e->message, "The resource you requested does not exist");
  e = s3::parse_error("<Error><Code>SignatureDoesNotMatch</Code><StringToSign>x</StringToSign></Error>");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, "SignatureDoesNotMatch");
  EXPECT_EQ(e->message, "");
  EXPECT_FALSE(s3::parse_error(""));
  EXPECT_FALSE(s3::parse_error("<html><body>502 Bad Gateway</body></html>"));
  EXPECT_FALSE(s3::parse_error("Internal Server Error"));
  EXPECT_FALSE(s3::parse_error("<CompleteMultipartUploadResult><ETag>x</ETag></CompleteMultipartUploadResult>"));
}

TEST(S3Xml, MultipartDocuments) {
  EXPECT_EQ(s3::parse_upload_id("<?xml version=\"1.0\"?><InitiateMultipartUploadResult xmlns=\"x\"><Bucket>b</Bucket>"
                                "<Key>k</Key><UploadId>VXBsb2FkIElE&amp;1</UploadId></InitiateMultipartUploadResult>"),
            "VXBsb2FkIElE&1");
  EXPECT_EQ(error_kind_of([] { s3::parse_upload_id("<InitiateMultipartUploadResult/>"); }), ErrorKind::Corrupt);
  EXPECT_EQ(s3::complete_multipart_body({"\"a1\"", "\"b2\""}),
            "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
            "<Part><PartNumber>1</PartNumber><ETag>&quot;a1&quot;</ETag></Part>"
            "<Part><PartNumber>2</PartNumber><ETag>&quot;b2&quot;</ETag></Part></CompleteMultipartUpload>");
  EXPECT_EQ(s3::xml_unescape(s3::xml_escape("<&'\">")), "<&'\">");
}

TEST(S3Xml, ListMultipartUploads) {
  const auto page = s3::parse_list_multipart_uploads(
      "<ListMultipartUploadsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>b</Bucket>"
      "<KeyMarker/><UploadIdMarker/><NextKeyMarker>x.zarr/c/1</NextKeyMarker>"
      "<NextUploadIdMarker>u2</NextUploadIdMarker><MaxUploads>2</MaxUploads><IsTruncated>true</IsTruncated>"
      "<Upload><Key>x.zarr/c/0</Key><UploadId>u1</UploadId><Initiator><ID>i</ID></Initiator></Upload>"
      "<Upload><Key>x.zarr/c/1</Key><UploadId>u2</UploadId></Upload></ListMultipartUploadsResult>");
  ASSERT_EQ(page.uploads.size(), 2u);
  EXPECT_EQ(page.uploads[0], (std::pair<std::string, std::string>{"x.zarr/c/0", "u1"}));
  EXPECT_EQ(page.uploads[1], (std::pair<std::string, std::string>{"x.zarr/c/1", "u2"}));
  EXPECT_TRUE(page.truncated);
  EXPECT_EQ(page.next_key_marker, "x.zarr/c/1");
  EXPECT_EQ(page.next_upload_id_marker, "u2");
  EXPECT_TRUE(s3::parse_list_multipart_uploads("<ListMultipartUploadsResult><IsTruncated>false</IsTruncated>"
                                               "</ListMultipartUploadsResult>")
                  .uploads.empty());
  EXPECT_EQ(error_kind_of([] { s3::parse_list_multipart_uploads("<ListMultipartUploadsResult><Upload><Key>k</Key>"
                                                                 "</Upload></ListMultipartUploadsResult>"); }),
            ErrorKind::Corrupt);
}

// --- Retry policy ---

TEST(S3Retry, CurlCodes) {
  for (CURLcode c : {CURLE_COULDNT_CONNECT, CURLE_SEND_ERROR, CURLE_RECV_ERROR, CURLE_PARTIAL_FILE,
                     CURLE_OPERATION_TIMEDOUT, CURLE_GOT_NOTHING})
    EXPECT_TRUE(http::retryable_curl_code(c)) << c;
  for (CURLcode c : {CURLE_OK, CURLE_COULDNT_RESOLVE_HOST, CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL,
                     CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE, CURLE_WRITE_ERROR,
                     CURLE_ABORTED_BY_CALLBACK, CURLE_OUT_OF_MEMORY})
    EXPECT_FALSE(http::retryable_curl_code(c)) << c;
}

TEST(S3Retry, Statuses) {
  for (long s : {500L, 502L, 503L, 504L, 599L, 429L}) EXPECT_TRUE(http::retryable_status(s, "")) << s;
  EXPECT_TRUE(http::retryable_status(503, "SlowDown"));
  EXPECT_TRUE(http::retryable_status(400, "RequestTimeout"));
  EXPECT_TRUE(http::retryable_status(409, "OperationAborted"));
  EXPECT_TRUE(http::retryable_status(200, "InternalError"));  // CompleteMultipartUpload
  for (long s : {200L, 206L, 301L, 400L, 401L, 403L, 404L, 409L, 412L, 416L, 501L})
    EXPECT_FALSE(http::retryable_status(s, "")) << s;
  EXPECT_FALSE(http::retryable_status(403, "AccessDenied"));
  EXPECT_FALSE(http::retryable_status(403, "SignatureDoesNotMatch"));
  EXPECT_FALSE(http::retryable_status(403, "RequestTimeTooSkewed"));  // a wrong clock stays wrong
  EXPECT_FALSE(http::retryable_status(400, "InvalidArgument"));
  EXPECT_FALSE(http::retryable_status(404, "NoSuchKey"));
}

TEST(S3Retry, BackoffIsFullJitterWithCap) {
  EXPECT_EQ(http::backoff_delay(0, 100ms, 20s, 0), 0ms);
  EXPECT_EQ(http::backoff_delay(0, 100ms, 20s, 100), 100ms);
  EXPECT_EQ(http::backoff_delay(0, 100ms, 20s, 101), 0ms);
  EXPECT_EQ(http::backoff_delay(3, 100ms, 20s, 800), 800ms);
  EXPECT_EQ(http::backoff_delay(3, 100ms, 20s, 801), 0ms);
  // The ceiling stops at the cap and never overflows.
  EXPECT_EQ(http::backoff_delay(10, 100ms, 20s, 20'000), 20s);
  EXPECT_EQ(http::backoff_delay(1000, 100ms, 20s, 20'000), 20s);
  EXPECT_LE(http::backoff_delay(1000, 100ms, 20s, ~std::uint64_t{0}), 20s);
  EXPECT_EQ(http::backoff_delay(5, 0ms, 20s, 12345), 0ms);
  // Jitter covers the whole interval.
  std::mt19937_64 rng(7);
  std::chrono::milliseconds lo = 1h, hi = 0ms;
  for (int i = 0; i < 2000; ++i) {
    const auto d = http::backoff_delay(2, 100ms, 20s, rng());
    lo = std::min(lo, d);
    hi = std::max(hi, d);
  }
  EXPECT_LE(lo, 5ms);
  EXPECT_GE(hi, 395ms);
  EXPECT_LE(hi, 400ms);
}

// --- Options ---

class EnvGuard {
 public:
  explicit EnvGuard(std::vector<std::pair<const char*, const char*>> vars) {
    for (const char* n : kNames) {
      const char* v = std::getenv(n);
      saved_.emplace_back(n, v ? std::optional<std::string>(v) : std::nullopt);
      ::unsetenv(n);
    }
    for (auto [n, v] : vars) ::setenv(n, v, 1);
  }
  ~EnvGuard() {
    for (const auto& [n, v] : saved_) {
      if (v) ::setenv(n, v->c_str(), 1);
      else ::unsetenv(n);
    }
  }

 private:
  static constexpr const char* kNames[] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                                          "AWS_REGION",        "AWS_DEFAULT_REGION",    "AWS_ENDPOINT_URL",
                                          "AWS_ENDPOINT_URL_S3"};
  std::vector<std::pair<const char*, std::optional<std::string>>> saved_;
};

TEST(S3Options, FromEnvironment) {
  EnvGuard env({{"AWS_ACCESS_KEY_ID", "AK"},
                {"AWS_SECRET_ACCESS_KEY", "SK"},
                {"AWS_SESSION_TOKEN", "TOK"},
                {"AWS_DEFAULT_REGION", "eu-west-3"},
                {"AWS_ENDPOINT_URL", "http://127.0.0.1:9"}});
  auto o = s3_options_from_env();
  EXPECT_EQ(o.access_key_id, "AK");
  EXPECT_EQ(o.secret_access_key, "SK");
  EXPECT_EQ(o.session_token, "TOK");
  EXPECT_EQ(o.region, "eu-west-3");
  EXPECT_EQ(o.endpoint_url, "http://127.0.0.1:9");
  ::setenv("AWS_REGION", "ap-south-1", 1);
  ::setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:10", 1);
  o = s3_options_from_env();
  EXPECT_EQ(o.region, "ap-south-1");
  EXPECT_EQ(o.endpoint_url, "http://127.0.0.1:10");
  // Credentials from storage_options replace the environment's, token included.
  apply_storage_options(o, {{"key", "K2"}, {"secret", "S2"}});
  EXPECT_EQ(o.access_key_id, "K2");
  EXPECT_EQ(o.secret_access_key, "S2");
  EXPECT_EQ(o.session_token, "");
}

TEST(S3Options, StorageOptionsNamesAndValues) {
  S3Options o;
  apply_storage_options(o, {{"endpoint_url", "http://127.0.0.1:1"},
                            {"region_name", "us-west-2"},
                            {"aws_access_key_id", "K"},
                            {"aws_secret_access_key", "S"},
                            {"token", "T"},
                            {"anon", "True"},
                            {"addressing_style", "virtual"},
                            {"max_retries", "3"},
                            {"retry_base_ms", "5"},
                            {"connect_timeout", "2.5"},
                            {"read_timeout", "7"},
                            {"verify", "false"},
                            {"part_size", "6291456"},
                            {"max_concurrency", "2"},
                            {"list_max_keys", "7"}});
  EXPECT_EQ(o.endpoint_url, "http://127.0.0.1:1");
  EXPECT_EQ(o.region, "us-west-2");
  EXPECT_EQ(o.access_key_id, "K");
  EXPECT_EQ(o.secret_access_key, "S");
  EXPECT_EQ(o.session_token, "T");
  EXPECT_TRUE(o.anonymous);
  EXPECT_EQ(o.addressing, "virtual");
  EXPECT_EQ(o.max_retries, 3);
  EXPECT_EQ(o.retry_base_ms, 5u);
  EXPECT_EQ(o.connect_timeout_ms, 2500u);
  EXPECT_EQ(o.stall_timeout_s, 7u);
  EXPECT_FALSE(o.verify_tls);
  EXPECT_EQ(o.part_size, 6291456u);
  EXPECT_EQ(o.max_inflight_parts, 2);
  EXPECT_EQ(o.list_max_keys, 7);

  const std::string msg = error_message_of([&] { apply_storage_options(o, {{"client_kwargs", "{}"}}); });
  EXPECT_NE(msg.find("'client_kwargs'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("endpoint_url"), std::string::npos) << msg;
  for (auto [k, v] : std::vector<std::pair<std::string, std::string>>{{"anon", "perhaps"},
                                                                       {"max_retries", "-1"},
                                                                       {"max_retries", "3x"},
                                                                       {"part_size", "1048576"},
                                                                       {"list_max_keys", "0"},
                                                                       {"connect_timeout", "-2"}})
    EXPECT_EQ(error_kind_of([&] { apply_storage_options(o, {{k, v}}); }), ErrorKind::Value) << k << "=" << v;
}

TEST(S3Options, OpenValidatesWithoutNetwork) {
  S3Options o;
  o.endpoint_url = "http://127.0.0.1:9";
  o.access_key_id = "K";
  EXPECT_EQ(error_kind_of([&] { open_s3_store("s3://b/x.zarr", o); }), ErrorKind::Value);  // no secret
  o.secret_access_key = "super-secret-value";
  o.max_inflight_parts = 0;
  EXPECT_EQ(error_kind_of([&] { open_s3_store("s3://b/x.zarr", o); }), ErrorKind::Value);
  o.max_inflight_parts = 4;
  o.endpoint_url = "127.0.0.1:9";
  EXPECT_EQ(error_kind_of([&] { open_s3_store("s3://b/x.zarr", o); }), ErrorKind::Value);
  o.endpoint_url = "http://127.0.0.1:9";
  auto s = open_s3_store("s3://b/data/x.zarr/", o);
  EXPECT_EQ(s->describe(), "s3://b/data/x.zarr");
  // The bucket root itself is not an object.
  EXPECT_EQ(error_kind_of([&] { open_s3_store("s3://b", o)->set("", {}); }), ErrorKind::Value);
  EXPECT_EQ(open_s3_store("s3://b", o)->get(""), std::nullopt);
}

TEST(S3Options, OpenStoreUrlDispatch) {
  EnvGuard env({});
  auto local = open_store_url("/tmp/i2z-test-not-created.zarr");
  EXPECT_EQ(local->describe(), "/tmp/i2z-test-not-created.zarr");
  EXPECT_EQ(open_store_url("file:///tmp/x.zarr")->describe(), "/tmp/x.zarr");
  auto s3s = open_store_url("s3://bucket/p/x.zarr", {{"endpoint_url", "http://127.0.0.1:9"}, {"anon", "1"}});
  EXPECT_EQ(s3s->describe(), "s3://bucket/p/x.zarr");
  EXPECT_EQ(error_kind_of([] { open_store_url("gs://bucket/x.zarr"); }), ErrorKind::Value);
  EXPECT_EQ(error_kind_of([] { open_store_url("/tmp/x.zarr", {{"anon", "1"}}); }), ErrorKind::Value);
}

TEST(S3Store, UnreachableEndpointFailsClearlyWithoutSecret) {
  // Port 9 on loopback: connection refused at once; retried (max_retries), then one error.
  EnvGuard env({});
  auto s = open_store_url("s3://bucket/x.zarr", {{"endpoint_url", "http://127.0.0.1:9"},
                                                 {"key", "AKIDEXAMPLE"},
                                                 {"secret", "super-secret-value"},
                                                 {"max_retries", "2"},
                                                 {"retry_base_ms", "1"}});
  const std::string msg = error_message_of([&] { s->get("zarr.json"); });
  EXPECT_NE(msg.find("s3://bucket/x.zarr/zarr.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("3 attempts"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("super-secret-value"), std::string::npos) << msg;
}

}  // namespace
}  // namespace i2z
