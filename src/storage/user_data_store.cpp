#include "storage/user_data_store.hpp"

#include "storage/push_store.hpp"

namespace trestle::storage::user_data {

void put_account_data(Connection& c, const std::string& user_id, const std::string& room_id, const std::string& type,
                      const std::string& content_json, int64_t stream_id) {
  c.prepare("INSERT INTO account_data (user_id, room_id, type, content, stream_id) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content, "
            "stream_id = excluded.stream_id")
      .bind(user_id, room_id, type, content_json, stream_id)
      .run();
}

std::optional<std::string> get_account_data(Connection& c, const std::string& user_id, const std::string& room_id,
                                            const std::string& type) {
  auto st = c.prepare("SELECT content FROM account_data WHERE user_id = ? AND room_id = ? AND type = ?");
  st.bind(user_id, room_id, type);
  if (!st.step()) return std::nullopt;
  return st.text(0);
}

std::vector<AccountData> account_data_since(Connection& c, const std::string& user_id, int64_t since, int64_t upto) {
  auto st = c.prepare("SELECT room_id, type, content, stream_id FROM account_data "
                      "WHERE user_id = ? AND stream_id > ? AND stream_id <= ? ORDER BY stream_id");
  st.bind(user_id, since, upto);
  std::vector<AccountData> out;
  while (st.step()) out.push_back(AccountData{st.text(0), st.text(1), st.text(2), st.int64(3)});
  return out;
}

void put_receipt(Connection& c, const Receipt& r) {
  c.prepare("INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, ts, stream_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET "
            "event_id = excluded.event_id, ts = excluded.ts, stream_id = excluded.stream_id")
      .bind(r.room_id, r.receipt_type, r.user_id, r.thread_id, r.event_id, r.ts, r.stream_id)
      .run();
}

std::vector<Receipt> receipts_since(Connection& c, const std::string& room_id, int64_t since, int64_t upto) {
  auto st = c.prepare("SELECT receipt_type, user_id, thread_id, event_id, ts, stream_id FROM receipts "
                      "WHERE room_id = ? AND stream_id > ? AND stream_id <= ? ORDER BY stream_id");
  st.bind(room_id, since, upto);
  std::vector<Receipt> out;
  while (st.step()) {
    out.push_back(Receipt{room_id, st.text(0), st.text(1), st.text(2), st.text(3), st.int64(4), st.int64(5)});
  }
  return out;
}

std::vector<Receipt> all_receipts_between(Connection& c, int64_t since, int64_t upto) {
  auto st = c.prepare("SELECT room_id, receipt_type, user_id, thread_id, event_id, ts, stream_id FROM receipts "
                      "WHERE stream_id > ? AND stream_id <= ? ORDER BY stream_id");
  st.bind(since, upto);
  std::vector<Receipt> out;
  while (st.step()) {
    out.push_back(Receipt{st.text(0), st.text(1), st.text(2), st.text(3), st.text(4), st.int64(5), st.int64(6)});
  }
  return out;
}

std::optional<Receipt> get_receipt(Connection& c, const std::string& room_id, const std::string& receipt_type,
                                   const std::string& user_id) {
  auto st = c.prepare("SELECT thread_id, event_id, ts, stream_id FROM receipts WHERE room_id = ? AND "
                      "receipt_type = ? AND user_id = ? ORDER BY stream_id DESC LIMIT 1");
  st.bind(room_id, receipt_type, user_id);
  if (!st.step()) return std::nullopt;
  return Receipt{room_id, receipt_type, user_id, st.text(0), st.text(1), st.int64(2), st.int64(3)};
}

int64_t insert_filter(Connection& c, const std::string& user_id, const std::string& filter_json) {
  auto st = c.prepare("SELECT COALESCE(MAX(filter_id), -1) + 1 FROM filters WHERE user_id = ?");
  st.bind(user_id);
  st.step();
  int64_t id = st.int64(0);
  c.prepare("INSERT INTO filters (user_id, filter_id, filter) VALUES (?, ?, ?)").bind(user_id, id, filter_json).run();
  return id;
}

std::optional<std::string> get_filter(Connection& c, const std::string& user_id, int64_t filter_id) {
  auto st = c.prepare("SELECT filter FROM filters WHERE user_id = ? AND filter_id = ?");
  st.bind(user_id, filter_id);
  if (!st.step()) return std::nullopt;
  return st.text(0);
}

std::optional<std::string> get_push_rules(Connection& c, const std::string& user_id) {
  auto st = c.prepare("SELECT rules FROM push_rules WHERE user_id = ?");
  st.bind(user_id);
  if (!st.step()) return std::nullopt;
  return st.text(0);
}

void put_push_rules(Connection& c, const std::string& user_id, const std::string& rules_json) {
  push::rules_or_pushers_changed();  // the push evaluator's members with rules or pushers
  c.prepare("INSERT INTO push_rules (user_id, rules) VALUES (?, ?) ON CONFLICT (user_id) DO UPDATE SET "
            "rules = excluded.rules")
      .bind(user_id, rules_json)
      .run();
}

std::vector<std::string> pushers_of_user(Connection& c, const std::string& user_id) {
  auto st = c.prepare("SELECT data FROM pushers WHERE user_id = ? ORDER BY app_id, pushkey");
  st.bind(user_id);
  std::vector<std::string> out;
  while (st.step()) out.push_back(st.text(0));
  return out;
}

void put_pusher(Connection& c, const std::string& user_id, const std::string& app_id, const std::string& pushkey,
                const std::string& data_json) {
  push::rules_or_pushers_changed();  // the push evaluator's members with rules or pushers
  c.prepare("INSERT INTO pushers (user_id, app_id, pushkey, data) VALUES (?, ?, ?, ?) ON CONFLICT "
            "(app_id, pushkey, user_id) DO UPDATE SET data = excluded.data")
      .bind(user_id, app_id, pushkey, data_json)
      .run();
}

void delete_pusher(Connection& c, const std::string& user_id, const std::string& app_id, const std::string& pushkey) {
  push::rules_or_pushers_changed();  // the push evaluator's members with rules or pushers
  c.prepare("DELETE FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?").bind(user_id, app_id, pushkey).run();
}

void delete_pushers_by_key(Connection& c, const std::string& app_id, const std::string& pushkey,
                           const std::string& except_user) {
  push::rules_or_pushers_changed();  // the push evaluator's members with rules or pushers
  c.prepare("DELETE FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id != ?")
      .bind(app_id, pushkey, except_user)
      .run();
}

}  // namespace trestle::storage::user_data
