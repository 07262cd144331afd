#include "storage/media_store.hpp"

namespace trestle::storage::media {

void insert_media(Connection& c, const Media& m) {
  auto st = c.prepare(
      "INSERT INTO local_media (media_id, uploader, content_type, upload_name, size, sha256, created_ts, "
      "unused_expires_ts, authenticated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
  st.bind(m.media_id, m.uploader, m.content_type, m.upload_name);
  if (m.size) st.bind(*m.size);
  else st.bind(nullptr);
  st.bind(m.sha256, m.created_ts);
  if (m.unused_expires_ts) st.bind(*m.unused_expires_ts);
  else st.bind(nullptr);
  st.bind(m.authenticated);
  st.run();
}

std::optional<Media> get_media(Connection& c, const std::string& media_id) {
  auto st = c.prepare(
      "SELECT media_id, uploader, content_type, upload_name, size, sha256, created_ts, unused_expires_ts, "
      "authenticated FROM local_media WHERE media_id = ?");
  st.bind(media_id);
  if (!st.step()) return std::nullopt;
  Media m;
  m.media_id = st.text(0);
  m.uploader = st.text(1);
  m.content_type = st.opt_text(2);
  m.upload_name = st.opt_text(3);
  if (!st.is_null(4)) m.size = st.int64(4);
  m.sha256 = st.opt_text(5);
  m.created_ts = st.int64(6);
  if (!st.is_null(7)) m.unused_expires_ts = st.int64(7);
  m.authenticated = st.int64(8) != 0;
  return m;
}

bool complete_media(Connection& c, const std::string& media_id, const std::optional<std::string>& content_type,
                    const std::optional<std::string>& upload_name, int64_t size, const std::string& sha256) {
  c.prepare("UPDATE local_media SET content_type = ?, upload_name = ?, size = ?, sha256 = ?, "
            "unused_expires_ts = NULL WHERE media_id = ? AND size IS NULL")
      .bind(content_type, upload_name, size, sha256, media_id)
      .run();
  return c.changes() == 1;
}

int64_t count_pending(Connection& c, const std::string& uploader, int64_t now_ms) {
  auto st = c.prepare("SELECT COUNT(*) FROM local_media WHERE uploader = ? AND size IS NULL AND unused_expires_ts > ?");
  st.bind(uploader, now_ms);
  st.step();
  return st.int64(0);
}

}  // namespace trestle::storage::media
