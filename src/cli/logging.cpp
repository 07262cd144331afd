#include "cli/logging.hpp"

#include "config/log_config.hpp"
#include "core/logging.hpp"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>

namespace trestle::cli {

namespace {

spdlog::level::level_enum level(const std::string& name) {
  return spdlog::level::from_str(name == "warning" ? "warn" : name);
}

}  // namespace

void setup_logging(const config::Config& cfg, std::vector<std::string>& warnings) {
  if (cfg.log_config.empty()) {
    auto logger = std::make_shared<spdlog::logger>("", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    logger->set_level(level(cfg.log_level));
    spdlog::set_default_logger(logger);
    core::set_logger_levels({});
    return;
  }
  auto lc = config::load_log_config(cfg.log_config, warnings);
  std::vector<spdlog::sink_ptr> sinks;
  for (const auto& h : lc.handlers) {
    spdlog::sink_ptr sink;
    try {
      if (h.kind == config::LogHandler::Kind::stream) {
        if (h.to_stdout) sink = std::make_shared<spdlog::sinks::stdout_color_sink_mt>();
        else sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
      } else {
        if (auto dir = std::filesystem::path(h.filename).parent_path(); !dir.empty()) {
          std::filesystem::create_directories(dir);
        }
        if (h.kind == config::LogHandler::Kind::rotating_file) {
          sink = std::make_shared<spdlog::sinks::rotating_file_sink_mt>(h.filename, h.max_bytes,
                                                                        static_cast<size_t>(h.backup_count));
        } else {
          sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(h.filename, false);
        }
      }
    } catch (const std::exception& e) {
      throw std::runtime_error("log_config: handler '" + h.name + "': " + e.what());
    }
    if (!h.level.empty()) sink->set_level(level(h.level));
    sinks.push_back(std::move(sink));
  }
  if (sinks.empty()) warnings.push_back("log_config: the root logger has no usable handler: nothing is logged");
  auto logger = std::make_shared<spdlog::logger>("synapse", sinks.begin(), sinks.end());
  // Python's "synapse" logger, when named, sets the level of everything but the access log.
  auto root_level = level(lc.root_level);
  for (const auto& [name, l] : lc.logger_levels) {
    if (name == "synapse" || name == "trestle") root_level = level(l);
  }
  logger->set_level(root_level);
  logger->set_pattern("%Y-%m-%d %H:%M:%S,%e - %n - %l - %v");
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
  std::vector<std::pair<std::string, spdlog::level::level_enum>> rules;
  for (const auto& [name, l] : lc.logger_levels) {
    if (name == "synapse" || name.starts_with("synapse.access") || name == "trestle") {
      rules.emplace_back(name, level(l));
    } else {
      warnings.push_back("log_config: loggers." + name + ": Trestle has no such logger; ignored");
    }
  }
  core::set_logger_levels(std::move(rules));
}

std::string write_log_config_beside(const std::string& config_file, const std::string& server_name,
                                    const std::string& data_dir) {
  std::string name = server_name + ".log.config";
  auto path = std::filesystem::absolute(config_file).parent_path() / name;
  if (std::filesystem::exists(path)) return name;
  std::ofstream out(path, std::ios::trunc);
  out << config::generate_log_config(data_dir + "/homeserver.log");
  if (!out) throw std::runtime_error("cannot write " + path.string());
  return name;
}

}  // namespace trestle::cli
