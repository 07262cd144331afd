#pragma once
// Per-user data that is not room events: account data, read receipts, filters, push rules, pushers.
#include "storage/database.hpp"

#include <optional>
#include <string>
#include <vector>

namespace trestle::storage::user_data {

struct AccountData {
  std::string room_id;  // "" for global
  std::string type;
  std::string content;  // JSON text
  int64_t stream_id = 0;
};
void put_account_data(Connection& c, const std::string& user_id, const std::string& room_id, const std::string& type,
                      const std::string& content_json, int64_t stream_id);
std::optional<std::string> get_account_data(Connection& c, const std::string& user_id, const std::string& room_id,
                                            const std::string& type);
// Account data changed after `since` (all of it for since = 0).
std::vector<AccountData> account_data_since(Connection& c, const std::string& user_id, int64_t since, int64_t upto);

struct Receipt {
  std::string room_id;
  std::string receipt_type;
  std::string user_id;
  std::string thread_id;
  std::string event_id;
  int64_t ts = 0;
  int64_t stream_id = 0;
};
void put_receipt(Connection& c, const Receipt& r);
std::vector<Receipt> receipts_since(Connection& c, const std::string& room_id, int64_t since, int64_t upto);
// Receipts of every room with since < stream_id <= upto, oldest first (appservice ephemeral).
std::vector<Receipt> all_receipts_between(Connection& c, int64_t since, int64_t upto);
std::optional<Receipt> get_receipt(Connection& c, const std::string& room_id, const std::string& receipt_type,
                                   const std::string& user_id);

int64_t insert_filter(Connection& c, const std::string& user_id, const std::string& filter_json);
std::optional<std::string> get_filter(Connection& c, const std::string& user_id, int64_t filter_id);

std::optional<std::string> get_push_rules(Connection& c, const std::string& user_id);
void put_push_rules(Connection& c, const std::string& user_id, const std::string& rules_json);

std::vector<std::string> pushers_of_user(Connection& c, const std::string& user_id);  // JSON texts
void put_pusher(Connection& c, const std::string& user_id, const std::string& app_id, const std::string& pushkey,
                const std::string& data_json);
void delete_pusher(Connection& c, const std::string& user_id, const std::string& app_id, const std::string& pushkey);
void delete_pushers_by_key(Connection& c, const std::string& app_id, const std::string& pushkey,
                           const std::string& except_user);

}  // namespace trestle::storage::user_data
