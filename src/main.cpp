// trestle: a Matrix homeserver for bridges and bots.
//   trestle --config homeserver.yaml            serve
//   trestle generate-config --server-name NAME  print a commented config
//   trestle --config FILE set-admin USER_ID     make a local user a server admin
// Each command lives in src/cli/.
#include "cli/commands.hpp"
#include "cli/logging.hpp"
#include "config/config.hpp"
#include "core/crypto.hpp"

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <fstream>
#include <iostream>

int main(int argc, char** argv) {
  trestle::core::crypto_init();
  CLI::App app{"Trestle: a Matrix homeserver for bridges and bots"};
  std::string config_path;
  app.add_option("-c,--config", config_path, "Path to homeserver.yaml");

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
    if (config_path.empty()) {
      std::cerr << "trestle: --config is required (see --help)\n";
      return 2;
    }
    if (*admin_cmd) return trestle::cli::set_admin(config_path, admin_user, !revoke_admin);
    return trestle::cli::serve(config_path);
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return 1;
  }
}
