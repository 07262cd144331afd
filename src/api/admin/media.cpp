// Synapse's admin API for media (docs/admin_api/media_admin_api.md; the user media list of
// user_admin_api.md; statistics/users/media of statistics.md), as synadm's `media` commands send
// it. Thin: parameters are read with Synapse's names, defaults and errors; the logic is in
// service/media/media_admin.
#include "api/admin/admin_routes.hpp"
#include "api/admin/admin_util.hpp"

#include <algorithm>

namespace trestle::api::admin {

using boost::json::array;
using boost::json::object;
using boost::json::value;

namespace {

constexpr int64_t kMaxPageSize = 1000;
// Synapse refuses timestamps that would be a date in 1970 in milliseconds (likely seconds).
constexpr int64_t kMinTimestampMs = 30'000'000'000;

// Synapse's parse_integer: the default when absent, 400 when not a non-negative integer.
std::optional<int64_t> int_param(const http::Request& req, const char* name, std::optional<int64_t> def = std::nullopt,
                                 bool required = false) {
  auto v = query_count(req, name);
  if (!v && required) throw MatrixError::missing_param(std::string("Missing required integer query parameter ") + name);
  return v ? v : def;
}

int64_t page_limit(const http::Request& req) { return std::min(*int_param(req, "limit", 100), kMaxPageSize); }

void check_timestamp(int64_t ts) {
  if (ts < kMinTimestampMs) {
    throw MatrixError::invalid_param(
        "Query parameter before_ts you provided is from the year 1970. Double check that you are providing a "
        "timestamp in milliseconds.");
  }
}

// Synapse's user media paging: created_ts newest first unless order_by or dir is given, then
// order_by (default created_ts) in dir (default forwards).
service::media::MediaPaging user_paging(const http::Request& req) {
  service::media::MediaPaging p;
  p.from = *int_param(req, "from", 0);
  p.limit = page_limit(req);
  auto order = req.query_param("order_by");
  if (order || req.query_param("dir")) {
    p.order_by = order.value_or("created_ts");
    if (!service::media::MediaAdmin::valid_order(p.order_by)) {
      throw MatrixError::invalid_param(
          "Query parameter 'order_by' must be one of [media_id, upload_name, created_ts, last_access_ts, "
          "media_length, media_type, quarantined_by, safe_from_quarantine]");
    }
    p.descending = query_backwards(req, false);
  }
  return p;
}

template <typename T>
value or_null(const std::optional<T>& v) {
  return v ? value(*v) : value(nullptr);
}

object media_json(const storage::media::Media& m) {
  return object{{"media_id", m.media_id},
                {"media_type", or_null(m.content_type)},
                {"media_length", or_null(m.size)},
                {"upload_name", or_null(m.upload_name)},
                {"created_ts", m.created_ts},
                {"last_access_ts", or_null(m.last_access_ts)},
                {"quarantined_by", or_null(m.quarantined_by)},
                {"safe_from_quarantine", m.safe_from_quarantine},
                {"url_cache", nullptr},
                {"user_id", m.uploader},
                {"authenticated", m.authenticated},
                {"sha256", or_null(m.sha256)}};
}

http::Reply deleted_reply(const std::vector<std::string>& ids) {
  array list;
  for (const auto& id : ids) list.emplace_back(id);
  return ok(object{{"deleted_media", std::move(list)}, {"total", ids.size()}});
}

}  // namespace

void add_media_routes(http::Router& r, service::Homeserver& hs) {
  auto& media = hs.media_admin;

  // Per-user media counts and sizes.
  route(r, hs, "GET", "/v1/statistics/users/media", [&media](http::Request& req, const service::Requester&) {
    std::string order_by = req.query_param("order_by").value_or("user_id");
    if (order_by != "user_id" && order_by != "displayname" && order_by != "media_length" && order_by != "media_count") {
      throw MatrixError::invalid_param(
          "Query parameter 'order_by' must be one of [media_length, media_count, user_id, displayname]");
    }
    int64_t from = *int_param(req, "from", 0);
    int64_t limit = page_limit(req);
    int64_t from_ts = *int_param(req, "from_ts", 0);
    auto until_ts = int_param(req, "until_ts");
    if (until_ts && *until_ts <= from_ts) {
      throw MatrixError::invalid_param("Query parameter until_ts must be greater than from_ts.");
    }
    auto search_term = req.query_param("search_term");
    if (search_term && search_term->empty()) {
      throw MatrixError::invalid_param("Query parameter search_term cannot be an empty string.");
    }
    bool descending = query_backwards(req, false);
    auto [users, total] = media.usage(from_ts, until_ts, search_term, order_by, descending, from, limit);
    array list;
    for (const auto& u : users) {
      list.emplace_back(object{{"user_id", u.user_id},
                               {"displayname", or_null(u.displayname)},
                               {"media_count", u.media_count},
                               {"media_length", u.media_length}});
    }
    object out{{"users", std::move(list)}, {"total", total}};
    if (from + limit < total) out["next_token"] = from + static_cast<int64_t>(users.size());
    return ok(out);
  });

  // The rest is the media repository's (Synapse's media worker endpoints): not served by a
  // process with enable_media_repo: false, as in Synapse.
  if (!hs.config.serves_media) return;

  // Rooms: the media their events name, and quarantining it.
  route(r, hs, "GET", "/v1/room/{}/media", [&media](http::Request& req, const service::Requester&) {
    auto found = media.room_media(req.params[0]);
    array local(found.local.begin(), found.local.end()), remote(found.remote.begin(), found.remote.end());
    return ok(object{{"local", std::move(local)}, {"remote", std::move(remote)}});
  });
  auto quarantine_room = [&media](http::Request& req, const service::Requester& who) {
    return ok(object{{"num_quarantined", media.quarantine_room(req.params[0], who.user_id)}});
  };
  route(r, hs, "POST", "/v1/room/{}/media/quarantine", quarantine_room);
  route(r, hs, "POST", "/v1/quarantine_media/{}", quarantine_room);  // Synapse's older path

  // Users: their uploads, listed or deleted a page at a time, and quarantined.
  route(r, hs, "GET", "/v1/users/{}/media", [&media](http::Request& req, const service::Requester&) {
    auto paging = user_paging(req);
    auto page = media.user_media(req.params[0], paging);
    array list;
    for (const auto& m : page.media) list.emplace_back(media_json(m));
    object out{{"media", std::move(list)}, {"total", page.total}};
    if (paging.from + paging.limit < page.total) out["next_token"] = paging.from + static_cast<int64_t>(page.media.size());
    return ok(out);
  });
  route(r, hs, "DELETE", "/v1/users/{}/media", [&media](http::Request& req, const service::Requester&) {
    return deleted_reply(media.delete_user_media(req.params[0], user_paging(req)));
  });
  route(r, hs, "POST", "/v1/user/{}/media/quarantine", [&media](http::Request& req, const service::Requester& who) {
    return ok(object{{"num_quarantined", media.quarantine_user(req.params[0], who.user_id)}});
  });

  // One media: quarantine, protection from quarantine.
  route(r, hs, "POST", "/v1/media/quarantine/{}/{}", [&media](http::Request& req, const service::Requester& who) {
    media.quarantine(req.params[0], req.params[1], who.user_id);
    return ok();
  });
  route(r, hs, "POST", "/v1/media/unquarantine/{}/{}", [&media](http::Request& req, const service::Requester&) {
    media.quarantine(req.params[0], req.params[1], std::nullopt);
    return ok();
  });
  route(r, hs, "POST", "/v1/media/protect/{}", [&media](http::Request& req, const service::Requester&) {
    media.protect(req.params[0], true);
    return ok();
  });
  route(r, hs, "POST", "/v1/media/unprotect/{}", [&media](http::Request& req, const service::Requester&) {
    media.protect(req.params[0], false);
    return ok();
  });

  // Deletion by age and size (both paths Synapse serves; synadm sends the one with the server
  // name), then one media by id. The literal paths come first: the router takes the first match.
  auto delete_old = [&media, &hs](http::Request& req, const std::optional<std::string>& server_name) {
    int64_t before_ts = *int_param(req, "before_ts", std::nullopt, true);
    int64_t size_gt = *int_param(req, "size_gt", 0);
    bool keep_profiles = query_bool(req, "keep_profiles").value_or(true);
    check_timestamp(before_ts);
    if (server_name && *server_name != hs.config.server_name) {
      throw MatrixError(400, "M_UNKNOWN", "Can only delete local media");
    }
    return deleted_reply(media.delete_old(before_ts, size_gt, keep_profiles));
  };
  route(r, hs, "POST", "/v1/media/delete", [delete_old](http::Request& req, const service::Requester&) {
    return delete_old(req, std::nullopt);
  });
  route(r, hs, "POST", "/v1/media/{}/delete", [delete_old](http::Request& req, const service::Requester&) {
    return delete_old(req, req.params[0]);
  });
  route(r, hs, "GET", "/v1/media/{}/{}", [&media](http::Request& req, const service::Requester&) {
    auto m = media.get(req.params[0], req.params[1]);
    object info = media_json(m);
    info["media_origin"] = nullptr;
    info["filesystem_id"] = nullptr;
    return ok(object{{"media_info", std::move(info)}});
  });
  route(r, hs, "DELETE", "/v1/media/{}/{}", [&media](http::Request& req, const service::Requester&) {
    return deleted_reply(media.delete_media(req.params[0], req.params[1]));
  });

  // The remote media cache: none without federation, so nothing is purged.
  route(r, hs, "POST", "/v1/purge_media_cache", [](http::Request& req, const service::Requester&) {
    int64_t before_ts = *int_param(req, "before_ts", std::nullopt, true);
    check_timestamp(before_ts);
    return ok(object{{"deleted", 0}});
  });
}

}  // namespace trestle::api::admin
