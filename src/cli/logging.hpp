#pragma once
// Start-up logging: `log_config` (Synapse's Python logging YAML, see config/log_config.hpp) or,
// without it, stderr at `log_level`.
#include "config/config.hpp"

#include <string>
#include <vector>

namespace trestle::cli {

// Sets spdlog's default logger and the levels of named loggers (the access log). Throws
// std::runtime_error when the log config cannot be read or a log file cannot be opened; `warnings`
// gets what was ignored.
void setup_logging(const config::Config& cfg, std::vector<std::string>& warnings);

// `generate-config -o FILE`: writes <dir of FILE>/<server_name>.log.config (logging to
// <data_dir>/homeserver.log) unless it exists; returns its name relative to FILE's directory.
std::string write_log_config_beside(const std::string& config_file, const std::string& server_name,
                                    const std::string& data_dir);

}  // namespace trestle::cli
