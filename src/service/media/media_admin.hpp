#pragma once
// Synapse's admin API for media (docs/admin_api/media_admin_api.md, and the user media list of
// user_admin_api.md): listing a room's or a user's media, quarantine, protection, deletion by id,
// by user and by age/size, and the media usage statistics. Trestle has no federation yet, so
// "remote" media (another server's mxc://) is only ever listed, never stored or purged.
#include "config/config.hpp"
#include "service/accounts.hpp"
#include "service/media/media_service.hpp"
#include "storage/database.hpp"
#include "storage/media_store.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace trestle::service::media {

struct RoomMedia {
  std::vector<std::string> local;   // mxc:// URIs of this server
  std::vector<std::string> remote;  // mxc:// URIs of other servers
};

struct UserMediaPage {
  std::vector<storage::media::Media> media;
  int64_t total = 0;
};

// How a user's media is paged: Synapse's from/limit/order_by/dir.
struct MediaPaging {
  int64_t from = 0;
  int64_t limit = 100;
  std::string order_by = "created_ts";
  bool descending = true;
};

class MediaAdmin {
public:
  MediaAdmin(const config::Config& cfg, storage::Database& db, MediaService& media, AccountService& accounts)
      : cfg_(cfg), db_(db), media_(media), accounts_(accounts) {}

  // The order_by values of the user media list.
  static bool valid_order(const std::string& order_by);

  // mxc:// URIs in the room's events (content.url, content.info.thumbnail_url; a room avatar is an
  // event with content.url), newest first, each once.
  RoomMedia room_media(const std::string& room_id);

  // Quarantine (`by` an admin) or release (`by` nullopt) one media; other servers' media is not
  // stored here, so there is nothing to mark. Protected media is never quarantined.
  void quarantine(const std::string& server_name, const std::string& media_id, const std::optional<std::string>& by);
  int64_t quarantine_room(const std::string& room_id, const std::string& by);
  int64_t quarantine_user(const std::string& user_id, const std::string& by);
  void protect(const std::string& media_id, bool safe);

  // The admin view of one media: 404 when it is not stored here.
  storage::media::Media get(const std::string& server_name, const std::string& media_id);

  // A local user's uploads: 400 for another server's user, 404 for an unknown one.
  UserMediaPage user_media(const std::string& user_id, const MediaPaging& paging);
  // Deletes that page of the user's uploads; returns the ids deleted.
  std::vector<std::string> delete_user_media(const std::string& user_id, const MediaPaging& paging);
  // One local media: 400 for another server's, 404 when unknown.
  std::vector<std::string> delete_media(const std::string& server_name, const std::string& media_id);
  // Local media last used (downloaded, else uploaded) before `before_ts` and larger than
  // `size_gt` bytes, except quarantined and protected media, and unless !keep_profiles, avatars.
  std::vector<std::string> delete_old(int64_t before_ts, int64_t size_gt, bool keep_profiles);

  std::pair<std::vector<storage::media::UserUsage>, int64_t> usage(int64_t from_ts, std::optional<int64_t> until_ts,
                                                                  const std::optional<std::string>& search_term,
                                                                  const std::string& order_by, bool descending,
                                                                  int64_t from, int64_t limit);

private:
  void check_local_user(const std::string& user_id);
  std::vector<std::string> remove(const std::vector<std::string>& ids);
  // Local media ids referenced in the room.
  std::vector<std::string> room_local_ids(const std::string& room_id);

  const config::Config& cfg_;
  storage::Database& db_;
  MediaService& media_;
  AccountService& accounts_;
};

}  // namespace trestle::service::media
