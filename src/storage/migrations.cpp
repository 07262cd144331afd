#include "storage/migrations.hpp"

#include "storage/postgres/schema.hpp"

namespace trestle::storage {

const std::vector<std::string>& migrations() {
  static const std::vector<std::string> steps = {
      // 1: the core schema.
      R"SQL(
CREATE TABLE stream_position (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO stream_position VALUES ('global', 0);

CREATE TABLE users (
  user_id TEXT PRIMARY KEY,
  password_hash TEXT,
  created_ts INTEGER NOT NULL,
  deactivated INTEGER NOT NULL DEFAULT 0,
  is_admin INTEGER NOT NULL DEFAULT 0,
  appservice_id TEXT,
  displayname TEXT,
  avatar_url TEXT
);

CREATE TABLE devices (
  user_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  display_name TEXT,
  last_seen_ts INTEGER,
  last_seen_ip TEXT,
  PRIMARY KEY (user_id, device_id)
);

-- Tokens are stored as SHA-256 hashes: a leaked database does not leak working tokens.
CREATE TABLE access_tokens (
  token_hash TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,
  device_id TEXT,
  created_ts INTEGER NOT NULL
);
CREATE INDEX access_tokens_user ON access_tokens (user_id, device_id);

CREATE TABLE rooms (
  room_id TEXT PRIMARY KEY,
  room_version TEXT NOT NULL,
  creator TEXT NOT NULL,
  is_public INTEGER NOT NULL DEFAULT 0,
  created_ts INTEGER NOT NULL
);

-- Every PDU, in the order this server committed it (the global stream position).
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

CREATE TABLE forward_extremities (
  room_id TEXT NOT NULL,
  event_id TEXT NOT NULL,
  PRIMARY KEY (room_id, event_id)
);

-- Idempotency of PUT /send and /state: the same (user, device, txn id) returns the same event.
CREATE TABLE event_txns (
  user_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  txn_id TEXT NOT NULL,
  event_id TEXT NOT NULL,
  PRIMARY KEY (user_id, device_id, txn_id)
);

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

-- A user's push rules, stored whole once the user changes any of them.
CREATE TABLE push_rules (
  user_id TEXT PRIMARY KEY,
  rules TEXT NOT NULL
);

CREATE TABLE pushers (
  user_id TEXT NOT NULL,
  app_id TEXT NOT NULL,
  pushkey TEXT NOT NULL,
  data TEXT NOT NULL,
  PRIMARY KEY (app_id, pushkey, user_id)
);
)SQL",
      // 2: durable appservice delivery. Each appservice has a cursor into the global stream and
      // a queue of built transactions, so a restart resends the same txn ids with the same bodies.
      R"SQL(
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
)SQL",
      // 3: history visibility asks "which m.room.member / m.room.history_visibility event was in
      // force at stream position N" for every event it shows.
      R"SQL(
CREATE INDEX events_state_history ON events (room_id, type, state_key, stream_ordering) WHERE state_key IS NOT NULL;
)SQL",
      // 4: appservice room directories (PUT /directory/list/appservice/{networkId}/{roomId}):
      // rooms a bridge publishes for one of its networks, apart from the server's own directory.
      R"SQL(
CREATE TABLE appservice_room_list (
  appservice_id TEXT NOT NULL,
  network_id TEXT NOT NULL,
  room_id TEXT NOT NULL,
  PRIMARY KEY (appservice_id, network_id, room_id)
);
)SQL",
      // 5: the media repository. The bytes live under media_store_path; this is their metadata.
      // size is NULL while an asynchronous upload (POST /media/v1/create) is pending. authenticated:
      // uploaded while unauthenticated media was frozen, so the legacy endpoints do not serve it.
      R"SQL(
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
);
CREATE INDEX local_media_pending ON local_media (uploader) WHERE size IS NULL;
)SQL",
      // 6: to-device messages. A device's inbox keeps each message (at its global stream position)
      // until a later /sync acknowledges it; deleting the device (logout, DELETE /devices) empties
      // it. to_device_txns makes PUT /sendToDevice idempotent per sender and txnId (for a day).
      R"SQL(
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
)SQL",
      // 7: server-side key backups (room_keys). A deleted version keeps its row (deleted = 1) so
      // version numbers are never reused; its keys are deleted with it.
      R"SQL(
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
)SQL",
      // 8: end-to-end encryption keys: device keys, one-time and fallback keys, cross-signing keys,
      // signatures uploaded apart from the keys they sign, and the stream position of each user's
      // last device-list change (for /sync device_lists and /keys/changes).
      R"SQL(
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
-- Incremental /sync asks "did membership change in any of my rooms since N" on every round.
CREATE INDEX e2e_room_memberships_stream ON room_memberships (room_id, stream_ordering);
)SQL",
      // 9: key changes only one user may see (their own new user-signing key; their signature of
      // another user's master key): the stream position of the last such change of `user_id`'s
      // keys as `viewer` sees them.
      R"SQL(
CREATE TABLE e2e_private_key_changes (
  viewer TEXT NOT NULL,
  user_id TEXT NOT NULL,
  stream_id INTEGER NOT NULL,
  PRIMARY KEY (viewer, user_id)
);
)SQL",
      // 10: appservice E2EE (MSC4203 to-device in transactions, MSC3202 key counts). Which
      // devices' one-time / fallback key counts changed, at a global stream position (latest
      // change per device), and an index to read the device inbox by stream range.
      R"SQL(
CREATE TABLE e2e_key_count_changes (
  user_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  stream_id INTEGER NOT NULL,
  PRIMARY KEY (user_id, device_id)
);
CREATE INDEX e2e_key_count_changes_stream ON e2e_key_count_changes (stream_id);
CREATE INDEX device_inbox_stream ON device_inbox (stream_id);
)SQL",
      // 11 (task guest): guest accounts (POST /register?kind=guest); upgrading one clears the flag.
      R"SQL(
ALTER TABLE users ADD COLUMN is_guest INTEGER NOT NULL DEFAULT 0;
)SQL",
      // 12 (task tpid): email 3PIDs. The addresses bound to accounts, the identity servers each
      // was bound at through us (to unbind there later), and email validation sessions.
      R"SQL(
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
)SQL",
      // 13 (task accounts): users erased at deactivation (erase: true): their events are served
      // pruned to anyone who was not in the room when they were sent.
      R"SQL(
CREATE TABLE erased_users (
  user_id TEXT PRIMARY KEY
);
)SQL",
      // 14 (task legacy): MSC2753 peeks, per device, with the stream position they started at.
      R"SQL(
CREATE TABLE room_peeks (
  user_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  room_id TEXT NOT NULL,
  stream_id INTEGER NOT NULL,
  PRIMARY KEY (user_id, device_id, room_id)
);
)SQL",
      // 15 (task pushpres) push notifications: which device (access token) made each pusher and
      // when; the pusher's cursor into the event stream; the notifications GET /notifications
      // lists; and the durable queue of gateway requests, one row per pusher and notification.
      R"SQL(
ALTER TABLE pushers ADD COLUMN device_id TEXT;
ALTER TABLE pushers ADD COLUMN created_ts INTEGER NOT NULL DEFAULT 0;
CREATE TABLE push_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  last_stream INTEGER NOT NULL
);
CREATE TABLE push_notifications (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT NOT NULL,
  room_id TEXT NOT NULL,
  event_id TEXT NOT NULL,
  stream_ordering INTEGER NOT NULL,
  actions TEXT NOT NULL,
  highlight INTEGER NOT NULL,
  ts INTEGER NOT NULL
);
CREATE INDEX push_notifications_user ON push_notifications (user_id, id);
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
)SQL",
      // 16 (task search): the full-text index of POST /search (storage/search_store): an FTS5
      // table, one row per searchable event with its stream position as rowid and its room and
      // key as tokens of `tags` (so MATCH alone restricts them), back-filled here
      // from the events already stored (redacted ones and unreadable rows left out; JSON's escaped NUL,
      // at which SQLite's strings would end, becomes a space).
      R"SQL(
CREATE VIRTUAL TABLE event_search USING fts5(
  value, tags, room_id UNINDEXED, key UNINDEXED, tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO event_search (rowid, value, tags, room_id, key)
SELECT stream_ordering, json_extract(replace(json, '\u0000', '\u0020'), '$.content.' || k.field),
       'r' || hex(room_id) || ' k' || k.field, room_id, k.key
FROM events
JOIN (SELECT 'm.room.message' AS type, 'body' AS field, 'content.body' AS key
      UNION ALL SELECT 'm.room.name', 'name', 'content.name'
      UNION ALL SELECT 'm.room.topic', 'topic', 'content.topic') AS k USING (type)
WHERE redacted_by IS NULL
  AND (CASE WHEN json_valid(json) THEN json_type(json, '$.content.' || k.field) END) = 'text'
ORDER BY stream_ordering;
)SQL",
      // 17 (task misc) content reports for admins (rooms/{id}/report/{eventId}, rooms/{id}/report,
      // users/{id}/report; Synapse's event_reports, room_reports, user_reports, so its admin API
      // can read them); profile fields beyond displayname/avatar_url (MSC4133); and events by
      // origin_server_ts per room for /timestamp_to_event.
      R"SQL(
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
)SQL",
      // 18 (task threadrx) per-thread notification counts: the thread of each stored notification
      // ("main" or the thread root's event ID), so a threaded read receipt clears only its thread.
      R"SQL(
ALTER TABLE push_notifications ADD COLUMN thread_id TEXT NOT NULL DEFAULT 'main';
)SQL",
      // 19 (task tokens, issue 10): expiring access tokens, refresh tokens, account lock and suspension.
      R"SQL(
ALTER TABLE access_tokens ADD COLUMN valid_until_ms INTEGER;
ALTER TABLE access_tokens ADD COLUMN refresh_token_id INTEGER;
ALTER TABLE access_tokens ADD COLUMN used INTEGER NOT NULL DEFAULT 0;
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
ALTER TABLE users ADD COLUMN locked INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN suspended INTEGER NOT NULL DEFAULT 0;
)SQL",
      // 20 (task relations): event relationships (m.relates_to with rel_type and event_id), one
      // row per child event, for /relations, /threads and bundled aggregations. A redacted event
      // has no relation (its content is gone). Back-filled from the events stored so far.
      R"SQL(
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
INSERT OR IGNORE INTO event_relations
  SELECT event_id, room_id, parent, rel_type, type, sender,
         CASE WHEN key_type = 'text' THEN agg_key END, stream_ordering FROM (
    SELECT event_id, room_id, type, sender, stream_ordering,
      CASE WHEN json_valid(json) THEN json_extract(json, '$.content."m.relates_to".event_id') END AS parent,
      CASE WHEN json_valid(json) THEN json_extract(json, '$.content."m.relates_to".rel_type') END AS rel_type,
      CASE WHEN json_valid(json) THEN json_extract(json, '$.content."m.relates_to".key') END AS agg_key,
      CASE WHEN json_valid(json) THEN json_type(json, '$.content."m.relates_to".event_id') END AS parent_type,
      CASE WHEN json_valid(json) THEN json_type(json, '$.content."m.relates_to".rel_type') END AS rel_type_type,
      CASE WHEN json_valid(json) THEN json_type(json, '$.content."m.relates_to".key') END AS key_type
    FROM events WHERE redacted_by IS NULL AND json LIKE '%m.relates_to%')
  WHERE parent_type = 'text' AND rel_type_type = 'text';
)SQL",
      // 21 (task rooms, issue 11): rooms a server admin blocked (Synapse's blocked_rooms): joins
      // and invites are refused; a purge of the room keeps the row, so it cannot be rejoined.
      R"SQL(
CREATE TABLE blocked_rooms (
  room_id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL
);
)SQL",
      // 22 (task media, issue 11): Synapse's media admin API and media_retention. last_access_ts:
      // the last download or thumbnail (written at most once a minute per media); quarantined_by:
      // the admin who quarantined it (not served while set); safe_from_quarantine: protected.
      R"SQL(
ALTER TABLE local_media ADD COLUMN last_access_ts INTEGER;
ALTER TABLE local_media ADD COLUMN quarantined_by TEXT;
ALTER TABLE local_media ADD COLUMN safe_from_quarantine INTEGER NOT NULL DEFAULT 0;
CREATE INDEX local_media_uploader ON local_media (uploader, created_ts);
CREATE INDEX local_media_sha256 ON local_media (sha256) WHERE sha256 IS NOT NULL;
)SQL",
      // 23 (task users, issue 11): Synapse's admin API for users: shadow-banning, user types,
      // per-user message rate-limit overrides (Synapse's ratelimit_override) and the external
      // (SSO) IDs of accounts (Synapse's user_external_ids).
      R"SQL(
ALTER TABLE users ADD COLUMN shadow_banned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN user_type TEXT;
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
)SQL",
      // 24 (task regtokens, issue 11): registration tokens (Synapse's registration_tokens: token,
      // uses_allowed, completed, expiry_time), and the registration sessions that hold a token:
      // one row per UIA session that passed m.login.registration_token, pending until the
      // session registers someone (used = 1) or expires. `pending` is counted from these rows.
      R"SQL(
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
)SQL",
      // 25 (issue 12, growth): a user's pushers by user. The primary key starts with app_id, so
      // "the pushers of user X" (the push evaluator asks it for every notified member of every
      // event) read the whole table: 3.7 ms a call with 10,000 pushers, 54 us with this index.
      R"SQL(
CREATE INDEX pushers_user ON pushers (user_id, app_id, pushkey);
)SQL",
      // 26 (issue 12, push): one notification row per event for the room, not one per member.
      // push_room_notifications holds the decision shared by every member on the default push
      // rules whom the event does not single out (most members of most rooms); it applies to each
      // member joined at the event but its sender (and not to users an appservice owns
      // exclusively). push_notifications keeps a row only where a user's decision differs from
      // the room's (a mention, an invite, their own rules): `notify` 0 says "not notified" where
      // the room's row would say so. Both are read through storage/push_store.
      R"SQL(
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
CREATE INDEX push_room_notifications_room ON push_room_notifications (room_id, stream_ordering);
ALTER TABLE push_notifications ADD COLUMN notify INTEGER NOT NULL DEFAULT 1;
DROP INDEX push_notifications_user;
CREATE INDEX push_notifications_user ON push_notifications (user_id, stream_ordering);
)SQL",
      // 27 (issue 12, growth): where the push evaluator's rows start. Every event after
      // `rows_from` that the evaluator passed (up to last_stream) has its notification rows, so
      // unread counts read the stored decisions instead of evaluating each event again; the room
      // rows' index covers what they read (a room's rows are contiguous in it, where the table's
      // and the events' rows of one room are spread over the whole file). A fresh
      // database records its cursor's first position (storage/push_store set_cursor); here, the
      // position before the first row ever written (the evaluator ran in stream order from
      // before it), or, without rows, the cursor itself.
      R"SQL(
ALTER TABLE push_state ADD COLUMN rows_from INTEGER NOT NULL DEFAULT 0;
DROP INDEX push_room_notifications_room;
CREATE INDEX push_room_notifications_room ON push_room_notifications (room_id, stream_ordering, sender, thread_id,
                                                                       highlight);
UPDATE push_state SET rows_from = COALESCE(
  (SELECT MIN(m) FROM (SELECT MIN(stream_ordering) AS m FROM push_room_notifications
                       UNION ALL SELECT MIN(stream_ordering) FROM push_notifications)) - 1,
  last_stream);
)SQL",
      // 28 (issue 12, WAL pages per write group): where the full-text index stands
      // (storage/search_store indexed_upto): events are indexed in batches, no longer in the group
      // that writes them (FTS5 wrote a segment of ~6 pages a group). Every event stored so far is
      // indexed.
      R"SQL(
INSERT INTO stream_position (name, value) SELECT 'search', value FROM stream_position WHERE name = 'global';
)SQL",
      // 29 (issue 12, WAL pages per write group): event_txns and forward_extremities without a
      // rowid. Each was a table and its primary key's index, two b-trees (and two pages or more in
      // every group's commit) for rows only ever looked up by that key; now the key's b-tree holds
      // the rows.
      R"SQL(
ALTER TABLE event_txns RENAME TO event_txns_old;
CREATE TABLE event_txns (
  user_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  txn_id TEXT NOT NULL,
  event_id TEXT NOT NULL,
  PRIMARY KEY (user_id, device_id, txn_id)
) WITHOUT ROWID;
INSERT INTO event_txns (user_id, device_id, txn_id, event_id)
SELECT user_id, device_id, txn_id, event_id FROM event_txns_old;
DROP TABLE event_txns_old;
ALTER TABLE forward_extremities RENAME TO forward_extremities_old;
CREATE TABLE forward_extremities (
  room_id TEXT NOT NULL,
  event_id TEXT NOT NULL,
  PRIMARY KEY (room_id, event_id)
) WITHOUT ROWID;
INSERT INTO forward_extremities (room_id, event_id) SELECT room_id, event_id FROM forward_extremities_old;
DROP TABLE forward_extremities_old;
)SQL",
      // 30 (issue 13, several processes): which process sends to each appservice. `owner` is the
      // holder's instance name (NULL: released, or not yet claimed); `epoch` grows with every
      // new holding, and each write of the sender checks (owner, epoch) in its own transaction, so
      // a holder that lost the lease can store nothing more; `expires_ts` (ms) is when the others
      // may take it. storage/appservice_store.cpp has the statements.
      R"SQL(
CREATE TABLE appservice_leases (
  appservice_id TEXT PRIMARY KEY,
  owner TEXT,
  epoch BIGINT NOT NULL DEFAULT 0,
  expires_ts BIGINT NOT NULL DEFAULT 0
);
)SQL",
      // 31: PostgreSQL only (postgres_step): search_fold() skips translate() for text without a
      // letter it folds. Nothing on SQLite (FTS5 folds by itself).
      "SELECT 1;",
  };
  return steps;
}

const char* postgres_step(size_t index) {
  // Steps after PostgreSQL's snapshot (29) are portable, but for:
  if (index == 30) return postgres_search_fold_fast_path().c_str();  // migration 31
  return nullptr;
}

}  // namespace trestle::storage
