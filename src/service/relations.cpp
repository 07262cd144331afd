#include "service/relations.hpp"

#include "core/error.hpp"
#include "service/ignored_users.hpp"
#include "service/stream_token.hpp"
#include "service/visibility.hpp"
#include "storage/relation_store.hpp"

#include <algorithm>
#include <set>

namespace trestle::service {

namespace ev = storage::events;
namespace rel = storage::relations;
using boost::json::array;
using boost::json::object;

namespace {

const object* content_of(const object& pdu) {
  auto* c = pdu.if_contains("content");
  return c && c->is_object() ? &c->as_object() : nullptr;
}

// Annotation keys longer than this are refused (as Synapse).
constexpr size_t kMaxAnnotationKey = 500;

}  // namespace

std::optional<RelatesTo> parse_relates_to(const object& pdu) {
  const object* content = content_of(pdu);
  if (!content) return std::nullopt;
  auto* rt = content->if_contains("m.relates_to");
  if (!rt || !rt->is_object()) return std::nullopt;
  const auto& o = rt->as_object();
  auto* type = o.if_contains("rel_type");
  auto* id = o.if_contains("event_id");
  if (!type || !type->is_string() || !id || !id->is_string()) return std::nullopt;
  RelatesTo out{std::string(type->as_string()), std::string(id->as_string()), std::nullopt};
  if (auto* key = o.if_contains("key"); key && key->is_string()) out.key = std::string(key->as_string());
  return out;
}

bool is_valid_replacement(const ev::StoredEvent& original, const ev::StoredEvent& edit) {
  if (original.room_id != edit.room_id || original.sender != edit.sender || original.type != edit.type) return false;
  if (original.state_key || edit.state_key) return false;
  if (auto own = parse_relates_to(original.pdu); own && own->rel_type == "m.replace") return false;
  auto rt = parse_relates_to(edit.pdu);
  if (!rt || rt->rel_type != "m.replace" || rt->event_id != original.event_id) return false;
  // An encrypted edit carries m.new_content inside its ciphertext, which the server cannot see.
  if (edit.type == "m.room.encrypted") return true;
  const object* content = content_of(edit.pdu);
  auto* nc = content ? content->if_contains("m.new_content") : nullptr;
  return nc && nc->is_object();
}

void check_new_relation(storage::Connection& c, const std::string& room_id, const std::string& sender,
                        const std::string& type, const object& pdu) {
  auto rt = parse_relates_to(pdu);
  if (!rt) return;
  if (auto parent = ev::get_event_header(c, rt->event_id)) {
    if (parent->room_id != room_id) throw MatrixError(400, "M_UNKNOWN", "Relations must be in the same room");
  } else if (!rel::is_parent(c, rt->event_id)) {
    // Nothing tells the client this event exists.
    throw MatrixError(400, "M_UNKNOWN", "Can't send relation to unknown event");
  }
  if (rt->rel_type == "m.annotation") {
    if (!rt->key) throw MatrixError(400, "M_UNKNOWN", "Missing aggregation key");
    if (rt->key->size() > kMaxAnnotationKey) throw MatrixError(400, "M_UNKNOWN", "Aggregation key is too long");
    if (rel::has_annotation(c, rt->event_id, sender, type, *rt->key)) {
      throw MatrixError(400, "M_DUPLICATE_ANNOTATION", "Can't send same reaction twice");
    }
  } else if (rt->rel_type == "m.thread") {
    // The spec (threading, server behaviour): a thread may not start off an event that has a
    // relation itself.
    if (auto parent = ev::get_event(c, rt->event_id); parent && !parent->redacted_by && parse_relates_to(parent->pdu)) {
      throw MatrixError(400, "M_UNKNOWN", "Cannot start threads from an event with a relation");
    }
  }
}

void record_relation(storage::Connection& c, const ev::StoredEvent& e) {
  auto rt = parse_relates_to(e.pdu);
  if (!rt) return;
  rel::insert(c, rel::Relation{e.event_id, e.room_id, rt->event_id, rt->rel_type, e.type, e.sender, rt->key,
                               e.stream_ordering});
}

void forget_relation(storage::Connection& c, const std::string& redacted_event_id) {
  rel::remove(c, redacted_event_id);
}

void add_bundled_aggregations(const ev::StoredEvent& e, storage::Connection& c, const ClientEventOptions& opts,
                              object& unsigned_obj) {
  if (!opts.viewer_user_id || opts.aggregation_depth >= 2 || e.state_key || e.redacted_by) return;
  // An edit or a reaction gets no aggregations; a thread reply no thread of its own.
  auto own = parse_relates_to(e.pdu);
  if (own && (own->rel_type == "m.replace" || own->rel_type == "m.annotation")) return;
  auto counts = rel::aggregatable_counts(c, e.event_id);
  if (counts.empty()) return;
  const std::string& viewer = *opts.viewer_user_id;
  const auto ignored = ignored_users(c, viewer);
  auto has = [&](const char* t) {
    return std::any_of(counts.begin(), counts.end(), [&](const auto& x) { return x.rel_type == t; });
  };
  ClientEventOptions nested = opts;
  nested.aggregation_depth = opts.aggregation_depth + 1;
  object relations;

  if (opts.aggregation_depth == 0 && has("m.thread") && !(own && own->rel_type == "m.thread")) {
    int64_t count = 0;
    bool participated = e.sender == viewer;
    for (const auto& s : rel::thread_senders(c, e.event_id)) {
      if (ignored.count(s.sender)) continue;
      count += s.count;
      participated = participated || s.sender == viewer;
    }
    std::optional<ev::StoredEvent> latest;
    if (count > 0) {
      if (auto id = rel::latest_thread_reply(c, e.event_id, std::vector<std::string>(ignored.begin(), ignored.end()))) {
        latest = ev::get_event(c, *id);
      }
    }
    if (latest) {
      relations["m.thread"] = object{{"latest_event", client_event(*latest, c, nested)},
                                     {"count", count},
                                     {"current_user_participated", participated}};
    }
  }
  if (has("m.replace")) {
    // The most recent valid edit (origin_server_ts, then event ID); edits of edits are no edits.
    for (const auto& id : rel::replacements(c, e.event_id, e.sender, e.type, 50)) {
      auto edit = ev::get_event(c, id);
      if (!edit || edit->redacted_by || !is_valid_replacement(e, *edit)) continue;
      ClientEventOptions edit_opts = opts;
      edit_opts.aggregation_depth = 2;
      relations["m.replace"] = client_event(*edit, c, edit_opts);
      break;
    }
  }
  if (opts.aggregation_depth == 0 && has("m.reference")) {
    array chunk;
    for (const auto& [id, sender] : rel::references(c, e.event_id, 1000)) {
      if (!ignored.count(sender)) chunk.push_back(object{{"event_id", id}});
    }
    if (!chunk.empty()) relations["m.reference"] = object{{"chunk", std::move(chunk)}};
  }
  if (!relations.empty()) unsigned_obj["m.relations"] = std::move(relations);
}

bool related_by_matches(storage::Connection& c, const object& filter, const ev::StoredEvent& e) {
  auto strings = [&](const char* key) {
    std::vector<std::string> out;
    if (auto* v = filter.if_contains(key); v && v->is_array()) {
      for (const auto& x : v->as_array()) {
        if (x.is_string()) out.emplace_back(x.as_string());
      }
    }
    return out;
  };
  const bool has_types = filter.contains("related_by_rel_types"), has_senders = filter.contains("related_by_senders");
  if (!has_types && !has_senders) return true;
  auto types = strings("related_by_rel_types");
  auto senders = strings("related_by_senders");
  // A list given but empty matches nothing (as Synapse); bound the lists to keep the query small.
  if ((has_types && types.empty()) || (has_senders && senders.empty())) return false;
  if (types.size() > 100) types.resize(100);
  if (senders.size() > 100) senders.resize(100);
  return rel::has_child_matching(c, e.event_id, types, senders);
}

object RelationService::relations(const Requester& r, const std::string& room_id, const std::string& event_id,
                                  const RelationsQuery& q) {
  if (q.dir != "b" && q.dir != "f") throw MatrixError::invalid_param("dir must be 'b' or 'f'");
  if (q.limit && *q.limit < 0) throw MatrixError::invalid_param("limit must be 0 or above");
  const int64_t limit = std::min(q.limit.value_or(kDefaultLimit), kMaxRelationsLimit);
  auto given = [](const std::optional<std::string>& t) { return t && !t->empty() ? t : std::nullopt; };
  const auto from = given(q.from), to = given(q.to);
  std::optional<int64_t> from_pos, to_pos;
  if (from) from_pos = parse_stream_token(*from);
  if (to) to_pos = parse_stream_token(*to);
  const bool backwards = q.dir == "b";
  return db_.read([&](storage::Connection& c) {
    auto access = room_read_access(c, r.user_id, room_id, db_.committed_position());
    if (!access) throw MatrixError::forbidden("You are not allowed to view room " + room_id);
    auto parent = ev::get_event_header(c, event_id);
    if (!parent || parent->room_id != room_id || parent->stream_ordering > access->upto) {
      throw MatrixError::not_found("Event not found");
    }
    if (auto full = ev::get_event(c, event_id); !full || !event_visible_to(c, r.user_id, *full, access->peeking)) {
      throw MatrixError::not_found("Event not found");
    }
    int64_t lower, upper;
    if (backwards) {
      lower = to_pos.value_or(0);
      upper = std::min(from_pos.value_or(access->upto), access->upto);
    } else {
      lower = from_pos.value_or(0);
      upper = std::min(to_pos.value_or(access->upto), access->upto);
    }
    object out;
    array chunk;
    if (limit > 0 && lower < upper) {
      auto rows = rel::children(c, event_id, q.rel_type, q.event_type, lower, upper, backwards, limit + 1,
                                q.recurse ? kRecursionDepth : 0);
      const bool more = static_cast<int64_t>(rows.size()) > limit;
      if (more) rows.pop_back();
      const auto ignored = ignored_users(c, r.user_id);
      ClientEventOptions opts{r.user_id, r.device_id, true};
      for (const auto& row : rows) {
        auto e = ev::get_event(c, row.event_id);
        if (!e || e->room_id != room_id || hidden_by_ignore(ignored, *e) ||
            !event_visible_to(c, r.user_id, *e, access->peeking)) {
          continue;
        }
        chunk.push_back(client_event(*e, c, opts));
      }
      if (more) {
        int64_t last = rows.back().stream_ordering;
        out["next_batch"] = "s" + std::to_string(backwards ? last - 1 : last);
      }
    }
    out["chunk"] = std::move(chunk);
    if (from) out["prev_batch"] = *from;
    if (q.recurse) out["recursion_depth"] = kRecursionDepth;
    return out;
  });
}

object RelationService::threads(const Requester& r, const std::string& room_id, const std::string& include,
                                const std::optional<std::string>& from, std::optional<int64_t> limit_param) {
  if (include != "all" && include != "participated") {
    throw MatrixError::invalid_param("include must be 'all' or 'participated'");
  }
  if (limit_param && *limit_param <= 0) throw MatrixError::invalid_param("limit must be greater than zero");
  const int64_t limit = std::min(limit_param.value_or(kDefaultLimit), kMaxThreadsLimit);
  // Tokens are "t<N>": the next page holds threads whose latest reply is before position N.
  int64_t before = std::numeric_limits<int64_t>::max();
  if (from && !from->empty()) {
    std::string digits = from->substr(1);
    if (!from->starts_with("t") || digits.empty() || digits.size() > 18 ||
        !std::all_of(digits.begin(), digits.end(), ::isdigit)) {
      throw MatrixError::invalid_param("Unknown pagination token");
    }
    before = std::stoll(digits);
  }
  return db_.read([&](storage::Connection& c) {
    auto access = room_read_access(c, r.user_id, room_id, db_.committed_position());
    if (!access) throw MatrixError::forbidden("You are not allowed to view room " + room_id);
    std::optional<std::string> participant;
    if (include == "participated") participant = r.user_id;
    auto rows = rel::threads(c, room_id, access->upto, before, participant, limit + 1);
    const bool more = static_cast<int64_t>(rows.size()) > limit;
    if (more) rows.pop_back();
    const auto ignored = ignored_users(c, r.user_id);
    ClientEventOptions opts{r.user_id, r.device_id, true};
    array chunk;
    for (const auto& row : rows) {
      auto root = ev::get_event(c, row.root);
      if (!root || root->room_id != room_id || root->stream_ordering > access->upto ||
          !event_visible_to(c, r.user_id, *root, access->peeking)) {
        continue;
      }
      auto ce = client_event(*root, c, opts);
      if (hidden_by_ignore(ignored, *root)) {
        // The spec: an ignored user's thread root is returned redacted (with its thread summary).
        auto pruned = *root;
        pruned.redacted_by = std::string();
        auto redacted = client_event(pruned, c, opts);
        redacted["unsigned"] = ce["unsigned"];
        ce = std::move(redacted);
      }
      chunk.push_back(std::move(ce));
    }
    object out{{"chunk", std::move(chunk)}};
    if (more) out["next_batch"] = "t" + std::to_string(rows.back().latest_stream);
    return out;
  });
}

}  // namespace trestle::service
