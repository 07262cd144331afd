// `trestle register-user`: registers a user on a running server with the shared secret, as
// Synapse's register_new_matrix_user does (same options, prompts and messages): GET a nonce from
// /_synapse/admin/v1/register, then POST the user with the HMAC-SHA1 mac of the request.
#include "cli/commands.hpp"
#include "config/config.hpp"
#include "core/crypto.hpp"
#include "http/client.hpp"

#include <boost/json.hpp>

#include <pwd.h>
#include <termios.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <sstream>

namespace trestle::cli {

namespace {

constexpr const char* kDefaultServerUrl = "http://localhost:8008";
constexpr int kTimeoutMs = 30'000;

std::string trim(const std::string& s) {
  auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return "";
  auto last = s.find_last_not_of(" \t\r\n");
  return s.substr(first, last - first + 1);
}

// One line from the terminal (standard input), after printing `prompt`.
std::string ask(const std::string& prompt) {
  std::cout << prompt << std::flush;
  std::string line;
  if (!std::getline(std::cin, line)) line.clear();
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

// As ask(), without echoing what is typed when standard input is a terminal.
std::string ask_secret(const std::string& prompt) {
  termios old{};
  bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
  if (tty) {
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  }
  std::string line = ask(prompt);
  if (tty) {
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    std::cout << "\n" << std::flush;
  }
  return line;
}

std::string login_name() {
  if (const passwd* pw = getpwuid(getuid()); pw && pw->pw_name) return pw->pw_name;
  if (const char* u = std::getenv("USER")) return u;
  return "";
}

// Where the config's first plain http listener with the client resource listens.
std::optional<std::string> client_listener_url(const config::Config& cfg) {
  for (const auto& l : cfg.listeners) {
    if (l.type != "http") continue;
    bool client = false;
    for (const auto& r : l.resources) client = client || r == "client";
    if (!client) continue;
    std::string host = l.bind_addresses.empty() ? "127.0.0.1" : l.bind_addresses.front();
    if (host == "0.0.0.0" || host.empty()) host = "127.0.0.1";
    else if (host == "::") host = "[::1]";
    else if (host.find(':') != std::string::npos) host = "[" + host + "]";
    return "http://" + host + ":" + std::to_string(l.port);
  }
  return std::nullopt;
}

// Synapse's messages for a refused request: the status, then the server's `error`.
void print_refusal(const http::ClientResponse& res) {
  if (res.status == 0) {
    std::cout << "ERROR! Could not reach the server: " << res.error << "\n";
    return;
  }
  std::cout << "ERROR! Received " << res.status << "\n";
  if (res.status >= 400 && res.status < 500) {
    boost::system::error_code ec;
    auto v = boost::json::parse(res.body, ec);
    if (!ec && v.is_object()) {
      if (auto* e = v.as_object().if_contains("error"); e && e->is_string()) std::cout << e->as_string() << "\n";
    }
  }
}

}  // namespace

int register_user(RegisterUserOptions o) {
  std::optional<config::Config> cfg;
  if (!o.config_path.empty()) {
    std::vector<std::string> warnings;
    try {
      cfg = config::load_config(o.config_path, warnings);
    } catch (const std::exception& e) {
      std::cerr << e.what() << "\n";
      return 1;
    }
  }
  std::string secret = o.shared_secret;
  if (secret.empty()) {
    if (!cfg) {
      std::cerr << "One of -c/--config or -k/--shared-secret is required.\n";
      return 1;
    }
    secret = cfg->registration_shared_secret;
    if (secret.empty()) {
      std::cerr << "No 'registration_shared_secret' or 'registration_shared_secret_path' defined in config.\n";
      return 1;
    }
  }
  if (!o.password_file.empty()) {
    std::ifstream in(o.password_file);
    if (!in) {
      std::cerr << "Cannot read password-file '" << o.password_file << "'\n";
      return 1;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    o.password = trim(ss.str());
  }
  std::string server_url = o.server_url;
  if (server_url.empty()) {
    if (auto url = cfg ? client_listener_url(*cfg) : std::nullopt) {
      server_url = *url;
    } else {
      server_url = kDefaultServerUrl;
      std::cerr << (cfg ? "Unable to find a suitable HTTP listener in the configuration file. Trying "
                        : "No server url or configuration file given. Defaulting to ")
                << server_url << (cfg ? " as a last resort.\n" : ".\n");
    }
  }

  // What is missing is asked for, as register_new_matrix_user does.
  if (o.user.empty()) {
    std::string def = login_name();
    o.user = ask(def.empty() ? "New user localpart: " : "New user localpart [" + def + "]: ");
    if (o.user.empty()) o.user = def;
  }
  if (o.user.empty()) {
    std::cout << "Invalid user name\n";
    return 1;
  }
  if (o.password.empty()) {
    o.password = ask_secret("Password: ");
    if (o.password.empty()) {
      std::cout << "Password cannot be blank.\n";
      return 1;
    }
    if (ask_secret("Confirm password: ") != o.password) {
      std::cout << "Passwords do not match\n";
      return 1;
    }
  }
  if (!o.admin) {
    std::string a = ask("Make admin [no]: ");
    o.admin = a == "y" || a == "yes" || a == "true";
  }

  while (!server_url.empty() && server_url.back() == '/') server_url.pop_back();
  const std::string path = "/_synapse/admin/v1/register";
  auto got = http::http_request("GET", server_url, path, {}, "", kTimeoutMs);
  if (got.status != 200) {
    print_refusal(got);
    return 1;
  }
  std::string nonce;
  {
    boost::system::error_code ec;
    auto v = boost::json::parse(got.body, ec);
    auto* n = !ec && v.is_object() ? v.as_object().if_contains("nonce") : nullptr;
    if (!n || !n->is_string()) {
      std::cout << "ERROR! The server sent no nonce\n";
      return 1;
    }
    nonce = n->as_string();
  }
  boost::json::object body{{"nonce", nonce},
                           {"username", o.user},
                           {"password", o.password},
                           {"mac", core::registration_mac(secret, nonce, o.user, o.password, *o.admin, o.user_type)},
                           {"admin", *o.admin}};
  body["user_type"] = o.user_type.empty() ? boost::json::value(nullptr) : boost::json::value(o.user_type);
  std::cout << "Sending registration request...\n" << std::flush;
  auto res = http::http_request("POST", server_url, path, {{"Content-Type", "application/json"}},
                                boost::json::serialize(body), kTimeoutMs);
  if (res.status != 200) {
    if (o.exists_ok && res.status == 400 && res.body.find("\"M_USER_IN_USE\"") != std::string::npos) {
      std::cout << "User already exists. Skipping.\n";
      return 0;
    }
    print_refusal(res);
    return 1;
  }
  std::cout << "Success!\n";
  return 0;
}

}  // namespace trestle::cli
