#include "service/media/media_admin.hpp"

#include "core/error.hpp"
#include "core/identifiers.hpp"

#include <spdlog/spdlog.h>

#include <set>

namespace trestle::service::media {

namespace {

struct Mxc {
  std::string server_name;
  std::string media_id;
};

// Synapse's MXC_REGEX, ^mxc://([^/]+)/([^/#?]+): the server name, then the media id up to a
// '/', '#' or '?'.
std::optional<Mxc> parse_mxc(const std::string& uri) {
  static constexpr std::string_view kScheme = "mxc://";
  if (uri.compare(0, kScheme.size(), kScheme) != 0) return std::nullopt;
  auto slash = uri.find('/', kScheme.size());
  if (slash == std::string::npos || slash == kScheme.size()) return std::nullopt;
  auto end = uri.find_first_of("/#?", slash + 1);
  std::string id = uri.substr(slash + 1, end == std::string::npos ? std::string::npos : end - slash - 1);
  if (id.empty()) return std::nullopt;
  return Mxc{uri.substr(kScheme.size(), slash - kScheme.size()), std::move(id)};
}

}  // namespace

bool MediaAdmin::valid_order(const std::string& order_by) {
  static const std::set<std::string> orders = {"media_id",       "upload_name",  "created_ts", "last_access_ts",
                                               "media_length",   "media_type",   "quarantined_by",
                                               "safe_from_quarantine"};
  return orders.count(order_by) != 0;
}

RoomMedia MediaAdmin::room_media(const std::string& room_id) {
  auto uris = db_.read([&](storage::Connection& c) { return storage::media::room_media_uris(c, room_id); });
  RoomMedia out;
  std::set<std::string> seen;
  for (const auto& uri : uris) {
    auto mxc = parse_mxc(uri);
    if (!mxc) continue;
    std::string clean = "mxc://" + mxc->server_name + "/" + mxc->media_id;
    if (!seen.insert(clean).second) continue;
    (mxc->server_name == cfg_.server_name ? out.local : out.remote).push_back(std::move(clean));
  }
  return out;
}

std::vector<std::string> MediaAdmin::room_local_ids(const std::string& room_id) {
  std::vector<std::string> ids;
  for (const auto& uri : room_media(room_id).local) ids.push_back(parse_mxc(uri)->media_id);
  return ids;
}

void MediaAdmin::quarantine(const std::string& server_name, const std::string& media_id,
                            const std::optional<std::string>& by) {
  if (server_name != cfg_.server_name) return;  // no remote media cache to mark
  spdlog::info("{} media {}/{} by {}", by ? "quarantining" : "releasing", server_name, media_id, by.value_or("admin"));
  db_.write([&](storage::Connection& c) { storage::media::set_quarantined(c, {media_id}, by); });
}

int64_t MediaAdmin::quarantine_room(const std::string& room_id, const std::string& by) {
  auto ids = room_local_ids(room_id);
  spdlog::info("quarantining media of room {} by {}", room_id, by);
  return db_.write([&](storage::Connection& c) { return storage::media::set_quarantined(c, ids, by); });
}

int64_t MediaAdmin::quarantine_user(const std::string& user_id, const std::string& by) {
  spdlog::info("quarantining media of user {} by {}", user_id, by);
  return db_.write([&](storage::Connection& c) {
    return storage::media::set_quarantined(c, storage::media::ids_by_uploader(c, user_id, true), by);
  });
}

void MediaAdmin::protect(const std::string& media_id, bool safe) {
  spdlog::info("{} media {}", safe ? "protecting" : "unprotecting", media_id);
  db_.write([&](storage::Connection& c) { storage::media::set_protected(c, media_id, safe); });
}

storage::media::Media MediaAdmin::get(const std::string& server_name, const std::string& media_id) {
  std::optional<storage::media::Media> m;
  if (server_name == cfg_.server_name) {
    m = db_.read([&](storage::Connection& c) { return storage::media::get_media(c, media_id); });
  }
  if (!m) throw MatrixError::not_found("Unknown media");
  return *m;
}

void MediaAdmin::check_local_user(const std::string& user_id) {
  auto parsed = core::parse_user_id(user_id);
  if (!parsed) throw MatrixError::invalid_param("Invalid user ID");
  if (parsed->server_name != cfg_.server_name) throw MatrixError(400, "M_UNKNOWN", "Can only look up local users");
  if (!accounts_.get_user(user_id)) throw MatrixError::not_found("Unknown user");
}

UserMediaPage MediaAdmin::user_media(const std::string& user_id, const MediaPaging& p) {
  check_local_user(user_id);
  return db_.read([&](storage::Connection& c) {
    return UserMediaPage{storage::media::list_by_uploader(c, user_id, p.order_by, p.descending, p.from, p.limit),
                         storage::media::count_by_uploader(c, user_id)};
  });
}

std::vector<std::string> MediaAdmin::remove(const std::vector<std::string>& ids) {
  std::vector<std::string> deleted;
  for (const auto& id : ids) {
    if (media_.remove_local(id)) deleted.push_back(id);
  }
  return deleted;
}

std::vector<std::string> MediaAdmin::delete_user_media(const std::string& user_id, const MediaPaging& p) {
  auto page = user_media(user_id, p);
  std::vector<std::string> ids;
  for (const auto& m : page.media) ids.push_back(m.media_id);
  spdlog::info("deleting {} media of user {}", ids.size(), user_id);
  return remove(ids);
}

std::vector<std::string> MediaAdmin::delete_media(const std::string& server_name, const std::string& media_id) {
  if (server_name != cfg_.server_name) throw MatrixError(400, "M_UNKNOWN", "Can only delete local media");
  auto m = db_.read([&](storage::Connection& c) { return storage::media::get_media(c, media_id); });
  if (!m) throw MatrixError::not_found("Unknown media");
  return remove({media_id});
}

std::vector<std::string> MediaAdmin::delete_old(int64_t before_ts, int64_t size_gt, bool keep_profiles) {
  std::string prefix = "mxc://" + cfg_.server_name + "/";
  auto [candidates, avatars] = db_.read([&](storage::Connection& c) {
    return std::make_pair(storage::media::unused_since(c, before_ts, size_gt),
                          keep_profiles ? storage::media::avatar_uris(c, prefix) : std::vector<std::string>{});
  });
  std::set<std::string> kept;
  for (const auto& uri : avatars) {
    if (auto mxc = parse_mxc(uri)) kept.insert(mxc->media_id);
  }
  std::vector<std::string> ids;
  for (auto& id : candidates) {
    if (!kept.count(id)) ids.push_back(std::move(id));
  }
  if (!ids.empty()) {
    spdlog::info("deleting {} media last used before {} (larger than {} bytes{})", ids.size(), before_ts, size_gt,
                 keep_profiles ? ", avatars kept" : "");
  }
  return remove(ids);
}

std::pair<std::vector<storage::media::UserUsage>, int64_t> MediaAdmin::usage(
    int64_t from_ts, std::optional<int64_t> until_ts, const std::optional<std::string>& search_term,
    const std::string& order_by, bool descending, int64_t from, int64_t limit) {
  return db_.read([&](storage::Connection& c) {
    return storage::media::usage_by_user(c, from_ts, until_ts, search_term, order_by, descending, from, limit);
  });
}

}  // namespace trestle::service::media
