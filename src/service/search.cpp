#include "service/search.hpp"

#include "core/crypto.hpp"
#include "core/error.hpp"
#include "service/event_format.hpp"
#include "service/filter.hpp"
#include "service/ignored_users.hpp"
#include "service/visibility.hpp"
#include "storage/event_store.hpp"
#include "storage/search_store.hpp"

#include <boost/json/array.hpp>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <map>
#include <set>

namespace trestle::service {

namespace ev = storage::events;
using boost::json::array;
using boost::json::object;

namespace {

constexpr int64_t kDefaultLimit = 10;      // Synapse's default filter limit
constexpr int64_t kMaxLimit = 100;         // results per page
constexpr int64_t kDefaultContext = 5;     // event_context before_limit / after_limit (Synapse)
constexpr int64_t kMaxContext = 20;        // per side and result: a page costs at most 100 * 41 events
constexpr int64_t kMaxExamined = 1000;     // index rows looked at per request; then next_batch resumes
constexpr size_t kMaxTerms = 32;           // words and phrases taken from one search_term
constexpr size_t kMaxUpgradeChain = 50;    // predecessors followed from a room of filter.rooms

const std::set<std::string> kAllKeys{"content.body", "content.name", "content.topic"};

// Synapse's short list (synapse/storage/databases/main/search.py).
bool is_stop_word(const std::string& w) {
  static const std::set<std::string> words{"the", "a", "you", "me", "and", "but"};
  return words.count(w) > 0;
}

bool is_word_byte(unsigned char ch) {
  return ch >= 0x80 || std::isalnum(ch) || ch == '_' || ch == '-';
}

// A word the index can hold: something besides '_' and '-' (the tokenizer drops those).
bool has_indexable(const std::string& w) {
  return std::any_of(w.begin(), w.end(), [](unsigned char ch) { return ch >= 0x80 || std::isalnum(ch); });
}

std::string ascii_lower(std::string s) {
  for (auto& ch : s) {
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  }
  return s;
}

std::vector<std::string> words_of(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  for (unsigned char ch : text) {
    if (is_word_byte(ch)) {
      cur.push_back(static_cast<char>(ch));
    } else if (!cur.empty()) {
      out.push_back(std::move(cur));
      cur.clear();
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

std::string quoted(const std::vector<std::string>& words) {
  std::string out = "\"";
  for (size_t i = 0; i < words.size(); ++i) {
    if (i) out += ' ';
    out += words[i];  // words never hold '"': is_word_byte excludes it
  }
  return out + "\"";
}

int64_t int_field(const object& o, const char* key, int64_t fallback) {
  auto* v = o.if_contains(key);
  if (!v) return fallback;
  if (v->is_int64()) return v->as_int64();
  if (v->is_uint64()) return static_cast<int64_t>(std::min<uint64_t>(v->as_uint64(), INT64_MAX));
  throw MatrixError::bad_json(std::string("'") + key + "' must be an integer");
}

bool bool_field(const object& o, const char* key) {
  auto* v = o.if_contains(key);
  if (!v) return false;
  if (!v->is_bool()) throw MatrixError::bad_json(std::string("'") + key + "' must be a boolean");
  return v->as_bool();
}

std::string string_of(const std::optional<object>& content, const char* key) {
  if (!content) return {};
  auto* v = content->if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

// The room named as predecessor in the room's m.room.create, if any.
std::optional<std::string> predecessor_of(storage::Connection& c, const std::string& room_id) {
  auto id = ev::current_state_event_id(c, room_id, "m.room.create", "");
  if (!id) return std::nullopt;
  auto e = ev::get_event(c, *id);
  if (!e) return std::nullopt;
  auto* content = e->pdu.if_contains("content");
  auto* p = content && content->is_object() ? content->as_object().if_contains("predecessor") : nullptr;
  auto* r = p && p->is_object() ? p->as_object().if_contains("room_id") : nullptr;
  if (!r || !r->is_string()) return std::nullopt;
  return std::string(r->as_string());
}

struct Hit {
  ev::StoredEvent event;
  double rank = 0;
  object client;
};

}  // namespace

std::optional<std::string> fts_query(const std::string& term) {
  // Synapse's tokenizer: text inside double quotes is a phrase; elsewhere `or` is OR, a leading
  // '-' is NOT and other words are ANDed.
  struct Operand {
    std::string text;
    bool negated = false;
    bool or_before = false;
  };
  std::vector<Operand> operands;
  bool pending_or = false, pending_not = false;
  size_t part_start = 0;
  for (size_t i = 0; part_start <= term.size() && operands.size() < kMaxTerms; ++i) {
    size_t quote = term.find('"', part_start);
    std::string part = term.substr(part_start, quote == std::string::npos ? std::string::npos : quote - part_start);
    part_start = quote == std::string::npos ? term.size() + 1 : quote + 1;
    auto words = words_of(part);
    auto add = [&](std::string text) {
      operands.push_back({std::move(text), pending_not, pending_or && !operands.empty()});
      pending_or = pending_not = false;
    };
    if (i % 2 == 1) {  // a phrase
      std::vector<std::string> kept;
      for (auto& w : words) {
        if (!is_stop_word(ascii_lower(w)) && has_indexable(w)) kept.push_back(w);
      }
      if (!kept.empty()) add(quoted(kept));
      continue;
    }
    for (auto w : words) {
      while (!w.empty() && w.front() == '-') {
        pending_not = true;
        w.erase(0, 1);
      }
      if (w.empty()) continue;
      if (ascii_lower(w) == "or") {
        pending_or = true;
        pending_not = false;
        continue;
      }
      if (is_stop_word(ascii_lower(w)) || !has_indexable(w)) continue;
      add(quoted({w}));
      if (operands.size() >= kMaxTerms) break;
    }
  }
  // OR-separated groups, each words ANDed then the excluded ones: ("a" AND "b") NOT "c". FTS5's NOT
  // is binary, so a group without a word to keep is dropped.
  std::vector<std::string> groups;
  std::vector<std::string> keep, drop;
  auto close_group = [&] {
    if (!keep.empty()) {
      std::string g = "(";
      for (size_t i = 0; i < keep.size(); ++i) g += (i ? " AND " : "") + keep[i];
      g += ")";
      for (const auto& d : drop) g += " NOT " + d;
      groups.push_back("(" + g + ")");
    }
    keep.clear();
    drop.clear();
  };
  for (const auto& o : operands) {
    if (o.or_before) close_group();
    (o.negated ? drop : keep).push_back(o.text);
  }
  close_group();
  if (groups.empty()) return std::nullopt;
  std::string out;
  for (size_t i = 0; i < groups.size(); ++i) out += (i ? " OR " : "") + groups[i];
  return out;
}

std::string encode_search_batch(const SearchBatch& b) {
  return core::base64url_encode(b.order + "\n" + b.group + "\n" + std::to_string(b.cursor) + "\n" + b.group_key);
}

std::optional<SearchBatch> decode_search_batch(const std::string& token) {
  if (token.size() > 1024) return std::nullopt;
  auto raw = core::base64_decode(token);
  if (!raw) return std::nullopt;
  SearchBatch b;
  size_t a = raw->find('\n');
  size_t c = a == std::string::npos ? a : raw->find('\n', a + 1);
  size_t d = c == std::string::npos ? c : raw->find('\n', c + 1);
  if (d == std::string::npos) return std::nullopt;
  b.order = raw->substr(0, a);
  b.group = raw->substr(a + 1, c - a - 1);
  std::string cursor = raw->substr(c + 1, d - c - 1);
  b.group_key = raw->substr(d + 1);
  if (b.order != "rank" && b.order != "recent") return std::nullopt;
  if (b.group != "all" && b.group != "room_id") return std::nullopt;
  if (b.group == "room_id" && b.group_key.empty()) return std::nullopt;
  if (cursor.empty() || cursor.size() > 19 ||
      !std::all_of(cursor.begin(), cursor.end(), [](unsigned char ch) { return std::isdigit(ch); })) {
    return std::nullopt;
  }
  b.cursor = std::stoll(cursor);
  return b;
}

namespace {

// Raises `a` to `v` if below it (the hook's done() and a search's catch-up may race).
void raise_to(std::atomic<int64_t>& a, int64_t v) {
  int64_t seen = a.load();
  while (seen < v && !a.compare_exchange_weak(seen, v)) {
  }
}

}  // namespace

SearchService::SearchService(storage::Database& db) : db_(db) {
  // indexed_ is read by the first group (not here: start-up makes no read of its own for it).
  hook_ = db_.add_group_hook({[this](storage::Connection& c, int64_t upto) {
                                // Published by done(true) only: this group's writes may still be undone.
                                hook_indexed_ = indexed_.load() < 0 ? storage::search::indexed_upto(c) : 0;
                                const int64_t from = std::max(indexed_.load(), hook_indexed_);
                                if (upto - from < kIndexBatch) return;
                                hook_indexed_ = storage::search::index_upto(c, std::min(upto, from + kMaxHookBatch));
                              },
                              [this](bool committed) {
                                if (committed) raise_to(indexed_, hook_indexed_);
                              }});
}

SearchService::~SearchService() { db_.remove_group_hook(hook_); }

int64_t SearchService::catch_up() {
  const int64_t now = db_.committed_position();
  if (indexed_.load() >= now) return now;
  raise_to(indexed_, db_.write([&](storage::Connection& c) { return storage::search::index_upto(c, now); }));
  return now;
}

object SearchService::search(const Requester& r, const object& body, const std::optional<std::string>& next_batch) {
  // --- parameters (types were checked against the spec's schema) ---
  auto* cats = body.if_contains("search_categories");
  if (!cats || !cats->is_object()) throw MatrixError::bad_json("'search_categories' must be an object");
  auto* rc_value = cats->as_object().if_contains("room_events");
  if (!rc_value) {
    throw MatrixError::invalid_param("No search category this server knows: it searches 'room_events'");
  }
  if (!rc_value->is_object()) throw MatrixError::bad_json("'room_events' must be an object");
  const object& rc = rc_value->as_object();
  auto* term_v = rc.if_contains("search_term");
  if (!term_v) throw MatrixError::missing_param("Missing 'search_term'");
  if (!term_v->is_string()) throw MatrixError::bad_json("'search_term' must be a string");
  const std::string term(term_v->as_string());

  std::vector<std::string> keys(kAllKeys.begin(), kAllKeys.end());
  if (auto* k = rc.if_contains("keys")) {
    if (!k->is_array()) throw MatrixError::bad_json("'keys' must be an array");
    std::set<std::string> chosen;
    for (const auto& key : k->as_array()) {
      if (!key.is_string() || !kAllKeys.count(std::string(key.as_string()))) {
        throw MatrixError::invalid_param("'keys' may hold content.body, content.name and content.topic");
      }
      chosen.insert(std::string(key.as_string()));
    }
    if (chosen.empty()) throw MatrixError::invalid_param("'keys' must name at least one key");
    keys.assign(chosen.begin(), chosen.end());
  }
  const std::set<std::string> key_set(keys.begin(), keys.end());

  object filter;
  if (auto* f = rc.if_contains("filter")) {
    if (!f->is_object()) throw MatrixError::bad_json("'filter' must be an object");
    filter = f->as_object();
  }
  if (auto* l = filter.if_contains("limit"); l && !l->is_int64() && !l->is_uint64()) {
    throw MatrixError::bad_json("'filter.limit' must be an integer");
  }
  const int64_t limit = std::clamp<int64_t>(filter_limit(filter, kDefaultLimit), 1, kMaxLimit);

  std::string order = "rank";
  if (auto* o = rc.if_contains("order_by")) {
    if (!o->is_string() || (o->as_string() != "rank" && o->as_string() != "recent")) {
      throw MatrixError::invalid_param("'order_by' must be 'rank' or 'recent'");
    }
    order = std::string(o->as_string());
  }

  std::optional<object> context;
  int64_t before_limit = kDefaultContext, after_limit = kDefaultContext;
  bool include_profile = false;
  if (auto* ec = rc.if_contains("event_context")) {
    if (!ec->is_object()) throw MatrixError::bad_json("'event_context' must be an object");
    context = ec->as_object();
    before_limit = int_field(*context, "before_limit", kDefaultContext);
    after_limit = int_field(*context, "after_limit", kDefaultContext);
    if (before_limit < 0 || after_limit < 0) {
      throw MatrixError::invalid_param("'before_limit' and 'after_limit' must not be negative");
    }
    before_limit = std::min(before_limit, kMaxContext);
    after_limit = std::min(after_limit, kMaxContext);
    include_profile = bool_field(*context, "include_profile");
  }

  bool group_room = false, group_sender = false;
  if (auto* g = rc.if_contains("groupings")) {
    if (!g->is_object()) throw MatrixError::bad_json("'groupings' must be an object");
    if (auto* gb = g->as_object().if_contains("group_by")) {
      if (!gb->is_array()) throw MatrixError::bad_json("'group_by' must be an array");
      for (const auto& item : gb->as_array()) {
        auto* key = item.is_object() ? item.as_object().if_contains("key") : nullptr;
        if (!key || !key->is_string() || (key->as_string() != "room_id" && key->as_string() != "sender")) {
          throw MatrixError::invalid_param("'group_by' keys must be 'room_id' or 'sender'");
        }
        (key->as_string() == "room_id" ? group_room : group_sender) = true;
      }
    }
  }
  const bool include_state = bool_field(rc, "include_state");

  std::optional<SearchBatch> batch;
  if (next_batch) {
    batch = decode_search_batch(*next_batch);
    if (!batch) throw MatrixError::invalid_param("Invalid next_batch token");
    if (batch->order != order) throw MatrixError::invalid_param("next_batch was given for another order_by");
  }

  const auto query = fts_query(term);
  const int64_t now = catch_up();  // every event up to now is in the index before it is read

  return db_.read([&](storage::Connection& c) {
    object room_events{{"results", array{}}, {"count", 0}, {"highlights", array{}}};
    // --- the rooms searched: those the user is in, and those they left (up to leaving) ---
    std::map<std::string, int64_t> upto;
    for (const auto& m : ev::memberships_of_user(c, r.user_id)) {
      if (m.forgotten) continue;
      if (m.membership == "join") upto[m.room_id] = now;
      else if (m.membership == "leave" || m.membership == "ban") upto[m.room_id] = m.stream_ordering;
    }
    std::set<std::string> extra;  // predecessors of the rooms the filter names (as Synapse)
    if (auto* rooms = filter.if_contains("rooms"); rooms && rooms->is_array()) {
      for (const auto& id : rooms->as_array()) {
        if (!id.is_string()) continue;
        std::string room(id.as_string());
        for (size_t i = 0; i < kMaxUpgradeChain; ++i) {
          auto p = predecessor_of(c, room);
          if (!p || extra.count(*p)) break;
          extra.insert(*p);
          room = *p;
        }
      }
    }
    // A predecessor brought in by filter.rooms passes the rooms list but not not_rooms.
    object not_rooms_only;
    if (auto* nr = filter.if_contains("not_rooms")) not_rooms_only["not_rooms"] = *nr;
    for (auto it = upto.begin(); it != upto.end();) {
      bool keep = room_allowed(extra.count(it->first) ? not_rooms_only : filter, it->first);
      if (keep && batch && batch->group == "room_id") keep = it->first == batch->group_key;
      it = keep ? std::next(it) : upto.erase(it);
    }
    if (!query || upto.empty()) return object{{"search_categories", object{{"room_events", room_events}}}};

    std::vector<std::string> room_list;
    for (const auto& [room, pos] : upto) room_list.push_back(room);
    const auto ignored = ignored_users(c, r.user_id);
    ClientEventOptions opts{r.user_id, r.device_id, true};
    // Results ignore the filter's own rooms list for predecessors the filter brought in.
    object event_filter = filter;
    if (!extra.empty()) event_filter.erase("rooms");

    std::vector<Hit> hits;
    int64_t examined = 0;
    std::map<std::string, int64_t> examined_in_room;
    bool more = false;
    int64_t last_position = batch ? batch->cursor : 0;
    const int64_t offset = batch && order == "rank" ? batch->cursor : 0;
    std::optional<int64_t> below;
    if (batch && order == "recent") below = batch->cursor;
    storage::search::for_each_match(
        c, *query, room_list, keys, order == "rank" ? storage::search::Order::rank : storage::search::Order::recent,
        offset, below, [&](const storage::search::Match& m) {
          if (static_cast<int64_t>(hits.size()) >= limit || examined >= kMaxExamined) {
            more = true;
            return false;
          }
          ++examined;
          ++examined_in_room[m.room_id];
          last_position = m.stream_ordering;
          auto room = upto.find(m.room_id);
          if (room == upto.end() || m.stream_ordering > room->second || !key_set.count(m.key)) return true;
          auto e = ev::get_event(c, m.event_id);
          if (!e || e->redacted_by || !event_matches(event_filter, *e) || hidden_by_ignore(ignored, *e) ||
              !event_visible_to(c, r.user_id, *e, false)) {
            return true;
          }
          auto client = client_event(*e, c, opts);
          // Served pruned (an erased sender, a self-destructed message): the text is not theirs to find.
          auto* content = client.if_contains("content");
          auto* value = content && content->is_object() ? content->as_object().if_contains(m.key.substr(8)) : nullptr;
          if (!value || !value->is_string()) return true;
          hits.push_back({std::move(*e), m.rank, std::move(client)});
          return true;
        });

    auto make_batch = [&](const std::string& group, const std::string& key) {
      int64_t cursor = last_position;
      if (order == "rank") cursor = offset + (group == "all" ? examined : examined_in_room[key]);
      return encode_search_batch(SearchBatch{order, group, key, cursor});
    };
    // Rank pages are row offsets: one room's offset is known when paging from the start or
    // within that room already.
    const bool room_batches = order == "recent" || offset == 0 || (batch && batch->group == "room_id");

    // --- results, with context ---
    array results;
    std::set<std::string> highlights;
    for (auto& h : hits) {
      for (const auto& t : storage::search::matched_terms(c, *query, h.event.stream_ordering)) {
        highlights.insert(ascii_lower(t));
      }
      object ctx;
      if (context) {
        const int64_t room_upto = upto.at(h.event.room_id);
        auto shown = [&](const ev::StoredEvent& e) {
          return !hidden_by_ignore(ignored, e) && event_visible_to(c, r.user_id, e, false);
        };
        array before, after;
        std::set<std::string> senders{h.event.sender};
        int64_t start = h.event.stream_ordering - 1, end = h.event.stream_ordering;
        if (before_limit > 0) {
          for (const auto& e : ev::room_events_backwards(c, h.event.room_id, 0, h.event.stream_ordering - 1, before_limit)) {
            start = e.stream_ordering - 1;
            if (!shown(e)) continue;
            senders.insert(e.sender);
            before.push_back(client_event(e, c, opts));
          }
        }
        if (after_limit > 0) {
          for (const auto& e : ev::room_events_forwards(c, h.event.room_id, h.event.stream_ordering, room_upto, after_limit)) {
            end = e.stream_ordering;
            if (!shown(e)) continue;
            senders.insert(e.sender);
            after.push_back(client_event(e, c, opts));
          }
        }
        ctx = object{{"events_before", std::move(before)},
                     {"events_after", std::move(after)},
                     {"start", "s" + std::to_string(start)},
                     {"end", "s" + std::to_string(end)}};
        if (include_profile) {
          // Each sender's display name and avatar as of the last event returned (as Synapse).
          object profiles;
          for (const auto& s : senders) {
            auto member = ev::state_content_before(c, h.event.room_id, "m.room.member", s, end + 1);
            object p;
            if (auto d = string_of(member, "displayname"); !d.empty()) p["displayname"] = d;
            if (auto a = string_of(member, "avatar_url"); !a.empty()) p["avatar_url"] = a;
            profiles[s] = std::move(p);
          }
          ctx["profile_info"] = std::move(profiles);
        }
      }
      results.push_back(object{{"rank", h.rank}, {"result", h.client}, {"context", std::move(ctx)}});
    }
    room_events["results"] = std::move(results);
    room_events["count"] = storage::search::count_matches(c, *query, keys, upto);
    array hl;
    for (const auto& h : highlights) hl.push_back(boost::json::value(h));
    room_events["highlights"] = std::move(hl);
    if (more) {
      room_events["next_batch"] = batch && batch->group == "room_id" ? make_batch("room_id", batch->group_key)
                                                                      : make_batch("all", "");
    }

    // --- groups ---
    if (group_room || group_sender) {
      object groups;
      auto group_by = [&](auto key_of, bool with_batch) {
        object out;
        for (const auto& h : hits) {
          const std::string key = key_of(h.event);
          auto it = out.find(key);
          if (it == out.end()) {
            object g{{"results", array{}}};
            if (order == "rank") g["order"] = h.rank;
            else g["order"] = h.event.origin_server_ts;
            if (with_batch && more && room_batches) g["next_batch"] = make_batch("room_id", key);
            it = out.emplace(key, std::move(g)).first;
          }
          it->value().as_object()["results"].as_array().push_back(boost::json::value(h.event.event_id));
        }
        return out;
      };
      if (group_room) groups["room_id"] = group_by([](const ev::StoredEvent& e) { return e.room_id; }, true);
      if (group_sender) groups["sender"] = group_by([](const ev::StoredEvent& e) { return e.sender; }, false);
      room_events["groups"] = std::move(groups);
    }

    // --- state of the rooms in the results (as the user may see it: up to leaving) ---
    if (include_state) {
      object state;
      for (const auto& h : hits) {
        if (state.contains(h.event.room_id)) continue;
        array events;
        for (const auto& s : ev::state_at(c, h.event.room_id, upto.at(h.event.room_id))) {
          if (auto e = ev::get_event(c, s.event_id)) events.push_back(client_event(*e, c, opts));
        }
        state[h.event.room_id] = std::move(events);
      }
      room_events["state"] = std::move(state);
    }
    return object{{"search_categories", object{{"room_events", std::move(room_events)}}}};
  });
}

}  // namespace trestle::service
