#pragma once
// End-to-end encryption keys (spec: modules/end_to_end_encryption.md): device keys, one-time and
// fallback keys, cross-signing keys and signatures, and which users' device lists changed. The
// server does no encryption: it stores, checks the shape (and cross-signing signatures) of, and
// relays keys, and tells clients whose devices changed.
#include "config/config.hpp"
#include "service/accounts.hpp"
#include "service/notifier.hpp"
#include "service/requester.hpp"
#include "storage/database.hpp"

#include <boost/json/object.hpp>
#include <set>
#include <string>

namespace trestle::service {

class KeyService {
public:
  // Bounds on one request (400 M_TOO_LARGE beyond them).
  static constexpr size_t kMaxUploadKeys = 1000;     // one-time + fallback keys per /keys/upload
  static constexpr size_t kMaxClaimDevices = 1000;   // devices per /keys/claim
  static constexpr size_t kMaxQueryUsers = 1000;     // users per /keys/query
  static constexpr size_t kMaxQueryDevices = 10000;  // devices named per /keys/query
  static constexpr size_t kMaxSignatures = 1000;     // keys per /keys/signatures/upload

  KeyService(const config::Config& cfg, storage::Database& db, Notifier& notifier, AccountService& accounts);

  boost::json::object upload(const Requester& r, const boost::json::object& body);
  boost::json::object query(const Requester& r, const boost::json::object& body);
  boost::json::object claim(const Requester& r, const boost::json::object& body);
  // GET /keys/changes between two sync tokens.
  boost::json::object changes(const Requester& r, const std::string& from, const std::string& to);
  void upload_cross_signing(const Requester& r, const boost::json::object& body);
  boost::json::object upload_signatures(const Requester& r, const boost::json::object& body);

  // The /sync part: device_lists (incremental syncs), device_one_time_keys_count and
  // device_unused_fallback_key_types. Returns true when device_lists is not empty.
  bool fill_sync(const Requester& r, int64_t since, int64_t upto, bool initial, boost::json::object& response);

  // Called by AccountService inside the write that added, renamed or removed a device.
  void on_devices_changed(storage::Connection& c, const std::string& user_id);
  // Wakes the /syncs of the user and of everyone sharing a room with them.
  void notify_changed(const std::string& user_id);

private:
  struct DeviceListDelta {
    std::set<std::string> changed, left;
  };
  DeviceListDelta device_list_delta(storage::Connection& c, const std::string& user_id, int64_t since, int64_t upto);
  bool is_local(const std::string& user_id) const;

  const config::Config& cfg_;
  storage::Database& db_;
  Notifier& notifier_;
  AccountService& accounts_;
};

}  // namespace trestle::service
