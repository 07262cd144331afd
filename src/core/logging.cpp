#include "core/logging.hpp"

#include <mutex>

namespace trestle::core {

namespace {
std::mutex mu;
std::vector<std::pair<std::string, spdlog::level::level_enum>> rules;
}  // namespace

void set_logger_levels(std::vector<std::pair<std::string, spdlog::level::level_enum>> levels) {
  std::lock_guard lock(mu);
  rules = std::move(levels);
}

std::shared_ptr<spdlog::logger> named_logger(const std::string& name) {
  std::lock_guard lock(mu);
  if (auto existing = spdlog::get(name)) return existing;
  auto base = spdlog::default_logger();
  auto logger = std::make_shared<spdlog::logger>(name, base->sinks().begin(), base->sinks().end());
  spdlog::level::level_enum level = base->level();
  size_t best = 0;
  for (const auto& [prefix, l] : rules) {
    bool applies = name == prefix || (name.size() > prefix.size() && name.starts_with(prefix) && name[prefix.size()] == '.');
    if (applies && prefix.size() >= best) {
      best = prefix.size();
      level = l;
    }
  }
  logger->set_level(level);
  logger->flush_on(base->flush_level());
  spdlog::register_logger(logger);
  return logger;
}

}  // namespace trestle::core
