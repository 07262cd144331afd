#include "service/cluster.hpp"

#include "core/canonical_json.hpp"

#include <boost/json.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <set>

namespace trestle::service {

namespace json = boost::json;

namespace {
constexpr auto kStartWait = std::chrono::seconds(5);
// Typing's expiry on the main process: a typing user is seen to stop within this of the timeout.
constexpr auto kTick = std::chrono::milliseconds(100);
}

Cluster::Cluster(const config::Config& cfg, storage::Database& db, Notifier& notifier)
    : enabled_(cfg.multi_process() && db.dialect() == storage::Dialect::postgres),
      instance_(cfg.instance_name),
      db_(db),
      notifier_(notifier) {}

Cluster::~Cluster() { stop(); }

void Cluster::on(const std::string& kind, Handler handler) { handlers_[kind] = std::move(handler); }
void Cluster::on_gap(std::function<void()> handler) { gap_handlers_.push_back(std::move(handler)); }
void Cluster::on_tick(std::function<void()> handler) { tick_handlers_.push_back(std::move(handler)); }

void Cluster::start() {
  if (!enabled_ || channel_) return;
  channel_ = db_.open_channel(kChannel, {[this](const std::string& p) { receive(p); }, [this] { gap(); }});
  if (!channel_) return;
  notifier_.set_publisher([this](const std::vector<std::string>& keys) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      // Adjacent wake-ups merge into one message.
      if (!queue_.empty() && queue_.back().message.empty()) {
        queue_.back().keys.insert(queue_.back().keys.end(), keys.begin(), keys.end());
      } else {
        queue_.push_back({keys, {}});
      }
    }
    cv_.notify_one();
  });
  publisher_ = std::thread([this] { run_publisher(); });
  std::unique_lock lock(mu_);
  if (!connected_cv_.wait_for(lock, kStartWait, [this] { return connected_; })) {
    spdlog::warn("cluster: not listening to the other processes yet (the database is unreachable); retrying");
  }
  spdlog::info("cluster: instance '{}' listening on channel {}", instance_, kChannel);
}

void Cluster::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  notifier_.set_publisher(nullptr);
  if (publisher_.joinable()) publisher_.join();
  if (channel_) channel_->stop();
}

void Cluster::publish(const std::string& kind, json::object body) {
  if (!enabled_) return;
  body["i"] = instance_;
  body["k"] = kind;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    queue_.push_back({{}, json::serialize(body)});
  }
  cv_.notify_one();
}

void Cluster::catch_up() {
  if (enabled_ && (!db_.options().stream_writer || db_.options().shared_stream)) db_.refresh_position();
}

Cluster::Counters Cluster::counters() const {
  std::lock_guard lock(mu_);
  return counters_;
}

std::vector<std::string> Cluster::payloads(std::vector<Outgoing>& batch) const {
  std::vector<std::string> out;
  // Read after the commits whose announcements these are: every key's change is at or below it.
  const int64_t position = db_.committed_position();
  for (auto& o : batch) {
    if (!o.message.empty()) {
      if (o.message.size() <= storage::Channel::kMaxPayload) {
        out.push_back(std::move(o.message));
      } else {
        spdlog::error("cluster: a message of {} bytes is too large to send; dropped", o.message.size());
      }
      continue;
    }
    std::set<std::string> keys(o.keys.begin(), o.keys.end());
    auto start = [&] {
      return json::object{{"i", instance_}, {"k", "wake"}, {"p", position}, {"keys", json::array{}}};
    };
    json::object msg = start();
    size_t size = 64 + instance_.size();
    for (const auto& k : keys) {
      if (size + k.size() + 3 > storage::Channel::kMaxPayload && !msg["keys"].as_array().empty()) {
        out.push_back(json::serialize(msg));
        msg = start();
        size = 64 + instance_.size();
      }
      msg["keys"].as_array().push_back(json::string(k));
      size += k.size() + 3;
    }
    out.push_back(json::serialize(msg));
  }
  return out;
}

void Cluster::run_publisher() {
  std::unique_lock lock(mu_);
  auto next_tick = std::chrono::steady_clock::now() + kTick;
  while (true) {
    cv_.wait_until(lock, next_tick, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    if (std::chrono::steady_clock::now() >= next_tick) {
      next_tick = std::chrono::steady_clock::now() + kTick;
      lock.unlock();
      for (auto& h : tick_handlers_) {
        try {
          h();
        } catch (const std::exception& e) {
          spdlog::warn("cluster: periodic work failed: {}", e.what());
        }
      }
      lock.lock();
      if (queue_.empty()) continue;
    }
    std::vector<Outgoing> batch;
    batch.swap(queue_);
    lock.unlock();
    auto out = payloads(batch);
    bool sent = false;
    try {
      channel_->send(out);
      sent = true;
    } catch (const std::exception& e) {
      // The peers see a gap when their own connection comes back, and catch up then; a peer
      // whose connection held misses these wake-ups until the next (bounded by their timeouts).
      spdlog::warn("cluster: {} message(s) not sent: {}", out.size(), e.what());
    }
    lock.lock();
    if (sent) {
      counters_.sent += out.size();
    } else {
      ++counters_.send_failures;
    }
  }
}

void Cluster::receive(const std::string& payload) {
  json::object msg;
  try {
    msg = json::parse(payload).as_object();
  } catch (const std::exception&) {
    spdlog::warn("cluster: a message that is not a JSON object was ignored");
    return;
  }
  auto* from = msg.if_contains("i");
  auto* kind = msg.if_contains("k");
  if (!from || !from->is_string() || !kind || !kind->is_string()) return;
  if (from->as_string() == instance_) return;  // our own, echoed back
  {
    std::lock_guard lock(mu_);
    ++counters_.received;
  }
  if (kind->as_string() == "wake") {
    if (auto* p = msg.if_contains("p"); p && p->is_int64()) db_.advance_position(p->as_int64());
    std::vector<std::string> keys;
    if (auto* ks = msg.if_contains("keys"); ks && ks->is_array()) {
      for (const auto& k : ks->as_array()) {
        if (k.is_string()) keys.emplace_back(k.as_string());
      }
    }
    notifier_.notify_from_peer(keys);
    if (auto h = handlers_.find("wake"); h != handlers_.end()) h->second(msg);  // after the wake-up
    return;
  }
  auto h = handlers_.find(std::string(kind->as_string()));
  if (h != handlers_.end()) h->second(msg);
}

void Cluster::gap() {
  try {
    db_.refresh_position();
  } catch (const std::exception& e) {
    spdlog::warn("cluster: cannot re-read the stream position: {}", e.what());
  }
  for (auto& h : gap_handlers_) h();
  notifier_.wake_all();
  {
    std::lock_guard lock(mu_);
    if (connected_) ++counters_.gaps;
    connected_ = true;  // start() returns after the catching up, not during it
  }
  connected_cv_.notify_all();
}

}  // namespace trestle::service
