#pragma once
// Reading typed values out of the config's YAML, with errors that name the key. Shared by the
// files of src/config only.
#include "config/config.hpp"

#include <yaml-cpp/yaml.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace trestle::config::detail {

[[noreturn]] inline void bad(const std::string& key, const std::string& why) {
  throw std::runtime_error("config key '" + key + "': " + why);
}

template <typename T>
T get(const YAML::Node& node, const std::string& key, const std::string& what) {
  try {
    return node.as<T>();
  } catch (const YAML::Exception&) {
    bad(key, "expected " + what);
  }
}

// A `listeners:` list (or a worker's `worker_listeners:`), `key` naming it in errors.
std::vector<Listener> parse_listeners(const YAML::Node& list, const std::string& key);

// The keys of several processes (config/workers.cpp): worker_app, worker_name, worker_listeners,
// instance_map, stream_writers, notify_appservices_from_worker, run_background_tasks_on, ...
void parse_workers(const YAML::Node& root, Config& c, std::vector<std::string>& warnings);

}  // namespace trestle::config::detail
