#include "config/log_config.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

namespace trestle::config {

namespace {

// Python level (name or number) → spdlog name; nullopt: NOTSET (inherit).
std::optional<std::string> level_of(const YAML::Node& n, const std::string& where) {
  std::string v = n.as<std::string>();
  std::string up = v;
  for (auto& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (up == "NOTSET" || up == "0") return std::nullopt;
  if (up == "DEBUG" || up == "10") return "debug";
  if (up == "INFO" || up == "20") return "info";
  if (up == "WARNING" || up == "WARN" || up == "30") return "warn";
  if (up == "ERROR" || up == "40") return "err";
  if (up == "CRITICAL" || up == "FATAL" || up == "50") return "critical";
  throw std::runtime_error("log_config: " + where + ": unknown level '" + v + "'");
}

template <class T>
T get(const YAML::Node& n, const std::string& where) {
  try {
    return n.as<T>();
  } catch (const YAML::Exception&) {
    throw std::runtime_error("log_config: " + where + ": bad value");
  }
}

}  // namespace

LogConfig parse_log_config(const std::string& yaml_text, const std::string& base_dir,
                           std::vector<std::string>& warnings) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw std::runtime_error(std::string("log_config: not valid YAML: ") + e.what());
  }
  if (!root.IsMap()) throw std::runtime_error("log_config: must be a YAML mapping");
  LogConfig out;
  static const std::set<std::string> known = {"version", "formatters", "filters", "handlers", "loggers",
                                              "root", "disable_existing_loggers", "incremental"};
  for (const auto& kv : root) {
    auto key = kv.first.as<std::string>();
    if (!known.count(key)) warnings.push_back("log_config: '" + key + "' ignored");
  }

  // Handlers by name, memory handlers resolved to their target.
  YAML::Node handlers = root["handlers"];
  auto handler = [&](const std::string& name, auto& self, int depth) -> std::optional<LogHandler> {
    if (!handlers || !handlers[name]) {
      warnings.push_back("log_config: handler '" + name + "' is not defined");
      return std::nullopt;
    }
    YAML::Node h = handlers[name];
    std::string where = "handlers." + name;
    std::string cls = h["class"] ? get<std::string>(h["class"], where + ".class") : "";
    LogHandler lh;
    lh.name = name;
    if (h["level"]) lh.level = level_of(h["level"], where + ".level").value_or("");
    if (cls == "logging.handlers.MemoryHandler" || cls == "synapse.logging.handlers.PeriodicallyFlushingMemoryHandler") {
      if (!h["target"] || depth > 4) {
        warnings.push_back("log_config: " + where + ": a memory handler without a target is ignored");
        return std::nullopt;
      }
      auto target = self(get<std::string>(h["target"], where + ".target"), self, depth + 1);
      if (target && target->level.empty()) target->level = lh.level;
      return target;
    }
    if (cls == "logging.StreamHandler") {
      std::string stream = h["stream"] ? get<std::string>(h["stream"], where + ".stream") : "ext://sys.stderr";
      lh.to_stdout = stream == "ext://sys.stdout";
      if (!lh.to_stdout && stream != "ext://sys.stderr") warnings.push_back("log_config: " + where + ": stream '" + stream + "' is written to stderr");
      return lh;
    }
    bool rotating = cls == "logging.handlers.RotatingFileHandler";
    bool timed = cls == "logging.handlers.TimedRotatingFileHandler";
    if (cls == "logging.FileHandler" || rotating || timed) {
      if (!h["filename"]) throw std::runtime_error("log_config: " + where + ".filename is required");
      lh.filename = get<std::string>(h["filename"], where + ".filename");
      if (!std::filesystem::path(lh.filename).is_absolute()) {
        lh.filename = (std::filesystem::path(base_dir) / lh.filename).string();
      }
      lh.kind = LogHandler::Kind::file;
      if (rotating) {
        lh.max_bytes = h["maxBytes"] ? get<uint64_t>(h["maxBytes"], where + ".maxBytes") : 0;
        lh.backup_count = h["backupCount"] ? get<int>(h["backupCount"], where + ".backupCount") : 0;
        if (lh.max_bytes > 0 && lh.backup_count > 0) lh.kind = LogHandler::Kind::rotating_file;
      }
      if (timed) warnings.push_back("log_config: " + where + ": TimedRotatingFileHandler writes " + lh.filename + " without time rotation");
      return lh;
    }
    warnings.push_back("log_config: " + where + ": class '" + cls + "' is not supported; handler ignored");
    return std::nullopt;
  };

  if (auto r = root["root"]) {
    if (r["level"]) out.root_level = level_of(r["level"], "root.level").value_or("trace");
    if (auto hs = r["handlers"]) {
      for (const auto& n : hs) {
        if (auto h = handler(get<std::string>(n, "root.handlers"), handler, 0)) out.handlers.push_back(*h);
      }
    }
  }
  if (auto ls = root["loggers"]) {
    for (const auto& kv : ls) {
      auto name = kv.first.as<std::string>();
      std::string where = "loggers." + name;
      if (kv.second["level"]) {
        if (auto l = level_of(kv.second["level"], where + ".level")) out.logger_levels.emplace_back(name, *l);
      }
      if (kv.second["handlers"] && kv.second["handlers"].size() > 0) {
        warnings.push_back("log_config: " + where + ".handlers ignored: every logger writes to the root's handlers");
      }
    }
  }
  return out;
}

LogConfig load_log_config(const std::string& path, std::vector<std::string>& warnings) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("log_config: cannot read '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_log_config(ss.str(), std::filesystem::absolute(path).parent_path().string(), warnings);
}

std::string generate_log_config(const std::string& log_file) {
  std::ostringstream o;
  o << "# Logging configuration, in Python's logging format as Synapse's log_config.\n"
    << "# Trestle reads: root (level, handlers), handlers of class logging.StreamHandler,\n"
    << "# logging.FileHandler, logging.handlers.RotatingFileHandler (maxBytes, backupCount) and\n"
    << "# logging.handlers.TimedRotatingFileHandler (without time rotation), and loggers' levels.\n"
    << "# Formatters are not read: the line format is fixed.\n"
    << "version: 1\n\n"
    << "formatters:\n"
    << "  precise:\n"
    << "    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'\n\n"
    << "handlers:\n"
    << "  file:\n"
    << "    class: logging.handlers.RotatingFileHandler\n"
    << "    formatter: precise\n"
    << "    filename: \"" << log_file << "\"\n"
    << "    maxBytes: 104857600   # 100 MiB\n"
    << "    backupCount: 10\n"
    << "    encoding: utf8\n"
    << "  console:\n"
    << "    class: logging.StreamHandler\n"
    << "    formatter: precise\n\n"
    << "loggers:\n"
    << "  # The access log: one line per request (INFO). WARNING turns it off.\n"
    << "  synapse.access:\n"
    << "    level: INFO\n\n"
    << "root:\n"
    << "  level: INFO\n"
    << "  handlers: [file, console]\n\n"
    << "disable_existing_loggers: false\n";
  return o.str();
}

}  // namespace trestle::config
