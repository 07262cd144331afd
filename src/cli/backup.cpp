// `trestle backup --config FILE OUT_DIR`: an online backup while the server runs: a consistent
// copy of the database (storage/backup), the media files that copy references (checked against
// their recorded SHA-256), the signing key, and manifest.json. Written under OUT_DIR.partial and
// renamed to OUT_DIR when complete, so OUT_DIR only ever holds a whole backup.
// `trestle restore --config FILE BACKUP_DIR`: checks a backup against its manifest and puts it
// where the config says, refusing to overwrite an existing database.
#include "cli/commands.hpp"
#include "config/config.hpp"
#include "core/crypto.hpp"
#include "core/version.hpp"
#include "storage/backup.hpp"

#include <boost/json.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

namespace trestle::cli {

namespace fs = std::filesystem;

namespace {

constexpr int kManifestFormat = 1;

// The file's SHA-256 (hex) and size, read in chunks.
std::pair<std::string, int64_t> file_sha256(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read '" + p.string() + "'");
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return {core::hex_encode(core::sha256(data)), static_cast<int64_t>(data.size())};
}

void fsync_path(const fs::path& p) {
  int fd = ::open(p.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  if (!in) throw std::runtime_error("cannot read '" + p.string() + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Where a media file lives under a media store (service/media's layout).
fs::path media_rel_path(const std::string& id) {
  return fs::path("local") / id.substr(0, 2) / id.substr(2, 2) / id.substr(4);
}

config::Config load(const std::string& config_path) {
  std::vector<std::string> warnings;
  return config::load_config(config_path, warnings);
}

// backup and restore copy an SQLite file; a PostgreSQL deployment has PostgreSQL's own tools.
bool sqlite_only(const config::Config& cfg, const char* command) {
  if (cfg.database_engine == "sqlite3") return true;
  std::cerr << "trestle: '" << command << "' copies an SQLite database; this config uses PostgreSQL: use pg_dump "
            << "and pg_restore for the database, and copy media_store_path (" << cfg.media_store_path << ")\n";
  return false;
}

}  // namespace

int backup(const std::string& config_path, const std::string& out_dir) {
  auto cfg = load(config_path);
  if (!sqlite_only(cfg, "backup")) return 2;
  fs::path out = fs::absolute(out_dir);
  if (fs::exists(out)) {
    std::cerr << "trestle: '" << out.string() << "' exists already; give a new directory\n";
    return 1;
  }
  fs::path tmp = out.string() + ".partial";
  if (fs::exists(tmp)) fs::remove_all(tmp);  // an earlier backup that did not finish
  fs::create_directories(tmp);
  try {
    auto started = std::chrono::steady_clock::now();
    auto started_ts = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
    // 1. The database, as of one commit.
    const std::string db_name = "homeserver.db";
    storage::backup::copy_database(cfg.database_path, (tmp / db_name).string());
    auto summary = storage::backup::summarize((tmp / db_name).string());
    auto [db_sha, db_size] = file_sha256(tmp / db_name);

    // 2. The media that copy references. Files are written once before their row commits and
    // never changed, so each must be there with the recorded hash.
    int64_t media_bytes = 0;
    boost::json::array missing;
    for (const auto& m : summary.media) {
      if (m.media_id.size() < 5) continue;
      fs::path rel = media_rel_path(m.media_id);
      fs::path from = fs::path(cfg.media_store_path) / rel;
      fs::path to = tmp / "media" / rel;
      std::error_code ec;
      if (!fs::exists(from, ec)) {
        missing.push_back(boost::json::value(m.media_id));  // deleted since (quarantine, purge)
        continue;
      }
      fs::create_directories(to.parent_path());
      fs::copy_file(from, to, fs::copy_options::overwrite_existing);
      auto [sha, size] = file_sha256(to);
      if ((!m.sha256.empty() && sha != m.sha256) || size != m.size) {
        throw std::runtime_error("media " + m.media_id + " does not match its recorded size and SHA-256");
      }
      fsync_path(to);
      media_bytes += size;
    }

    // 3. The signing key (federation and event signatures need the same one).
    boost::json::object key_info;
    if (fs::exists(cfg.signing_key_path)) {
      std::string text = read_text(cfg.signing_key_path);
      auto key = core::SigningKey::parse(text);
      fs::path name = fs::path(cfg.signing_key_path).filename();
      fs::copy_file(cfg.signing_key_path, tmp / name);
      fs::permissions(tmp / name, fs::perms::owner_read | fs::perms::owner_write);
      fsync_path(tmp / name);
      key_info = {{"file", name.string()}, {"key_id", key.key_id()}};
    }

    // 4. The manifest, last: a backup directory with a manifest is complete.
    boost::json::object counts;
    for (const auto& [k, v] : summary.counts) counts[k] = v;
    boost::json::object manifest{
        {"format", kManifestFormat},
        {"trestle_version", core::kServerVersion},
        {"server_name", cfg.server_name},
        {"created_ts", started_ts},
        {"schema_version", summary.schema_version},
        {"stream_position", summary.stream_position},
        {"counts", counts},
        {"database", {{"file", db_name}, {"bytes", db_size}, {"sha256", db_sha}}},
        {"media", {{"dir", "media"}, {"files", static_cast<int64_t>(summary.media.size() - missing.size())},
                   {"bytes", media_bytes}, {"missing", missing}}},
        {"signing_key", key_info.empty() ? boost::json::value(nullptr) : boost::json::value(key_info)}};
    {
      std::ofstream m(tmp / "manifest.json", std::ios::trunc);
      m << boost::json::serialize(manifest) << "\n";
      m.close();
      if (!m) throw std::runtime_error("cannot write the manifest");
    }
    fsync_path(tmp / "manifest.json");
    fsync_path(tmp);
    fs::rename(tmp, out);
    fsync_path(out.parent_path());
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::cout << "Backed up " << cfg.server_name << " to " << out.string() << ": schema version "
              << summary.schema_version << ", " << summary.counts["events"] << " events, " << summary.counts["users"]
              << " users, " << (summary.media.size() - missing.size()) << " media files (" << media_bytes
              << " bytes), in " << secs << " s\n";
    if (!missing.empty()) std::cout << missing.size() << " media files named by the database were gone (listed in the manifest)\n";
    return 0;
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
}

int restore(const std::string& config_path, const std::string& backup_dir) {
  auto cfg = load(config_path);
  if (!sqlite_only(cfg, "restore")) return 2;
  fs::path dir = fs::absolute(backup_dir);
  auto manifest_value = boost::json::parse(read_text(dir / "manifest.json"));
  const auto& manifest = manifest_value.as_object();
  if (manifest.at("format").to_number<int64_t>() != kManifestFormat) {
    std::cerr << "trestle: unknown backup format\n";
    return 1;
  }
  if (std::string(manifest.at("server_name").as_string()) != cfg.server_name) {
    std::cerr << "trestle: the backup is of " << manifest.at("server_name").as_string() << ", the config names "
              << cfg.server_name << "\n";
    return 1;
  }
  // Refuse to overwrite: a live (or any existing) database stays as it is.
  for (const char* suffix : {"", "-wal", "-shm"}) {
    if (fs::exists(cfg.database_path + suffix)) {
      std::cerr << "trestle: '" << cfg.database_path << suffix
                << "' exists; stop the server and move the old database away before restoring\n";
      return 1;
    }
  }
  // Everything is checked before anything is put in place.
  const auto& db = manifest.at("database").as_object();
  fs::path db_file = dir / std::string(db.at("file").as_string());
  auto [db_sha, db_size] = file_sha256(db_file);
  if (db_sha != db.at("sha256").as_string() || db_size != db.at("bytes").to_number<int64_t>()) {
    std::cerr << "trestle: the backup's database does not match its manifest\n";
    return 1;
  }
  auto summary = storage::backup::summarize(db_file.string());
  for (const auto& m : summary.media) {
    fs::path f = dir / "media" / media_rel_path(m.media_id);
    if (!fs::exists(f)) continue;  // listed as missing at backup time
    if (file_sha256(f).first != m.sha256) {
      std::cerr << "trestle: media " << m.media_id << " does not match its recorded SHA-256\n";
      return 1;
    }
  }
  fs::path key_file;
  if (auto* k = manifest.if_contains("signing_key"); k && k->is_object()) {
    key_file = dir / std::string(k->as_object().at("file").as_string());
    if (fs::exists(cfg.signing_key_path) && read_text(cfg.signing_key_path) != read_text(key_file)) {
      std::cerr << "trestle: '" << cfg.signing_key_path << "' holds another signing key; move it away first\n";
      return 1;
    }
  }

  fs::create_directories(fs::absolute(cfg.database_path).parent_path());
  std::string tmp_db = cfg.database_path + ".restoring";
  fs::copy_file(db_file, tmp_db, fs::copy_options::overwrite_existing);
  fsync_path(tmp_db);
  int64_t copied = 0;
  if (fs::exists(dir / "media")) {
    for (const auto& entry : fs::recursive_directory_iterator(dir / "media")) {
      if (!entry.is_regular_file()) continue;
      fs::path to = fs::path(cfg.media_store_path) / fs::relative(entry.path(), dir / "media");
      fs::create_directories(to.parent_path());
      fs::copy_file(entry.path(), to, fs::copy_options::skip_existing);
      ++copied;
    }
  }
  if (!key_file.empty() && !fs::exists(cfg.signing_key_path)) {
    fs::create_directories(fs::absolute(cfg.signing_key_path).parent_path());
    fs::copy_file(key_file, cfg.signing_key_path);
    fs::permissions(cfg.signing_key_path, fs::perms::owner_read | fs::perms::owner_write);
  }
  fs::rename(tmp_db, cfg.database_path);  // last: the database appears whole or not at all
  std::cout << "Restored the backup of " << cfg.server_name << " (schema version " << summary.schema_version << ", "
            << summary.counts["events"] << " events, " << copied << " media files); start the server\n";
  return 0;
}

}  // namespace trestle::cli
