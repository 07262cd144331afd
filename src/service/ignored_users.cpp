#include "service/ignored_users.hpp"

#include "core/json_depth.hpp"
#include "storage/user_data_store.hpp"

namespace trestle::service {

std::set<std::string> ignored_users(storage::Connection& c, const std::string& user_id) {
  std::set<std::string> out;
  auto stored = storage::user_data::get_account_data(c, user_id, "", "m.ignored_user_list");
  if (!stored) return out;
  auto v = core::parse_stored_json(*stored);
  if (!v.is_object()) return out;
  auto* users = v.as_object().if_contains("ignored_users");
  if (!users || !users->is_object()) return out;
  for (const auto& kv : users->as_object()) out.insert(std::string(kv.key()));
  return out;
}

}  // namespace trestle::service
