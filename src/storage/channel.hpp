#pragma once
// Messages between the processes of one deployment through the database itself (PostgreSQL's
// LISTEN/NOTIFY): no other moving part. Delivery is at most once and in order per sender while
// the connection holds; a gap (a lost connection) is reported by `on_connected`, after which the
// receiver re-reads what it must from the database.
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace trestle::storage {

class Channel {
public:
  static constexpr size_t kMaxPayload = 7900;  // PostgreSQL refuses payloads of 8000 bytes or more

  virtual ~Channel() = default;
  // Sends each payload (at most kMaxPayload bytes) to every listener, this process's included,
  // in order. Blocks for the round trip; throws std::runtime_error when the database cannot be
  // reached (after one reconnection attempt).
  virtual void send(const std::vector<std::string>& payloads) = 0;
  // Stops the listening thread; no handler runs after it returns.
  virtual void stop() = 0;
};

struct ChannelHandlers {
  std::function<void(const std::string& payload)> on_message;  // on the channel's thread
  // (Re)connected and listening; messages sent while it was not are lost: catch up now.
  std::function<void()> on_connected;
};

}  // namespace trestle::storage
