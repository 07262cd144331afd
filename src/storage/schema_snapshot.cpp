// The schema that migrations 1-29 build, as one script: the CREATE statements as SQLite keeps them
// in sqlite_master after those steps (columns that ALTER TABLE added at the end of their table,
// indexes that a later step dropped and made again in their final form), in the order the steps
// made them, and the rows they insert. A new database runs this instead of replaying the steps:
// 27 steps, 15 of them ALTER TABLE, each of which rewrites and re-parses the whole schema, were
// about half of a fresh start-up (bench/startup_bench.py).
//
// Never edit it by hand and never instead of a migration: a schema change is a new step at the
// end of migrations.cpp, which a new database runs after this script. To fold new steps in, raise
// `version` and paste the script that tests/unit/test_migrations.cpp (SchemaSnapshot.*) prints
// when it fails; that test checks that this script and the steps give the same schema and rows.
#include "storage/migrations.hpp"

namespace trestle::storage {

const SchemaSnapshot& schema_snapshot() {
  static const SchemaSnapshot snapshot{29, R"SQL(
CREATE TABLE stream_position (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO stream_position VALUES ('global', 0);
INSERT INTO stream_position VALUES ('search', 0);
CREATE TABLE users (
  user_id TEXT PRIMARY KEY,
  password_hash TEXT,
  created_ts INTEGER NOT NULL,
  deactivated INTEGER NOT NULL DEFAULT 0,
  is_admin INTEGER NOT NULL DEFAULT 0,
  appservice_id TEXT,
  displayname TEXT,
  avatar_url TEXT
, is_guest INTEGER NOT NULL DEFAULT 0, locked INTEGER NOT NULL DEFAULT 0, suspended INTEGER NOT NULL DEFAULT 0, shadow_banned INTEGER NOT NULL DEFAULT 0, user_type TEXT);
CREATE TABLE devices (
  user_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  display_name TEXT,
  last_seen_ts INTEGER,
  last_seen_ip TEXT,
  PRIMARY KEY (user_id, device_id)
);
CREATE TABLE access_tokens (
  token_hash TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,
  device_id TEXT,
  created_ts INTEGER NOT NULL
, valid_until_ms INTEGER, refresh_token_id INTEGER, used INTEGER NOT NULL DEFAULT 0);
CREATE INDEX access_tokens_user ON access_tokens (user_id, device_id);
CREATE TABLE rooms (
  room_id TEXT PRIMARY KEY,
  room_version TEXT NOT NULL,
  creator TEXT NOT NULL,
  is_public INTEGER NOT NULL DEFAULT 0,
  created_ts INTEGER NOT NULL
);
CREATE TABLE events (
  stream_ordering INTEGER PRIMARY KEY,
  event_id TEXT NOT NULL UNIQUE,
  room_id TEXT NOT NULL,
  type TEXT NOT NULL,
  state_key TEXT,
  sender TEXT NOT NULL,
  origin_server_ts INTEGER NOT NULL,
  depth INTEGER NOT NULL,
  json TEXT NOT NULL,
  -- the state event this one replaced (for rolling state back to a timeline's start)
  replaces_state TEXT,
  redacted_by TEXT,
  -- for the sender's own echo: the transaction id it was sent with, and by which device
  txn_id TEXT,
  txn_device_id TEXT
);
CREATE INDEX events_room_stream ON events (room_id, stream_ordering);
CREATE TABLE current_state (
  room_id TEXT NOT NULL,
  type TEXT NOT NULL,
  state_key TEXT NOT NULL,
  event_id TEXT NOT NULL,
  PRIMARY KEY (room_id, type, state_key)
);
CREATE TABLE room_memberships (
  room_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  membership TEXT NOT NULL,
  event_id TEXT NOT NULL,
  stream_ordering INTEGER NOT NULL,
  forgotten INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_memberships_user ON room_memberships (user_id, membership);
CREATE TABLE room_aliases (
  alias TEXT PRIMARY KEY,
  room_id TEXT NOT NULL,
  creator TEXT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);
CREATE TABLE account_data (
  user_id TEXT NOT NULL,
  room_id TEXT NOT NULL,  -- '' for global account data
  type TEXT NOT NULL,
  content TEXT NOT NULL,
  stream_id INTEGER NOT NULL,
  PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_stream ON account_data (user_id, stream_id);
CREATE TABLE receipts (
  room_id TEXT NOT NULL,
  receipt_type TEXT NOT NULL,
  user_id TEXT NOT NULL,
  thread_id TEXT NOT NULL,  -- '' for unthreaded
  event_id TEXT NOT NULL,
  ts INTEGER NOT NULL,
  stream_id INTEGER NOT NULL,
  PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_stream ON receipts (room_id, stream_id);
CREATE TABLE filters (
  user_id TEXT NOT NULL,
  filter_id INTEGER NOT NULL,
  filter TEXT NOT NULL,
  PRIMARY KEY (user_id, filter_id)
);
CREATE TABLE push_rules (
  user_id TEXT PRIMARY KEY,
  rules TEXT NOT NULL
);
CREATE TABLE pushers (
  user_id TEXT NOT NULL,
  app_id TEXT NOT NULL,
  pushkey TEXT NOT NULL,
  data TEXT NOT NULL, device_id TEXT, created_ts INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (app_id, pushkey, user_id)
);
CREATE TABLE appservice_state (
  appservice_id TEXT PRIMARY KEY,
  last_stream INTEGER NOT NULL,   -- everything up to here is queued (or was of no interest)
  next_txn_id INTEGER NOT NULL
);
CREATE INDEX receipts_global_stream ON receipts (stream_id);
CREATE TABLE appservice_txns (
  appservice_id TEXT NOT NULL,
  txn_id INTEGER NOT NULL,
  body TEXT NOT NULL,
  event_count INTEGER NOT NULL,
  created_ts INTEGER NOT NULL,
  PRIMARY KEY (appservice_id, txn_id)
);
CREATE INDEX events_state_history ON events (room_id, type, state_key, stream_ordering) WHERE state_key IS NOT NULL;
CREATE TABLE appservice_room_list (
  appservice_id TEXT NOT NULL,
  network_id TEXT NOT NULL,
  room_id TEXT NOT NULL,
  PRIMARY KEY (appservice_id, network_id, room_id)
);
CREATE TABLE local_media (
  media_id TEXT PRIMARY KEY,
  uploader TEXT NOT NULL,
  content_type TEXT,
  upload_name TEXT,
  size INTEGER,
  sha256 TEXT,
  created_ts INTEGER NOT NULL,
  unused_expires_ts INTEGER,
  authenticated INTEGER NOT NULL
, last_access_ts INTEGER, quarantined_by TEXT, safe_from_quarantine INTEGER NOT NULL DEFAULT 0);
CREATE INDEX local_media_pending ON local_media (uploader) WHERE size IS NULL;
CREATE TABLE device_inbox (
  user_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  stream_id INTEGER NOT NULL,
  sender TEXT NOT NULL,
  type TEXT NOT NULL,
  content TEXT NOT NULL,
  PRIMARY KEY (user_id, device_id, stream_id)
);
CREATE TRIGGER device_inbox_device_deleted AFTER DELETE ON devices BEGIN
  DELETE FROM device_inbox WHERE user_id = OLD.user_id AND device_id = OLD.device_id;
END;
CREATE TABLE to_device_txns (
  sender_key TEXT NOT NULL,
  txn_id TEXT NOT NULL,
  created_ts INTEGER NOT NULL,
  PRIMARY KEY (sender_key, txn_id)
);
CREATE INDEX to_device_txns_created ON to_device_txns (created_ts);
CREATE TABLE key_backup_versions (
  user_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  algorithm TEXT NOT NULL,
  auth_data TEXT NOT NULL,
  etag INTEGER NOT NULL,
  deleted INTEGER NOT NULL,
  PRIMARY KEY (user_id, version)
);
CREATE TABLE key_backup_keys (
  user_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  room_id TEXT NOT NULL,
  session_id TEXT NOT NULL,
  first_message_index INTEGER NOT NULL,
  forwarded_count INTEGER NOT NULL,
  is_verified INTEGER NOT NULL,
  session_data TEXT NOT NULL,
  PRIMARY KEY (user_id, version, room_id, session_id)
);
CREATE TABLE e2e_device_keys (
  user_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  key_json TEXT NOT NULL,
  PRIMARY KEY (user_id, device_id)
);
CREATE TABLE e2e_one_time_keys (
  user_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  algorithm TEXT NOT NULL,
  key_id TEXT NOT NULL,
  key_json TEXT NOT NULL,
  PRIMARY KEY (user_id, device_id, algorithm, key_id)
);
CREATE TABLE e2e_fallback_keys (
  user_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  algorithm TEXT NOT NULL,
  key_id TEXT NOT NULL,
  key_json TEXT NOT NULL,
  used INTEGER NOT NULL,
  PRIMARY KEY (user_id, device_id, algorithm)
);
CREATE TABLE e2e_cross_signing_keys (
  user_id TEXT NOT NULL,
  key_type TEXT NOT NULL,
  key_json TEXT NOT NULL,
  PRIMARY KEY (user_id, key_type)
);
CREATE TABLE e2e_signatures (
  target_user TEXT NOT NULL,
  target_key TEXT NOT NULL,
  signer_user TEXT NOT NULL,
  signer_key_id TEXT NOT NULL,
  signature TEXT NOT NULL,
  PRIMARY KEY (target_user, target_key, signer_user, signer_key_id)
);
CREATE TABLE e2e_device_list_changes (
  user_id TEXT PRIMARY KEY,
  stream_id INTEGER NOT NULL
);
CREATE INDEX e2e_device_list_changes_stream ON e2e_device_list_changes (stream_id);
CREATE INDEX e2e_room_memberships_stream ON room_memberships (room_id, stream_ordering);
CREATE TABLE e2e_private_key_changes (
  viewer TEXT NOT NULL,
  user_id TEXT NOT NULL,
  stream_id INTEGER NOT NULL,
  PRIMARY KEY (viewer, user_id)
);
CREATE TABLE e2e_key_count_changes (
  user_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  stream_id INTEGER NOT NULL,
  PRIMARY KEY (user_id, device_id)
);
CREATE INDEX e2e_key_count_changes_stream ON e2e_key_count_changes (stream_id);
CREATE INDEX device_inbox_stream ON device_inbox (stream_id);
CREATE TABLE user_threepids (
  user_id TEXT NOT NULL,
  medium TEXT NOT NULL,
  address TEXT NOT NULL,
  validated_at INTEGER NOT NULL,
  added_at INTEGER NOT NULL,
  PRIMARY KEY (medium, address)
);
CREATE INDEX user_threepids_user ON user_threepids (user_id);
CREATE TABLE user_threepid_id_server (
  user_id TEXT NOT NULL,
  medium TEXT NOT NULL,
  address TEXT NOT NULL,
  id_server TEXT NOT NULL,
  PRIMARY KEY (user_id, medium, address, id_server)
);
CREATE TABLE threepid_validation_sessions (
  session_id TEXT PRIMARY KEY,
  medium TEXT NOT NULL,
  address TEXT NOT NULL,
  client_secret TEXT NOT NULL,
  token TEXT NOT NULL,
  send_attempt INTEGER NOT NULL,
  validated_at INTEGER,
  created_ts INTEGER NOT NULL
);
CREATE INDEX threepid_validation_secret ON threepid_validation_sessions (client_secret, medium, address);
CREATE TABLE erased_users (
  user_id TEXT PRIMARY KEY
);
CREATE TABLE room_peeks (
  user_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  room_id TEXT NOT NULL,
  stream_id INTEGER NOT NULL,
  PRIMARY KEY (user_id, device_id, room_id)
);
CREATE TABLE push_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  last_stream INTEGER NOT NULL
, rows_from INTEGER NOT NULL DEFAULT 0);
CREATE TABLE push_notifications (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT NOT NULL,
  room_id TEXT NOT NULL,
  event_id TEXT NOT NULL,
  stream_ordering INTEGER NOT NULL,
  actions TEXT NOT NULL,
  highlight INTEGER NOT NULL,
  ts INTEGER NOT NULL
, thread_id TEXT NOT NULL DEFAULT 'main', notify INTEGER NOT NULL DEFAULT 1);
CREATE INDEX push_notifications_room ON push_notifications (user_id, room_id, stream_ordering);
CREATE TABLE push_queue (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT NOT NULL,
  app_id TEXT NOT NULL,
  pushkey TEXT NOT NULL,
  body TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_try_ts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX push_queue_pusher ON push_queue (user_id, app_id, pushkey, id);
CREATE VIRTUAL TABLE event_search USING fts5(
  value, tags, room_id UNINDEXED, key UNINDEXED, tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TABLE event_reports (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  received_ts INTEGER NOT NULL,
  room_id TEXT NOT NULL,
  event_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  reason TEXT,
  content TEXT NOT NULL
);
CREATE INDEX event_reports_ts ON event_reports (received_ts);
CREATE TABLE room_reports (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  received_ts INTEGER NOT NULL,
  room_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  reason TEXT NOT NULL
);
CREATE TABLE user_reports (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  received_ts INTEGER NOT NULL,
  target_user_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  reason TEXT NOT NULL
);
CREATE TABLE profile_fields (
  user_id TEXT NOT NULL,
  field_name TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (user_id, field_name)
);
CREATE INDEX events_room_ts ON events (room_id, origin_server_ts, stream_ordering);
CREATE INDEX access_tokens_refresh ON access_tokens (refresh_token_id);
CREATE TABLE refresh_tokens (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  token_hash TEXT NOT NULL UNIQUE,
  user_id TEXT NOT NULL,
  device_id TEXT,
  expiry_ts INTEGER,
  ultimate_session_expiry_ts INTEGER,
  next_token_id INTEGER
);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id, device_id);
CREATE INDEX refresh_tokens_next ON refresh_tokens (next_token_id);
CREATE TABLE event_relations (
  event_id TEXT PRIMARY KEY,
  room_id TEXT NOT NULL,
  relates_to_id TEXT NOT NULL,
  rel_type TEXT NOT NULL,
  type TEXT NOT NULL,
  sender TEXT NOT NULL,
  aggregation_key TEXT,
  stream_ordering INTEGER NOT NULL
);
CREATE INDEX event_relations_parent ON event_relations (relates_to_id, rel_type, stream_ordering);
CREATE INDEX event_relations_room ON event_relations (room_id, rel_type, relates_to_id, stream_ordering);
CREATE TABLE blocked_rooms (
  room_id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL
);
CREATE INDEX local_media_uploader ON local_media (uploader, created_ts);
CREATE INDEX local_media_sha256 ON local_media (sha256) WHERE sha256 IS NOT NULL;
CREATE TABLE ratelimit_override (
  user_id TEXT PRIMARY KEY,
  messages_per_second INTEGER,
  burst_count INTEGER
);
CREATE TABLE user_external_ids (
  auth_provider TEXT NOT NULL,
  external_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  PRIMARY KEY (auth_provider, external_id)
);
CREATE INDEX user_external_ids_user ON user_external_ids (user_id);
CREATE INDEX users_created_ts ON users (created_ts);
CREATE TABLE registration_tokens (
  token TEXT PRIMARY KEY,
  uses_allowed INTEGER,
  completed INTEGER NOT NULL DEFAULT 0,
  expiry_time INTEGER
);
CREATE TABLE registration_token_sessions (
  session_id TEXT PRIMARY KEY,
  token TEXT NOT NULL,
  expires_ts INTEGER NOT NULL,
  used INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX registration_token_sessions_token ON registration_token_sessions (token, used, expires_ts);
CREATE INDEX pushers_user ON pushers (user_id, app_id, pushkey);
CREATE TABLE push_room_notifications (
  stream_ordering INTEGER PRIMARY KEY,
  room_id TEXT NOT NULL,
  event_id TEXT NOT NULL,
  sender TEXT NOT NULL,
  thread_id TEXT NOT NULL,
  actions TEXT NOT NULL,
  highlight INTEGER NOT NULL,
  ts INTEGER NOT NULL
);
CREATE INDEX push_notifications_user ON push_notifications (user_id, stream_ordering);
CREATE INDEX push_room_notifications_room ON push_room_notifications (room_id, stream_ordering, sender, thread_id,
                                                                       highlight);
CREATE TABLE event_txns (
  user_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  txn_id TEXT NOT NULL,
  event_id TEXT NOT NULL,
  PRIMARY KEY (user_id, device_id, txn_id)
) WITHOUT ROWID;
CREATE TABLE forward_extremities (
  room_id TEXT NOT NULL,
  event_id TEXT NOT NULL,
  PRIMARY KEY (room_id, event_id)
) WITHOUT ROWID;
)SQL"};
  return snapshot;
}

}  // namespace trestle::storage
