#pragma once
// Per-user data outside the room DAG: account data, read receipts and markers, typing, filters,
// push rules and pushers.
#include "service/notifier.hpp"
#include "service/requester.hpp"
#include "storage/database.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace trestle::service {

struct Rooms;

// Who is typing where. Ephemeral by nature: kept in memory with its own serial, as Synapse does.
//
// Several processes: the main process owns typing (the serial in every process's sync tokens is
// its serial); it publishes each room's state after a change, and workers mirror it (apply()).
// A worker's set() is forwarded to the main process instead of changing the mirror.
class TypingTracker {
public:
  // One room's typing state, as the owner publishes it.
  struct RoomState {
    std::string room_id;
    std::vector<std::pair<std::string, int64_t>> users;  // user, milliseconds until it expires
    uint64_t room_serial = 0;
    uint64_t serial = 0;
  };
  using Publish = std::function<void(const RoomState&)>;
  using Forward = std::function<void(const std::string& room_id, const std::string& user_id, bool typing,
                                     int64_t timeout_ms)>;

  explicit TypingTracker(Notifier& n) : notifier_(n) {}
  void set(const std::string& room_id, const std::string& user_id, bool typing, int64_t timeout_ms);
  // Users typing in the room now, and the serial of the room's last change.
  std::vector<std::string> typing_users(const std::string& room_id, uint64_t* changed_serial = nullptr);
  uint64_t serial() const;
  // Called (outside the lock) with the room whenever who is typing there changes.
  void set_listener(std::function<void(const std::string& room_id)> cb) { listener_ = std::move(cb); }

  // The owner (main process of several): `publish` gets each room's state after it changes.
  void set_owner(Publish publish) { publish_ = std::move(publish); }
  // A mirror (worker): set() calls `forward` instead; apply() takes the owner's state.
  void set_mirror(Forward forward) { forward_ = std::move(forward); }
  void apply(const RoomState& state);
  // The owner: expires what is due everywhere (a worker's syncs never expire anything here) and
  // announces the rooms that changed. Called every 100 ms.
  void expire_due();
  // The owner: every room where someone types, for a mirror that lost messages.
  std::vector<RoomState> snapshot() const;

private:
  RoomState room_state_locked(const std::string& room_id, int64_t now) const;
  void changed(const std::vector<RoomState>& rooms);

  Notifier& notifier_;
  std::function<void(const std::string&)> listener_;
  Publish publish_;
  Forward forward_;
  mutable std::mutex mu_;
  uint64_t serial_ = 0;
  std::map<std::string, std::map<std::string, int64_t>> expiry_;  // room -> user -> steady ms
  std::map<std::string, uint64_t> room_serial_;
};

class UserDataService {
public:
  UserDataService(storage::Database& db, Notifier& notifier, Rooms& rooms);

  void put_account_data(const std::string& user_id, const std::string& room_id, const std::string& type,
                        const boost::json::object& content);
  boost::json::object get_account_data(const std::string& user_id, const std::string& room_id, const std::string& type);

  // Room tags (spec: modules/tags.md), kept as the room's m.tag account data so they reach
  // clients through /sync like any other room account data.
  boost::json::object tags(const std::string& user_id, const std::string& room_id);
  void set_tag(const std::string& user_id, const std::string& room_id, const std::string& tag,
               const boost::json::object& info);
  void delete_tag(const std::string& user_id, const std::string& room_id, const std::string& tag);

  void send_receipt(const Requester& r, const std::string& room_id, const std::string& receipt_type,
                    const std::string& event_id, const std::string& thread_id);
  void set_read_markers(const Requester& r, const std::string& room_id, const boost::json::object& body);

  std::string create_filter(const std::string& user_id, const boost::json::object& filter);
  boost::json::object get_filter(const std::string& user_id, const std::string& filter_id);

  // The user's push rules ("global" object with defaults merged).
  boost::json::object push_rules(const std::string& user_id);
  void save_push_rules(const std::string& user_id, const boost::json::object& global);

  boost::json::array pushers(const std::string& user_id);
  void set_pusher(const std::string& user_id, const boost::json::object& body);

  TypingTracker& typing() { return typing_; }

private:
  storage::Database& db_;
  Notifier& notifier_;
  Rooms& rooms_;
  TypingTracker typing_;
};

}  // namespace trestle::service
