#pragma once
// Named loggers beside spdlog's default one, as Python's logging has them: the access log writes
// to `synapse.access.http.<port>`, whose level a log_config may set apart from the root's.
#include <spdlog/spdlog.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace trestle::core {

// Levels by logger name (a name applies to itself and its dotted descendants, the longest wins);
// names without a rule take the default logger's level. Call before named_logger().
void set_logger_levels(std::vector<std::pair<std::string, spdlog::level::level_enum>> levels);

// The logger of this name, created on first use with the default logger's sinks.
std::shared_ptr<spdlog::logger> named_logger(const std::string& name);

}  // namespace trestle::core
