#pragma once
// All services of one homeserver, built once at start and shared by the handlers.
#include "config/config.hpp"
#include "core/clock.hpp"
#include "core/crypto.hpp"
#include "service/accounts.hpp"
#include "service/admin/room_admin.hpp"
#include "service/client_ips.hpp"
#include "service/cluster.hpp"
#include "service/cluster_state.hpp"
#include "service/database_options.hpp"
#include "service/event_format.hpp"
#include "service/openid.hpp"
#include "service/appservice/queries.hpp"
#include "service/appservice/sender.hpp"
#include "service/key_backup.hpp"
#include "service/keys.hpp"
#include "service/legacy_stream.hpp"
#include "service/media/media_admin.hpp"
#include "service/media/media_retention.hpp"
#include "service/media/media_service.hpp"
#include "service/notifier.hpp"
#include "service/presence.hpp"
#include "room/room_version.hpp"
#include "service/room_upgrade.hpp"
#include "service/registration.hpp"
#include "service/registration_tokens.hpp"
#include "service/relations.hpp"
#include "service/presence_sync.hpp"
#include "service/profile.hpp"
#include "service/reports.hpp"
#include "service/timestamp_lookup.hpp"
#include "service/push/pusher_service.hpp"
#include "service/rooms/rooms.hpp"
#include "service/spaces.hpp"
#include "service/sso.hpp"
#include "service/sync.hpp"
#include "service/third_party_invites.hpp"
#include "service/threepid.hpp"
#include "service/to_device.hpp"
#include "service/user_data.hpp"
#include "service/user_directory.hpp"
#include "storage/database.hpp"

namespace trestle::service {

struct Homeserver {
  // `http` is how the server calls out (appservices); main gives it the HTTP client.
  Homeserver(config::Config cfg, core::SigningKey key, OutboundHttp http)
      : config(std::move(cfg)),
        signing_key(std::move(key)),
        appservices(load_appservices(config)),
        db(database_options(config)),
        accounts(config, db, appservices),
        registration(config, accounts, http),
        sso(config, accounts, http),
        user_directory(config, db),
        rooms(config, db, notifier, signing_key, accounts),
        user_data(db, notifier, rooms),
        sync(db, notifier, user_data),
        keys(config, db, notifier, accounts),
        appservice_queries(appservices, http),
        appservice_sender(appservices, db, notifier, http),
        push(db, http, appservices),
        media(config, db),
        to_device(config, db, notifier),
        key_backup(db),
        room_upgrade(config, db, rooms, user_data),
        threepids(config, db, http, signing_key),
        third_party_invites(config, rooms, accounts, threepids) {
    set_self_destruct_enabled(config.enable_ephemeral_messages);
    registration.set_registration_tokens(&registration_tokens);
    room::set_default_room_version(config.default_room_version);
    sync.set_to_device(&to_device);
    if (!config.is_worker()) accounts.ensure_appservice_senders();

    accounts.set_device_hooks({[this](storage::Connection& c, const std::string& u) { keys.on_devices_changed(c, u); },
                               [this](const std::string& u) { keys.notify_changed(u); }});
    sync.set_keys(&keys);
    // The push evaluator skips users an appservice owns exclusively: their counts are evaluated.
    sync.set_push_rows_apply([this](const std::string& u) { return appservices.exclusive_owner_of_user(u) == nullptr; });
    sync.set_peeks([this](const Requester& r, std::optional<int64_t> since, int64_t now, int64_t limit,
                          std::vector<std::string>& wake) { return legacy.sync_peeks(r, since, now, limit, wake); });
    rooms.set_appservice_queries(&appservice_queries);
    user_data.typing().set_listener([this](const std::string& room_id) { appservice_sender.on_typing(room_id); });
    appservice_sender.set_typing_source(
        [this](const std::string& room_id) { return user_data.typing().typing_users(room_id); });
    presence.set_listener([this](const std::string& user_id) {
      appservice_sender.on_presence(user_id);
      legacy.on_presence(user_id);
    });
    if (config.use_presence) {
      sync.set_presence(&presence);
      // A presence change wakes the /syncs of the user and of everyone sharing a room with them.
      presence.set_listener([this](const std::string& user_id) {
        notifier.notify(db.read([&](storage::Connection& c) { return presence_wake_keys(c, user_id); }));
      });
    }
    appservice_sender.set_presence_source([this](const std::string& user_id) {
      auto p = presence.get(user_id);
      boost::json::object content{{"presence", p.presence},
                                  {"last_active_ago", std::max<int64_t>(0, core::now_ms() - p.last_active_ts)},
                                  {"currently_active", p.presence == "online"}};
      if (p.status_msg) content["status_msg"] = *p.status_msg;
      return content;
    });
    share_state_across_processes(*this);  // several processes: typing, presence, token revocations
  }

  static AppServiceRegistry load_appservices(const config::Config& cfg) {
    AppServiceRegistry r;
    r.load(cfg.app_service_config_files, cfg.server_name);
    return r;
  }

  config::Config config;
  core::SigningKey signing_key;
  AppServiceRegistry appservices;
  storage::Database db;
  Notifier notifier;
  Cluster cluster{config, db, notifier};  // the other processes of the deployment (serve starts it)
  AccountService accounts;
  RegistrationService registration;
  SsoService sso;
  UserDirectory user_directory;
  OpenIdTokens openid;
  ClientIps client_ips;
  Rooms rooms;
  UserDataService user_data;
  SyncService sync;
  KeyService keys;
  PresenceTracker presence;
  AppServiceQueries appservice_queries;
  AppServiceSender appservice_sender;
  PushService push;
  media::MediaService media;
  ToDeviceService to_device;
  KeyBackupService key_backup;
  RoomUpgradeService room_upgrade;
  ThreepidService threepids;  // email 3PIDs, identity server calls (main gives it the mail sender)
  ThirdPartyInviteService third_party_invites;
  LegacyService legacy{db, notifier, user_data, presence};  // r0 /events, /initialSync
  ReportService reports{config, db};  // content reports for admins
  TimestampLookup timestamps{db};     // /timestamp_to_event
  ProfileService profile{config, db, [this](const std::string& user_id) { rooms.membership.update_profile_in_rooms(user_id); }};
  SpaceService spaces{db, rooms};  // space hierarchy, room summary, mutual rooms
  RelationService relations{db};  // /relations, /threads
  RoomAdminService room_admin{config, db, rooms, accounts};  // admin API: rooms, deletion, purges, reports
  media::MediaAdmin media_admin{config, db, media, accounts};  // /_synapse/admin media API
  media::MediaRetention media_retention{config, media_admin};  // media_retention (serve starts it)
  RegistrationTokenService registration_tokens{db};  // admin API and the m.login.registration_token stage
};

}  // namespace trestle::service
