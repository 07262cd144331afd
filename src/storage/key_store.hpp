#pragma once
// End-to-end encryption keys (spec: modules/end_to_end_encryption.md). The server stores and
// relays them as JSON text; it does no cryptography here.
#include "storage/database.hpp"

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace trestle::storage::keys {

// Device keys (the signed `device_keys` object of /keys/upload).
std::optional<std::string> get_device_keys(Connection& c, const std::string& user_id, const std::string& device_id);
void put_device_keys(Connection& c, const std::string& user_id, const std::string& device_id, const std::string& json);
// Every device of the user (from the devices table), with its keys when it uploaded some.
struct DeviceRow {
  std::string device_id;
  std::optional<std::string> display_name;
  std::optional<std::string> key_json;
};
std::vector<DeviceRow> devices_with_keys(Connection& c, const std::string& user_id);
// Drops the keys (device, one-time, fallback, signatures on them) of devices the user no longer has.
void delete_keys_of_removed_devices(Connection& c, const std::string& user_id);

// One-time keys.
std::optional<std::string> get_one_time_key(Connection& c, const std::string& user_id, const std::string& device_id,
                                            const std::string& algorithm, const std::string& key_id);
void insert_one_time_key(Connection& c, const std::string& user_id, const std::string& device_id,
                         const std::string& algorithm, const std::string& key_id, const std::string& json);
std::map<std::string, int64_t> count_one_time_keys(Connection& c, const std::string& user_id,
                                                   const std::string& device_id);
// Removes and returns one key of the algorithm (key_id, json), if any.
std::optional<std::pair<std::string, std::string>> take_one_time_key(Connection& c, const std::string& user_id,
                                                                     const std::string& device_id,
                                                                     const std::string& algorithm);

// Fallback keys: one per device and algorithm.
struct FallbackKey {
  std::string key_id;
  std::string json;
  bool used = false;
};
std::optional<FallbackKey> get_fallback_key(Connection& c, const std::string& user_id, const std::string& device_id,
                                            const std::string& algorithm);
void put_fallback_key(Connection& c, const std::string& user_id, const std::string& device_id,
                      const std::string& algorithm, const std::string& key_id, const std::string& json);
void mark_fallback_used(Connection& c, const std::string& user_id, const std::string& device_id,
                        const std::string& algorithm);
std::vector<std::string> unused_fallback_algorithms(Connection& c, const std::string& user_id,
                                                    const std::string& device_id);

// Cross-signing keys: key_type is "master", "self_signing" or "user_signing".
std::optional<std::string> get_cross_signing_key(Connection& c, const std::string& user_id,
                                                 const std::string& key_type);
void put_cross_signing_key(Connection& c, const std::string& user_id, const std::string& key_type,
                           const std::string& json);

// Signatures uploaded through /keys/signatures/upload. target_key is a device id or a
// cross-signing public key (unpadded base64).
struct Signature {
  std::string signer_user;
  std::string signer_key_id;
  std::string signature;
};
void put_signature(Connection& c, const std::string& target_user, const std::string& target_key,
                   const Signature& s);
std::vector<Signature> signatures_on(Connection& c, const std::string& target_user, const std::string& target_key);

// Device-list changes: the latest stream position at which each user's devices or keys changed.
void mark_device_list_changed(Connection& c, const std::string& user_id, int64_t stream_id);
std::vector<std::string> device_lists_changed_between(Connection& c, int64_t since, int64_t upto);
// Changes of user_id's keys that only `viewer` sees (viewer's own user-signing key; viewer's
// signature of user_id's master key), and the users whose keys so changed for a viewer.
void mark_private_key_change(Connection& c, const std::string& viewer, const std::string& user_id,
                             int64_t stream_id);
std::vector<std::string> private_key_changes_between(Connection& c, const std::string& viewer, int64_t since,
                                                     int64_t upto);
// One-time / fallback key counts: the latest stream position at which each device's changed
// (an appservice's MSC3202 transactions carry only the devices changed since the last one).
void mark_key_counts_changed(Connection& c, const std::string& user_id, const std::string& device_id,
                             int64_t stream_id);
std::vector<std::pair<std::string, std::string>> key_counts_changed_between(Connection& c, int64_t since,
                                                                            int64_t upto);
// Users joined to a room where `user_id` is joined (including themselves when joined anywhere).
std::vector<std::string> users_sharing_a_room(Connection& c, const std::string& user_id);
// Whether any membership in a room the user is (or was) in changed in (since, upto].
bool memberships_changed_around(Connection& c, const std::string& user_id, int64_t since, int64_t upto);
// Whether both users are joined to some room.
bool share_a_room(Connection& c, const std::string& a, const std::string& b);

}  // namespace trestle::storage::keys
