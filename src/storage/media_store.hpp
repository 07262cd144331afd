#pragma once
// Metadata of local media (the bytes are files under media_store_path, see service/media).
#include "storage/database.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace trestle::storage::media {

struct Media {
  std::string media_id;
  std::string uploader;
  std::optional<std::string> content_type;
  std::optional<std::string> upload_name;
  std::optional<int64_t> size;  // nullopt: created (async upload) but not uploaded yet
  std::optional<std::string> sha256;  // hex
  int64_t created_ts = 0;
  std::optional<int64_t> unused_expires_ts;
  bool authenticated = true;
  std::optional<int64_t> last_access_ts;     // last download or thumbnail (nullopt: never)
  std::optional<std::string> quarantined_by;  // set: not served
  bool safe_from_quarantine = false;          // protected from quarantine
};

void insert_media(Connection& c, const Media& m);
std::optional<Media> get_media(Connection& c, const std::string& media_id);
// Fills in a pending (created) media's content. False if it is not pending any more.
bool complete_media(Connection& c, const std::string& media_id, const std::optional<std::string>& content_type,
                    const std::optional<std::string>& upload_name, int64_t size, const std::string& sha256);
// Pending media of `uploader` whose upload window has not expired at `now_ms`.
int64_t count_pending(Connection& c, const std::string& uploader, int64_t now_ms);

// --- the admin API and media retention (task media) ---

// Records a download or thumbnail of the media at `ts`.
void touch_media(Connection& c, const std::string& media_id, int64_t ts);
void delete_media(Connection& c, const std::string& media_id);

// A page of `uploader`'s media ordered by `order_by` (a column name of the admin API: media_id,
// upload_name, created_ts, last_access_ts, media_length, media_type, quarantined_by,
// safe_from_quarantine; anything else is refused by the caller), then media_id ascending.
std::vector<Media> list_by_uploader(Connection& c, const std::string& uploader, const std::string& order_by,
                                    bool descending, int64_t offset, int64_t limit);
int64_t count_by_uploader(Connection& c, const std::string& uploader);
std::vector<std::string> ids_by_uploader(Connection& c, const std::string& uploader, bool only_unquarantined);

// Quarantines (`by` set) or releases (`by` nullopt) the named media and every local media with
// the same content (sha256), as Synapse does; protected media is never quarantined. Returns how
// many rows changed.
int64_t set_quarantined(Connection& c, const std::vector<std::string>& media_ids, const std::optional<std::string>& by);
void set_protected(Connection& c, const std::string& media_id, bool safe);

// Uploaded media last used (downloaded, else created) before `before_ts`, larger than `size_gt`
// bytes, neither quarantined nor protected.
std::vector<std::string> unused_since(Connection& c, int64_t before_ts, int64_t size_gt);
// mxc:// URIs in use as avatars: users' profiles, per-room member avatars and room avatars (current
// state) that start with `prefix` (e.g. "mxc://example.org/").
std::vector<std::string> avatar_uris(Connection& c, const std::string& prefix);
// content.url and content.info.thumbnail_url strings of the room's events, newest first.
std::vector<std::string> room_media_uris(Connection& c, const std::string& room_id);

struct UserUsage {
  std::string user_id;
  std::optional<std::string> displayname;
  int64_t media_count = 0;
  int64_t media_length = 0;
};
// Per-uploader totals of media created in [from_ts, until_ts]; `order_by` is user_id,
// displayname, media_length or media_count (checked by the caller). Returns the page and the
// number of uploaders.
std::pair<std::vector<UserUsage>, int64_t> usage_by_user(Connection& c, int64_t from_ts, std::optional<int64_t> until_ts,
                                                         const std::optional<std::string>& search_term,
                                                         const std::string& order_by, bool descending, int64_t offset,
                                                         int64_t limit);

}  // namespace trestle::storage::media
