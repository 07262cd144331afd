// The floor of one event's write, in-process: no HTTP, no threads. Google Benchmark (Debian's
// libbenchmark-dev); built only on request: `ninja -C build trestle_microbench`.
//
//   sha256          core::sha256 (OpenSSL) of a message's canonical JSON; sha256_libsodium the same with
//                   libsodium's, which it replaced
//   sign            ed25519 signature of a typical message PDU's canonical JSON (libsodium)
//   hash_sign_id    room::hash_sign_and_id: content hash, redaction, reference hash, signature
//   send/group:N    RoomSending::send_message-equivalent writes through the real services
//                   (EventWriter, the push hook, the search index, stream positions) into a
//                   32-member room, N events per write transaction (a write group of N), on an
//                   SQLite database in a temp dir with the server's own settings (WAL,
//                   synchronous=NORMAL). CPU per event is the figure to read: it is the write path's
//                   own cost, a floor under what an HTTP send costs (bench/targets.py).
#include "config/config.hpp"
#include "core/canonical_json.hpp"
#include "core/crypto.hpp"
#include "room/event_builder.hpp"
#include "room/event_crypto.hpp"
#include "room/room_version.hpp"
#include "service/event_writer.hpp"
#include "service/homeserver.hpp"

#include <benchmark/benchmark.h>
#include <sodium.h>
#include <boost/json/parse.hpp>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

using namespace trestle;
using boost::json::object;

namespace {

object message_pdu() {
  return boost::json::parse(R"({"room_id":"!abcdefghijklmnop:bench.local","sender":"@sender0:bench.local",
    "type":"m.room.message","content":{"msgtype":"m.text","body":"hello from the benchmark, message 12345"},
    "origin_server_ts":1764720000000,"depth":1234,"prev_events":["$aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"],
    "auth_events":["$bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","$ccccccccccccccccccccccccccccccccccccccccccc",
    "$ddddddddddddddddddddddddddddddddddddddddddd"]})")
      .as_object();
}

// core::sha256 (OpenSSL) against libsodium's, which it replaced, on a message's canonical JSON.
void sha256(benchmark::State& state) {
  const std::string json = core::canonical_json(message_pdu());
  for (auto _ : state) benchmark::DoNotOptimize(core::sha256(json));
}
BENCHMARK(sha256);

void sha256_libsodium(benchmark::State& state) {
  const std::string json = core::canonical_json(message_pdu());
  unsigned char digest[crypto_hash_sha256_BYTES];
  for (auto _ : state) {
    crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(json.data()), json.size());
    benchmark::DoNotOptimize(digest);
  }
}
BENCHMARK(sha256_libsodium);

void sign(benchmark::State& state) {
  auto key = core::SigningKey::generate("a_bench");
  const std::string json = core::canonical_json(message_pdu());
  for (auto _ : state) benchmark::DoNotOptimize(key.sign(json));
}
BENCHMARK(sign);

void hash_sign_id(benchmark::State& state) {
  auto key = core::SigningKey::generate("a_bench");
  const object pdu = message_pdu();
  for (auto _ : state) {
    object copy = pdu;
    benchmark::DoNotOptimize(room::hash_sign_and_id(copy, "bench.local", key, room::default_room_version()));
  }
}
BENCHMARK(hash_sign_id);

// One homeserver on a fresh database with a 32-member room, shared by the send benchmarks.
struct Fixture {
  std::filesystem::path dir;
  std::unique_ptr<service::Homeserver> hs;
  std::string room_id;
  std::vector<service::Requester> members;

  Fixture() {
    dir = std::filesystem::temp_directory_path() / ("trestle-microbench-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    std::vector<std::string> warnings;
    auto cfg = config::parse_config(config::generate_config("bench.local", dir.string()), dir.string(), warnings);
    hs = std::make_unique<service::Homeserver>(cfg, core::SigningKey::generate("a_bench"), service::OutboundHttp{});
    for (int i = 0; i < 32; ++i) {
      auto s = hs->accounts.register_user("member" + std::to_string(i), std::nullopt, "DEV" + std::to_string(i),
                                          std::nullopt, false);
      members.push_back(service::Requester{s.user_id, s.device_id, "", nullptr});
    }
    room_id = hs->rooms.creation.create_room(members[0], object{{"preset", "public_chat"}});
    for (size_t i = 1; i < members.size(); ++i) hs->rooms.membership.join(members[i], room_id, std::nullopt);
  }
  ~Fixture() {
    hs.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

void send_group(benchmark::State& state) {
  auto& f = fixture();
  const int per_group = static_cast<int>(state.range(0));
  int64_t n = 0;
  for (auto _ : state) {
    f.hs->rooms.writer.write([&](service::EventWriter::Batch& b) {
      for (int i = 0; i < per_group; ++i, ++n) {
        const auto& who = f.members[static_cast<size_t>(n % 4)];  // four senders, as targets.py
        service::NewEvent e{f.room_id, who.user_id, "m.room.message", std::nullopt,
                            object{{"msgtype", "m.text"}, {"body", "hello from the benchmark, message " + std::to_string(n)}},
                            std::nullopt, std::nullopt, "t" + std::to_string(n), who.device_id};
        auto se = b.append(e);
        storage::events::insert_txn(b.connection(), who.user_id, *who.device_id,
                                    service::txn_key({"send", f.room_id, "m.room.message", "t" + std::to_string(n)}),
                                    se.event_id);
      }
    });
  }
  state.SetItemsProcessed(n);
  state.counters["us_per_event"] =
      benchmark::Counter(static_cast<double>(n), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(send_group)->Arg(1)->Arg(6)->Arg(32)->MeasureProcessCPUTime()->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
