#include "cli/commands.hpp"
#include "config/config.hpp"
#include "storage/account_store.hpp"
#include "service/database_options.hpp"
#include "storage/database.hpp"

#include <iostream>

namespace trestle::cli {

// `trestle --config FILE set-admin USER_ID [--revoke]`: makes a local user a server admin (admin
// endpoints such as /admin/lock and /admin/suspend), on the database the config names. Safe while
// the server runs (SQLite WAL); the server sees it at the user's next request.
int set_admin(const std::string& config_path, const std::string& user_id, bool admin) {
  std::vector<std::string> warnings;
  auto cfg = trestle::config::load_config(config_path, warnings);
  trestle::storage::Database db(trestle::service::database_options(cfg, 0));
  bool found = db.write([&](trestle::storage::Connection& c) {
    if (!trestle::storage::accounts::user_exists(c, user_id)) return false;
    trestle::storage::accounts::set_admin(c, user_id, admin);
    return true;
  });
  if (!found) {
    std::cerr << "trestle: no user " << user_id << "\n";
    return 1;
  }
  std::cout << user_id << (admin ? " is now a server admin\n" : " is no longer a server admin\n");
  return 0;
}

}  // namespace trestle::cli
