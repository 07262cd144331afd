#include "service/appservice/registration.hpp"

#include "core/crypto.hpp"
#include "core/identifiers.hpp"

#include <re2/re2.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace trestle::service {

bool Namespace::matches(std::string_view id) const {
  return compiled && re2::RE2::FullMatch(re2::StringPiece(id.data(), id.size()), *compiled);
}

namespace {

bool any_match(const std::vector<Namespace>& ns, std::string_view id, bool exclusive_only) {
  for (const auto& n : ns) {
    if (exclusive_only && !n.exclusive) continue;
    if (n.matches(id)) return true;
  }
  return false;
}

}  // namespace

bool AppService::is_interested_in_user(std::string_view user_id) const {
  return user_id == sender || any_match(users, user_id, false);
}
bool AppService::owns_user_exclusively(std::string_view user_id) const {
  return user_id == sender || any_match(users, user_id, true);
}
bool AppService::is_interested_in_alias(std::string_view alias) const { return any_match(aliases, alias, false); }
bool AppService::owns_alias_exclusively(std::string_view alias) const { return any_match(aliases, alias, true); }
bool AppService::is_interested_in_room(std::string_view room_id) const { return any_match(rooms, room_id, false); }

AppService parse_registration(const std::string& yaml_text, const std::string& source_file,
                              const std::string& server_name) {
  auto fail = [&](const std::string& field, const std::string& why) -> std::runtime_error {
    return std::runtime_error("appservice registration " + source_file + ": '" + field + "': " + why);
  };
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw std::runtime_error("appservice registration " + source_file + ": not valid YAML: " + e.what());
  }
  if (!root.IsMap()) throw std::runtime_error("appservice registration " + source_file + ": must be a YAML mapping");

  auto required_string = [&](const char* key) {
    auto n = root[key];
    if (!n || n.IsNull()) throw fail(key, "is required");
    if (!n.IsScalar()) throw fail(key, "must be a string");
    auto s = n.as<std::string>();
    if (s.empty()) throw fail(key, "must not be empty");
    return s;
  };
  auto optional_bool = [&](const char* key) {
    auto n = root[key];
    if (!n || n.IsNull()) return false;
    try {
      return n.as<bool>();
    } catch (const YAML::Exception&) {
      throw fail(key, "must be true or false");
    }
  };

  AppService as;
  as.source_file = source_file;
  as.id = required_string("id");
  as.as_token = required_string("as_token");
  as.hs_token = required_string("hs_token");
  as.sender_localpart = required_string("sender_localpart");
  if (auto url = root["url"]; url && !url.IsNull()) {
    if (!url.IsScalar()) throw fail("url", "must be a string or null");
    auto u = url.as<std::string>();
    if (u.rfind("http://", 0) != 0 && u.rfind("https://", 0) != 0) throw fail("url", "must be an http(s) URL or null");
    as.url = u;
  } else if (!url) {
    throw fail("url", "is required (use null for an appservice that receives nothing)");
  }
  // Synapse accepts the usual localpart characters here; the user must be creatable.
  if (!core::is_valid_new_localpart(as.sender_localpart)) {
    throw fail("sender_localpart", "'" + as.sender_localpart + "' is not a valid user localpart");
  }
  as.sender = "@" + as.sender_localpart + ":" + server_name;
  as.rate_limited = optional_bool("rate_limited");
  // Bridges often ship the stable and the unstable spelling together: either turns it on.
  as.receive_ephemeral = optional_bool("receive_ephemeral") || optional_bool("de.sorunome.msc2409.push_ephemeral") ||
                         optional_bool("push_ephemeral");
  as.msc3202 = optional_bool("org.matrix.msc3202");
  as.msc4190 = optional_bool("io.element.msc4190");
  if (auto p = root["protocols"]; p && !p.IsNull()) {
    if (!p.IsSequence()) throw fail("protocols", "must be a list of strings");
    for (const auto& item : p) {
      if (!item.IsScalar()) throw fail("protocols", "must be a list of strings");
      as.protocols.push_back(item.as<std::string>());
    }
  }

  auto ns = root["namespaces"];
  if (!ns || ns.IsNull()) throw fail("namespaces", "is required (a mapping of users, aliases, rooms)");
  if (!ns.IsMap()) throw fail("namespaces", "must be a mapping");
  auto read_namespaces = [&](const char* kind, std::vector<Namespace>& out) {
    if (!ns || ns.IsNull()) return;
    auto list = ns[kind];
    if (!list || list.IsNull()) return;
    std::string field = std::string("namespaces.") + kind;
    if (!list.IsSequence()) throw fail(field, "must be a list of {exclusive, regex}");
    for (size_t i = 0; i < list.size(); ++i) {
      std::string item_field = field + "[" + std::to_string(i) + "]";
      auto item = list[i];
      if (!item.IsMap()) throw fail(item_field, "must be a mapping with exclusive and regex");
      auto regex = item["regex"];
      if (!regex || !regex.IsScalar()) throw fail(item_field + ".regex", "is required and must be a string");
      Namespace n;
      n.regex = regex.as<std::string>();
      if (auto ex = item["exclusive"]; ex && !ex.IsNull()) {
        try {
          n.exclusive = ex.as<bool>();
        } catch (const YAML::Exception&) {
          throw fail(item_field + ".exclusive", "must be true or false");
        }
      }
      re2::RE2::Options opts;
      opts.set_log_errors(false);
      n.compiled = std::make_shared<re2::RE2>(n.regex, opts);
      if (!n.compiled->ok()) throw fail(item_field + ".regex", "invalid regular expression: " + n.compiled->error());
      out.push_back(std::move(n));
    }
  };
  read_namespaces("users", as.users);
  read_namespaces("aliases", as.aliases);
  read_namespaces("rooms", as.rooms);
  return as;
}

void AppServiceRegistry::load(const std::vector<std::string>& files, const std::string& server_name) {
  for (const auto& f : files) {
    std::ifstream in(f);
    if (!in) throw std::runtime_error("appservice registration " + f + ": cannot be read");
    std::stringstream ss;
    ss << in.rdbuf();
    add(parse_registration(ss.str(), f, server_name));
  }
}

void AppServiceRegistry::add(AppService as) {
  for (const auto& other : services_) {
    if (other->id == as.id) {
      throw std::runtime_error("appservice registration " + as.source_file + ": 'id': '" + as.id +
                               "' is already used by " + other->source_file);
    }
    if (other->as_token == as.as_token) {
      throw std::runtime_error("appservice registration " + as.source_file + ": 'as_token': already used by " +
                               other->source_file);
    }
  }
  services_.push_back(std::make_unique<AppService>(std::move(as)));
}

const AppService* AppServiceRegistry::by_token(std::string_view token) const {
  const AppService* found = nullptr;
  // Compare against every registration without stopping early, in constant time per token.
  for (const auto& s : services_) {
    if (core::constant_time_equal(s->as_token, token)) found = s.get();
  }
  return found;
}

const AppService* AppServiceRegistry::by_id(std::string_view id) const {
  for (const auto& s : services_) {
    if (s->id == id) return s.get();
  }
  return nullptr;
}

const AppService* AppServiceRegistry::exclusive_owner_of_user(std::string_view user_id) const {
  for (const auto& s : services_) {
    if (s->owns_user_exclusively(user_id)) return s.get();
  }
  return nullptr;
}

const AppService* AppServiceRegistry::exclusive_owner_of_alias(std::string_view alias) const {
  for (const auto& s : services_) {
    if (s->owns_alias_exclusively(alias)) return s.get();
  }
  return nullptr;
}

}  // namespace trestle::service

#include "core/error.hpp"
#include "service/requester.hpp"

namespace trestle::service {

void check_alias_namespace(const AppServiceRegistry& registry, const Requester& r, const std::string& alias) {
  if (r.appservice && !r.appservice->is_interested_in_alias(alias)) {
    throw MatrixError(400, "M_EXCLUSIVE", "This application service has not reserved this alias");
  }
  // An exclusive namespace keeps out people and every other appservice.
  for (const auto& other : registry.all()) {
    if (other.get() != r.appservice && other->owns_alias_exclusively(alias)) {
      throw MatrixError(400, "M_EXCLUSIVE", "This alias is reserved by an application service");
    }
  }
}

}  // namespace trestle::service
