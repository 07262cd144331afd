// Several processes in Synapse's worker shape: `-c homeserver.yaml -c worker.yaml` merging, the
// worker's own keys, instance_map, stream_writers (rooms' events sharded over writers), and the errors.
#include "config/config.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

using namespace trestle;

namespace {

const std::string kShared =
    "server_name: example.org\n"
    "database: {name: psycopg2, args: {dbname: synapse, host: /run/postgresql}}\n"
    "listeners: [{port: 8008, bind_addresses: ['127.0.0.1'], type: http, resources: [{names: [client]}]}]\n"
    "instance_map:\n"
    "  main: {host: 127.0.0.1, port: 8080}\n"
    "  reader1: {host: 127.0.0.1, port: 8101}\n";
const std::string kWorker =
    "worker_app: synapse.app.generic_worker\n"
    "worker_name: reader1\n"
    "worker_listeners: [{port: 8101, bind_addresses: ['127.0.0.1'], type: http, resources: [{names: [client]}]}]\n";

config::Config parse(const std::string& yaml) {
  std::vector<std::string> warnings;
  auto c = config::parse_config(yaml, "/etc/trestle", warnings);
  for (const auto& w : warnings) ADD_FAILURE() << w;
  return c;
}

std::string error_of(const std::string& yaml) {
  try {
    parse(yaml);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(WorkersConfig, OneProcessByDefault) {
  auto c = parse("server_name: example.org\n");
  EXPECT_FALSE(c.is_worker());
  EXPECT_FALSE(c.multi_process());
  EXPECT_EQ(c.instance_name, "main");
  EXPECT_TRUE(c.serves_media);
  EXPECT_TRUE(c.runs_media_jobs());
}

TEST(WorkersConfig, TheMainProcessOfSeveral) {
  auto c = parse(kShared + "notify_appservices_from_worker: reader1\nstream_writers: {events: master, typing: [main]}\n");
  EXPECT_FALSE(c.is_worker());
  EXPECT_TRUE(c.multi_process());
  ASSERT_EQ(c.instance_map.size(), 2u);
  EXPECT_EQ(c.instance_map[0].name, "main");
  EXPECT_EQ(c.instance_map[1].port, 8101);
  EXPECT_EQ(c.notify_appservices_from_worker, "reader1");
  ASSERT_EQ(c.listeners.size(), 1u);
  EXPECT_EQ(c.listeners[0].port, 8008);
}

TEST(WorkersConfig, AWorkerServesItsOwnListeners) {
  auto c = parse(kShared + kWorker);
  EXPECT_TRUE(c.is_worker());
  EXPECT_EQ(c.instance_name, "reader1");
  ASSERT_EQ(c.listeners.size(), 1u);
  EXPECT_EQ(c.listeners[0].port, 8101);
  EXPECT_FALSE(c.runs_media_jobs());
  // Synapse's older per-role apps run as the generic worker.
  EXPECT_TRUE(parse(kShared + "worker_app: synapse.app.synchrotron\nworker_name: reader1\n").is_worker());
}

TEST(WorkersConfig, ListenersBehindAProxy) {
  // Synapse's x_forwarded, per listener: off unless said.
  auto c = parse(kShared + kWorker);
  EXPECT_FALSE(c.listeners[0].x_forwarded);
  auto proxied = parse(kShared +
                       "worker_app: synapse.app.generic_worker\nworker_name: reader1\n"
                       "worker_listeners: [{port: 8101, type: http, x_forwarded: true, resources: [{names: [client]}]}]\n");
  EXPECT_TRUE(proxied.listeners[0].x_forwarded);
  EXPECT_NE(error_of(kShared + "worker_app: synapse.app.generic_worker\nworker_name: reader1\n"
                               "worker_listeners: [{port: 8101, x_forwarded: maybe}]\n")
                .find("worker_listeners[0].x_forwarded"),
            std::string::npos);
}

TEST(WorkersConfig, ALaterFileReplacesTopLevelKeys) {
  auto dir = std::filesystem::temp_directory_path() / ("trestle-workers-config-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name) << text;
    return (dir / name).string();
  };
  auto shared = write("homeserver.yaml", kShared + "log_level: info\n");
  auto worker = write("reader1.yaml", kWorker + "log_level: debug\n");
  std::vector<std::string> warnings;
  auto c = config::load_config(std::vector<std::string>{shared, worker}, warnings);
  EXPECT_TRUE(warnings.empty());
  EXPECT_EQ(c.instance_name, "reader1");
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.config_dir, dir.string());  // relative paths: against the shared file's directory
  EXPECT_EQ(c.signing_key_path, (dir / "example.org.signing.key").string());
  std::filesystem::remove_all(dir);
}

TEST(WorkersConfig, Errors) {
  EXPECT_NE(error_of("server_name: example.org\n" + kWorker).find("PostgreSQL"), std::string::npos);
  std::string pg = "server_name: example.org\ndatabase: {name: psycopg2, args: {dbname: s}}\n";
  EXPECT_NE(error_of(pg + kWorker).find("instance_map"), std::string::npos);
  EXPECT_NE(error_of(kShared + "worker_app: synapse.app.generic_worker\n").find("worker_name"), std::string::npos);
  EXPECT_NE(error_of(kShared + "worker_app: synapse.app.generic_worker\nworker_name: reader2\n").find("does not list"),
            std::string::npos);
  EXPECT_NE(error_of(kShared + "worker_app: synapse.app.generic_worker\nworker_name: master\n").find("main process"),
            std::string::npos);
  EXPECT_NE(error_of(kShared + "worker_app: synapse.app.frontend_proxy\nworker_name: reader1\n").find("worker_app"),
            std::string::npos);
  EXPECT_NE(error_of(kShared + "stream_writers: {typing: [main, reader1]}\n").find("stream_writers.typing"),
            std::string::npos);
  EXPECT_NE(error_of(kShared + "stream_writers: {events: [main, writer9]}\n").find("not in instance_map"),
            std::string::npos);
  EXPECT_NE(error_of(kShared + "stream_writers: {events: [main, main]}\n").find("twice"), std::string::npos);
  EXPECT_NE(error_of(kShared + "stream_writers: {events: []}\n").find("at least one"), std::string::npos);
  EXPECT_NE(error_of(kShared + "notify_appservices_from_worker: reader9\n").find("not in instance_map"),
            std::string::npos);
  EXPECT_NE(error_of("server_name: example.org\ninstance_map: {reader1: {port: 8101}}\n").find("'main'"),
            std::string::npos);
  EXPECT_NE(error_of(kShared + "pusher_instances: [reader1]\n").find("pusher_instances"), std::string::npos);
  EXPECT_NE(error_of("server_name: example.org\ninstance_map: {main: {port: 0}}\n").find("instance_map.main.port"),
            std::string::npos);
}

TEST(WorkersConfig, AMediaWorker) {
  // Synapse's shape: the shared file turns media off; the media worker's own file turns it on
  // (or its worker_app is synapse.app.media_repository) and runs media retention.
  std::string jobs = kShared + "media_instance_running_background_jobs: reader1\n";
  std::string off = "enable_media_repo: false\n";
  auto main = parse(jobs + off);
  EXPECT_FALSE(main.serves_media);
  EXPECT_FALSE(main.runs_media_jobs());
  auto media = parse(jobs + kWorker + "enable_media_repo: true\n");
  EXPECT_TRUE(media.serves_media);
  EXPECT_TRUE(media.runs_media_jobs());
  auto legacy = parse(jobs + off + "worker_app: synapse.app.media_repository\nworker_name: reader1\n");
  EXPECT_TRUE(legacy.serves_media);
  EXPECT_TRUE(legacy.runs_media_jobs());
  // Without the key, media jobs run on run_background_tasks_on's process, when it serves media.
  EXPECT_TRUE(parse(kShared).runs_media_jobs());
  EXPECT_FALSE(parse(kShared + off).runs_media_jobs());
  EXPECT_FALSE(parse(kShared + kWorker).runs_media_jobs());
  // The process named for media jobs must serve media; the name must be an instance.
  EXPECT_NE(error_of(jobs + off + kWorker).find("does not serve media"), std::string::npos);
  EXPECT_NE(error_of(kShared + "media_instance_running_background_jobs: media9\n").find("not in instance_map"),
            std::string::npos);
  EXPECT_NE(error_of(kShared + "enable_media_repo: 3\n").find("enable_media_repo"), std::string::npos);
}

TEST(WorkersConfig, RoomsAreShardedOverEventWriters) {
  auto one = parse(kShared);
  EXPECT_FALSE(one.shared_stream());
  EXPECT_TRUE(one.is_event_writer());
  EXPECT_EQ(one.event_writer_for("!a:x"), "main");

  auto c = parse(kShared + "stream_writers: {events: [main, reader1]}\nworker_replication_secret: s3cret\n");
  EXPECT_TRUE(c.shared_stream());
  EXPECT_TRUE(c.is_event_writer());
  EXPECT_EQ(c.worker_replication_secret, "s3cret");
  // Synapse's choice: SHA-256 of the room ID as a little-endian integer, modulo the writers
  // (values from Python: int.from_bytes(hashlib.sha256(r).digest(), "little") % n).
  EXPECT_EQ(c.event_writer_for("!a:x"), "main");
  EXPECT_EQ(c.event_writer_for("!b:x"), "reader1");
  EXPECT_EQ(c.event_writer_for("!abc:test"), "main");
  auto w = parse(kShared + kWorker + "stream_writers: {events: [reader1]}\n");
  EXPECT_TRUE(w.shared_stream());  // main still writes the other streams
  EXPECT_TRUE(w.is_event_writer());
  EXPECT_EQ(w.event_writer_for("!b:x"), "reader1");
  ASSERT_NE(w.instance("reader1"), nullptr);
  EXPECT_EQ(w.instance("reader1")->port, 8101);
  EXPECT_EQ(w.instance("reader9"), nullptr);
}
