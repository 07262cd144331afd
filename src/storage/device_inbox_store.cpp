#include "storage/device_inbox_store.hpp"

namespace trestle::storage::device_inbox {

void insert(Connection& c, const std::string& user_id, const std::string& device_id, int64_t stream_id,
            const std::string& sender, const std::string& type, const std::string& content_json) {
  c.prepare("INSERT INTO device_inbox (user_id, device_id, stream_id, sender, type, content) VALUES (?, ?, ?, ?, ?, ?)")
      .bind(user_id, device_id, stream_id, sender, type, content_json)
      .run();
}

std::vector<Message> pending(Connection& c, const std::string& user_id, const std::string& device_id, int64_t after,
                             int64_t upto, int64_t limit) {
  auto st = c.prepare(
      "SELECT stream_id, sender, type, content FROM device_inbox WHERE user_id = ? AND device_id = ? "
      "AND stream_id > ? AND stream_id <= ? ORDER BY stream_id LIMIT ?");
  st.bind(user_id, device_id, after, upto, limit);
  std::vector<Message> out;
  while (st.step()) out.push_back({st.int64(0), st.text(1), st.text(2), st.text(3)});
  return out;
}

int64_t count(Connection& c, const std::string& user_id, const std::string& device_id) {
  auto st = c.prepare("SELECT COUNT(*) FROM device_inbox WHERE user_id = ? AND device_id = ?");
  st.bind(user_id, device_id);
  return st.step() ? st.int64(0) : 0;
}

bool has_acknowledged(Connection& c, const std::string& user_id, const std::string& device_id, int64_t upto) {
  auto st = c.prepare("SELECT 1 FROM device_inbox WHERE user_id = ? AND device_id = ? AND stream_id <= ? LIMIT 1");
  st.bind(user_id, device_id, upto);
  return st.step();
}

int64_t delete_upto(Connection& c, const std::string& user_id, const std::string& device_id, int64_t upto) {
  c.prepare("DELETE FROM device_inbox WHERE user_id = ? AND device_id = ? AND stream_id <= ?")
      .bind(user_id, device_id, upto)
      .run();
  return c.changes();
}

std::vector<Addressed> in_stream_range(Connection& c, int64_t after, int64_t upto, int64_t limit) {
  auto st = c.prepare("SELECT user_id, device_id, stream_id, sender, type, content FROM device_inbox "
                      "WHERE stream_id > ? AND stream_id <= ? ORDER BY stream_id LIMIT ?");
  st.bind(after, upto, limit);
  std::vector<Addressed> out;
  while (st.step()) out.push_back({st.text(0), st.text(1), {st.int64(2), st.text(3), st.text(4), st.text(5)}});
  return out;
}

void delete_one(Connection& c, const std::string& user_id, const std::string& device_id, int64_t stream_id) {
  c.prepare("DELETE FROM device_inbox WHERE user_id = ? AND device_id = ? AND stream_id = ?")
      .bind(user_id, device_id, stream_id)
      .run();
}

bool record_txn(Connection& c, const std::string& sender_key, const std::string& txn_id, int64_t now_ms) {
  c.prepare("INSERT INTO to_device_txns (sender_key, txn_id, created_ts) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
      .bind(sender_key, txn_id, now_ms)
      .run();
  return c.changes() > 0;
}

void prune_txns(Connection& c, int64_t before_ms) {
  c.prepare("DELETE FROM to_device_txns WHERE created_ts < ?").bind(before_ms).run();
}

}  // namespace trestle::storage::device_inbox
