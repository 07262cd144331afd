#include "storage/key_store.hpp"

namespace trestle::storage::keys {

std::optional<std::string> get_device_keys(Connection& c, const std::string& user_id, const std::string& device_id) {
  auto st = c.prepare("SELECT key_json FROM e2e_device_keys WHERE user_id = ? AND device_id = ?");
  st.bind(user_id, device_id);
  if (!st.step()) return std::nullopt;
  return st.text(0);
}

void put_device_keys(Connection& c, const std::string& user_id, const std::string& device_id, const std::string& json) {
  c.prepare("INSERT INTO e2e_device_keys (user_id, device_id, key_json) VALUES (?, ?, ?) "
            "ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json")
      .bind(user_id, device_id, json)
      .run();
}

std::vector<DeviceRow> devices_with_keys(Connection& c, const std::string& user_id) {
  auto st = c.prepare("SELECT d.device_id, d.display_name, k.key_json FROM devices d LEFT JOIN e2e_device_keys k "
                      "ON k.user_id = d.user_id AND k.device_id = d.device_id WHERE d.user_id = ? "
                      "ORDER BY d.device_id");
  st.bind(user_id);
  std::vector<DeviceRow> out;
  while (st.step()) out.push_back(DeviceRow{st.text(0), st.opt_text(1), st.opt_text(2)});
  return out;
}

void delete_keys_of_removed_devices(Connection& c, const std::string& user_id) {
  for (const char* table : {"e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys"}) {
    c.prepare(std::string("DELETE FROM ") + table + " WHERE user_id = ? AND device_id NOT IN "
              "(SELECT device_id FROM devices WHERE user_id = ?)")
        .bind(user_id, user_id)
        .run();
  }
  // Signatures on a device are keyed by its id; cross-signing keys are 43-character public keys,
  // which are no device ids of ours (those are 10 letters or chosen by the client), so only
  // signatures whose target is neither a device nor a cross-signing key go. The public keys are
  // the values of each key's `keys` object (a table-valued JSON function on either engine).
  const char* public_keys =
      c.dialect() == Dialect::sqlite
          ? "SELECT k.value FROM e2e_cross_signing_keys, json_each(e2e_cross_signing_keys.key_json, '$.keys') k "
            "WHERE user_id = ?"
          : "SELECT k.value FROM e2e_cross_signing_keys, jsonb_each_text(CASE WHEN "
            "jsonb_typeof(e2e_cross_signing_keys.key_json::jsonb -> 'keys') = 'object' THEN "
            "e2e_cross_signing_keys.key_json::jsonb -> 'keys' ELSE '{}'::jsonb END) k WHERE user_id = ?";
  c.prepare(std::string("DELETE FROM e2e_signatures WHERE target_user = ? AND target_key NOT IN "
                        "(SELECT device_id FROM devices WHERE user_id = ?) AND target_key NOT IN (") +
            public_keys + ")")
      .bind(user_id, user_id, user_id)
      .run();
}

std::optional<std::string> get_one_time_key(Connection& c, const std::string& user_id, const std::string& device_id,
                                            const std::string& algorithm, const std::string& key_id) {
  auto st = c.prepare("SELECT key_json FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ? AND "
                      "algorithm = ? AND key_id = ?");
  st.bind(user_id, device_id, algorithm, key_id);
  if (!st.step()) return std::nullopt;
  return st.text(0);
}

void insert_one_time_key(Connection& c, const std::string& user_id, const std::string& device_id,
                         const std::string& algorithm, const std::string& key_id, const std::string& json) {
  c.prepare("INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING")
      .bind(user_id, device_id, algorithm, key_id, json)
      .run();
}

std::map<std::string, int64_t> count_one_time_keys(Connection& c, const std::string& user_id,
                                                   const std::string& device_id) {
  auto st = c.prepare("SELECT algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ? "
                      "GROUP BY algorithm");
  st.bind(user_id, device_id);
  std::map<std::string, int64_t> out;
  while (st.step()) out[st.text(0)] = st.int64(1);
  return out;
}

std::optional<std::pair<std::string, std::string>> take_one_time_key(Connection& c, const std::string& user_id,
                                                                     const std::string& device_id,
                                                                     const std::string& algorithm) {
  std::optional<std::pair<std::string, std::string>> out;
  {
    auto st = c.prepare("SELECT key_id, key_json FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ? AND "
                        "algorithm = ? ORDER BY key_id LIMIT 1");
    st.bind(user_id, device_id, algorithm);
    if (!st.step()) return std::nullopt;
    out.emplace(st.text(0), st.text(1));
  }
  c.prepare("DELETE FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ? AND algorithm = ? AND key_id = ?")
      .bind(user_id, device_id, algorithm, out->first)
      .run();
  return out;
}

std::optional<FallbackKey> get_fallback_key(Connection& c, const std::string& user_id, const std::string& device_id,
                                            const std::string& algorithm) {
  auto st = c.prepare("SELECT key_id, key_json, used FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ? AND "
                      "algorithm = ?");
  st.bind(user_id, device_id, algorithm);
  if (!st.step()) return std::nullopt;
  return FallbackKey{st.text(0), st.text(1), st.int64(2) != 0};
}

void put_fallback_key(Connection& c, const std::string& user_id, const std::string& device_id,
                      const std::string& algorithm, const std::string& key_id, const std::string& json) {
  c.prepare("INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used) "
            "VALUES (?, ?, ?, ?, ?, 0) ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET "
            "key_id = excluded.key_id, key_json = excluded.key_json, used = 0")
      .bind(user_id, device_id, algorithm, key_id, json)
      .run();
}

void mark_fallback_used(Connection& c, const std::string& user_id, const std::string& device_id,
                        const std::string& algorithm) {
  c.prepare("UPDATE e2e_fallback_keys SET used = 1 WHERE user_id = ? AND device_id = ? AND algorithm = ?")
      .bind(user_id, device_id, algorithm)
      .run();
}

std::vector<std::string> unused_fallback_algorithms(Connection& c, const std::string& user_id,
                                                    const std::string& device_id) {
  auto st = c.prepare("SELECT algorithm FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ? AND used = 0 "
                      "ORDER BY algorithm");
  st.bind(user_id, device_id);
  std::vector<std::string> out;
  while (st.step()) out.push_back(st.text(0));
  return out;
}

std::optional<std::string> get_cross_signing_key(Connection& c, const std::string& user_id,
                                                 const std::string& key_type) {
  auto st = c.prepare("SELECT key_json FROM e2e_cross_signing_keys WHERE user_id = ? AND key_type = ?");
  st.bind(user_id, key_type);
  if (!st.step()) return std::nullopt;
  return st.text(0);
}

void put_cross_signing_key(Connection& c, const std::string& user_id, const std::string& key_type,
                           const std::string& json) {
  c.prepare("INSERT INTO e2e_cross_signing_keys (user_id, key_type, key_json) VALUES (?, ?, ?) "
            "ON CONFLICT (user_id, key_type) DO UPDATE SET key_json = excluded.key_json")
      .bind(user_id, key_type, json)
      .run();
}

void put_signature(Connection& c, const std::string& target_user, const std::string& target_key,
                   const Signature& s) {
  c.prepare("INSERT INTO e2e_signatures (target_user, target_key, signer_user, signer_key_id, signature) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (target_user, target_key, signer_user, signer_key_id) "
            "DO UPDATE SET signature = excluded.signature")
      .bind(target_user, target_key, s.signer_user, s.signer_key_id, s.signature)
      .run();
}

std::vector<Signature> signatures_on(Connection& c, const std::string& target_user, const std::string& target_key) {
  auto st = c.prepare("SELECT signer_user, signer_key_id, signature FROM e2e_signatures WHERE target_user = ? AND "
                      "target_key = ? ORDER BY signer_user, signer_key_id");
  st.bind(target_user, target_key);
  std::vector<Signature> out;
  while (st.step()) out.push_back(Signature{st.text(0), st.text(1), st.text(2)});
  return out;
}

void mark_device_list_changed(Connection& c, const std::string& user_id, int64_t stream_id) {
  c.prepare("INSERT INTO e2e_device_list_changes (user_id, stream_id) VALUES (?, ?) ON CONFLICT (user_id) "
            "DO UPDATE SET stream_id = excluded.stream_id")
      .bind(user_id, stream_id)
      .run();
}

std::vector<std::string> device_lists_changed_between(Connection& c, int64_t since, int64_t upto) {
  auto st = c.prepare("SELECT user_id FROM e2e_device_list_changes WHERE stream_id > ? AND stream_id <= ?");
  st.bind(since, upto);
  std::vector<std::string> out;
  while (st.step()) out.push_back(st.text(0));
  return out;
}

void mark_private_key_change(Connection& c, const std::string& viewer, const std::string& user_id,
                             int64_t stream_id) {
  c.prepare("INSERT INTO e2e_private_key_changes (viewer, user_id, stream_id) VALUES (?, ?, ?) "
            "ON CONFLICT (viewer, user_id) DO UPDATE SET stream_id = excluded.stream_id")
      .bind(viewer, user_id, stream_id)
      .run();
}

std::vector<std::string> private_key_changes_between(Connection& c, const std::string& viewer, int64_t since,
                                                     int64_t upto) {
  auto st = c.prepare("SELECT user_id FROM e2e_private_key_changes WHERE viewer = ? AND stream_id > ? AND stream_id <= ?");
  st.bind(viewer, since, upto);
  std::vector<std::string> out;
  while (st.step()) out.push_back(st.text(0));
  return out;
}

void mark_key_counts_changed(Connection& c, const std::string& user_id, const std::string& device_id,
                             int64_t stream_id) {
  c.prepare("INSERT INTO e2e_key_count_changes (user_id, device_id, stream_id) VALUES (?, ?, ?) "
            "ON CONFLICT (user_id, device_id) DO UPDATE SET stream_id = excluded.stream_id")
      .bind(user_id, device_id, stream_id)
      .run();
}

std::vector<std::pair<std::string, std::string>> key_counts_changed_between(Connection& c, int64_t since,
                                                                            int64_t upto) {
  auto st = c.prepare("SELECT user_id, device_id FROM e2e_key_count_changes WHERE stream_id > ? AND stream_id <= ? "
                      "ORDER BY user_id, device_id");
  st.bind(since, upto);
  std::vector<std::pair<std::string, std::string>> out;
  while (st.step()) out.emplace_back(st.text(0), st.text(1));
  return out;
}

std::vector<std::string> users_sharing_a_room(Connection& c, const std::string& user_id) {
  auto st = c.prepare("SELECT DISTINCT y.user_id FROM room_memberships x JOIN room_memberships y ON y.room_id = x.room_id "
                      "WHERE x.user_id = ? AND x.membership = 'join' AND y.membership = 'join'");
  st.bind(user_id);
  std::vector<std::string> out;
  while (st.step()) out.push_back(st.text(0));
  return out;
}

bool memberships_changed_around(Connection& c, const std::string& user_id, int64_t since, int64_t upto) {
  auto st = c.prepare("SELECT 1 FROM room_memberships mine JOIN room_memberships other ON other.room_id = mine.room_id "
                      "WHERE mine.user_id = ? AND other.stream_ordering > ? AND other.stream_ordering <= ? LIMIT 1");
  st.bind(user_id, since, upto);
  return st.step();
}

bool share_a_room(Connection& c, const std::string& a, const std::string& b) {
  auto st = c.prepare("SELECT 1 FROM room_memberships x JOIN room_memberships y ON y.room_id = x.room_id "
                      "WHERE x.user_id = ? AND x.membership = 'join' AND y.user_id = ? AND y.membership = 'join' LIMIT 1");
  st.bind(a, b);
  return st.step();
}

}  // namespace trestle::storage::keys
