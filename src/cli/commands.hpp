#pragma once
// The command line's commands, one file each; main.cpp parses the arguments and calls one.
// Each returns the process exit status.
#include <string>

namespace trestle::cli {

// `trestle --config FILE`: serve until SIGINT/SIGTERM.
int serve(const std::string& config_path);
// `trestle --config FILE set-admin USER_ID [--revoke]`.
int set_admin(const std::string& config_path, const std::string& user_id, bool admin);

}  // namespace trestle::cli
