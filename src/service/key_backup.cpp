#include "service/key_backup.hpp"

#include "core/error.hpp"
#include "core/identifiers.hpp"
#include "core/json_depth.hpp"
#include "storage/key_backup_store.hpp"

#include <boost/json/serialize.hpp>

#include <vector>

namespace trestle::service {

namespace kb = storage::key_backup;
using boost::json::object;

bool should_replace_backup_key(const BackupKeyRank& stored, const BackupKeyRank& uploaded) {
  if (stored.is_verified != uploaded.is_verified) return uploaded.is_verified;
  if (stored.first_message_index != uploaded.first_message_index) {
    return uploaded.first_message_index < stored.first_message_index;
  }
  return uploaded.forwarded_count < stored.forwarded_count;
}

namespace {

MatrixError unknown_version(const std::string& v) { return MatrixError::not_found("Unknown backup version '" + v + "'"); }

// Versions are the decimal numbers this server hands out; anything else names no backup.
std::optional<int64_t> parse_version(const std::string& v) {
  if (v.empty() || v.size() > 18) return std::nullopt;
  int64_t n = 0;
  for (char ch : v) {
    if (ch < '0' || ch > '9') return std::nullopt;
    n = n * 10 + (ch - '0');
  }
  return n;
}

int64_t require_version_param(const std::optional<std::string>& v) {
  if (!v) throw MatrixError::missing_param("Missing 'version' query parameter");
  auto n = parse_version(*v);
  if (!n) throw unknown_version(*v);
  return *n;
}

std::string required_string_field(const object& body, const char* key) {
  auto* v = body.if_contains(key);
  if (!v) throw MatrixError::missing_param(std::string("Missing '") + key + "'");
  if (!v->is_string()) throw MatrixError::bad_json(std::string("'") + key + "' must be a string");
  return std::string(v->as_string());
}

// auth_data as JSON text, within bounds.
std::string auth_data_text(const object& body) {
  auto* v = body.if_contains("auth_data");
  if (!v) throw MatrixError::missing_param("Missing 'auth_data'");
  // The spec describes an object; like Synapse, an opaque string is stored as well (SyTest sends one).
  if (!v->is_object() && !v->is_string()) throw MatrixError::bad_json("'auth_data' must be an object");
  auto text = boost::json::serialize(*v);
  if (text.size() > KeyBackupService::kMaxAuthDataBytes) {
    throw MatrixError(413, "M_TOO_LARGE",
                      "'auth_data' is larger than " + std::to_string(KeyBackupService::kMaxAuthDataBytes) + " bytes");
  }
  return text;
}

std::string algorithm_of(const object& body) {
  auto algorithm = required_string_field(body, "algorithm");
  if (algorithm.empty() || algorithm.size() > KeyBackupService::kMaxIdBytes) {
    throw MatrixError::invalid_param("Invalid 'algorithm'");
  }
  return algorithm;
}

void check_room_id(const std::string& room_id) {
  if (!core::is_valid_room_id(room_id)) throw MatrixError::invalid_param("Invalid room ID '" + room_id + "'");
}

void check_session_id(const std::string& session_id) {
  if (session_id.empty() || session_id.size() > KeyBackupService::kMaxIdBytes) {
    throw MatrixError::invalid_param("Session IDs must be 1 to 255 bytes");
  }
}

int64_t non_negative_int(const object& o, const char* key) {
  auto* v = o.if_contains(key);
  if (!v) throw MatrixError::missing_param(std::string("Missing '") + key + "'");
  if (v->is_int64() && v->as_int64() >= 0) return v->as_int64();
  if (v->is_uint64() && v->as_uint64() <= static_cast<uint64_t>(INT64_MAX)) return static_cast<int64_t>(v->as_uint64());
  throw MatrixError::bad_json(std::string("'") + key + "' must be a non-negative integer");
}

kb::SessionKey parse_key(const std::string& room_id, const std::string& session_id, const boost::json::value& v) {
  check_room_id(room_id);
  check_session_id(session_id);
  if (!v.is_object()) throw MatrixError::bad_json("A session's key data must be an object");
  const auto& o = v.as_object();
  kb::SessionKey k;
  k.room_id = room_id;
  k.session_id = session_id;
  k.first_message_index = non_negative_int(o, "first_message_index");
  k.forwarded_count = non_negative_int(o, "forwarded_count");
  auto* verified = o.if_contains("is_verified");
  if (!verified) throw MatrixError::missing_param("Missing 'is_verified'");
  if (!verified->is_bool()) throw MatrixError::bad_json("'is_verified' must be a boolean");
  k.is_verified = verified->as_bool();
  auto* data = o.if_contains("session_data");
  if (!data) throw MatrixError::missing_param("Missing 'session_data'");
  if (!data->is_object() && !data->is_string()) throw MatrixError::bad_json("'session_data' must be an object");
  k.session_data = boost::json::serialize(*data);
  if (k.session_data.size() > KeyBackupService::kMaxSessionDataBytes) {
    throw MatrixError(413, "M_TOO_LARGE",
                      "'session_data' is larger than " + std::to_string(KeyBackupService::kMaxSessionDataBytes) +
                          " bytes");
  }
  return k;
}

const object& sessions_of(const object& room_body) {
  auto* s = room_body.if_contains("sessions");
  if (!s) throw MatrixError::missing_param("Missing 'sessions'");
  if (!s->is_object()) throw MatrixError::bad_json("'sessions' must be an object");
  return s->as_object();
}

void add_sessions(std::vector<kb::SessionKey>& out, const std::string& room_id, const object& room_body) {
  for (const auto& [session_id, data] : sessions_of(room_body)) {
    if (out.size() >= KeyBackupService::kMaxKeysPerRequest) {
      throw MatrixError(413, "M_TOO_LARGE",
                        "At most " + std::to_string(KeyBackupService::kMaxKeysPerRequest) + " keys per request");
    }
    out.push_back(parse_key(room_id, std::string(session_id), data));
  }
}

object key_json(const kb::SessionKey& k) {
  return object{{"first_message_index", k.first_message_index},
                {"forwarded_count", k.forwarded_count},
                {"is_verified", k.is_verified},
                {"session_data", core::parse_stored_json(k.session_data)}};
}

object update_result(storage::Connection& c, const std::string& user_id, int64_t version) {
  auto v = kb::get_version(c, user_id, version);
  return object{{"etag", std::to_string(v ? v->etag : 0)}, {"count", kb::count_keys(c, user_id, version)}};
}

// The live version the request names, or 404.
kb::Version live_version(storage::Connection& c, const std::string& user_id, int64_t version,
                         const std::string& text) {
  auto v = kb::get_version(c, user_id, version);
  if (!v) throw unknown_version(text);
  return *v;
}

}  // namespace

std::string KeyBackupService::create_version(const std::string& user_id, const object& body) {
  auto algorithm = algorithm_of(body);
  auto auth_data = auth_data_text(body);
  int64_t v = db_.write([&](storage::Connection& c) { return kb::create_version(c, user_id, algorithm, auth_data); });
  return std::to_string(v);
}

object KeyBackupService::get_version(const std::string& user_id, const std::optional<std::string>& version) {
  std::optional<int64_t> wanted;
  if (version) {
    wanted = parse_version(*version);
    if (!wanted) throw unknown_version(*version);
  }
  return db_.read([&](storage::Connection& c) {
    auto v = kb::get_version(c, user_id, wanted);
    if (!v) throw version ? unknown_version(*version) : MatrixError::not_found("No current backup version");
    return object{{"algorithm", v->algorithm},
                  {"auth_data", core::parse_stored_json(v->auth_data)},
                  {"count", kb::count_keys(c, user_id, v->version)},
                  {"etag", std::to_string(v->etag)},
                  {"version", std::to_string(v->version)}};
  });
}

void KeyBackupService::update_version(const std::string& user_id, const std::string& version, const object& body) {
  auto algorithm = algorithm_of(body);
  auto auth_data = auth_data_text(body);
  if (auto* bv = body.if_contains("version")) {
    if (!bv->is_string()) throw MatrixError::bad_json("'version' must be a string");
    if (bv->as_string() != version) throw MatrixError::invalid_param("Version in body does not match the path");
  }
  auto n = parse_version(version);
  if (!n) throw unknown_version(version);
  db_.write([&](storage::Connection& c) {
    auto v = live_version(c, user_id, *n, version);
    if (v.algorithm != algorithm) throw MatrixError::invalid_param("Algorithm does not match");
    kb::update_auth_data(c, user_id, *n, auth_data);
  });
}

void KeyBackupService::delete_version(const std::string& user_id, const std::string& version) {
  auto n = parse_version(version);
  if (!n) throw unknown_version(version);
  db_.write([&](storage::Connection& c) {
    // A version deleted before deletes again without error (spec); one never created is 404.
    if (!kb::version_ever_existed(c, user_id, *n)) throw unknown_version(version);
    kb::delete_version(c, user_id, *n);
  });
}

object KeyBackupService::put_keys(const std::string& user_id, const std::optional<std::string>& version,
                                  const std::optional<std::string>& room_id,
                                  const std::optional<std::string>& session_id, const object& body) {
  int64_t n = require_version_param(version);
  std::vector<kb::SessionKey> keys;
  if (room_id && session_id) {
    keys.push_back(parse_key(*room_id, *session_id, body));
  } else if (room_id) {
    add_sessions(keys, *room_id, body);
  } else {
    auto* rooms = body.if_contains("rooms");
    if (!rooms) throw MatrixError::missing_param("Missing 'rooms'");
    if (!rooms->is_object()) throw MatrixError::bad_json("'rooms' must be an object");
    for (const auto& [rid, room_body] : rooms->as_object()) {
      if (!room_body.is_object()) throw MatrixError::bad_json("A room's backup data must be an object");
      add_sessions(keys, std::string(rid), room_body.as_object());
    }
  }
  return db_.write([&](storage::Connection& c) {
    auto current = kb::get_version(c, user_id, std::nullopt);
    if (!current || current->version != n) {
      // Keys go to the current version only; a live older version says which one is current.
      if (!current || !kb::get_version(c, user_id, n)) throw unknown_version(*version);
      throw MatrixError(403, "M_WRONG_ROOM_KEYS_VERSION", "Wrong backup version",
                        object{{"current_version", std::to_string(current->version)}});
    }
    bool changed = false;
    for (const auto& k : keys) {
      auto stored = kb::get_key(c, user_id, n, k.room_id, k.session_id);
      if (stored && !should_replace_backup_key({stored->first_message_index, stored->forwarded_count, stored->is_verified},
                                               {k.first_message_index, k.forwarded_count, k.is_verified})) {
        continue;
      }
      kb::put_key(c, user_id, n, k);
      changed = true;
    }
    if (changed) kb::bump_etag(c, user_id, n);
    return update_result(c, user_id, n);
  });
}

object KeyBackupService::get_keys(const std::string& user_id, const std::optional<std::string>& version,
                                  const std::optional<std::string>& room_id,
                                  const std::optional<std::string>& session_id) {
  int64_t n = require_version_param(version);
  return db_.read([&](storage::Connection& c) {
    live_version(c, user_id, n, *version);
    if (room_id && session_id) {
      auto k = kb::get_key(c, user_id, n, *room_id, *session_id);
      if (!k) throw MatrixError::not_found("No backed-up key for this session");
      return key_json(*k);
    }
    object rooms;
    for (const auto& k : kb::get_keys(c, user_id, n, room_id)) {
      auto& room = rooms[k.room_id];
      if (!room.is_object()) room = object{{"sessions", object{}}};
      room.as_object()["sessions"].as_object()[k.session_id] = key_json(k);
    }
    if (room_id) {
      auto* room = rooms.if_contains(*room_id);
      return room ? room->as_object() : object{{"sessions", object{}}};
    }
    return object{{"rooms", std::move(rooms)}};
  });
}

object KeyBackupService::delete_keys(const std::string& user_id, const std::optional<std::string>& version,
                                     const std::optional<std::string>& room_id,
                                     const std::optional<std::string>& session_id) {
  int64_t n = require_version_param(version);
  return db_.write([&](storage::Connection& c) {
    live_version(c, user_id, n, *version);
    if (kb::delete_keys(c, user_id, n, room_id, session_id) > 0) kb::bump_etag(c, user_id, n);
    return update_result(c, user_id, n);
  });
}

}  // namespace trestle::service
