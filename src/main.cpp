// trestle: a Matrix homeserver for bridges and bots.
//   trestle --config homeserver.yaml            serve
//   trestle generate-config --server-name NAME  print a commented config
//   trestle --config FILE set-admin USER_ID     make a local user a server admin
//   trestle register-user [-c FILE | -k SECRET] register a user on a running server (shared secret)
//   trestle --config FILE backup OUT_DIR        online backup; `restore BACKUP_DIR` puts one back
//   trestle --config PG_FILE port-db --from-sqlite homeserver.db   SQLite into PostgreSQL
// Each command lives in src/cli/.
#include "cli/commands.hpp"
#include "cli/logging.hpp"
#include "config/config.hpp"
#include "core/crypto.hpp"

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <fstream>
#include <iostream>

// jemalloc's settings (CMakeLists.txt links it into the server; read at its first allocation). A
// background thread gives pages freed for a second back to the system (dirty_decay_ms), at once
// (muzzy_decay_ms:0, no MADV_FREE pages that still count in RSS): after a burst of load the server
// shrinks back within seconds instead of keeping its peak. Small per-thread caches: without any
// (tcache:false) every allocation locks an arena, ~9 % of send CPU; jemalloc's default caches keep
// ~5 MiB more at rest over the ~40 threads. Objects up to 1 KiB, at most 16 of a size class, a
// quarter of the default slots: bench/memory_bench.py load (2 rounds) measured CPU per event 0.68x
// and RSS 10 s after the load 1.04x (28.0 -> 29.2 MiB) against tcache:false; the default caches
// 0.75x and 1.16x. MALLOC_CONF overrides.
extern "C" const char* malloc_conf;
const char* malloc_conf =
    "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,"
    "tcache:true,tcache_max:1024,tcache_nslots_small_max:16,lg_tcache_nslots_mul:-2";

int main(int argc, char** argv) {
  trestle::core::crypto_init();
  CLI::App app{"Trestle: a Matrix homeserver for bridges and bots"};
  std::string config_path;  // a subcommand's config
  // Serving: several as Synapse's workers take them (`-c homeserver.yaml -c worker.yaml`), a later
  // file's top-level keys replacing an earlier one's.
  std::vector<std::string> config_paths;
  app.add_option("-c,--config", config_paths, "Path to homeserver.yaml (again for a worker's file)");

  auto* gen = app.add_subcommand("generate-config", "Print a commented configuration file");
  std::string server_name, data_dir = "./data", output;
  gen->add_option("--server-name", server_name, "The server name (domain of user IDs)")->required();
  gen->add_option("--data-dir", data_dir, "Directory for the database and signing key");
  gen->add_option("-o,--output", output, "Write to this file instead of standard output");
  auto* admin_cmd = app.add_subcommand("set-admin", "Make a local user a server admin (--revoke: no longer one)");
  std::string admin_user;
  bool revoke_admin = false;
  admin_cmd->add_option("user_id", admin_user, "The user ID, e.g. @alice:example.com")->required();
  admin_cmd->add_flag("--revoke", revoke_admin, "Take the admin flag away");
  // Synapse's register_new_matrix_user, option for option.
  auto* reg_cmd = app.add_subcommand("register-user", "Register a user on a running server with the shared secret");
  trestle::cli::RegisterUserOptions reg;
  bool reg_admin = false, reg_no_admin = false;
  reg_cmd->add_option("-u,--user", reg.user, "Local part of the new user (asked for if omitted)");
  reg_cmd->add_option("-p,--password", reg.password, "New password (asked for twice if omitted)");
  reg_cmd->add_option("--password-file", reg.password_file, "File containing the new password");
  reg_cmd->add_option("-t,--user_type", reg.user_type, "User type (bot, support)");
  auto* a_flag = reg_cmd->add_flag("-a,--admin", reg_admin, "Register the user as an admin");
  reg_cmd->add_flag("--no-admin", reg_no_admin, "Register a regular user")->excludes(a_flag);
  reg_cmd->add_flag("--exists-ok", reg.exists_ok, "Do not fail if the user already exists");
  reg_cmd->add_option("-c,--config", reg.config_path, "Server config file: the shared secret and the listener");
  reg_cmd->add_option("-k,--shared-secret", reg.shared_secret, "The registration_shared_secret");
  reg_cmd->add_option("server_url", reg.server_url, "The server's URL (default: the config's client listener, else http://localhost:8008)");
  auto* backup_cmd = app.add_subcommand("backup", "Back up the database, media and signing key while the server runs");
  std::string backup_dir;
  backup_cmd->add_option("-c,--config", config_path, "Path to homeserver.yaml");
  backup_cmd->add_option("out_dir", backup_dir, "A new directory for the backup")->required();
  auto* restore_cmd = app.add_subcommand("restore", "Put a backup in place (the server stopped, no database there)");
  restore_cmd->add_option("-c,--config", config_path, "Path to homeserver.yaml");
  restore_cmd->add_option("backup_dir", backup_dir, "The backup's directory")->required();
  // Synapse's synapse_port_db: --sqlite-database and --postgres-config are its names.
  auto* port_cmd = app.add_subcommand("port-db", "Copy an SQLite database into the PostgreSQL database the config names");
  std::string port_sqlite;
  port_cmd->add_option("--from-sqlite,--sqlite-database", port_sqlite, "The SQLite database file")->required();
  port_cmd->add_option("-c,--config,--postgres-config", config_path, "A config whose database: is psycopg2");
  CLI11_PARSE(app, argc, argv);

  try {
    if (*gen) {
      auto text = trestle::config::generate_config(server_name, data_dir);
      if (output.empty()) {
        std::cout << text;
      } else {
        // As Synapse's generate: a log config beside the config (named there, commented out).
        trestle::cli::write_log_config_beside(output, server_name, data_dir);
        std::ofstream out(output, std::ios::trunc);
        out << text;
        if (!out) throw std::runtime_error("cannot write " + output);
      }
      return 0;
    }
    if (*reg_cmd) {
      if (reg_admin || reg_no_admin) reg.admin = reg_admin;
      if (reg.config_path.empty() && !config_paths.empty()) reg.config_path = config_paths.front();
      return trestle::cli::register_user(reg);
    }
    if (config_path.empty() && !config_paths.empty()) config_path = config_paths.front();
    if (config_path.empty()) {
      std::cerr << "trestle: --config is required (see --help)\n";
      return 2;
    }
    if (*backup_cmd) return trestle::cli::backup(config_path, backup_dir);
    if (*restore_cmd) return trestle::cli::restore(config_path, backup_dir);
    if (*admin_cmd) return trestle::cli::set_admin(config_path, admin_user, !revoke_admin);
    if (*port_cmd) return trestle::cli::port_db(config_path, port_sqlite);
    return trestle::cli::serve(config_paths);
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return 1;
  }
}
