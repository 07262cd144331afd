#include "service/filter.hpp"

#include "core/error.hpp"
#include "core/identifiers.hpp"

namespace trestle::service {

namespace {

// '*' matches any run of characters; the spec allows it in types and not_types.
bool wildcard_match(std::string_view pattern, std::string_view value) {
  size_t p = 0, v = 0, star = std::string_view::npos, mark = 0;
  while (v < value.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = v;
    } else if (p < pattern.size() && pattern[p] == value[v]) {
      ++p;
      ++v;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      v = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool list_contains(const boost::json::object& f, const char* key, const std::string& value, bool wildcard) {
  auto* v = f.if_contains(key);
  if (!v || !v->is_array()) return false;
  for (const auto& item : v->as_array()) {
    if (!item.is_string()) continue;
    std::string_view s = item.as_string();
    if (wildcard ? wildcard_match(s, value) : s == value) return true;
  }
  return false;
}

bool has_list(const boost::json::object& f, const char* key) {
  auto* v = f.if_contains(key);
  return v && v->is_array();
}

void check_string_list(const boost::json::object& f, const char* key) {
  auto* v = f.if_contains(key);
  if (!v) return;
  if (!v->is_array()) throw MatrixError::bad_json(std::string("filter '") + key + "' must be a list of strings");
  for (const auto& item : v->as_array()) {
    if (!item.is_string()) throw MatrixError::bad_json(std::string("filter '") + key + "' must be a list of strings");
  }
}

// Lists of IDs must hold IDs of their kind (the spec's filter schema; Synapse checks them too).
void check_id_list(const boost::json::object& f, const char* key, bool rooms) {
  check_string_list(f, key);
  auto* v = f.if_contains(key);
  if (!v) return;
  for (const auto& item : v->as_array()) {
    std::string_view s = item.as_string();
    bool ok = rooms ? core::is_valid_room_id(s) : core::parse_user_id(s).has_value();
    if (!ok) throw MatrixError::bad_json(std::string("filter '") + key + "' holds an invalid ID: " + std::string(s));
  }
}

void check_bool(const boost::json::object& f, const char* key, const char* name) {
  if (auto* b = f.if_contains(key); b && !b->is_bool()) {
    throw MatrixError::bad_json(std::string("filter '") + name + "." + key + "' must be a boolean");
  }
}

void check_event_filter(const boost::json::value* v, const char* name) {
  if (!v) return;
  if (!v->is_object()) throw MatrixError::bad_json(std::string("filter '") + name + "' must be an object");
  const auto& f = v->as_object();
  for (const char* key : {"types", "not_types", "related_by_rel_types"}) check_string_list(f, key);
  for (const char* key : {"senders", "not_senders", "related_by_senders"}) check_id_list(f, key, false);
  for (const char* key : {"rooms", "not_rooms"}) check_id_list(f, key, true);
  for (const char* key : {"contains_url", "lazy_load_members", "include_redundant_members",
                          "unread_thread_notifications"}) {
    check_bool(f, key, name);
  }
  if (auto* l = f.if_contains("limit"); l && !l->is_int64() && !l->is_uint64()) {
    throw MatrixError::bad_json(std::string("filter '") + name + ".limit' must be an integer");
  }
}

}  // namespace

void validate_filter(const boost::json::object& filter) {
  check_event_filter(filter.if_contains("presence"), "presence");
  check_event_filter(filter.if_contains("account_data"), "account_data");
  check_string_list(filter, "event_fields");
  if (auto* ef = filter.if_contains("event_format");
      ef && (!ef->is_string() || (ef->as_string() != "client" && ef->as_string() != "federation"))) {
    throw MatrixError::bad_json("filter 'event_format' must be 'client' or 'federation'");
  }
  if (auto* room = filter.if_contains("room")) {
    if (!room->is_object()) throw MatrixError::bad_json("filter 'room' must be an object");
    const auto& r = room->as_object();
    check_id_list(r, "rooms", true);
    check_id_list(r, "not_rooms", true);
    check_bool(r, "include_leave", "room");
    for (const char* key : {"state", "timeline", "ephemeral", "account_data"}) check_event_filter(r.if_contains(key), key);
  }
}

bool event_matches(const boost::json::object& filter, const std::string& type, const std::string& sender,
                   const std::string& room_id, const boost::json::object& content) {
  if (list_contains(filter, "not_types", type, true)) return false;
  if (has_list(filter, "types") && !list_contains(filter, "types", type, true)) return false;
  if (list_contains(filter, "not_senders", sender, false)) return false;
  if (has_list(filter, "senders") && !list_contains(filter, "senders", sender, false)) return false;
  if (!room_id.empty()) {
    if (list_contains(filter, "not_rooms", room_id, false)) return false;
    if (has_list(filter, "rooms") && !list_contains(filter, "rooms", room_id, false)) return false;
  }
  if (auto* cu = filter.if_contains("contains_url"); cu && cu->is_bool()) {
    auto* url = content.if_contains("url");
    bool has_url = url && url->is_string();
    if (cu->as_bool() != has_url) return false;
  }
  return true;
}

bool event_matches(const boost::json::object& filter, const storage::events::StoredEvent& e) {
  if (filter.empty()) return true;
  static const boost::json::object empty;
  auto* content = e.pdu.if_contains("content");
  return event_matches(filter, e.type, e.sender, e.room_id,
                       content && content->is_object() ? content->as_object() : empty);
}

int64_t filter_limit(const boost::json::object& filter, int64_t fallback) {
  auto* l = filter.if_contains("limit");
  if (l && l->is_int64() && l->as_int64() >= 0) return l->as_int64();
  if (l && l->is_uint64()) return static_cast<int64_t>(std::min<uint64_t>(l->as_uint64(), INT64_MAX));
  return fallback;
}

bool filter_flag(const boost::json::object& filter, const char* key) {
  auto* v = filter.if_contains(key);
  return v && v->is_bool() && v->as_bool();
}

boost::json::object sub_filter(const boost::json::object& filter, std::initializer_list<const char*> path) {
  const boost::json::object* cur = &filter;
  for (const char* key : path) {
    auto* v = cur->if_contains(key);
    if (!v || !v->is_object()) return {};
    cur = &v->as_object();
  }
  return *cur;
}

bool room_allowed(const boost::json::object& room_filter, const std::string& room_id) {
  if (list_contains(room_filter, "not_rooms", room_id, false)) return false;
  if (has_list(room_filter, "rooms") && !list_contains(room_filter, "rooms", room_id, false)) return false;
  return true;
}

}  // namespace trestle::service
