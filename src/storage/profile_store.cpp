#include "storage/profile_store.hpp"

namespace trestle::storage::profile {

std::vector<std::pair<std::string, std::string>> extra_fields(Connection& c, const std::string& user_id) {
  auto st = c.prepare("SELECT field_name, value FROM profile_fields WHERE user_id = ? ORDER BY field_name");
  st.bind(user_id);
  std::vector<std::pair<std::string, std::string>> out;
  while (st.step()) out.emplace_back(st.text(0), st.text(1));
  return out;
}

std::optional<std::string> extra_field(Connection& c, const std::string& user_id, const std::string& name) {
  auto st = c.prepare("SELECT value FROM profile_fields WHERE user_id = ? AND field_name = ?");
  st.bind(user_id, name);
  if (!st.step()) return std::nullopt;
  return st.text(0);
}

void set_extra_field(Connection& c, const std::string& user_id, const std::string& name, const std::string& json) {
  c.prepare("INSERT INTO profile_fields (user_id, field_name, value) VALUES (?, ?, ?) "
            "ON CONFLICT (user_id, field_name) DO UPDATE SET value = excluded.value")
      .bind(user_id, name, json)
      .run();
}

void delete_extra_field(Connection& c, const std::string& user_id, const std::string& name) {
  c.prepare("DELETE FROM profile_fields WHERE user_id = ? AND field_name = ?").bind(user_id, name).run();
}

void delete_all_extra_fields(Connection& c, const std::string& user_id) {
  c.prepare("DELETE FROM profile_fields WHERE user_id = ?").bind(user_id).run();
}

}  // namespace trestle::storage::profile
