#pragma once
// The media repository (spec: content_repo.md): uploads (direct and asynchronous via create),
// downloads and thumbnails of local media. Bytes are files under media_store_path, written
// atomically (temp file + rename); metadata is in storage/media_store.
//
// Layout under media_store_path:
//   tmp/                     uploads being received (the HTTP layer streams bodies here); with
//                            several processes, tmp/<instance_name>/ each
//   local/ab/cd/abcdef...    the files, by media id
//   thumbnails/ab/cd/abcdef.../WxH-method.ext   generated once, then served from disk
#include "config/config.hpp"
#include "storage/database.hpp"

#include <cstdint>
#include <optional>
#include <string>

namespace trestle::service::media {

// What a download or thumbnail serves: a file on disk and its headers' inputs.
struct Served {
  std::string path;
  std::string content_type;
  std::optional<std::string> file_name;
};

struct Created {
  std::string content_uri;
  int64_t unused_expires_at = 0;
};

class MediaService {
public:
  MediaService(const config::Config& cfg, storage::Database& db);

  const std::string& temp_dir() const { return temp_dir_; }
  // A fresh path in temp_dir() for a body being received.
  std::string new_temp_path() const;
  uint64_t max_upload_size() const { return cfg_.max_upload_size; }

  // Moves the uploaded file at `temp_path` into the store; returns its mxc:// URI.
  std::string upload(const std::string& user_id, const std::string& temp_path,
                     const std::optional<std::string>& content_type, const std::optional<std::string>& file_name);
  // POST /media/v1/create: reserves a media id for `user_id` to upload to later.
  Created create(const std::string& user_id);
  // PUT /media/v3/upload/{serverName}/{mediaId}: the bytes of a created media id.
  void upload_to(const std::string& user_id, const std::string& server_name, const std::string& media_id,
                 const std::string& temp_path, const std::optional<std::string>& content_type,
                 const std::optional<std::string>& file_name);

  // `legacy`: asked through the unauthenticated /_matrix/media/v3 endpoints.
  Served download(const std::string& server_name, const std::string& media_id, bool legacy);
  Served thumbnail(const std::string& server_name, const std::string& media_id, int64_t width, int64_t height,
                   const std::string& method, bool legacy);

  // Removes a local media: its file, its thumbnails, then its row. False when the file could not
  // be removed (the media is kept, as Synapse does); a file already gone is no obstacle.
  bool remove_local(const std::string& media_id);
  const std::string& server_name() const { return cfg_.server_name; }
  // Media ids are ours ([A-Za-z0-9_-]) but arrive in paths: never let one name a path.
  static bool valid_media_id(const std::string& id);

private:
  std::string media_path(const std::string& media_id) const;
  std::string thumbnail_dir(const std::string& media_id) const;
  // Looks up uploaded local media or throws the spec's error.
  struct Found;
  Found find(const std::string& server_name, const std::string& media_id, bool legacy);
  void store_file(const std::string& temp_path, const std::string& media_id, int64_t& size, std::string& sha256_hex);

  const config::Config& cfg_;
  storage::Database& db_;
  std::string root_;
  std::string temp_dir_;
  std::string thumbnailer_;  // the trestle-thumbnailer program beside the server's executable
  static constexpr int kThumbnailTimeoutMs = 30000;
  // last_access_ts is written at most this often per media (one write per download is too many).
  static constexpr int64_t kAccessWriteIntervalMs = 60000;
};

}  // namespace trestle::service::media
