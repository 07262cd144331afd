#pragma once
// Synapse's `log_config`: a Python logging configuration (dictConfig YAML). Trestle reads the parts
// that map onto its logging: the root logger's level and handlers, handler classes
// logging.StreamHandler (stream ext://sys.stdout or stderr), logging.FileHandler,
// logging.handlers.RotatingFileHandler (maxBytes, backupCount),
// logging.handlers.TimedRotatingFileHandler (written as a plain file, without time rotation),
// MemoryHandler / synapse's PeriodicallyFlushingMemoryHandler (their `target` is used directly),
// handler `level`, and `loggers: NAME: {level}` (synapse.access... for the access log; "synapse"
// for everything else). Formatters and filters are not read (Trestle's line format is fixed);
// other unknown parts are warned about, never fatal.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace trestle::config {

struct LogHandler {
  std::string name;
  enum class Kind { stream, file, rotating_file } kind = Kind::stream;
  bool to_stdout = false;   // stream handlers: ext://sys.stdout (default stderr)
  std::string filename;     // file handlers; relative names resolve against the log config's directory
  uint64_t max_bytes = 0;   // rotating: 0 means never rotate (Python's default)
  int backup_count = 0;
  std::string level;        // spdlog level name; empty: everything the logger passes
};

struct LogConfig {
  std::string root_level = "warn";  // Python's root default is WARNING
  std::vector<LogHandler> handlers;  // the root's
  // Logger name → spdlog level name (trace, debug, info, warn, err, critical, off).
  std::vector<std::pair<std::string, std::string>> logger_levels;
};

// Throws std::runtime_error("log_config: ...") for YAML that cannot be read; `warnings` gets the
// parts that were ignored.
LogConfig parse_log_config(const std::string& yaml_text, const std::string& base_dir,
                           std::vector<std::string>& warnings);
LogConfig load_log_config(const std::string& path, std::vector<std::string>& warnings);

// The commented file `generate-config -o` writes next to the config (as Synapse's generate does).
std::string generate_log_config(const std::string& log_file);

}  // namespace trestle::config
