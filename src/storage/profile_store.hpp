#pragma once
// Profile fields beyond displayname and avatar_url (those live on the users row): `m.tz` and
// custom namespaced keys (MSC4133, spec v1.16), each value stored as its JSON text.
#include "storage/database.hpp"

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace trestle::storage::profile {

// (field name, JSON value), by name.
std::vector<std::pair<std::string, std::string>> extra_fields(Connection& c, const std::string& user_id);
std::optional<std::string> extra_field(Connection& c, const std::string& user_id, const std::string& name);
void set_extra_field(Connection& c, const std::string& user_id, const std::string& name, const std::string& json);
void delete_extra_field(Connection& c, const std::string& user_id, const std::string& name);
void delete_all_extra_fields(Connection& c, const std::string& user_id);

}  // namespace trestle::storage::profile
