#include "cli/commands.hpp"
#include "config/config.hpp"
#include "service/database_options.hpp"
#include "storage/port_db.hpp"

#include <iomanip>
#include <iostream>

namespace trestle::cli {

int port_db(const std::string& config_path, const std::string& sqlite_path) {
  std::vector<std::string> warnings;
  auto cfg = config::load_config(config_path, warnings);
  if (cfg.database_engine != "psycopg2") {
    std::cerr << "trestle: port-db copies into PostgreSQL; " << config_path << " has database.name "
              << cfg.database_engine << ", not psycopg2\n";
    return 2;
  }
  storage::port::Options options;
  options.sqlite_path = sqlite_path;
  options.target = service::database_options(cfg, 0);
  options.progress = [](const std::string& line) { std::cerr << "  " << line << "\n"; };
  std::cerr << "porting " << sqlite_path << " into " << options.target.describe() << "\n";
  auto results = storage::port::sqlite_to_postgres(options);
  int mismatched = 0;
  std::cout << std::left << std::setw(32) << "table" << std::right << std::setw(12) << "copied" << std::setw(12)
            << "sqlite" << std::setw(12) << "postgres" << "\n";
  for (const auto& r : results) {
    std::cout << std::left << std::setw(32) << r.table << std::right << std::setw(12) << r.copied << std::setw(12)
              << r.source_rows << std::setw(12) << r.target_rows << (r.ok() ? "" : "  MISMATCH") << "\n";
    if (!r.ok()) ++mismatched;
  }
  if (mismatched) {
    std::cerr << "trestle: " << mismatched << " tables differ in row count (the server still writing? run port-db "
              << "again with it stopped)\n";
    return 1;
  }
  std::cerr << "every table has the same row count on both\n";
  return 0;
}

}  // namespace trestle::cli
