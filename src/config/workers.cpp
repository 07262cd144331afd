// The keys of a deployment of several processes, in Synapse's worker shape: the shared ones
// (instance_map, stream_writers, notify_appservices_from_worker, run_background_tasks_on,
// pusher_instances, enable_media_repo, media_instance_running_background_jobs) and a worker's
// own (worker_app, worker_name, worker_listeners).
#include "config/yaml_fields.hpp"

#include "core/crypto.hpp"

#include <algorithm>
#include <set>

namespace trestle::config::detail {

namespace {

// Synapse calls the main process "master" inside and "main" in instance_map.
std::string instance(const YAML::Node& n, const std::string& key) {
  auto name = get<std::string>(n, key, "an instance name");
  if (name.empty()) bad(key, "must not be empty");
  return name == "master" ? "main" : name;
}

std::vector<std::string> instances(const YAML::Node& n, const std::string& key) {
  if (n.IsScalar()) return {instance(n, key)};
  if (!n.IsSequence()) bad(key, "expected an instance name or a list of them");
  std::vector<std::string> out;
  for (size_t i = 0; i < n.size(); ++i) out.push_back(instance(n[i], key + "[" + std::to_string(i) + "]"));
  return out;
}

}  // namespace

void parse_workers(const YAML::Node& root, Config& c, std::vector<std::string>& warnings) {
  // Synapse's rule: a process serves the media repository unless enable_media_repo is false in
  // its (merged) config, and synapse.app.media_repository always does.
  if (auto m = root["enable_media_repo"]; m && !m.IsNull()) {
    c.serves_media = get<bool>(m, "enable_media_repo", "true or false");
  }
  if (auto app = root["worker_app"]; app && !app.IsNull()) {
    auto name = get<std::string>(app, "worker_app", "a string");
    // Synapse's older per-role apps all run as the generic worker today.
    static const std::set<std::string> generic = {"synapse.app.generic_worker", "synapse.app.client_reader",
                                                  "synapse.app.synchrotron", "synapse.app.event_creator",
                                                  "synapse.app.appservice", "synapse.app.media_repository"};
    if (name == "synapse.app.homeserver") {
      // The main process, named explicitly.
    } else if (generic.count(name)) {
      c.worker_app = "synapse.app.generic_worker";
      if (name == "synapse.app.media_repository") c.serves_media = true;
    } else {
      bad("worker_app", "'" + name + "' is not a worker app Trestle knows (synapse.app.generic_worker)");
    }
  }
  if (c.is_worker()) {
    if (!root["worker_name"]) bad("worker_name", "is required with worker_app");
    c.instance_name = instance(root["worker_name"], "worker_name");
    if (c.instance_name == "main") bad("worker_name", "'main' (or 'master') names the main process");
    if (auto ls = root["worker_listeners"]; ls && !ls.IsNull()) c.listeners = parse_listeners(ls, "worker_listeners");
    if (c.database_engine != "psycopg2") {
      bad("worker_app", "several processes share one PostgreSQL database (database: name: psycopg2); "
                        "SQLite is for one process");
    }
  } else if (root["worker_name"] || root["worker_listeners"]) {
    warnings.push_back("worker_name and worker_listeners are read only with worker_app; ignored");
  }

  if (auto map = root["instance_map"]; map && !map.IsNull()) {
    if (!map.IsMap()) bad("instance_map", "expected a mapping from instance name to {host, port}");
    for (const auto& kv : map) {
      auto name = instance(kv.first, "instance_map");
      std::string key = "instance_map." + name;
      if (!kv.second.IsMap()) bad(key, "expected {host, port}");
      Config::Instance in;
      in.name = name;
      in.host = kv.second["host"] ? get<std::string>(kv.second["host"], key + ".host", "a host") : "localhost";
      if (!kv.second["port"]) bad(key + ".port", "is required");
      in.port = get<int>(kv.second["port"], key + ".port", "a port number");
      if (in.port <= 0 || in.port > 65535) bad(key + ".port", "must be between 1 and 65535");
      c.instance_map.push_back(in);
    }
  }
  auto known = [&](const std::string& name) {
    for (const auto& in : c.instance_map) {
      if (in.name == name) return true;
    }
    return false;
  };
  if (c.multi_process() && !known("main")) bad("instance_map", "must list the main process ('main') with workers");
  if (c.is_worker() && !c.multi_process()) {
    bad("instance_map", "is required with workers: it lists 'main' and every worker (worker_app is set)");
  }
  if (c.is_worker() && !known(c.instance_name)) bad("instance_map", "does not list this worker '" + c.instance_name + "'");

  // The events of rooms may be sharded over event writers; every other stream is the main
  // process's (typing and presence live in its memory; the rest rides on its writes).
  if (auto sw = root["stream_writers"]; sw && !sw.IsNull()) {
    if (!sw.IsMap()) bad("stream_writers", "expected a mapping from stream name to instance names");
    for (const auto& kv : sw) {
      auto stream = kv.first.as<std::string>();
      std::string key = "stream_writers." + stream;
      auto names = instances(kv.second, key);
      if (stream == "events") {
        if (names.empty()) bad(key, "must name at least one instance");
        std::set<std::string> seen;
        for (const auto& name : names) {
          if (!seen.insert(name).second) bad(key, "names '" + name + "' twice");
          if (name != "main" && !known(name)) bad(key, "'" + name + "' is not in instance_map");
        }
        c.event_writers = names;
        if (c.shared_stream() && c.database_engine != "psycopg2") {
          bad(key, "several writers share one PostgreSQL database (database: name: psycopg2)");
        }
        continue;
      }
      for (const auto& name : names) {
        if (name != "main") {
          bad(key, "only the main process writes this stream in this version of Trestle ('" + name +
                       "' was named); only `events` may name other instances");
        }
      }
    }
  }
  if (auto s = root["worker_replication_secret"]; s && !s.IsNull()) {
    c.worker_replication_secret = get<std::string>(s, "worker_replication_secret", "a string");
  }
  if (auto n = root["notify_appservices_from_worker"]; n && !n.IsNull()) {
    c.notify_appservices_from_worker = instance(n, "notify_appservices_from_worker");
    if (c.multi_process() && !known(c.notify_appservices_from_worker)) {
      bad("notify_appservices_from_worker", "'" + c.notify_appservices_from_worker + "' is not in instance_map");
    }
  }
  if (auto n = root["run_background_tasks_on"]; n && !n.IsNull()) {
    c.run_background_tasks_on = instance(n, "run_background_tasks_on");
  }
  // Push notifications go out from the main process in this version (its writer evaluates them).
  if (auto n = root["pusher_instances"]; n && !n.IsNull()) {
    for (const auto& name : instances(n, "pusher_instances")) {
      if (name != "main") bad("pusher_instances", "only the main process sends push notifications in this version");
    }
  }
  // Media retention runs on one process that serves media: the one named here, else
  // run_background_tasks_on's. Each process can only check itself: the named one must serve media.
  if (auto n = root["media_instance_running_background_jobs"]; n && !n.IsNull()) {
    c.media_background_jobs_on = instance(n, "media_instance_running_background_jobs");
    if (c.multi_process() && !known(c.media_background_jobs_on)) {
      bad("media_instance_running_background_jobs", "'" + c.media_background_jobs_on + "' is not in instance_map");
    }
    if (c.instance_name == c.media_background_jobs_on && !c.serves_media) {
      bad("media_instance_running_background_jobs",
          "names this process ('" + c.instance_name + "'), which does not serve media (enable_media_repo: false)");
    }
  }
  if (c.instance_name == c.media_jobs_instance() && !c.serves_media && c.media_retention.local_media_lifetime_ms) {
    warnings.push_back("media_retention: this process does not serve media (enable_media_repo: false), so it does not "
                       "run media retention; set media_instance_running_background_jobs to the media worker");
  }
}

}  // namespace trestle::config::detail

namespace trestle::config {

bool Config::is_event_writer() const {
  return std::find(event_writers.begin(), event_writers.end(), instance_name) != event_writers.end();
}

const std::string& Config::event_writer_for(std::string_view room_id) const {
  if (event_writers.size() == 1) return event_writers.front();
  // The digest as a little-endian integer, modulo n: its most significant byte is the last.
  std::string digest = core::sha256(room_id);
  uint64_t r = 0;
  for (size_t i = digest.size(); i-- > 0;) r = (r * 256 + static_cast<unsigned char>(digest[i])) % event_writers.size();
  return event_writers[r];
}

const Config::Instance* Config::instance(std::string_view name) const {
  for (const auto& in : instance_map) {
    if (in.name == name) return &in;
  }
  return nullptr;
}

}  // namespace trestle::config
