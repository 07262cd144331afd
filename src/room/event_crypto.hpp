#pragma once
// Hashing, redaction and signing of PDUs, per the spec: server-server-api.md ("Calculating the
// content hash", "Signing events", "Calculating the reference hash") and the redaction algorithm
// in client-server-api (differs for room v11). Events are plain JSON objects here.
#include "core/crypto.hpp"
#include "room/room_version.hpp"

#include <boost/json/object.hpp>
#include <string>

namespace trestle::room {

// The redacted form of an event (keeps only the keys the room version's algorithm keeps).
boost::json::object redact_event(const boost::json::object& event, const RoomVersion& version);

// Unpadded base64 SHA-256 of the canonical JSON of the event without unsigned, signatures, hashes.
std::string compute_content_hash(const boost::json::object& event);

// Event ID for room versions 4+: '$' + url-safe unpadded base64 of the reference hash
// (SHA-256 of the canonical JSON of the redacted event without signatures, unsigned).
std::string compute_event_id(const boost::json::object& event, const RoomVersion& version);

// Sets hashes.sha256, then signs the redacted event and stores it in signatures[server][key_id].
void hash_and_sign_event(boost::json::object& event, const std::string& server_name,
                         const core::SigningKey& key, const RoomVersion& version);

// hash_and_sign_event, returning the event's ID (compute_event_id) from the same canonical JSON
// the signature covers, instead of redacting and serialising the event again.
std::string hash_sign_and_id(boost::json::object& event, const std::string& server_name, const core::SigningKey& key,
                             const RoomVersion& version);

// Signs any JSON object (e.g. server keys): removes signatures and unsigned, signs the canonical
// JSON, adds the signature back alongside any existing ones.
void sign_json(boost::json::object& obj, const std::string& server_name, const core::SigningKey& key);

// Verifies signatures[server_name][key_id] over obj (without signatures/unsigned).
bool verify_json_signature(const boost::json::object& obj, const std::string& server_name,
                           const std::string& key_id, std::string_view public_key);

}  // namespace trestle::room
