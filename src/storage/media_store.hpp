#pragma once
// Metadata of local media (the bytes are files under media_store_path, see service/media).
#include "storage/database.hpp"

#include <cstdint>
#include <optional>
#include <string>

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
};

void insert_media(Connection& c, const Media& m);
std::optional<Media> get_media(Connection& c, const std::string& media_id);
// Fills in a pending (created) media's content. False if it is not pending any more.
bool complete_media(Connection& c, const std::string& media_id, const std::optional<std::string>& content_type,
                    const std::optional<std::string>& upload_name, int64_t size, const std::string& sha256);
// Pending media of `uploader` whose upload window has not expired at `now_ms`.
int64_t count_pending(Connection& c, const std::string& uploader, int64_t now_ms);

}  // namespace trestle::storage::media
