// The Prometheus exposition format of core/metrics, the access log's redaction and line, and the
// reading of a Python logging config.
#include "config/log_config.hpp"
#include "core/metrics.hpp"
#include "http/access_log.hpp"
#include "service/appservice/registration.hpp"

#include <gtest/gtest.h>

#include <thread>

using namespace trestle;

TEST(Metrics, CounterWithLabelsEscapesValues) {
  metrics::Registry r;
  auto& c = r.counter("test_requests", "Requests \\ seen\nhere", {"method", "path"});
  c.labels({"GET", "a\"b\\c\nd"}).inc();
  c.labels({"GET", "a\"b\\c\nd"}).inc(2);
  std::string text = r.expose();
  EXPECT_NE(text.find("# HELP test_requests Requests \\\\ seen\\nhere\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE test_requests counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("test_requests_total{method=\"GET\",path=\"a\\\"b\\\\c\\nd\"} 3.0\n"), std::string::npos) << text;
}

TEST(Metrics, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  metrics::Registry r;
  auto& h = r.histogram("test_latency_seconds", "Latency", {"route"}, {0.125, 1.0});
  auto& child = h.labels({"/x"});
  child.observe(0.0625);
  child.observe(0.125);  // le is inclusive
  child.observe(0.5);
  child.observe(3);
  std::string text = r.expose();
  EXPECT_NE(text.find("# TYPE test_latency_seconds histogram\n"), std::string::npos);
  EXPECT_NE(text.find("test_latency_seconds_bucket{route=\"/x\",le=\"0.125\"} 2.0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("test_latency_seconds_bucket{route=\"/x\",le=\"1.0\"} 3.0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("test_latency_seconds_bucket{route=\"/x\",le=\"+Inf\"} 4.0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("test_latency_seconds_sum{route=\"/x\"} 3.6875\n"), std::string::npos) << text;
  EXPECT_NE(text.find("test_latency_seconds_count{route=\"/x\"} 4.0\n"), std::string::npos) << text;
}

TEST(Metrics, GaugeAndCallbackGaugeAndValues) {
  metrics::Registry r;
  auto& g = r.gauge("test_open", "Open").labels({});
  g.inc(3);
  g.dec();
  r.callback_gauge("test_cb", "Cb", {"service"}, [] {
    return std::vector<metrics::CallbackGauge::Sample>{{{"as1"}, 1.5}, {{"as2"}, 0}};
  });
  std::string text = r.expose();
  EXPECT_NE(text.find("test_open 2.0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("test_cb{service=\"as1\"} 1.5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("test_cb{service=\"as2\"} 0.0\n"), std::string::npos) << text;
  EXPECT_EQ(metrics::format_value(1.0 / 0.0), "+Inf");
  EXPECT_EQ(metrics::format_value(-1.0 / 0.0), "-Inf");
  EXPECT_EQ(metrics::format_value(0.0 / 0.0), "NaN");
}

TEST(Metrics, CountsFromManyThreads) {
  metrics::Registry r;
  auto& fam = r.counter("test_threads", "T", {"k"});
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&fam] {
      for (int i = 0; i < 10000; ++i) fam.labels({i % 2 ? "a" : "b"}).inc();
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(fam.labels({"a"}).value() + fam.labels({"b"}).value(), 40000);
}

TEST(AccessLog, RedactsSecretsInQueryAndPath) {
  using http::redact_target;
  EXPECT_EQ(redact_target("/_matrix/client/v3/sync?access_token=syt_abc&since=s1"),
            "/_matrix/client/v3/sync?access_token=<redacted>&since=s1");
  EXPECT_EQ(redact_target("/x?access%5Ftoken=syt_abc"), "/x?access%5Ftoken=<redacted>");
  EXPECT_EQ(redact_target("/x?client_secret=s&sid=1&token=t&loginToken=l&password=p&ticket=ST-1"),
            "/x?client_secret=<redacted>&sid=1&token=<redacted>&loginToken=<redacted>&password=<redacted>&ticket=<redacted>");
  EXPECT_EQ(redact_target("/_synapse/admin/v1/registration_tokens/abcd"),
            "/_synapse/admin/v1/registration_tokens/<redacted>");
  EXPECT_EQ(redact_target("/_synapse/admin/v1/registration_tokens/new"), "/_synapse/admin/v1/registration_tokens/new");
  EXPECT_EQ(redact_target("/plain"), "/plain");
}

TEST(AccessLog, RequesterAndLine) {
  service::Requester none;
  EXPECT_EQ(http::requester_for_log(none), "None");
  service::Requester user;
  user.user_id = "@alice:hs";
  user.device_id = "DEV";
  EXPECT_EQ(http::requester_for_log(user), "@alice:hs");
  service::AppService as;
  as.sender = "@bridge:hs";
  service::Requester bot;
  bot.user_id = "@bridge:hs";
  bot.appservice = &as;
  EXPECT_EQ(http::requester_for_log(bot), "@bridge:hs");
  service::Requester puppet;
  puppet.user_id = "@irc_bob:hs";
  puppet.appservice = &as;
  puppet.device_id = "PUPPETDEV";
  EXPECT_EQ(http::requester_for_log(puppet), "@bridge:hs|@irc_bob:hs (PUPPETDEV)");

  http::AccessRecord r;
  r.client_ip = "127.0.0.1";
  r.port = 8008;
  r.requester = "@alice:hs";
  r.processing_seconds = 0.0123;
  r.send_seconds = 0.0004;
  r.sent_bytes = 17;
  r.code = "200";
  r.method = "GET";
  r.target = "/_matrix/client/v3/sync";
  r.user_agent = "Agent \"x\"\n";
  EXPECT_EQ(http::format_access_line(r),
            "127.0.0.1 - 8008 - {@alice:hs} Processed request: 0.012sec/0.000sec 17B 200 "
            "\"GET /_matrix/client/v3/sync HTTP/1.1\" \"Agent \\\"x\\\"\\x0a\"");
}

TEST(LogConfig, ReadsHandlersLevelsAndWarns) {
  std::vector<std::string> warnings;
  auto lc = config::parse_log_config(R"(
version: 1
formatters:
  precise: {format: '%(message)s'}
handlers:
  file:
    class: logging.handlers.RotatingFileHandler
    filename: logs/hs.log
    maxBytes: 1000
    backupCount: 3
  buffer:
    class: synapse.logging.handlers.PeriodicallyFlushingMemoryHandler
    target: file
  console:
    class: logging.StreamHandler
    stream: ext://sys.stdout
    level: WARNING
  syslog:
    class: logging.handlers.SysLogHandler
loggers:
  synapse.access.http.8008:
    level: WARNING
  synapse.storage.SQL:
    level: INFO
root:
  level: DEBUG
  handlers: [buffer, console, syslog]
surprise: 1
)",
                                     "/etc/trestle", warnings);
  EXPECT_EQ(lc.root_level, "debug");
  ASSERT_EQ(lc.handlers.size(), 2u);
  EXPECT_EQ(lc.handlers[0].kind, config::LogHandler::Kind::rotating_file);
  EXPECT_EQ(lc.handlers[0].filename, "/etc/trestle/logs/hs.log");
  EXPECT_EQ(lc.handlers[0].max_bytes, 1000u);
  EXPECT_EQ(lc.handlers[0].backup_count, 3);
  EXPECT_TRUE(lc.handlers[1].to_stdout);
  EXPECT_EQ(lc.handlers[1].level, "warn");
  ASSERT_EQ(lc.logger_levels.size(), 2u);
  EXPECT_EQ(lc.logger_levels[0], (std::pair<std::string, std::string>{"synapse.access.http.8008", "warn"}));
  std::string all;
  for (auto& w : warnings) all += w + "\n";
  EXPECT_NE(all.find("SysLogHandler"), std::string::npos) << all;
  EXPECT_NE(all.find("'surprise' ignored"), std::string::npos) << all;
  EXPECT_THROW(config::parse_log_config("root: {level: LOUD}", "/", warnings), std::runtime_error);
}
