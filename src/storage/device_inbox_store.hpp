#pragma once
// Device inboxes: to-device messages waiting for one device's next /sync, and the transaction ids
// of PUT /sendToDevice already applied (so a retried request is not delivered twice).
#include "storage/database.hpp"

#include <string>
#include <vector>

namespace trestle::storage::device_inbox {

struct Message {
  int64_t stream_id = 0;  // global stream position, unique per device
  std::string sender;
  std::string type;
  std::string content;  // JSON text
};

void insert(Connection& c, const std::string& user_id, const std::string& device_id, int64_t stream_id,
            const std::string& sender, const std::string& type, const std::string& content_json);
// Messages of the device with after < stream_id <= upto, oldest first, at most `limit`.
std::vector<Message> pending(Connection& c, const std::string& user_id, const std::string& device_id, int64_t after,
                             int64_t upto, int64_t limit);
int64_t count(Connection& c, const std::string& user_id, const std::string& device_id);
// Whether the device has messages with stream_id <= upto (that an acknowledgement would delete).
bool has_acknowledged(Connection& c, const std::string& user_id, const std::string& device_id, int64_t upto);
// Deletes the device's messages with stream_id <= upto; returns how many.
int64_t delete_upto(Connection& c, const std::string& user_id, const std::string& device_id, int64_t upto);

// Every device's messages with after < stream_id <= upto, in stream order, at most `limit`
// (an appservice's transactions carry its users' messages: MSC4203).
struct Addressed {
  std::string user_id;
  std::string device_id;
  Message message;
};
std::vector<Addressed> in_stream_range(Connection& c, int64_t after, int64_t upto, int64_t limit);
void delete_one(Connection& c, const std::string& user_id, const std::string& device_id, int64_t stream_id);

// Records a sender's transaction id; false when it was already recorded.
bool record_txn(Connection& c, const std::string& sender_key, const std::string& txn_id, int64_t now_ms);
// Forgets transaction ids recorded before `before_ms`.
void prune_txns(Connection& c, int64_t before_ms);

}  // namespace trestle::storage::device_inbox
