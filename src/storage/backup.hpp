#pragma once
// An online, consistent copy of the SQLite database while the server keeps writing, and what a
// backup's manifest says about a copy (schema version, counts, the media it references).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace trestle::storage::backup {

// Copies the database at `source_path` to `dest_path` (which must not exist) with SQLite's online
// backup API in one step: one read transaction on the source, so the copy is the database as of
// one commit, and in WAL mode the server's writers are not blocked while it runs (see
// bench/backup_methods.py). Then checks the copy (PRAGMA quick_check) and syncs it to disk.
// Throws std::runtime_error naming the cause.
void copy_database(const std::string& source_path, const std::string& dest_path);

struct MediaFile {
  std::string media_id;
  int64_t size = 0;
  std::string sha256;  // hex, as recorded at upload
};

struct Summary {
  int64_t schema_version = 0;
  int64_t stream_position = 0;              // the global event stream's last position
  std::map<std::string, int64_t> counts;    // users, rooms, events, local_media, ...
  std::vector<MediaFile> media;             // local media whose upload completed
};

// What the database at `path` holds (opened read-only; never migrated).
Summary summarize(const std::string& path);

}  // namespace trestle::storage::backup
