#include "service/keys.hpp"

#include "core/canonical_json.hpp"
#include "core/crypto.hpp"
#include "core/error.hpp"
#include "core/json_depth.hpp"
#include "service/stream_token.hpp"
#include "storage/event_store.hpp"
#include "storage/key_store.hpp"

#include <boost/json/serialize.hpp>

namespace trestle::service {

namespace ks = storage::keys;
namespace ev = storage::events;
using boost::json::array;
using boost::json::object;
using boost::json::value;

namespace {

const char* kCrossSigningTypes[] = {"master", "self_signing", "user_signing"};

// "algorithm:key_id" with a sane algorithm name: 400 M_INVALID_PARAM otherwise.
std::pair<std::string, std::string> split_key_id(std::string_view id, const char* what) {
  auto colon = id.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == id.size() || id.size() > 255) {
    throw MatrixError::invalid_param(std::string("Invalid ") + what + " ID '" + std::string(id) +
                                     "': expected <algorithm>:<key id>");
  }
  for (char ch : id.substr(0, colon)) {
    bool okc = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
               ch == '_' || ch == '-';
    if (!okc) throw MatrixError::invalid_param("Invalid algorithm name in " + std::string(what) + " ID '" + std::string(id) + "'");
  }
  return {std::string(id.substr(0, colon)), std::string(id.substr(colon + 1))};
}

std::string canonical(const value& v) {
  try {
    return core::canonical_json(v);
  } catch (const std::invalid_argument&) {
    throw MatrixError::bad_json("Keys must hold only strings, objects, lists and integers");
  }
}

// The signed part of a key: everything but `signatures` and `unsigned`.
object stripped(object o) {
  o.erase("signatures");
  o.erase("unsigned");
  return o;
}

object parse_obj(const std::string& s) { return core::parse_stored_json(s).as_object(); }

// Adds the stored extra signatures that `viewer` may see: a user's own signatures, and the
// viewer's own signatures of others (user-signing signatures are for their signer only).
void merge_signatures(object& key, const std::vector<ks::Signature>& sigs, const std::string& target_user,
                      const std::string& viewer) {
  for (const auto& s : sigs) {
    if (s.signer_user != target_user && s.signer_user != viewer) continue;
    auto& all = key["signatures"];
    if (!all.is_object()) all = object{};
    auto& by_user = all.as_object()[s.signer_user];
    if (!by_user.is_object()) by_user = object{};
    by_user.as_object()[s.signer_key_id] = s.signature;
  }
}

// The single ed25519 public key (unpadded base64) of a cross-signing key object.
std::string cross_signing_public_key(const object& key) {
  const auto* keys = key.if_contains("keys");
  if (!keys || !keys->is_object() || keys->as_object().size() != 1) {
    throw MatrixError::invalid_param("A cross-signing key must have exactly one key");
  }
  const auto& [id, pub] = *keys->as_object().begin();
  if (!pub.is_string() || std::string_view(id) != "ed25519:" + std::string(pub.as_string())) {
    throw MatrixError::invalid_param("A cross-signing key's ID must be ed25519:<its public key>");
  }
  auto raw = core::base64_decode(pub.as_string());
  if (!raw || raw->size() != 32) throw MatrixError::invalid_param("Invalid ed25519 public key");
  return std::string(pub.as_string());
}

// Whether `signed_obj` carries a valid signature by signer_user's key `key_id` (ed25519:<x>)
// whose public key is `public_key_b64`.
bool verify_signature(const object& signed_obj, const std::string& signer_user, const std::string& key_id,
                      const std::string& public_key_b64) {
  const auto* sigs = signed_obj.if_contains("signatures");
  if (!sigs || !sigs->is_object()) return false;
  const auto* by_user = sigs->as_object().if_contains(signer_user);
  if (!by_user || !by_user->is_object()) return false;
  const auto* sig = by_user->as_object().if_contains(key_id);
  if (!sig || !sig->is_string()) return false;
  auto pub = core::base64_decode(public_key_b64);
  auto raw_sig = core::base64_decode(sig->as_string());
  if (!pub || pub->size() != 32 || !raw_sig || raw_sig->size() != 64) return false;
  return core::ed25519_verify(*pub, canonical(stripped(signed_obj)), *raw_sig);
}

object failure(int status, const std::string& errcode, const std::string& message) {
  return object{{"status", status}, {"errcode", errcode}, {"error", message}, {"message", message}};
}

object remote_failure() {
  return failure(503, "M_UNKNOWN", "Federation is not supported by this server yet");
}

}  // namespace

KeyService::KeyService(const config::Config& cfg, storage::Database& db, Notifier& notifier, AccountService& accounts)
    : cfg_(cfg), db_(db), notifier_(notifier), accounts_(accounts) {}

bool KeyService::is_local(const std::string& user_id) const {
  auto colon = user_id.find(':');
  return colon != std::string::npos && user_id.substr(colon + 1) == cfg_.server_name;
}

void KeyService::notify_changed(const std::string& user_id) {
  std::vector<std::string> keys{user_id};
  db_.read([&](storage::Connection& c) {
    for (const auto& m : ev::memberships_of_user(c, user_id)) {
      if (m.membership == "join") keys.push_back(m.room_id);
    }
  });
  notifier_.notify(keys);
}

void KeyService::on_devices_changed(storage::Connection& c, const std::string& user_id) {
  ks::delete_keys_of_removed_devices(c, user_id);
  ks::mark_device_list_changed(c, user_id, db_.next_stream_position());
}

object KeyService::upload(const Requester& r, const object& body) {
  if (!r.device_id) {
    throw MatrixError::missing_param("Uploading keys needs a device: an appservice must name one with device_id");
  }
  const std::string& device = *r.device_id;

  std::optional<std::string> device_keys;
  if (const auto* dk = body.if_contains("device_keys"); dk && !dk->is_null()) {
    if (!dk->is_object()) throw MatrixError::bad_json("'device_keys' must be an object");
    const auto& o = dk->as_object();
    const auto* uid = o.if_contains("user_id");
    const auto* did = o.if_contains("device_id");
    if (!uid || !uid->is_string() || uid->as_string() != r.user_id) {
      throw MatrixError::invalid_param("device_keys.user_id must be your own user ID, " + r.user_id);
    }
    if (!did || !did->is_string() || did->as_string() != device) {
      throw MatrixError::invalid_param("device_keys.device_id must be your own device ID, " + device);
    }
    for (const char* key : {"algorithms", "keys", "signatures"}) {
      if (!o.contains(key)) throw MatrixError::bad_json(std::string("device_keys needs '") + key + "'");
    }
    if (const auto* keys = o.if_contains("keys"); keys && keys->is_object()) {
      for (const auto& [id, v] : keys->as_object()) {
        split_key_id(id, "device key");
        if (!v.is_string()) throw MatrixError::bad_json("Device keys must be strings");
      }
    }
    if (const auto* algs = o.if_contains("algorithms"); algs && algs->is_array()) {
      for (const auto& a : algs->as_array()) {
        if (!a.is_string() || a.as_string().empty()) throw MatrixError::bad_json("'algorithms' must be strings");
      }
    }
    device_keys = canonical(o);
  }

  struct NewKey {
    std::string algorithm, key_id, json;
  };
  auto read_keys = [&](const char* field, std::vector<NewKey>& out) {
    const auto* v = body.if_contains(field);
    if (!v || v->is_null()) return;
    if (!v->is_object()) throw MatrixError::bad_json(std::string("'") + field + "' must be an object");
    for (const auto& [id, key] : v->as_object()) {
      auto [alg, kid] = split_key_id(id, "one-time key");
      if (!key.is_string() && !(key.is_object() && key.as_object().contains("key"))) {
        throw MatrixError::bad_json("Key '" + std::string(id) + "' must be a string or a signed key object");
      }
      out.push_back(NewKey{alg, kid, canonical(key)});
    }
  };
  std::vector<NewKey> otks, fallbacks;
  read_keys("one_time_keys", otks);
  read_keys("fallback_keys", fallbacks);
  read_keys("org.matrix.msc2732.fallback_keys", fallbacks);
  if (otks.size() + fallbacks.size() > kMaxUploadKeys) {
    throw MatrixError(400, "M_TOO_LARGE", "Too many keys in one upload (at most " + std::to_string(kMaxUploadKeys) + ")");
  }

  bool changed = false, counts_changed = false;
  auto counts = db_.write([&](storage::Connection& c) {
    if (device_keys && ks::get_device_keys(c, r.user_id, device) != device_keys) {
      ks::put_device_keys(c, r.user_id, device, *device_keys);
      ks::mark_device_list_changed(c, r.user_id, db_.next_stream_position());
      changed = true;
    }
    for (const auto& k : otks) {
      auto old = ks::get_one_time_key(c, r.user_id, device, k.algorithm, k.key_id);
      if (old && *old != k.json) {
        throw MatrixError::invalid_param("One-time key " + k.algorithm + ":" + k.key_id +
                                         " already exists with different content");
      }
      if (!old) {
        ks::insert_one_time_key(c, r.user_id, device, k.algorithm, k.key_id, k.json);
        counts_changed = true;
      }
    }
    for (const auto& k : fallbacks) {
      auto old = ks::get_fallback_key(c, r.user_id, device, k.algorithm);
      if (old && old->key_id == k.key_id) {
        if (old->json != k.json) {
          throw MatrixError::invalid_param("Fallback key " + k.algorithm + ":" + k.key_id +
                                           " already exists with different content");
        }
        continue;  // the same key again: keep its used flag
      }
      ks::put_fallback_key(c, r.user_id, device, k.algorithm, k.key_id, k.json);
      counts_changed = true;
    }
    // For appservices' MSC3202 transactions (the position also wakes their senders).
    if (counts_changed) ks::mark_key_counts_changed(c, r.user_id, device, db_.next_stream_position());
    return ks::count_one_time_keys(c, r.user_id, device);
  });
  if (changed) notify_changed(r.user_id);
  else if (counts_changed) notifier_.notify({r.user_id});

  object out;
  out["signed_curve25519"] = 0;  // clients expect it, as Synapse sends it
  for (const auto& [alg, n] : counts) out[alg] = n;
  return object{{"one_time_key_counts", std::move(out)}};
}

object KeyService::query(const Requester& r, const object& body) {
  const auto* dk = body.if_contains("device_keys");
  if (!dk) throw MatrixError::missing_param("Missing 'device_keys'");
  if (!dk->is_object()) throw MatrixError::bad_json("'device_keys' must be an object");
  const auto& wanted = dk->as_object();
  if (wanted.size() > kMaxQueryUsers) {
    throw MatrixError(400, "M_TOO_LARGE", "Too many users in one query (at most " + std::to_string(kMaxQueryUsers) + ")");
  }
  size_t named = 0;
  for (const auto& [user, devs] : wanted) {
    if (!devs.is_array()) throw MatrixError::bad_json("device_keys values must be lists of device IDs");
    for (const auto& d : devs.as_array()) {
      if (!d.is_string()) throw MatrixError::bad_json("device_keys values must be lists of device IDs");
    }
    named += devs.as_array().size();
  }
  if (named > kMaxQueryDevices) {
    throw MatrixError(400, "M_TOO_LARGE", "Too many devices in one query (at most " + std::to_string(kMaxQueryDevices) + ")");
  }

  object device_keys, failures, master_keys, self_signing_keys, user_signing_keys;
  db_.read([&](storage::Connection& c) {
    for (const auto& [user_key, devs] : wanted) {
      std::string user(user_key);
      if (user.empty() || user[0] != '@') continue;
      if (!is_local(user)) {
        auto colon = user.find(':');
        failures[colon == std::string::npos ? user : user.substr(colon + 1)] = remote_failure();
        continue;
      }
      std::set<std::string> only;
      for (const auto& d : devs.as_array()) only.insert(std::string(d.as_string()));
      object per_device;
      for (const auto& row : ks::devices_with_keys(c, user)) {
        if (!row.key_json) continue;
        if (!only.empty() && !only.count(row.device_id)) continue;
        object key = parse_obj(*row.key_json);
        merge_signatures(key, ks::signatures_on(c, user, row.device_id), user, r.user_id);
        // `unsigned` is always there (as Synapse sends it; clients and SyTest read it), with the
        // device's display name when it has one.
        object uns = key.contains("unsigned") && key["unsigned"].is_object() ? key["unsigned"].as_object() : object{};
        if (row.display_name) uns["device_display_name"] = *row.display_name;
        key["unsigned"] = std::move(uns);
        per_device[row.device_id] = std::move(key);
      }
      device_keys[user] = std::move(per_device);
      for (const char* type : kCrossSigningTypes) {
        if (std::string_view(type) == "user_signing" && user != r.user_id) continue;  // only for its owner
        auto json = ks::get_cross_signing_key(c, user, type);
        if (!json) continue;
        object key = parse_obj(*json);
        try {
          merge_signatures(key, ks::signatures_on(c, user, cross_signing_public_key(key)), user, r.user_id);
        } catch (const MatrixError&) {
        }
        object& dest = std::string_view(type) == "master"         ? master_keys
                       : std::string_view(type) == "self_signing" ? self_signing_keys
                                                                  : user_signing_keys;
        dest[user] = std::move(key);
      }
    }
  });
  return object{{"device_keys", std::move(device_keys)},
                {"failures", std::move(failures)},
                {"master_keys", std::move(master_keys)},
                {"self_signing_keys", std::move(self_signing_keys)},
                {"user_signing_keys", std::move(user_signing_keys)}};
}

object KeyService::claim(const Requester&, const object& body) {
  const auto* otk = body.if_contains("one_time_keys");
  if (!otk) throw MatrixError::missing_param("Missing 'one_time_keys'");
  if (!otk->is_object()) throw MatrixError::bad_json("'one_time_keys' must be an object");
  size_t devices = 0;
  for (const auto& [user, devs] : otk->as_object()) {
    if (!devs.is_object()) throw MatrixError::bad_json("one_time_keys values must map device IDs to algorithms");
    for (const auto& [dev, alg] : devs.as_object()) {
      if (!alg.is_string()) throw MatrixError::bad_json("one_time_keys must map device IDs to algorithm names");
    }
    devices += devs.as_object().size();
  }
  if (devices > kMaxClaimDevices) {
    throw MatrixError(400, "M_TOO_LARGE", "Too many devices in one claim (at most " + std::to_string(kMaxClaimDevices) + ")");
  }
  object claimed, failures;
  std::vector<std::string> counted;  // users whose key counts changed
  // One write: claims are serialised, so no key is ever handed out twice.
  db_.write([&](storage::Connection& c) {
    for (const auto& [user_key, devs] : otk->as_object()) {
      std::string user(user_key);
      if (!is_local(user)) {
        auto colon = user.find(':');
        failures[colon == std::string::npos ? user : user.substr(colon + 1)] = remote_failure();
        continue;
      }
      object per_device;
      for (const auto& [dev_key, alg_v] : devs.as_object()) {
        std::string dev(dev_key), alg(alg_v.as_string());
        if (auto k = ks::take_one_time_key(c, user, dev, alg)) {
          per_device[dev] = object{{alg + ":" + k->first, core::parse_stored_json(k->second)}};
          ks::mark_key_counts_changed(c, user, dev, db_.next_stream_position());
          counted.push_back(user);
        } else if (auto fb = ks::get_fallback_key(c, user, dev, alg)) {
          if (!fb->used) {
            ks::mark_fallback_used(c, user, dev, alg);
            ks::mark_key_counts_changed(c, user, dev, db_.next_stream_position());
            counted.push_back(user);
          }
          per_device[dev] = object{{alg + ":" + fb->key_id, core::parse_stored_json(fb->json)}};
        }
      }
      if (!per_device.empty()) claimed[user] = std::move(per_device);
    }
  });
  if (!counted.empty()) notifier_.notify(counted);
  return object{{"one_time_keys", std::move(claimed)}, {"failures", std::move(failures)}};
}

KeyService::DeviceListDelta KeyService::device_list_delta(storage::Connection& c, const std::string& me,
                                                          int64_t since, int64_t upto) {
  if (!ks::memberships_changed_around(c, me, since, upto)) {
    // The common case: nobody joined or left, so only key changes of room-mates count. Cheap
    // on every long-poll round, however many rooms and members there are.
    DeviceListDelta d;
    for (const auto& u : ks::device_lists_changed_between(c, since, upto)) {
      if (u == me || ks::share_a_room(c, me, u)) d.changed.insert(u);
    }
    for (const auto& u : ks::private_key_changes_between(c, me, since, upto)) d.changed.insert(u);
    return d;
  }
  std::set<std::string> shared, joined, left_candidates;
  auto in_range = [&](int64_t pos) { return pos > since && pos <= upto; };
  for (const auto& m : ev::memberships_of_user(c, me)) {
    if (m.membership == "join") {
      const bool i_joined = in_range(m.stream_ordering);
      for (const auto& mem : ev::members_of_room(c, m.room_id)) {
        if (mem.user_id == me) continue;
        if (mem.membership == "join") {
          shared.insert(mem.user_id);
          if (i_joined || in_range(mem.stream_ordering)) joined.insert(mem.user_id);
        } else if ((mem.membership == "leave" || mem.membership == "ban") && in_range(mem.stream_ordering)) {
          left_candidates.insert(mem.user_id);
        }
      }
    } else if ((m.membership == "leave" || m.membership == "ban") && in_range(m.stream_ordering)) {
      for (const auto& mem : ev::members_of_room(c, m.room_id)) {
        if (mem.user_id != me && mem.membership == "join") left_candidates.insert(mem.user_id);
      }
    }
  }
  DeviceListDelta d;
  for (const auto& u : ks::device_lists_changed_between(c, since, upto)) {
    if (u == me || shared.count(u)) d.changed.insert(u);
  }
  for (const auto& u : ks::private_key_changes_between(c, me, since, upto)) d.changed.insert(u);
  d.changed.insert(joined.begin(), joined.end());
  for (const auto& u : left_candidates) {
    if (!shared.count(u)) d.left.insert(u);
  }
  return d;
}

object KeyService::changes(const Requester& r, const std::string& from, const std::string& to) {
  int64_t since = parse_stream_token(from), upto = parse_stream_token(to);
  auto d = db_.read([&](storage::Connection& c) { return device_list_delta(c, r.user_id, since, upto); });
  array changed, left;
  for (const auto& u : d.changed) changed.push_back(value(u));
  for (const auto& u : d.left) left.push_back(value(u));
  return object{{"changed", std::move(changed)}, {"left", std::move(left)}};
}

bool KeyService::fill_sync(const Requester& r, int64_t since, int64_t upto, bool initial, object& response) {
  bool any = false;
  db_.read([&](storage::Connection& c) {
    if (!initial) {
      auto d = device_list_delta(c, r.user_id, since, upto);
      array changed, left;
      for (const auto& u : d.changed) changed.push_back(value(u));
      for (const auto& u : d.left) left.push_back(value(u));
      any = !changed.empty() || !left.empty();
      response["device_lists"] = object{{"changed", std::move(changed)}, {"left", std::move(left)}};
    }
    object counts;
    array fallback_types;
    if (r.device_id) {
      counts["signed_curve25519"] = 0;
      for (const auto& [alg, n] : ks::count_one_time_keys(c, r.user_id, *r.device_id)) counts[alg] = n;
      for (const auto& alg : ks::unused_fallback_algorithms(c, r.user_id, *r.device_id)) {
        fallback_types.push_back(value(alg));
      }
    }
    response["device_one_time_keys_count"] = std::move(counts);
    response["device_unused_fallback_key_types"] = std::move(fallback_types);
  });
  return any;
}

void KeyService::upload_cross_signing(const Requester& r, const object& body) {
  struct Upload {
    const char* type;
    object key;
    std::string pub;
  };
  std::vector<Upload> uploads;
  for (const char* type : kCrossSigningTypes) {
    const auto* v = body.if_contains(std::string(type) + "_key");
    if (!v || v->is_null()) continue;
    if (!v->is_object()) throw MatrixError::bad_json(std::string(type) + "_key must be an object");
    const auto& key = v->as_object();
    const auto* uid = key.if_contains("user_id");
    if (!uid || !uid->is_string() || uid->as_string() != r.user_id) {
      throw MatrixError::invalid_param(std::string(type) + "_key.user_id must be your own user ID");
    }
    const auto* usage = key.if_contains("usage");
    bool has_usage = false;
    if (usage && usage->is_array()) {
      for (const auto& u : usage->as_array()) has_usage |= u.is_string() && u.as_string() == type;
    }
    if (!has_usage) throw MatrixError::invalid_param(std::string(type) + "_key.usage must contain \"" + type + "\"");
    canonical(key);
    uploads.push_back(Upload{type, key, cross_signing_public_key(key)});
  }
  if (uploads.empty()) return;

  std::map<std::string, std::string> existing;
  db_.read([&](storage::Connection& c) {
    for (const char* type : kCrossSigningTypes) {
      if (auto k = ks::get_cross_signing_key(c, r.user_id, type)) existing[type] = *k;
    }
  });
  std::optional<std::string> master_pub;
  for (const auto& u : uploads) {
    if (std::string_view(u.type) == "master") master_pub = u.pub;
  }
  if (!master_pub && existing.count("master")) master_pub = cross_signing_public_key(parse_obj(existing["master"]));
  for (const auto& u : uploads) {
    if (std::string_view(u.type) == "master") continue;
    if (!master_pub) throw MatrixError::missing_param("No master key available to sign the " + std::string(u.type) + " key");
    if (!verify_signature(u.key, r.user_id, "ed25519:" + *master_pub, *master_pub)) {
      throw MatrixError(400, "M_INVALID_SIGNATURE", std::string("Invalid signature on the ") + u.type + " key: it must be signed by the master key");
    }
  }
  bool same = true;
  for (const auto& u : uploads) {
    auto it = existing.find(u.type);
    same = same && it != existing.end() && it->second == canonical(u.key);
  }
  if (same) return;  // nothing new: idempotent, and no password needed
  // Replacing keys needs the password; setting up the first ones does not (as Synapse), nor do an
  // appservice's users (MSC4190).
  if (existing.count("master") && !r.appservice) {
    accounts_.require_password_uia(r, body, "POST /keys/device_signing/upload");
  }
  // A user-signing key is seen by its owner only (spec: keys/query), so a change of that key
  // alone is news for the owner's devices, not for room-mates.
  bool public_change = false;
  for (const auto& u : uploads) {
    auto it = existing.find(u.type);
    bool changed_here = it == existing.end() || it->second != canonical(u.key);
    public_change |= changed_here && std::string_view(u.type) != "user_signing";
  }
  db_.write([&](storage::Connection& c) {
    for (const auto& u : uploads) ks::put_cross_signing_key(c, r.user_id, u.type, canonical(u.key));
    if (public_change) {
      ks::mark_device_list_changed(c, r.user_id, db_.next_stream_position());
    } else {
      ks::mark_private_key_change(c, r.user_id, r.user_id, db_.next_stream_position());
    }
  });
  if (public_change) {
    notify_changed(r.user_id);
  } else {
    notifier_.notify({r.user_id});
  }
}

object KeyService::upload_signatures(const Requester& r, const object& body) {
  size_t total = 0;
  for (const auto& [user, keys] : body) {
    if (!keys.is_object()) throw MatrixError::bad_json("Each user's entry must map key IDs to signed keys");
    total += keys.as_object().size();
  }
  if (total > kMaxSignatures) {
    throw MatrixError(400, "M_TOO_LARGE", "Too many signatures in one upload (at most " + std::to_string(kMaxSignatures) + ")");
  }
  struct Row {
    std::string target_user, target_key;
    ks::Signature sig;
  };
  std::vector<Row> rows;
  object failures;
  db_.read([&](storage::Connection& c) {
    auto my_key = [&](const char* type) -> std::optional<std::string> {
      auto k = ks::get_cross_signing_key(c, r.user_id, type);
      if (!k) return std::nullopt;
      return cross_signing_public_key(parse_obj(*k));
    };
    auto my_master = my_key("master"), my_ssk = my_key("self_signing"), my_usk = my_key("user_signing");
    for (const auto& [user_key, keys] : body) {
      std::string target(user_key);
      for (const auto& [key_id_v, signed_v] : keys.as_object()) {
        std::string key_id(key_id_v);
        try {
          if (!signed_v.is_object()) throw MatrixError::bad_json("A signed key must be an object");
          const auto& signed_obj = signed_v.as_object();
          if (!is_local(target)) throw MatrixError(400, "M_UNKNOWN", "Signing remote users' keys is not supported yet");
          // The stored key this signs, and which of our keys may sign it.
          std::optional<std::string> stored;
          std::vector<std::pair<std::string, std::string>> signers;  // key id, public key
          if (target == r.user_id) {
            if (my_master && key_id == *my_master) {
              stored = ks::get_cross_signing_key(c, target, "master");
              for (const auto& row : ks::devices_with_keys(c, target)) {
                if (!row.key_json) continue;
                auto dk = parse_obj(*row.key_json);
                const auto* ks_obj = dk.if_contains("keys");
                const value* ed = ks_obj && ks_obj->is_object() ? ks_obj->as_object().if_contains("ed25519:" + row.device_id) : nullptr;
                if (ed && ed->is_string()) signers.emplace_back("ed25519:" + row.device_id, std::string(ed->as_string()));
              }
            } else {
              stored = ks::get_device_keys(c, target, key_id);
              if (my_ssk) signers.emplace_back("ed25519:" + *my_ssk, *my_ssk);
            }
          } else {
            auto master = ks::get_cross_signing_key(c, target, "master");
            if (master && cross_signing_public_key(parse_obj(*master)) == key_id) stored = master;
            if (my_usk) signers.emplace_back("ed25519:" + *my_usk, *my_usk);
          }
          if (!stored) throw MatrixError(404, "M_NOT_FOUND", "Unknown key " + key_id + " of " + target);
          if (canonical(stripped(parse_obj(*stored))) != canonical(stripped(signed_obj))) {
            throw MatrixError(400, "M_INVALID_SIGNATURE", "The signed key does not match the stored key");
          }
          bool any = false;
          for (const auto& [signer_id, pub] : signers) {
            if (!verify_signature(signed_obj, r.user_id, signer_id, pub)) continue;
            const auto& sig = signed_obj.at("signatures").as_object().at(r.user_id).as_object().at(signer_id);
            rows.push_back(Row{target, key_id, ks::Signature{r.user_id, signer_id, std::string(sig.as_string())}});
            any = true;
          }
          if (!any) throw MatrixError(400, "M_INVALID_SIGNATURE", "No valid signature by a key allowed to sign this key");
        } catch (const MatrixError& e) {
          auto& per_user = failures[target];
          if (!per_user.is_object()) per_user = object{};
          per_user.as_object()[key_id] = object{{"status", e.status()}, {"errcode", e.errcode()}, {"error", e.what()}};
        }
      }
    }
  });
  if (!rows.empty()) {
    // Signatures of one's own keys are public: everyone sharing a room hears of them. Those of
    // other users' master keys (by the user-signing key) are shown to the signer only, so the
    // signer alone sees those users' keys change.
    bool public_change = false;
    for (const auto& row : rows) public_change |= row.target_user == r.user_id;
    db_.write([&](storage::Connection& c) {
      for (const auto& row : rows) {
        ks::put_signature(c, row.target_user, row.target_key, row.sig);
        if (row.target_user != r.user_id) {
          ks::mark_private_key_change(c, r.user_id, row.target_user, db_.next_stream_position());
        }
      }
      if (public_change) ks::mark_device_list_changed(c, r.user_id, db_.next_stream_position());
    });
    if (public_change) {
      notify_changed(r.user_id);
    } else {
      notifier_.notify({r.user_id});
    }
  }
  return object{{"failures", std::move(failures)}};
}

}  // namespace trestle::service
