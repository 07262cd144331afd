#include "service/media/media_service.hpp"

#include "core/clock.hpp"
#include "core/crypto.hpp"
#include "core/error.hpp"
#include "core/subprocess.hpp"

#include <spdlog/spdlog.h>
#include "storage/media_store.hpp"

#include <sodium.h>

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>

namespace trestle::service::media {

namespace fs = std::filesystem;

namespace {

constexpr int64_t kUnusedExpiryMs = 24 * 60 * 60 * 1000;  // Synapse's unused_expiration_time
constexpr int64_t kMaxPendingPerUser = 100;

struct ThumbnailSize {
  int width;
  int height;
  bool crop;
};
// Synapse's default thumbnail_sizes.
constexpr std::array<ThumbnailSize, 5> kThumbnailSizes{{
    {32, 32, true}, {96, 96, true}, {320, 240, false}, {640, 480, false}, {800, 600, false}}};

std::string base_type(const std::optional<std::string>& content_type) {
  if (!content_type) return "";
  std::string t = content_type->substr(0, content_type->find(';'));
  while (!t.empty() && t.back() == ' ') t.pop_back();
  for (auto& ch : t) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return t;
}

// Hashes the file and flushes it to disk, so the rename that publishes it publishes whole bytes.
std::string sync_and_hash(const std::string& path, int64_t& size) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw std::runtime_error("cannot open uploaded file " + path);
  crypto_hash_sha256_state st;
  crypto_hash_sha256_init(&st);
  std::vector<unsigned char> buf(1 << 16);
  size = 0;
  while (true) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      ::close(fd);
      throw std::runtime_error("cannot read uploaded file " + path);
    }
    if (n == 0) break;
    crypto_hash_sha256_update(&st, buf.data(), static_cast<unsigned long long>(n));
    size += n;
  }
  ::fsync(fd);
  ::close(fd);
  unsigned char out[crypto_hash_sha256_BYTES];
  crypto_hash_sha256_final(&st, out);
  static const char* hex = "0123456789abcdef";
  std::string h;
  for (unsigned char b : out) {
    h.push_back(hex[b >> 4]);
    h.push_back(hex[b & 15]);
  }
  return h;
}

}  // namespace

bool MediaService::valid_media_id(const std::string& id) {
  // Ours are [A-Za-z0-9], 24 chars; at least 5 so the path split below has a file name.
  if (id.size() < 5 || id.size() > 255) return false;
  for (char ch : id) {
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '_' && ch != '-') return false;
  }
  return true;
}

struct MediaService::Found {
  storage::media::Media media;
};

namespace {
// The content types we try to thumbnail.
bool is_thumbnailable(const std::string& content_type) {
  static const char* types[] = {"image/jpeg", "image/jpg", "image/png", "image/gif", "image/webp", "image/apng"};
  for (const char* t : types) {
    if (content_type == t) return true;
  }
  return false;
}
}  // namespace

MediaService::MediaService(const config::Config& cfg, storage::Database& db)
    : cfg_(cfg),
      db_(db),
      root_(cfg.media_store_path),
      // Several processes share media_store_path: each receives uploads in a folder of its own.
      temp_dir_(cfg.media_store_path + (cfg.multi_process() ? "/tmp/" + cfg.instance_name : std::string("/tmp"))) {
  std::error_code ec;
  fs::create_directories(temp_dir_, ec);
  if (ec) throw std::runtime_error("media_store_path: cannot create " + temp_dir_ + ": " + ec.message());
  // Leftovers of this process's uploads cut short by a crash (never another process's: only
  // files go, and only from this process's folder).
  for (const auto& entry : fs::directory_iterator(temp_dir_, ec)) {
    if (entry.is_regular_file(ec)) fs::remove(entry.path(), ec);
  }
  thumbnailer_ = core::executable_dir() + "/trestle-thumbnailer";
}

std::string MediaService::new_temp_path() const { return temp_dir_ + "/" + core::random_string(24); }

std::string MediaService::media_path(const std::string& id) const {
  return root_ + "/local/" + id.substr(0, 2) + "/" + id.substr(2, 2) + "/" + id.substr(4);
}

std::string MediaService::thumbnail_dir(const std::string& id) const {
  return root_ + "/thumbnails/" + id.substr(0, 2) + "/" + id.substr(2, 2) + "/" + id.substr(4);
}

void MediaService::store_file(const std::string& temp_path, const std::string& media_id, int64_t& size,
                              std::string& sha256_hex) {
  sha256_hex = sync_and_hash(temp_path, size);
  if (static_cast<uint64_t>(size) > cfg_.max_upload_size) {
    throw MatrixError(413, "M_TOO_LARGE", "Upload is larger than max_upload_size");
  }
  fs::create_directories(fs::path(media_path(media_id)).parent_path());
}

std::string MediaService::upload(const std::string& user_id, const std::string& temp_path,
                                 const std::optional<std::string>& content_type,
                                 const std::optional<std::string>& file_name) {
  storage::media::Media m;
  m.media_id = core::random_string(24);
  m.uploader = user_id;
  m.content_type = content_type;
  m.upload_name = file_name;
  m.created_ts = core::now_ms();
  m.authenticated = cfg_.enable_authenticated_media;
  int64_t size = 0;
  std::string sha;
  store_file(temp_path, m.media_id, size, sha);
  m.size = size;
  m.sha256 = sha;
  // The file is in place before the row that announces it is committed.
  fs::rename(temp_path, media_path(m.media_id));
  db_.write([&](storage::Connection& c) { storage::media::insert_media(c, m); });
  return "mxc://" + cfg_.server_name + "/" + m.media_id;
}

Created MediaService::create(const std::string& user_id) {
  storage::media::Media m;
  m.media_id = core::random_string(24);
  m.uploader = user_id;
  m.created_ts = core::now_ms();
  m.unused_expires_ts = m.created_ts + kUnusedExpiryMs;
  m.authenticated = cfg_.enable_authenticated_media;
  db_.write([&](storage::Connection& c) {
    if (storage::media::count_pending(c, user_id, m.created_ts) >= kMaxPendingPerUser) {
      throw MatrixError(429, "M_LIMIT_EXCEEDED", "Too many pending media uploads",
                        boost::json::object{{"retry_after_ms", 60000}});
    }
    storage::media::insert_media(c, m);
  });
  return Created{"mxc://" + cfg_.server_name + "/" + m.media_id, *m.unused_expires_ts};
}

void MediaService::upload_to(const std::string& user_id, const std::string& server_name, const std::string& media_id,
                             const std::string& temp_path, const std::optional<std::string>& content_type,
                             const std::optional<std::string>& file_name) {
  if (server_name != cfg_.server_name || !valid_media_id(media_id)) throw MatrixError::not_found("Unknown media");
  auto m = db_.read([&](storage::Connection& c) { return storage::media::get_media(c, media_id); });
  if (!m) throw MatrixError::not_found("Unknown media");
  if (m->uploader != user_id) throw MatrixError::forbidden("This media was created by another user");
  if (m->size) throw MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media has already been uploaded");
  if (m->unused_expires_ts && *m->unused_expires_ts < core::now_ms()) {
    throw MatrixError::not_found("The upload window of this media has expired");
  }
  int64_t size = 0;
  std::string sha;
  store_file(temp_path, media_id, size, sha);
  db_.write([&](storage::Connection& c) {
    if (!storage::media::complete_media(c, media_id, content_type, file_name, size, sha)) {
      throw MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media has already been uploaded");
    }
    // Inside the transaction: only the upload that claimed the row publishes its bytes.
    fs::rename(temp_path, media_path(media_id));
  });
}

MediaService::Found MediaService::find(const std::string& server_name, const std::string& media_id, bool legacy) {
  // No federation yet: remote media cannot be fetched.
  if (server_name != cfg_.server_name || !valid_media_id(media_id)) throw MatrixError::not_found("Media not found");
  auto m = db_.read([&](storage::Connection& c) { return storage::media::get_media(c, media_id); });
  if (!m) throw MatrixError::not_found("Media not found");
  // Quarantined by an admin: not served, on any endpoint (Synapse answers 404 too).
  if (m->quarantined_by) throw MatrixError::not_found("Media not found");
  // The spec's freeze: media uploaded while it is on is not served unauthenticated.
  if (legacy && m->authenticated) throw MatrixError::not_found("Media not found");
  if (!m->size) {
    if (m->unused_expires_ts && *m->unused_expires_ts < core::now_ms()) throw MatrixError::not_found("Media not found");
    throw MatrixError(504, "M_NOT_YET_UPLOADED", "Content has not yet been uploaded");
  }
  // For media_retention and the admin API: when it was last used, at most one write a minute.
  int64_t now = core::now_ms();
  if (!m->last_access_ts || now - *m->last_access_ts >= kAccessWriteIntervalMs) {
    db_.write([&](storage::Connection& c) { storage::media::touch_media(c, media_id, now); });
  }
  return Found{std::move(*m)};
}

Served MediaService::download(const std::string& server_name, const std::string& media_id, bool legacy) {
  auto f = find(server_name, media_id, legacy);
  return Served{media_path(media_id), f.media.content_type.value_or("application/octet-stream"), f.media.upload_name};
}

Served MediaService::thumbnail(const std::string& server_name, const std::string& media_id, int64_t width,
                               int64_t height, const std::string& method, bool legacy) {
  if (width <= 0 || height <= 0) throw MatrixError::invalid_param("width and height must be positive integers");
  if (method != "scale" && method != "crop") throw MatrixError::invalid_param("method must be 'scale' or 'crop'");
  auto f = find(server_name, media_id, legacy);
  std::string type = base_type(f.media.content_type);
  if (!is_thumbnailable(type)) {
    throw MatrixError(400, "M_UNKNOWN", "Cannot generate thumbnails for the requested content");
  }
  bool crop = method == "crop";
  // The smallest configured size of this method that covers the request, else the largest.
  const ThumbnailSize* covering = nullptr;
  const ThumbnailSize* largest = nullptr;
  for (const auto& s : kThumbnailSizes) {
    if (s.crop != crop) continue;
    int area = s.width * s.height;
    if (s.width >= width && s.height >= height && (!covering || area < covering->width * covering->height)) covering = &s;
    if (!largest || area > largest->width * largest->height) largest = &s;
  }
  const ThumbnailSize* pick = covering ? covering : largest;
  bool jpeg = type == "image/jpeg" || type == "image/jpg";
  std::string ext = jpeg ? "jpg" : "png";
  std::string dir = thumbnail_dir(media_id);
  std::string path = dir + "/" + std::to_string(pick->width) + "x" + std::to_string(pick->height) + "-" + method +
                     "." + ext;
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    fs::create_directories(dir);
    std::string tmp = new_temp_path() + "." + ext;
    auto run = core::run_process(thumbnailer_, {media_path(media_id), tmp, std::to_string(pick->width),
                                                std::to_string(pick->height), method},
                                 kThumbnailTimeoutMs);
    if (run.exit_code != 0) {
      fs::remove(tmp, ec);
      if (run.exit_code == 2) {
        std::string why = run.error_output;
        while (!why.empty() && (why.back() == '\n' || why.back() == '\r')) why.pop_back();
        throw MatrixError(400, "M_UNKNOWN", "Cannot generate thumbnails for the requested content: " + why);
      }
      // A crash or hang of the decoder is the image's fault or ours, never the server's end.
      spdlog::warn("thumbnailer failed for {} ({}): {}", media_id,
                   run.timed_out ? "timed out" : "exit " + std::to_string(run.exit_code), run.error_output);
      throw MatrixError(400, "M_UNKNOWN", "Cannot generate thumbnails for the requested content");
    }
    fs::rename(tmp, path);  // concurrent generators each publish a whole file
  }
  return Served{path, jpeg ? "image/jpeg" : "image/png", "thumbnail." + ext};
}

bool MediaService::remove_local(const std::string& media_id) {
  if (!valid_media_id(media_id)) return false;
  std::error_code ec;
  fs::remove(media_path(media_id), ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    spdlog::warn("cannot delete media file of {}: {}", media_id, ec.message());
    return false;
  }
  fs::remove_all(thumbnail_dir(media_id), ec);
  if (ec) spdlog::warn("cannot delete thumbnails of {}: {}", media_id, ec.message());
  db_.write([&](storage::Connection& c) { storage::media::delete_media(c, media_id); });
  spdlog::info("deleted media {}", media_id);
  return true;
}

}  // namespace trestle::service::media
