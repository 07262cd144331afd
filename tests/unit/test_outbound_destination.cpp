// The outbound client's pure pieces: what a URL names (the pool key) and per-destination backoff.
#include "http/destination.hpp"

#include <gtest/gtest.h>

using trestle::http::DestinationBackoff;
using trestle::http::parse_destination;

namespace {

trestle::http::Destination parse_ok(const std::string& url) {
  std::string error;
  auto d = parse_destination(url, error);
  EXPECT_TRUE(d.has_value()) << url << ": " << error;
  return d.value_or(trestle::http::Destination{});
}

std::string parse_error(const std::string& url) {
  std::string error;
  auto d = parse_destination(url, error);
  EXPECT_FALSE(d.has_value()) << url;
  return error;
}

}  // namespace

TEST(OutboundDestination, HttpsNameWithPortAndBase) {
  auto d = parse_ok("https://bridge.example:8443/appservs/1/");
  EXPECT_TRUE(d.tls);
  EXPECT_EQ(d.host, "bridge.example");
  EXPECT_EQ(d.port, "8443");
  EXPECT_FALSE(d.host_is_ip);
  EXPECT_EQ(d.host_header, "bridge.example:8443");
  EXPECT_EQ(d.key(), "https://bridge.example:8443");
  EXPECT_EQ(d.target("/_matrix/app/v1/ping"), "/appservs/1/_matrix/app/v1/ping");
}

TEST(OutboundDestination, DefaultPortsAndNoPath) {
  auto h = parse_ok("http://127.0.0.1");
  EXPECT_FALSE(h.tls);
  EXPECT_EQ(h.port, "80");
  EXPECT_TRUE(h.host_is_ip);
  EXPECT_EQ(h.host_header, "127.0.0.1");  // no port in Host: when the URL had none
  EXPECT_EQ(h.target("/x?y=1"), "/x?y=1");
  auto s = parse_ok("HTTPS://Bridge.Example/");
  EXPECT_TRUE(s.tls);
  EXPECT_EQ(s.port, "443");
  EXPECT_EQ(s.target("/p"), "/p");
}

TEST(OutboundDestination, Ipv6LiteralWithoutBrackets) {
  auto d = parse_ok("https://[::1]:9000/base");
  EXPECT_EQ(d.host, "::1");
  EXPECT_TRUE(d.host_is_ip);
  EXPECT_EQ(d.host_header, "[::1]:9000");
  EXPECT_EQ(d.key(), "https://[::1]:9000");
}

TEST(OutboundDestination, SameServerSameKeyWhateverThePath) {
  EXPECT_EQ(parse_ok("https://h.example/a").key(), parse_ok("https://h.example:443/b/").key());
  EXPECT_NE(parse_ok("https://h.example/").key(), parse_ok("http://h.example:443/").key());
  EXPECT_NE(parse_ok("http://h.example:8080/").key(), parse_ok("http://h.example:8081/").key());
}

TEST(OutboundDestination, RefusesWhatIsNotHttp) {
  EXPECT_NE(parse_error("ftp://x.example/").find("unsupported URL scheme 'ftp'"), std::string::npos);
  EXPECT_NE(parse_error("not a url").find("invalid URL"), std::string::npos);
  EXPECT_NE(parse_error("http:///nohost").find("no host"), std::string::npos);
  EXPECT_NE(parse_error("http://h.example:0/").find("bad port"), std::string::npos);
  EXPECT_NE(parse_error("http://h.example:70000/").find("bad port"), std::string::npos);
  EXPECT_NE(parse_error("https://user:pw@h.example/").find("user info"), std::string::npos);
}

TEST(OutboundBackoff, DoublesFromInitialToMaxAndSuccessForgets) {
  DestinationBackoff b(1000, 4000);
  EXPECT_EQ(b.remaining_ms("d", 0), 0);
  b.failure("d", 10'000);
  EXPECT_EQ(b.remaining_ms("d", 10'000), 1000);
  EXPECT_EQ(b.remaining_ms("d", 10'400), 600);
  EXPECT_EQ(b.remaining_ms("d", 11'000), 0);
  b.failure("d", 11'000);
  EXPECT_EQ(b.remaining_ms("d", 11'000), 2000);
  b.failure("d", 13'000);
  EXPECT_EQ(b.remaining_ms("d", 13'000), 4000);
  b.failure("d", 17'000);
  EXPECT_EQ(b.remaining_ms("d", 17'000), 4000);  // capped
  EXPECT_EQ(b.remaining_ms("other", 17'000), 0);  // per destination
  b.success("d");
  EXPECT_EQ(b.remaining_ms("d", 17'000), 0);
  b.failure("d", 20'000);
  EXPECT_EQ(b.remaining_ms("d", 20'000), 1000);  // starts over
}
