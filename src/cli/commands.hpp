#pragma once
// The command line's commands, one file each; main.cpp parses the arguments and calls one.
// Each returns the process exit status.
#include <optional>
#include <string>
#include <vector>

namespace trestle::cli {

// `trestle --config FILE`: serve until SIGINT/SIGTERM.
int serve(const std::vector<std::string>& config_paths);
// `trestle --config FILE set-admin USER_ID [--revoke]`.
int set_admin(const std::string& config_path, const std::string& user_id, bool admin);

// `trestle register-user`: Synapse's register_new_matrix_user (shared-secret registration over
// HTTP to a running server); asks on the terminal for what the options leave out.
struct RegisterUserOptions {
  std::string user, password, password_file, user_type, config_path, shared_secret, server_url;
  std::optional<bool> admin;  // none: ask
  bool exists_ok = false;
};
int register_user(RegisterUserOptions options);

// `trestle --config FILE backup OUT_DIR`: an online backup (database, media, signing key, manifest).
int backup(const std::string& config_path, const std::string& out_dir);
// `trestle --config FILE restore BACKUP_DIR`: checks a backup and puts it in place (never over an
// existing database).
int restore(const std::string& config_path, const std::string& backup_dir);

// `trestle --config PG_CONFIG port-db --from-sqlite FILE`: copies an SQLite database into the
// PostgreSQL database the config names (resumable; row counts compared at the end).
int port_db(const std::string& config_path, const std::string& sqlite_path);

}  // namespace trestle::cli
