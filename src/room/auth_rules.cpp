#include "room/auth_rules.hpp"

#include <boost/json.hpp>

#include <array>
#include <charconv>
#include <climits>
#include <cmath>
#include <string_view>
#include <system_error>

namespace trestle::room {
namespace json = boost::json;

namespace {

using Verdict = std::optional<std::string>;

constexpr std::string_view kCreateType = "m.room.create";
constexpr std::string_view kMemberType = "m.room.member";
constexpr std::string_view kPowerLevelsType = "m.room.power_levels";
constexpr std::string_view kJoinRulesType = "m.room.join_rules";
constexpr std::string_view kThirdPartyInviteType = "m.room.third_party_invite";
constexpr std::string_view kAliasesType = "m.room.aliases";
constexpr std::string_view kRedactionType = "m.room.redaction";

// Defaults from the m.room.power_levels schema. state_default is 50 whether or not the room has a
// power levels event: the older "0 without a power levels event" wording let any member set
// state (including the first power levels event) in such rooms, and was removed from the spec.
constexpr long long kDefaultStateLevel = 50;
constexpr long long kDefaultEventsLevel = 0;
constexpr long long kDefaultUsersLevel = 0;
constexpr long long kDefaultInviteLevel = 0;
constexpr long long kDefaultModerationLevel = 50;  // ban, kick, redact
constexpr long long kCreatorLevelWithoutPowerLevels = 100;
// v12: a room creator's level is "infinitely high"; no integer a power levels event can hold
// (they are limited to 2^53) reaches it.
constexpr long long kInfiniteCreatorLevel = LLONG_MAX;

// The properties whose alteration rule 9.5 (v10 numbering) checks one by one.
constexpr std::array<std::string_view, 7> kPowerLevelScalarKeys{
    "users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"};

// How power level values may be written in a room version: v1-v5 also accept floats (truncated),
// v6-v9 dropped floats with canonical JSON but still accept strings holding integers, and v10+
// accepts JSON integers only.
enum class LevelSyntax { integers, integers_or_strings, integers_strings_or_floats };

// ---- JSON access -------------------------------------------------------------------------------

std::optional<std::string_view> string_field(const json::object& object, std::string_view key) {
  if (const json::value* value = object.if_contains(key))
    if (const json::string* s = value->if_string()) return std::string_view(*s);
  return std::nullopt;
}

const json::object* object_field(const json::object& object, std::string_view key) {
  if (const json::value* value = object.if_contains(key)) return value->if_object();
  return nullptr;
}

const json::object* find_state(const StateMap& state, std::string_view type, std::string_view key) {
  auto it = state.find({std::string(type), std::string(key)});
  return it == state.end() ? nullptr : &it->second;
}

// The content of the current state event (type, key), or nullptr when there is none.
const json::object* state_content(const StateMap& state, std::string_view type,
                                  std::string_view key) {
  const json::object* event = find_state(state, type, key);
  return event ? object_field(*event, "content") : nullptr;
}

// ---- identifiers -------------------------------------------------------------------------------

// The server part of a user, room or (v1/v2) event ID: everything after the first ':'.
std::optional<std::string_view> domain_of(std::string_view id) {
  const auto colon = id.find(':');
  if (colon == std::string_view::npos || colon + 1 == id.size()) return std::nullopt;
  return id.substr(colon + 1);
}

bool is_printable_ascii(char c) { return c > 0x20 && c < 0x7f; }

// Tolerant of historical localparts (any printable ASCII except ':'), as the auth rules must accept
// user IDs that existing rooms already contain.
bool is_valid_user_id(std::string_view id) {
  if (id.size() > 255 || id.size() < 4 || id.front() != '@') return false;
  const auto colon = id.find(':');
  if (colon == std::string_view::npos || colon == 1 || colon + 1 == id.size()) return false;
  for (char c : id.substr(1))
    if (!is_printable_ascii(c)) return false;
  return true;
}

// ---- room versions -----------------------------------------------------------------------------

// The numbered generation a version behaves as, for the rules RoomVersion has no flag for
// (m.room.aliases in v1-v5, the redaction rule in v1-v2, floats and notifications before v6).
int version_generation(const RoomVersion& version) {
  int number = 0;
  const char* end = version.id.data() + version.id.size();
  auto [ptr, ec] = std::from_chars(version.id.data(), end, number);
  if (ec == std::errc() && ptr == end && number > 0) return number;
  // A non-numeric id can only be described by its flags; take the newest generation they imply.
  if (version.v11_redaction_and_create) return 11;
  if (version.integer_power_levels_only) return 10;
  if (version.restricted_join_allowed) return 8;
  if (version.knock_allowed) return 7;
  return 6;
}

LevelSyntax level_syntax(const RoomVersion& version) {
  if (version.integer_power_levels_only) return LevelSyntax::integers;
  return version_generation(version) <= 5 ? LevelSyntax::integers_strings_or_floats
                                          : LevelSyntax::integers_or_strings;
}

// The creator as the first-join rule and the power level defaults mean it: v11 dropped
// content.creator, so the create event's sender stands in.
std::optional<std::string_view> room_creator(const StateMap& state, const RoomVersion& version) {
  const json::object* create = find_state(state, kCreateType, "");
  if (!create) return std::nullopt;
  if (version.v11_redaction_and_create) return string_field(*create, "sender");
  const json::object* content = object_field(*create, "content");
  return content ? string_field(*content, "creator") : std::nullopt;
}

// v12 (MSC4289): the create event's sender and every user in content.additional_creators.
bool is_room_creator(const StateMap& state, std::string_view user_id) {
  const json::object* create = find_state(state, kCreateType, "");
  if (!create) return false;
  if (string_field(*create, "sender") == user_id) return true;
  const json::object* content = object_field(*create, "content");
  const json::value* additional = content ? content->if_contains("additional_creators") : nullptr;
  if (const json::array* list = additional ? additional->if_array() : nullptr)
    for (const json::value& entry : *list)
      if (const json::string* id = entry.if_string(); id && *id == user_id) return true;
  return false;
}

// ---- power level values ------------------------------------------------------------------------

bool is_json_whitespace_like(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// The stringy power level format (rooms/fragments/v1-stringy-power-levels.md): optional
// surrounding whitespace, an optional single sign, then base-10 digits (leading zeroes allowed).
std::optional<long long> parse_integer_string(std::string_view text) {
  while (!text.empty() && is_json_whitespace_like(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_json_whitespace_like(text.back())) text.remove_suffix(1);
  bool negative = false;
  if (!text.empty() && (text.front() == '+' || text.front() == '-')) {
    negative = text.front() == '-';
    text.remove_prefix(1);
  }
  if (text.empty()) return std::nullopt;
  for (char c : text)
    if (c < '0' || c > '9') return std::nullopt;
  unsigned long long magnitude = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), magnitude);
  if (ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  constexpr auto kMaxMagnitude = static_cast<unsigned long long>(LLONG_MAX);
  if (magnitude > kMaxMagnitude + (negative ? 1 : 0)) return std::nullopt;
  if (negative)
    return magnitude == kMaxMagnitude + 1 ? LLONG_MIN : -static_cast<long long>(magnitude);
  return static_cast<long long>(magnitude);
}

std::optional<long long> parse_level(const json::value& value, LevelSyntax syntax) {
  switch (value.kind()) {
    case json::kind::int64:
      return value.get_int64();
    case json::kind::uint64:
      if (value.get_uint64() > static_cast<unsigned long long>(LLONG_MAX)) return std::nullopt;
      return static_cast<long long>(value.get_uint64());
    case json::kind::string:
      if (syntax == LevelSyntax::integers) return std::nullopt;
      return parse_integer_string(value.get_string());
    case json::kind::double_: {
      if (syntax != LevelSyntax::integers_strings_or_floats) return std::nullopt;
      const double truncated = std::trunc(value.get_double());
      // 2^63 is exactly representable, so this bounds check is exact.
      if (!std::isfinite(truncated) || truncated >= 9223372036854775808.0 ||
          truncated < -9223372036854775808.0)
        return std::nullopt;
      return static_cast<long long>(truncated);
    }
    default:
      return std::nullopt;
  }
}

// The value at `key` of a power levels content (or of its events/users/notifications map), when
// present and well formed.
std::optional<long long> level_at(const json::object* object, std::string_view key,
                                  LevelSyntax syntax) {
  if (!object) return std::nullopt;
  const json::value* value = object->if_contains(key);
  return value ? parse_level(*value, syntax) : std::nullopt;
}

long long user_level(const StateMap& state, std::string_view user_id, const RoomVersion& version,
                     LevelSyntax syntax) {
  if (version.privileged_creators && is_room_creator(state, user_id)) return kInfiniteCreatorLevel;
  if (const json::object* levels = state_content(state, kPowerLevelsType, "")) {
    if (auto level = level_at(object_field(*levels, "users"), user_id, syntax)) return *level;
    return level_at(levels, "users_default", syntax).value_or(kDefaultUsersLevel);
  }
  const auto creator = room_creator(state, version);
  return creator && *creator == user_id ? kCreatorLevelWithoutPowerLevels : kDefaultUsersLevel;
}

long long required_level(const StateMap& state, std::string_view event_type, bool is_state,
                         LevelSyntax syntax) {
  const json::object* levels = state_content(state, kPowerLevelsType, "");
  if (levels)
    if (auto level = level_at(object_field(*levels, "events"), event_type, syntax)) return *level;
  if (is_state) return level_at(levels, "state_default", syntax).value_or(kDefaultStateLevel);
  return level_at(levels, "events_default", syntax).value_or(kDefaultEventsLevel);
}

long long named_level(const StateMap& state, std::string_view name, LevelSyntax syntax) {
  const long long fallback = name == "invite" ? kDefaultInviteLevel : kDefaultModerationLevel;
  return level_at(state_content(state, kPowerLevelsType, ""), name, syntax).value_or(fallback);
}

// ---- the checks --------------------------------------------------------------------------------

// One authorisation of one event; the methods mirror the numbered rules of rooms/v10.md (v1-v5
// add the m.room.aliases rule, v1-v2 the m.room.redaction rule, v11 changes only the creator).
class EventAuthorizer {
 public:
  EventAuthorizer(const json::object& event, const StateMap& state, const RoomVersion& version)
      : event_(event),
        state_(state),
        version_(version),
        generation_(version_generation(version)),
        syntax_(level_syntax(version)) {}

  Verdict run() {
    const auto type = string_field(event_, "type");
    const auto sender = string_field(event_, "sender");
    if (!type || !sender) return "event lacks a string type or sender";
    // v12's create event has no room_id (its ID names the room); check_create rejects one.
    const bool room_id_optional = version_.room_id_is_create_event_id && *type == kCreateType;
    if (!room_id_optional && !string_field(event_, "room_id")) return "event lacks a string room_id";
    content_ = object_field(event_, "content");
    if (!content_) return "event has no content object";
    if (const json::value* key = event_.if_contains("state_key")) {
      if (!key->is_string()) return "state_key is not a string";
      state_key_ = std::string_view(key->get_string());
    }
    type_ = *type;
    sender_ = *sender;

    if (type_ == kCreateType) return check_create();
    if (auto rejection = check_auth_events()) return rejection;
    if (auto rejection = check_federation()) return rejection;
    if (generation_ <= 5 && type_ == kAliasesType) return check_aliases();
    if (type_ == kMemberType) return check_member();

    if (membership_of(sender_) != "join") return "sender is not joined to the room";
    if (type_ == kThirdPartyInviteType) {
      if (level_of(sender_) >= named("invite")) return std::nullopt;
      return "sender's power level is below the invite level";
    }
    if (required_level(state_, type_, state_key_.has_value(), syntax_) > level_of(sender_))
      return "sender's power level is below the level required for " + std::string(type_);
    if (state_key_ && state_key_->starts_with('@') && *state_key_ != sender_)
      return "state_key names another user";
    if (type_ == kPowerLevelsType) return check_power_levels();
    if (generation_ <= 2 && type_ == kRedactionType) return check_redaction_v1();
    return std::nullopt;
  }

 private:
  // Rule 1.
  Verdict check_create() const {
    if (const json::value* prev = event_.if_contains("prev_events")) {
      const json::array* list = prev->if_array();
      if (!list || !list->empty()) return "m.room.create has prev_events";
    }
    if (version_.room_id_is_create_event_id) {
      // v12 rule 1.2: the room ID is derived from this event, so it cannot carry one.
      if (event_.contains("room_id")) return "m.room.create has a room_id";
    } else {
      const auto room_domain = domain_of(*string_field(event_, "room_id"));
      if (!room_domain || room_domain != domain_of(sender_))
        return "m.room.create sender's server does not match the room ID's";
    }
    if (const json::value* room_version = content_->if_contains("room_version")) {
      if (!room_version->is_string() || !find_room_version(room_version->get_string()))
        return "m.room.create names an unrecognised room_version";
    }
    if (version_.privileged_creators) {
      // v12 rule 1.4: additional_creators, when present, is a list of valid user IDs.
      if (const json::value* additional = content_->if_contains("additional_creators")) {
        const json::array* list = additional->if_array();
        if (!list) return "m.room.create additional_creators is not an array";
        for (const json::value& entry : *list)
          if (!entry.is_string() || !is_valid_user_id(entry.get_string()))
            return "m.room.create additional_creators has an invalid user ID";
      }
    }
    if (!version_.v11_redaction_and_create && !content_->contains("creator"))
      return "m.room.create content has no creator";
    return std::nullopt;
  }

  // Rule 2. auth_state is the state the auth events are drawn from, so a missing m.room.create
  // entry is a missing auth event; entries from another room would be forged auth events.
  Verdict check_auth_events() {
    create_ = find_state(state_, kCreateType, "");
    if (!create_) return "no m.room.create event among the auth events";
    const auto room_id = string_field(event_, "room_id");
    if (version_.room_id_is_create_event_id) {
      // v12 rule 2: the room ID is the create event's ID with '!' for '$'. The create event is
      // never an auth event here, so the state must give its event_id.
      const auto create_id = string_field(*create_, "event_id");
      if (!create_id || create_id->size() < 2 || !room_id || room_id->size() != create_id->size() ||
          room_id->front() != '!' || room_id->substr(1) != create_id->substr(1))
        return "room_id is not the ID of the room's m.room.create event";
    }
    for (const auto& key : auth_event_keys(event_)) {
      if (version_.room_id_is_create_event_id && key.first == kCreateType) continue;
      const json::object* auth_event = find_state(state_, key.first, key.second);
      if (auth_event && string_field(*auth_event, "room_id") != room_id)
        return "auth event " + key.first + " belongs to another room";
    }
    return std::nullopt;
  }

  // Rule 3.
  Verdict check_federation() const {
    const json::object* create_content = object_field(*create_, "content");
    const json::value* federate =
        create_content ? create_content->if_contains("m.federate") : nullptr;
    if (!federate || !federate->is_bool() || federate->get_bool()) return std::nullopt;
    const auto create_sender = string_field(*create_, "sender");
    if (!create_sender || domain_of(*create_sender) != domain_of(sender_))
      return "room is not federated and the sender is from another server";
    return std::nullopt;
  }

  // Rule 4 of v1-v5 only; v6 removed it, leaving m.room.aliases to the generic state rules.
  Verdict check_aliases() const {
    if (!state_key_) return "m.room.aliases has no state_key";
    if (domain_of(sender_) != *state_key_)
      return "m.room.aliases state_key is not the sender's server";
    return std::nullopt;
  }

  // Rule 4 (m.room.member).
  Verdict check_member() {
    if (!state_key_) return "m.room.member has no state_key";
    const auto membership = string_field(*content_, "membership");
    if (!membership) return "m.room.member has no membership";
    target_ = *state_key_;
    if (version_.restricted_join_allowed)
      if (const json::value* authoriser = content_->if_contains("join_authorised_via_users_server"))
        // The signature by the authorising user's server is verified with the other signatures;
        // here we only make sure there is a server to expect it from.
        if (!authoriser->is_string() || !is_valid_user_id(authoriser->get_string()))
          return "join_authorised_via_users_server is not a user ID";

    if (*membership == "join") return check_join();
    if (*membership == "invite") return check_invite();
    if (*membership == "leave") return check_leave();
    if (*membership == "ban") return check_ban();
    if (*membership == "knock" && version_.knock_allowed) return check_knock();
    return "unknown membership " + std::string(*membership);
  }

  Verdict check_join() const {
    if (is_creator_first_join()) return std::nullopt;
    if (sender_ != target_) return "cannot join on behalf of another user";
    const std::string membership = membership_of(sender_);
    if (membership == "ban") return "sender is banned";
    const bool invited_or_joined = membership == "invite" || membership == "join";
    const std::string rule = join_rule();
    if (rule == "invite" || (rule == "knock" && version_.knock_allowed)) {
      if (invited_or_joined) return std::nullopt;
      return "room is invite-only and the sender is not invited";
    }
    if ((rule == "restricted" && version_.restricted_join_allowed) ||
        (rule == "knock_restricted" && version_.knock_restricted_allowed)) {
      if (invited_or_joined) return std::nullopt;
      const auto authoriser = string_field(*content_, "join_authorised_via_users_server");
      if (!authoriser) return "restricted join has no join_authorised_via_users_server";
      if (membership_of(*authoriser) != "join") return "authorising user is not joined";
      if (level_of(*authoriser) < named("invite")) return "authorising user cannot invite";
      return std::nullopt;
    }
    if (rule == "public") return std::nullopt;
    return "join rule does not allow joining";
  }

  // "The only previous event is an m.room.create and the state_key is the creator".
  bool is_creator_first_join() const {
    const json::value* prev = event_.if_contains("prev_events");
    const json::array* prev_list = prev ? prev->if_array() : nullptr;
    if (!prev_list || prev_list->size() != 1) return false;
    const auto creator = room_creator(state_, version_);
    if (!creator || *creator != target_) return false;
    if (const auto create_id = string_field(*create_, "event_id"))
      return prev_event_id(prev_list->front()) == create_id;
    // Without a stored event ID (v3+ PDUs carry none) the single previous event is the create
    // event exactly when the room has no other state yet.
    for (const auto& entry : state_)
      if (entry.first.first != kCreateType) return false;
    return true;
  }

  // v1/v2 list prev events as [event_id, hashes] pairs, v3+ as bare event IDs.
  static std::optional<std::string_view> prev_event_id(const json::value& entry) {
    if (const json::string* id = entry.if_string()) return std::string_view(*id);
    if (const json::array* pair = entry.if_array(); pair && !pair->empty())
      if (const json::string* id = pair->front().if_string()) return std::string_view(*id);
    return std::nullopt;
  }

  Verdict check_invite() const {
    if (content_->contains("third_party_invite")) return check_third_party_invite();
    if (membership_of(sender_) != "join") return "inviter is not joined";
    const std::string target_membership = membership_of(target_);
    if (target_membership == "join") return "invitee is already joined";
    if (target_membership == "ban") return "invitee is banned";
    if (level_of(sender_) >= named("invite")) return std::nullopt;
    return "inviter's power level is below the invite level";
  }

  // Rule 4.4.1. The signature in `signed` is checked against the token's public keys only for
  // shape here: verifying it needs the identity server's key and the canonical JSON signer,
  // which belong to the signature checks this module leaves out.
  Verdict check_third_party_invite() const {
    if (membership_of(target_) == "ban") return "invitee is banned";
    const json::object* invite = object_field(*content_, "third_party_invite");
    const json::object* signed_block = invite ? object_field(*invite, "signed") : nullptr;
    if (!signed_block) return "third_party_invite has no signed block";
    const auto mxid = string_field(*signed_block, "mxid");
    const auto token = string_field(*signed_block, "token");
    if (!mxid || !token) return "third_party_invite.signed lacks mxid or token";
    if (*mxid != target_) return "third_party_invite mxid does not match the invitee";
    const json::object* token_event = find_state(state_, kThirdPartyInviteType, *token);
    if (!token_event) return "no m.room.third_party_invite for the token";
    if (string_field(*token_event, "sender") != sender_)
      return "sender did not send the m.room.third_party_invite";
    if (!has_signature(*signed_block)) return "third_party_invite.signed carries no signature";
    const json::object* token_content = object_field(*token_event, "content");
    if (!token_content || !has_public_key(*token_content))
      return "m.room.third_party_invite has no public key";
    return std::nullopt;
  }

  static bool has_signature(const json::object& signed_block) {
    const json::object* signatures = object_field(signed_block, "signatures");
    if (!signatures) return false;
    for (const auto& server : *signatures)
      if (const json::object* keys = server.value().if_object())
        for (const auto& key : *keys)
          if (key.value().is_string() && !key.value().get_string().empty()) return true;
    return false;
  }

  static bool has_public_key(const json::object& token_content) {
    if (auto key = string_field(token_content, "public_key"); key && !key->empty()) return true;
    if (const json::value* keys = token_content.if_contains("public_keys"))
      if (const json::array* list = keys->if_array())
        for (const json::value& entry : *list)
          if (const json::object* key = entry.if_object())
            if (auto value = string_field(*key, "public_key"); value && !value->empty())
              return true;
    return false;
  }

  Verdict check_leave() const {
    if (sender_ == target_) {
      const std::string membership = membership_of(sender_);
      if (membership == "invite" || membership == "join" ||
          (membership == "knock" && version_.knock_allowed))
        return std::nullopt;
      return "sender has no membership to leave";
    }
    if (membership_of(sender_) != "join") return "sender is not joined";
    const long long sender_level = level_of(sender_);
    if (membership_of(target_) == "ban" && sender_level < named("ban"))
      return "sender's power level is below the ban level needed to unban";
    if (sender_level >= named("kick") && level_of(target_) < sender_level) return std::nullopt;
    return "sender's power level does not allow kicking the target";
  }

  Verdict check_ban() const {
    if (membership_of(sender_) != "join") return "sender is not joined";
    const long long sender_level = level_of(sender_);
    if (sender_level >= named("ban") && level_of(target_) < sender_level) return std::nullopt;
    return "sender's power level does not allow banning the target";
  }

  Verdict check_knock() const {
    const std::string rule = join_rule();
    if (rule != "knock" && !(rule == "knock_restricted" && version_.knock_restricted_allowed))
      return "join rule does not allow knocking";
    if (sender_ != target_) return "cannot knock on behalf of another user";
    const std::string membership = membership_of(sender_);
    if (membership == "ban" || membership == "invite" || membership == "join")
      return "sender is banned, invited or joined";
    return std::nullopt;
  }

  // Rule 9.
  Verdict check_power_levels() const {
    if (auto malformed = malformed_power_levels()) return malformed;
    const json::object* current = state_content(state_, kPowerLevelsType, "");
    if (!current) return std::nullopt;
    const long long sender_level = level_of(sender_);

    for (std::string_view key : kPowerLevelScalarKeys) {
      const auto old_value = level_at(current, key, syntax_);
      const auto new_value = level_at(content_, key, syntax_);
      if (old_value == new_value) continue;
      if (old_value && *old_value > sender_level)
        return "cannot change " + std::string(key) + " from above the sender's own level";
      if (new_value && *new_value > sender_level)
        return "cannot set " + std::string(key) + " above the sender's own level";
    }
    for (std::string_view map : level_maps()) {
      const json::object* old_map = object_field(*current, map);
      const json::object* new_map = object_field(*content_, map);
      if (auto rejection = check_level_map_changes(map, old_map, new_map, sender_level))
        return rejection;
    }
    const json::object* old_users = object_field(*current, "users");
    const json::object* new_users = object_field(*content_, "users");
    if (old_users)
      for (const auto& entry : *old_users) {
        if (entry.key() == sender_) continue;  // lowering yourself is always allowed
        const auto old_value = parse_level(entry.value(), syntax_);
        if (old_value == level_at(new_users, entry.key(), syntax_)) continue;
        if (old_value && *old_value >= sender_level)
          return "cannot change the level of a user at or above the sender's level";
      }
    if (new_users)
      for (const auto& entry : *new_users) {
        const auto new_value = parse_level(entry.value(), syntax_);
        if (new_value == level_at(old_users, entry.key(), syntax_)) continue;
        if (new_value && *new_value > sender_level)
          return "cannot give a user a level above the sender's own";
      }
    return std::nullopt;
  }

  // The maps whose entries rules 9.6/9.7 compare: `notifications` joined `events` in v6.
  std::vector<std::string_view> level_maps() const {
    if (generation_ <= 5) return {"events"};
    return {"events", "notifications"};
  }

  Verdict check_level_map_changes(std::string_view map, const json::object* old_map,
                                  const json::object* new_map, long long sender_level) const {
    if (old_map)
      for (const auto& entry : *old_map) {
        const auto old_value = parse_level(entry.value(), syntax_);
        if (old_value == level_at(new_map, entry.key(), syntax_)) continue;
        if (old_value && *old_value > sender_level)
          return "cannot change " + std::string(map) + " entry " + std::string(entry.key()) +
                 " from above the sender's own level";
      }
    if (new_map)
      for (const auto& entry : *new_map) {
        const auto new_value = parse_level(entry.value(), syntax_);
        if (new_value == level_at(old_map, entry.key(), syntax_)) continue;
        if (new_value && *new_value > sender_level)
          return "cannot set " + std::string(map) + " entry " + std::string(entry.key()) +
                 " above the sender's own level";
      }
    return std::nullopt;
  }

  // Rules 9.1-9.3. v10 spells out the integer requirement; earlier versions define the same values
  // as integers, strings holding integers or (v1-v5) floats, and a value none of those can be read
  // as could never be compared by the rules that follow, so it is rejected in every version.
  Verdict malformed_power_levels() const {
    for (std::string_view key : kPowerLevelScalarKeys)
      if (const json::value* value = content_->if_contains(key);
          value && !parse_level(*value, syntax_))
        return "power level " + std::string(key) + " is not an integer";
    for (std::string_view map : level_maps()) {
      const json::value* value = content_->if_contains(map);
      if (!value) continue;
      const json::object* levels = value->if_object();
      if (!levels) return "power levels " + std::string(map) + " is not an object";
      for (const auto& entry : *levels)
        if (!parse_level(entry.value(), syntax_))
          return "power levels " + std::string(map) + " has a non-integer value";
    }
    if (const json::value* value = content_->if_contains("users")) {
      const json::object* users = value->if_object();
      if (!users) return "power levels users is not an object";
      for (const auto& entry : *users) {
        if (!is_valid_user_id(entry.key())) return "power levels users has an invalid user ID";
        // v12 rule 10.4: creators' level is fixed (infinite) and never listed.
        if (version_.privileged_creators && is_room_creator(state_, entry.key()))
          return "power levels users names a room creator";
        if (!parse_level(entry.value(), syntax_))
          return "power levels users has a non-integer value";
      }
    }
    return std::nullopt;
  }

  // Rule 11 of v1-v2; from v3 on the redact level is left to the redaction handling code.
  Verdict check_redaction_v1() const {
    if (level_of(sender_) >= named("redact")) return std::nullopt;
    const auto redacted_domain = domain_of(string_field(event_, "redacts").value_or(""));
    const auto own_domain = domain_of(string_field(event_, "event_id").value_or(""));
    if (redacted_domain && redacted_domain == own_domain) return std::nullopt;
    return "sender's power level is below the redact level";
  }

  // The user's current membership, or "" when they have no m.room.member event.
  std::string membership_of(std::string_view user_id) const {
    const json::object* content = state_content(state_, kMemberType, user_id);
    if (!content) return {};
    return std::string(string_field(*content, "membership").value_or(""));
  }

  std::string join_rule() const {
    const json::object* content = state_content(state_, kJoinRulesType, "");
    if (!content) return {};
    return std::string(string_field(*content, "join_rule").value_or(""));
  }

  long long level_of(std::string_view user_id) const {
    return user_level(state_, user_id, version_, syntax_);
  }
  long long named(std::string_view name) const { return named_level(state_, name, syntax_); }

  const json::object& event_;
  const StateMap& state_;
  const RoomVersion& version_;
  const int generation_;
  const LevelSyntax syntax_;
  const json::object* content_ = nullptr;
  const json::object* create_ = nullptr;
  std::string_view type_;
  std::string_view sender_;
  std::optional<std::string_view> state_key_;
  std::string_view target_;
};

}  // namespace

std::vector<std::pair<std::string, std::string>> auth_event_keys(const json::object& event) {
  std::vector<std::pair<std::string, std::string>> keys;
  const auto type = string_field(event, "type");
  if (!type || *type == kCreateType) return keys;
  auto add = [&keys](std::string_view key_type, std::string_view state_key) {
    std::pair<std::string, std::string> key{std::string(key_type), std::string(state_key)};
    for (const auto& existing : keys)
      if (existing == key) return;
    keys.push_back(std::move(key));
  };
  add(kCreateType, "");
  add(kPowerLevelsType, "");
  if (const auto sender = string_field(event, "sender")) add(kMemberType, *sender);
  if (*type != kMemberType) return keys;

  const auto target = string_field(event, "state_key");
  const json::object* content = object_field(event, "content");
  if (target) add(kMemberType, *target);
  const auto membership = content ? string_field(*content, "membership") : std::nullopt;
  if (membership == "join" || membership == "invite" || membership == "knock")
    add(kJoinRulesType, "");
  if (membership == "invite") {
    const json::object* invite = object_field(*content, "third_party_invite");
    const json::object* signed_block = invite ? object_field(*invite, "signed") : nullptr;
    if (auto token = signed_block ? string_field(*signed_block, "token") : std::nullopt)
      add(kThirdPartyInviteType, *token);
  }
  // Only room versions with restricted joins give this key meaning; the caller, which knows the
  // version, must leave the key out of the content of joins in older rooms.
  if (membership == "join")
    if (auto authoriser = string_field(*content, "join_authorised_via_users_server"))
      add(kMemberType, *authoriser);
  return keys;
}

std::optional<std::string> check_event_auth(const json::object& event, const StateMap& auth_state,
                                            const RoomVersion& version) {
  return EventAuthorizer(event, auth_state, version).run();
}

long long user_power_level(const StateMap& state, const std::string& user_id,
                           const RoomVersion& version) {
  return user_level(state, user_id, version, level_syntax(version));
}

// Without a version, read every syntax any version allows: a stored power levels event already
// passed its own version's rules, so this never reads a value that version would refuse.
long long required_power_level(const StateMap& state, const std::string& event_type,
                               bool is_state) {
  return required_level(state, event_type, is_state, LevelSyntax::integers_strings_or_floats);
}

long long named_power_level(const StateMap& state, const std::string& name) {
  return named_level(state, name, LevelSyntax::integers_strings_or_floats);
}

}  // namespace trestle::room
