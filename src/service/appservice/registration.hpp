#pragma once
// Appservice registration files (spec: application-service-api.md "Registration"), read exactly
// as other homeservers read them, and the registry that answers "whose namespace is this?".
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace re2 {
class RE2;
}

namespace trestle::service {

struct Namespace {
  bool exclusive = false;
  std::string regex;
  std::shared_ptr<re2::RE2> compiled;  // matched against the whole ID
  bool matches(std::string_view id) const;
};

struct AppService {
  std::string id;
  std::optional<std::string> url;  // null: nothing is pushed
  std::string as_token;
  std::string hs_token;
  std::string sender_localpart;
  std::string sender;  // @sender_localpart:server_name
  std::vector<Namespace> users, aliases, rooms;
  bool rate_limited = false;
  std::vector<std::string> protocols;
  bool receive_ephemeral = false;  // receive_ephemeral or de.sorunome.msc2409.push_ephemeral / push_ephemeral
  bool msc3202 = false;            // org.matrix.msc3202: device lists, OTK counts (encryption issue)
  bool msc4190 = false;            // io.element.msc4190: device management without UIA
  std::string source_file;

  // In a user namespace, or the sender itself.
  bool is_interested_in_user(std::string_view user_id) const;
  bool owns_user_exclusively(std::string_view user_id) const;
  // To-device messages for the user go in this appservice's transactions (MSC4203), not to /sync:
  // with ephemeral data and a URL, for users it owns exclusively (a user in a shared namespace may
  // log in themselves and sync their own devices).
  bool takes_to_device_for(std::string_view user_id) const {
    return receive_ephemeral && url && owns_user_exclusively(user_id);
  }
  bool is_interested_in_alias(std::string_view alias) const;
  bool owns_alias_exclusively(std::string_view alias) const;
  bool is_interested_in_room(std::string_view room_id) const;
};

// Parses one registration file's YAML. Throws std::runtime_error("<file>: <field>: <why>").
AppService parse_registration(const std::string& yaml_text, const std::string& source_file,
                              const std::string& server_name);

class AppServiceRegistry {
public:
  // Reads every file; enforces unique id and as_token across files (the spec's MUST).
  void load(const std::vector<std::string>& files, const std::string& server_name);
  void add(AppService as);  // also validates uniqueness

  // The appservice whose as_token this is (constant-time comparison over all of them).
  const AppService* by_token(std::string_view token) const;
  const AppService* by_id(std::string_view id) const;
  // The appservice that claims the user / alias exclusively, if any.
  const AppService* exclusive_owner_of_user(std::string_view user_id) const;
  const AppService* exclusive_owner_of_alias(std::string_view alias) const;
  const std::vector<std::unique_ptr<AppService>>& all() const { return services_; }

private:
  std::vector<std::unique_ptr<AppService>> services_;
};

}  // namespace trestle::service

namespace trestle::service {
struct Requester;
// Alias creation rules: an appservice may only create aliases in its alias namespaces; anyone else
// may not create one inside an exclusive namespace. Both are 400 M_EXCLUSIVE.
void check_alias_namespace(const AppServiceRegistry& registry, const Requester& r, const std::string& alias);
}  // namespace trestle::service
