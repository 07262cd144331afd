// Boost.Beast HTTP/1.1 server on C++20 coroutines. Each connection is one coroutine; handler
// work (which may block on the database) hops to a worker pool and back, and a long-poll waits on
// a timer that the notifier cancels, so idle /syncs cost no thread.
#include "http/server.hpp"

#include "core/crypto.hpp"
#include "core/error.hpp"
#include "core/logging.hpp"
#include "core/metrics.hpp"
#include "http/access_log.hpp"

#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>
#include <spdlog/spdlog.h>

#include <sys/socket.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <list>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

namespace trestle::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;

namespace {

int64_t steady_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

template <class Message>
void add_common_headers(Message& res) {
  res.set(bhttp::field::server, "Trestle");
  // The spec asks every CS API response to carry permissive CORS headers.
  res.set(bhttp::field::access_control_allow_origin, "*");
  res.set(bhttp::field::access_control_allow_methods, "GET, HEAD, POST, PUT, DELETE, OPTIONS");
  res.set(bhttp::field::access_control_allow_headers,
          "X-Requested-With, Content-Type, Authorization, Date");
}

// Media uploads stream their body to a file instead of memory, with max_upload_size as limit.
bool is_media_upload(bhttp::verb method, std::string_view target) {
  if (method != bhttp::verb::post && method != bhttp::verb::put) return false;
  auto path = target.substr(0, target.find('?'));
  return path.starts_with("/_matrix/media/v3/upload") || path.starts_with("/_matrix/media/r0/upload");
}

// RFC 9112 3.2.2: a server must accept the absolute form ("GET http://host/path?q"); requests are
// routed on the origin form inside it. nullopt: the target is not an http(s) absolute URI.
std::optional<std::string> origin_form(std::string_view target) {
  if (target.starts_with('/')) return std::nullopt;
  auto uri = boost::urls::parse_absolute_uri(target);
  if (!uri || (uri->scheme_id() != boost::urls::scheme::http && uri->scheme_id() != boost::urls::scheme::https)) {
    return std::nullopt;
  }
  std::string out(uri->encoded_path());
  if (out.empty()) out = "/";
  if (uri->has_query()) out += "?" + std::string(uri->encoded_query());
  return out;
}

// The read buffer's bound. Bodies pass through it to the parser; what must sit in it whole is a
// header (header_limit, smaller), one chunk-size line with its extensions, or the trailer: more
// than this is refused (bhttp::error::buffer_overflow) instead of buffered.
size_t read_buffer_limit(const ServerLimits& l) { return std::max<size_t>(64 * 1024, l.max_header_bytes + 8 * 1024); }

// After a buffer_overflow in a chunked body: is the line that did not fit the last chunk (whose
// trailer fields follow it) rather than a chunk-size line with huge extensions?
bool overflowed_in_trailer(const beast::flat_buffer& buffer) {
  auto data = buffer.data();
  std::string_view text(static_cast<const char*>(data.data()), data.size());
  if (text.starts_with("\r\n")) text.remove_prefix(2);
  size_t digits = text.find_first_not_of('0');
  return digits > 0 && digits != std::string_view::npos && !std::isxdigit(static_cast<unsigned char>(text[digits]));
}

// A write into an upload file failed because the disk (or a quota or RLIMIT_FSIZE) is full.
bool storage_full(const boost::system::error_code& ec) {
  return ec == boost::system::errc::no_space_on_device || ec == boost::system::errc::file_too_large ||
         ec.value() == EDQUOT;
}

// Errors of a connection whose client went away or stalled: nothing to answer, close.
bool connection_lost(const boost::system::error_code& ec) {
  return ec == beast::error::timeout || ec == asio::error::connection_reset || ec == asio::error::eof ||
         ec == asio::error::broken_pipe || ec == asio::error::operation_aborted || ec == bhttp::error::end_of_stream ||
         ec == bhttp::error::partial_message;
}

// What a long-polling client did, seen without reading (MSG_PEEK keeps a pipelined request).
enum class Peer { quiet, sent_data, gone };
Peer peek_peer(tcp::socket& socket) {
  char c;
  ssize_t n = ::recv(socket.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) return Peer::sent_data;
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return Peer::quiet;
  return Peer::gone;  // EOF or reset
}

// Request metrics, with Synapse's names (synapse/http/request_metrics.py) where it has one.
struct HttpMetrics {
  metrics::Family<metrics::Counter>& received = metrics::registry().counter(
      "synapse_http_server_requests_received", "Requests received, by method and servlet (route template)",
      {"method", "servlet"});
  metrics::Family<metrics::Counter>& responses = metrics::registry().counter(
      "synapse_http_server_responses", "Responses sent, by method and status code", {"method", "code"});
  metrics::Family<metrics::Histogram>& response_time = metrics::registry().histogram(
      "synapse_http_server_response_time_seconds",
      "Time from a request's header to its answer written, by method, servlet and status code",
      {"method", "servlet", "code"});
  metrics::Gauge& long_polls =
      metrics::registry().gauge("trestle_http_long_polls", "Long-polls (/sync, /events) waiting now").labels({});
  metrics::Counter& wakes =
      metrics::registry().counter("trestle_notifier_wakes", "Long-polls woken by the notifier before their timeout")
          .labels({});
  metrics::Histogram& wake_latency =
      metrics::registry()
          .histogram("trestle_notifier_wake_latency_seconds",
                     "From the notifier waking a long-poll to its answer ready")
          .labels({});
};
HttpMetrics& http_metrics() {
  static HttpMetrics m;
  return m;
}

// Method label values: a client's made-up verbs must not make new series.
std::string method_label(std::string_view m) {
  for (std::string_view known : {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"}) {
    if (m == known) return std::string(m);
  }
  return "OTHER";
}

double seconds_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// The request line of a header Beast could not parse (it parses only a whole header): what the
// access log can still say about a request that timed out or was too large.
void request_line_from(const beast::flat_buffer& buffer, std::string& method, std::string& target) {
  auto data = buffer.data();
  std::string_view text(static_cast<const char*>(data.data()), std::min<size_t>(data.size(), 8192));
  text = text.substr(0, text.find("\r\n"));
  auto sp = text.find(' ');
  if (sp == std::string_view::npos) return;
  method = std::string(text.substr(0, sp));
  text.remove_prefix(sp + 1);
  target = std::string(text.substr(0, text.find(' ')));
}

// What the access log and the metrics need of a request, gathered as the session goes.
struct RequestInfo {
  std::string method;
  std::string target;  // raw; redacted when logged
  std::string user_agent;
  unsigned version = 11;
  bool counted_received = false;  // next to `version`: one 8-byte slot (a parked long-poll keeps one)
  std::string requester;  // from the router (authentication), empty: None
  std::string servlet = "-";  // the route template, "-" before or without routing
  std::chrono::steady_clock::time_point start, ready;
  // On an x_forwarded listener: the client's address from X-Forwarded-For ("": the peer's).
  std::string forwarded_for;
};

// The client's address on an x_forwarded listener: the last entry of X-Forwarded-For, the one our
// proxy appended (what it saw), normalised; "" without a valid one. Synapse takes the first entry,
// which the client itself may have sent (its issue 9471); the last cannot be forged past the proxy.
// The last header line too: nginx appends to the client's line, HAProxy adds a line of its own.
std::string forwarded_client(const bhttp::request_header<>& h) {
  auto [first, end] = h.equal_range("X-Forwarded-For");
  if (first == end) return {};
  std::string_view v;
  for (auto it = first; it != end; ++it) v = it->value();
  if (auto comma = v.rfind(','); comma != std::string_view::npos) v.remove_prefix(comma + 1);
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  if (v.empty() || v.size() > 64) return {};
  boost::system::error_code ec;
  auto address = asio::ip::make_address(v, ec);
  return ec ? std::string() : address.to_string();
}

// handle()'s answer when the client closed its connection while its long-poll waited: nothing
// to write; the session closes the socket.
constexpr int kClientGone = 0;

// Deletes a streamed upload that the handler did not move into the media store.
struct RemoveFile {
  std::string path;
  ~RemoveFile() {
    std::error_code ec;
    if (!path.empty()) std::filesystem::remove(path, ec);
  }
};

}  // namespace

struct Server::Impl {
  const Router& router;
  service::Notifier& notifier;
  ServerLimits limits;

  // Declared before ioc: coroutine frames that ioc destroys at exit release their entries here.
  // Open connections per client address (limits.max_connections_per_address).
  std::mutex connections_mu;
  std::unordered_map<std::string, size_t> connections_by_address;
  // Waiting long-polls per owner, oldest first (limits.max_long_polls_per_user).
  struct PollSlot {
    std::atomic<bool> evicted{false};
    std::shared_ptr<asio::steady_timer> timer;  // the current wait's, under polls_mu
    asio::any_io_executor executor;
  };
  std::mutex polls_mu;
  std::unordered_map<std::string, std::list<std::shared_ptr<PollSlot>>> polls_by_owner;

  asio::io_context ioc;
  asio::thread_pool workers;
  // Handlers' calls out of the server (http::Offload): see run_offload.
  asio::thread_pool outbound{8};
  // Woken long-polls' answers: twice as many threads as cores, so that the syncs one message
  // wakes (every member's) run a few at a time instead of all at once on the workers (less
  // lock contention and fewer context switches: 200 long-polls in the room, CPU per message
  // 0.75x, wake p99 0.6-0.75x; 2 threads measured the same, 4 leave room for one slow sync).
  asio::thread_pool wakes{2 * std::max(1u, std::thread::hardware_concurrency())};
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  std::vector<Endpoint> endpoints;  // acceptors[i] listens for endpoints[i]
  // synapse.access.http.<port>, created at listen() (read-only once serving).
  std::unordered_map<unsigned short, std::shared_ptr<spdlog::logger>> access_loggers;
  asio::signal_set signals{ioc, SIGINT, SIGTERM};

  Impl(const Router& r, service::Notifier& n, ServerLimits l)
      : router(r),
        notifier(n),
        limits(l),
        ioc(),
        workers(static_cast<size_t>(std::max(2, l.worker_threads))) {}

  // One open connection, counted against its address until the session ends.
  struct ConnectionCount {
    Impl* impl = nullptr;
    std::string address;
    ConnectionCount(Impl* i, std::string a) : impl(i), address(std::move(a)) {}
    ConnectionCount(ConnectionCount&& o) noexcept : impl(std::exchange(o.impl, nullptr)), address(std::move(o.address)) {}
    ConnectionCount& operator=(ConnectionCount&&) = delete;
    ~ConnectionCount() {
      if (!impl) return;
      std::lock_guard lock(impl->connections_mu);
      auto it = impl->connections_by_address.find(address);
      if (it != impl->connections_by_address.end() && --it->second == 0) impl->connections_by_address.erase(it);
    }
  };

  // Counts a new connection from `address`; nullopt when the address already has its maximum.
  // A listener behind a proxy (x_forwarded) has no cap: its connections all come from the proxy.
  std::optional<ConnectionCount> admit(const std::string& address, const Endpoint& ep) {
    std::lock_guard lock(connections_mu);
    size_t& open = connections_by_address[address];
    if (!ep.x_forwarded && limits.max_connections_per_address > 0 && open >= limits.max_connections_per_address) {
      if (open == 0) connections_by_address.erase(address);
      return std::nullopt;
    }
    ++open;
    return std::optional<ConnectionCount>(std::in_place, this, address);
  }

  // A long-poll's place in its owner's list; over the cap, the oldest are told to answer now.
  struct PollSeat {
    Impl& impl;
    std::string owner;
    std::shared_ptr<PollSlot> slot = std::make_shared<PollSlot>();

    PollSeat(Impl& i, std::string o, asio::any_io_executor ex) : impl(i), owner(std::move(o)) {
      slot->executor = std::move(ex);
      size_t cap = impl.limits.max_long_polls_per_user;
      if (owner.empty() || cap == 0) return;
      std::lock_guard lock(impl.polls_mu);
      auto& seats = impl.polls_by_owner[owner];
      size_t active = 0;
      for (auto& s : seats) active += s->evicted ? 0 : 1;
      for (auto& s : seats) {
        if (active < cap) break;
        if (s->evicted) continue;
        s->evicted = true;
        --active;
        if (s->timer) asio::post(s->executor, [t = s->timer] { t->cancel(); });
      }
      seats.push_back(slot);
    }
    ~PollSeat() {
      if (owner.empty() || impl.limits.max_long_polls_per_user == 0) return;
      std::lock_guard lock(impl.polls_mu);
      auto it = impl.polls_by_owner.find(owner);
      if (it == impl.polls_by_owner.end()) return;
      it->second.remove(slot);
      if (it->second.empty()) impl.polls_by_owner.erase(it);
    }
    void set_timer(std::shared_ptr<asio::steady_timer> t) {
      std::lock_guard lock(impl.polls_mu);
      slot->timer = std::move(t);
    }
    bool evicted() const { return slot->evicted.load(); }
  };

  // Runs router work on the worker pool and comes back to the connection's executor.
  asio::awaitable<Reply> run_on_workers(std::function<Reply()> fn) {
    auto home = co_await asio::this_coro::executor;
    // bind_executor: without it the coroutine resumes on its own (strand) executor, i.e. back on
    // an I/O thread, and every handler would run there.
    co_await asio::post(asio::bind_executor(workers.get_executor(), asio::use_awaitable));
    Reply reply = fn();
    co_await asio::post(home, asio::use_awaitable);
    co_return reply;
  }

  // What the notifier's callback and an eviction reach of a waiting long-poll: one allocation for
  // the poll's whole life (the timer is re-armed each round; `round` tells a late callback of an
  // earlier round from this one's).
  struct PollWait {
    explicit PollWait(const asio::any_io_executor& ex) : timer(ex) {}
    asio::steady_timer timer;
    std::atomic<uint64_t> round{0};
    std::atomic<uint64_t> woken_round{0};
    std::atomic<int64_t> woken_at{0};  // steady ns when the notifier fired
    // A woken round's poll runs on the wake pool straight from the notifier's callback, not after a
    // hop through this strand first; its answer is handed over on the strand (with woken_round).
    std::function<Reply(bool)> poll;  // the current round's; replaced only after a woken round
    std::unique_ptr<Reply> result;    // strand only
    // The client's socket is watched by a plain completion handler (on the strand) that cancels
    // the timer, not by a parallel group of two spawned coroutines: far less memory per poll.
    std::atomic<bool> watching{false};      // a socket watch is pending
    std::atomic<bool> socket_ready{false};  // the socket became readable (data, EOF or error)
    std::atomic<bool> socket_failed{false}; // the watch itself failed: not watched again
  };

  // Starts watching the client's socket for readability (data, EOF, reset) while a long-poll
  // waits; the handler runs on the poll's strand and ends the timer's wait.
  static void watch_peer(tcp::socket& socket, const std::shared_ptr<PollWait>& state,
                         const asio::any_io_executor& ex) {
    if (state->watching.exchange(true)) return;
    socket.async_wait(tcp::socket::wait_read,
                      asio::bind_executor(ex, [state](const boost::system::error_code& ec) {
                        state->watching.store(false);
                        if (ec == asio::error::operation_aborted) return;
                        if (ec) state->socket_failed.store(true);
                        state->socket_ready.store(true);
                        state->timer.cancel();
                      }));
  }

  // Waits for the long-poll's keys to change or its deadline; sets `out` to the final Response, or
  // to status kClientGone when the client closed its connection meanwhile (its fd is then freed at
  // once, not when the timeout ends). Too many waiting for one owner: the oldest answers early.
  // `lp` by reference and `out` instead of a result: both live in the caller's frame (a copy of
  // `lp` here, a Response result in this promise and its temporary in the caller's frame would be
  // ~350 bytes more per idle poll).
  asio::awaitable<void> wait_long_poll(LongPoll& lp, tcp::socket& socket, Response& out) {
    auto ex = co_await asio::this_coro::executor;
    PollSeat seat(*this, std::move(lp.owner), ex);
    struct Waiting {  // the open long-polls gauge, for as long as this frame lives
      Waiting() { http_metrics().long_polls.inc(); }
      ~Waiting() { http_metrics().long_polls.dec(); }
    } waiting;
    auto state = std::make_shared<PollWait>(ex);
    seat.set_timer(std::shared_ptr<asio::steady_timer>(state, &state->timer));
    struct StopWatching {  // a socket watch still pending when the poll ends is cancelled
      tcp::socket& socket;
      PollWait& state;
      ~StopWatching() {
        boost::system::error_code ignored;
        if (state.watching.load()) socket.cancel(ignored);
      }
    } stop_watching{socket, *state};
    bool watch_socket = true;  // until the client sends a pipelined request (left unread)
    while (true) {
      int64_t remaining = lp.deadline_ms - steady_now_ms();
      bool deadline_reached = remaining <= 0 || seat.evicted();
      // No worker runs the previous round's poll any more: that round was woken, its answer in.
      // A long-poll's answer is never Deferred: widen its variant to a Reply.
      state->poll = [poll = std::move(lp.poll)](bool deadline) -> Reply {
        return std::visit([](auto&& answer) -> Reply { return std::move(answer); }, poll(deadline));
      };
      if (!deadline_reached) {
        const uint64_t round = state->round.load() + 1;
        state->round.store(round);
        state->timer.expires_after(std::chrono::milliseconds(remaining));
        auto woken = [&] { return state->woken_round.load() == round; };
        auto wk = wakes.get_executor();
        uint64_t id = notifier.wait(lp.wake_keys, lp.notifier_position, [state, round, ex, wk] {
          if (state->round.load() != round) return;  // a late call for an earlier round
          state->woken_at.store(std::chrono::steady_clock::now().time_since_epoch().count());
          // The answer is computed on the wake pool now (one thread hop, not two: the strand
          // would only pass it on to a worker), then handed to the strand, which writes it.
          asio::post(wk, [state, round, ex] {
            if (state->round.load() != round) return;  // ended meanwhile (client gone, eviction, deadline)
            Reply reply = guarded([&] { return state->poll(false); });
            // Rounds only advance on this strand: an answer arriving after its round ended (the
            // deadline or the client's going came first) is dropped.
            asio::post(ex, [state, round, reply = std::move(reply)]() mutable {
              if (state->round.load() != round) return;
              state->result = std::make_unique<Reply>(std::move(reply));
              state->woken_round.store(round);
              state->timer.cancel();
            });
          });
        });
        std::vector<std::string>().swap(lp.wake_keys);  // the notifier has its copy: not two while waiting
        // The flags are checked on this strand before each wait; the cancels are posted to it.
        while (!woken() && !seat.evicted()) {
          if (watch_socket && !state->socket_ready.load()) watch_peer(socket, state, ex);
          if (!state->socket_ready.load()) {
            boost::system::error_code timer_ec;
            co_await state->timer.async_wait(asio::redirect_error(asio::use_awaitable, timer_ec));
            if (!state->socket_ready.load()) break;  // deadline, wake-up or eviction
          }
          state->socket_ready.store(false);
          Peer peer = peek_peer(socket);
          if (peer == Peer::gone) {
            if (id != 0) notifier.cancel(id);
            out = client_gone();
            co_return;
          }
          // A pipelined request (left unread), or a socket error: stop watching.
          if (peer == Peer::sent_data || state->socket_failed.load()) watch_socket = false;
        }
        if (id != 0) notifier.cancel(id);
        deadline_reached = !woken();
        // A round that ended without its answer: an answer still being computed is dropped.
        if (deadline_reached) state->round.store(round + 1);
      }
      // The deadline (or an eviction): answer now, on a worker as any handler.
      if (deadline_reached) state->result = co_await answer_at_deadline(state->poll);
      // Locals and co_await results of this frame are kept for the whole wait: hence a pointer here
      // and the helpers (~700 bytes less per idle poll than a Reply and the temporaries in place).
      std::unique_ptr<Reply> next = std::move(state->result);
      if (int64_t at = state->woken_at.exchange(0); at != 0) {
        http_metrics().wakes.inc();
        auto woke = std::chrono::steady_clock::time_point(std::chrono::steady_clock::duration(at));
        http_metrics().wake_latency.observe(seconds_between(woke, std::chrono::steady_clock::now()));
      }
      if (std::holds_alternative<Offload>(*next)) co_await offload_into(*next);
      if (auto* r = std::get_if<Response>(next.get())) {
        out = std::move(*r);
        co_return;
      }
      lp = std::move(std::get<LongPoll>(*next));
      if (deadline_reached) {
        out = Response::error(500, "M_UNKNOWN", "long-poll did not answer");
        co_return;
      }
    }
  }

  static Response client_gone() {
    Response gone;
    gone.status = kClientGone;
    return gone;
  }

  asio::awaitable<std::unique_ptr<Reply>> answer_at_deadline(const std::function<Reply(bool)>& poll) {
    std::function<Reply()> work = [poll]() -> Reply { return guarded([&] { return poll(true); }); };
    co_return std::make_unique<Reply>(co_await run_on_workers(std::move(work)));
  }

  // Replaces the Offload in `reply` with its Response (run as run_offload does).
  asio::awaitable<void> offload_into(Reply& reply) {
    Offload off = std::move(std::get<Offload>(reply));
    reply = co_await run_offload(std::move(off));
  }

  // Reads the rest of a message piece by piece, each read bounded by 60 s of silence and the
  // whole body by limits.body_timeout_ms; an upload gets one more second per upload_min_rate
  // bytes received, so a large file on a slow link arrives but a trickle cannot hold on for ever.
  template <class Parser>
  asio::awaitable<boost::system::error_code> read_body(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                                                       Parser& parser, bool upload) {
    using namespace std::chrono;
    boost::system::error_code ec;
    const auto start = steady_clock::now();
    uint64_t received = 0;
    while (!parser.is_done()) {
      auto deadline = start + milliseconds(limits.body_timeout_ms);
      if (upload) deadline += milliseconds(received * 1000 / std::max<uint64_t>(1, limits.upload_min_rate));
      auto now = steady_clock::now();
      if (now >= deadline) {
        ec = beast::error::timeout;
        break;
      }
      stream.expires_at(std::min(deadline, now + seconds(60)));
      received += co_await bhttp::async_read_some(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
    }
    stream.expires_never();
    co_return ec;
  }

  // The answer to a body that could not be read whole; nullopt: the client went away or stalled.
  static std::optional<Response> body_error(const boost::system::error_code& ec, const beast::flat_buffer& buffer,
                                            bool upload) {
    if (connection_lost(ec)) return std::nullopt;
    if (ec == bhttp::error::body_limit) return Response::error(413, "M_TOO_LARGE", "Request body too large");
    if (ec == bhttp::error::buffer_overflow) {
      if (overflowed_in_trailer(buffer)) return Response::error(431, "M_UNKNOWN", "Request trailer fields too large");
      return Response::error(400, "M_UNKNOWN", "Chunk size line (with its extensions) too long");
    }
    if (ec.category() == bhttp::make_error_code(bhttp::error::body_limit).category() || !upload) {
      return Response::error(400, "M_UNKNOWN", "Malformed HTTP request: " + ec.message());
    }
    // The upload's file could not be written.
    spdlog::error("cannot write upload file: {}", ec.message());
    if (storage_full(ec)) return Response::error(500, "M_UNKNOWN", "Not enough space on the server to store the upload");
    return Response::error(500, "M_UNKNOWN", "Cannot store the upload");
  }

  template <class Message>
  asio::awaitable<boost::system::error_code> write_message(beast::tcp_stream& stream, Message& msg,
                                                           bool header_only = false) {
    boost::system::error_code ec;
    bhttp::serializer<false, typename Message::body_type, typename Message::fields_type> sr{msg};
    if (header_only) {  // HEAD: the GET's headers, Content-Length included, and no body
      stream.expires_after(std::chrono::seconds(60));
      co_await bhttp::async_write_header(stream, sr, asio::redirect_error(asio::use_awaitable, ec));
    }
    while (!ec && !sr.is_done() && !header_only) {
      stream.expires_after(std::chrono::seconds(60));
      co_await bhttp::async_write_some(stream, sr, asio::redirect_error(asio::use_awaitable, ec));
    }
    stream.expires_never();
    co_return ec;
  }

  template <class Message>
  static void set_headers(Message& res, const Response& response, bool keep_alive) {
    add_common_headers(res);
    res.set(bhttp::field::content_type, response.content_type);
    for (auto& [k, v] : response.headers) res.set(k, v);
    res.keep_alive(keep_alive);
  }

  // Writes the answer (a file streamed from disk, or the body); only its headers for HEAD.
  asio::awaitable<boost::system::error_code> write_response(beast::tcp_stream& stream, Response& response,
                                                            unsigned version, bool keep_alive, bool head_only,
                                                            uint64_t* body_bytes = nullptr) {
    boost::system::error_code ec;
    if (!response.file_path.empty()) {
      bhttp::response<bhttp::file_body> res{static_cast<bhttp::status>(response.status), version};
      res.body().open(response.file_path.c_str(), beast::file_mode::scan, ec);
      if (!ec) {
        set_headers(res, response, keep_alive);
        res.prepare_payload();
        if (body_bytes && !head_only) *body_bytes = res.body().size();
        co_return co_await write_message(stream, res, head_only);
      }
      spdlog::warn("cannot open media file {}: {}", response.file_path, ec.message());
      response = Response::error(404, "M_NOT_FOUND", "Media not found");
    }
    bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(response.status), version};
    set_headers(res, response, keep_alive);
    res.body() = std::move(response.body);
    res.prepare_payload();
    if (body_bytes && !head_only) *body_bytes = res.body().size();
    co_return co_await write_message(stream, res, head_only);
  }

  // A request is over: its metrics and its access log line (Synapse's _finished_processing).
  // `complete`: the answer was written whole; otherwise the code gets Synapse's '!'.
  void finish(const Endpoint& ep, const std::string& client_ip, RequestInfo& info, int status, bool complete,
              uint64_t body_bytes) {
    if (ep.kind == Endpoint::Kind::metrics) return;
    auto now = std::chrono::steady_clock::now();
    if (info.ready == std::chrono::steady_clock::time_point{}) info.ready = now;
    std::string method = method_label(info.method);
    std::string code = std::to_string(status);
    auto& m = http_metrics();
    if (!info.counted_received) m.received.labels({method, info.servlet}).inc();
    m.responses.labels({method, code}).inc();
    m.response_time.labels({method, info.servlet, code}).observe(seconds_between(info.start, now));
    auto it = access_loggers.find(ep.port);
    if (it == access_loggers.end()) return;
    // OPTIONS (CORS preflights) only at debug, as Synapse.
    auto level = info.method == "OPTIONS" ? spdlog::level::debug : spdlog::level::info;
    if (!it->second->should_log(level)) return;
    AccessRecord r;
    r.client_ip = info.forwarded_for.empty() ? client_ip : info.forwarded_for;
    r.port = ep.port;
    if (!info.requester.empty()) r.requester = info.requester;
    r.processing_seconds = seconds_between(info.start, info.ready);
    r.send_seconds = seconds_between(info.ready, now);
    r.sent_bytes = body_bytes;
    r.code = complete ? code : code + "!";
    r.method = info.method.empty() ? "-" : info.method;
    r.target = info.target.empty() ? "-" : redact_target(info.target);
    r.protocol = info.version == 10 ? "HTTP/1.0" : "HTTP/1.1";
    r.user_agent = info.user_agent;
    it->second->log(level, "{}", format_access_line(r));
  }

  static std::string peer_address(const tcp::socket& socket) {
    boost::system::error_code ec;
    auto peer = socket.remote_endpoint(ec);
    return ec ? std::string() : peer.address().to_string();
  }

  // A request whose handler returned a LongPoll, handed from serve() to the session while it waits;
  // `response` is then its answer, for serve() to write.
  struct Parked {
    LongPoll lp;
    RequestInfo info;
    bool keep_alive = false;
    bool head_only = false;
    unsigned version = 11;
    Response response;
  };

  asio::awaitable<void> session(tcp::socket socket, ConnectionCount counted, const Endpoint& ep) {
    (void)counted;  // released when the session ends
    std::string client_ip = peer_address(socket);  // not inline: its temporaries would stay in this frame
    beast::flat_buffer buffer(read_buffer_limit(limits));
    std::optional<Parked> parked;
    // A long-poll waits here, not inside serve(): serve's frame (its parsers, the stream and its
    // timers) and handle's are gone meanwhile, a few KiB less per idle long-poll.
    while (co_await serve(socket, buffer, client_ip, ep, parked)) {
      co_await wait_long_poll(parked->lp, socket, parked->response);
    }
  }

  // Reads and answers the connection's requests until it closes (false), or until a handler returns
  // a LongPoll (true: `parked` holds it, `socket` the connection); called again with the long-poll's
  // answer in `parked`, it writes it and goes on.
  asio::awaitable<bool> serve(tcp::socket& socket, beast::flat_buffer& buffer, const std::string& client_ip,
                              const Endpoint& ep, std::optional<Parked>& parked) {
    beast::tcp_stream stream(std::move(socket));
    while (true) {
      boost::system::error_code ec;
      RequestInfo info;
      Response response;
      bool keep_alive = false;
      bool body_unread = false;  // answered before reading the body: close, after draining a little
      bool head_only = false;    // HEAD: headers without the body
      unsigned version = 11;
      RemoveFile upload_file;
      if (parked) {  // a long-poll's answer
        info = std::move(parked->info);
        response = std::move(parked->response);
        keep_alive = parked->keep_alive;
        head_only = parked->head_only;
        version = parked->version;
        parked.reset();
      } else {
        if (buffer.size() == 0) {
          // Idle keep-alive: the next request's first byte; its header then has header_timeout.
          stream.expires_after(std::chrono::milliseconds(limits.idle_timeout_ms));
          size_t n =
              co_await stream.async_read_some(buffer.prepare(4096), asio::redirect_error(asio::use_awaitable, ec));
          buffer.commit(n);
          if (ec) break;
        }
        bhttp::request_parser<bhttp::empty_body> header_parser;
        header_parser.body_limit(boost::none);  // checked below, once the route's limit is known
        header_parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
        info.start = std::chrono::steady_clock::now();
        stream.expires_after(std::chrono::milliseconds(limits.header_timeout_ms));
        co_await bhttp::async_read_header(stream, buffer, header_parser, asio::redirect_error(asio::use_awaitable, ec));
        stream.expires_never();
        {
          const auto& h = header_parser.get();
          info.method = std::string(h.method_string());
          info.target = std::string(h.target());
          if (auto it = h.find(bhttp::field::user_agent); it != h.end()) info.user_agent = it->value();
          if (ep.x_forwarded) info.forwarded_for = forwarded_client(h);
          if (ec && info.method.empty()) request_line_from(buffer, info.method, info.target);
        }
        if (connection_lost(ec) && ec != bhttp::error::partial_message) {
          if (ec == beast::error::timeout) finish(ep, client_ip, info, 408, false, 0);
          break;
        }
        if (ec == bhttp::error::header_limit) {
          response = Response::error(431, "M_UNKNOWN", "Request headers too large");
        } else if (ec) {
          response = Response::error(400, "M_UNKNOWN", "Malformed HTTP request: " + ec.message());
        } else {
          auto& head = header_parser.get();
          if (auto origin = origin_form(head.target())) head.target(*origin);
          keep_alive = head.keep_alive();
          version = head.version();
          info.version = version;
          head_only = head.method() == bhttp::verb::head;
          bool upload = !limits.upload_dir.empty() && is_media_upload(head.method(), head.target());
          uint64_t limit = upload ? limits.max_upload_bytes : limits.max_body_bytes;
          auto length = header_parser.content_length();
          if (length && *length > limit) {
            // 413 before the body is read.
            response = Response::error(413, "M_TOO_LARGE", "Request body too large");
            body_unread = true;
          } else if (upload && (response = co_await preauthenticate(head), response.status >= 400)) {
            body_unread = true;  // refused before a byte of the upload is stored
          } else if (upload) {
            bhttp::request_parser<bhttp::file_body> parser(std::move(header_parser));
            parser.body_limit(limit);
            upload_file.path = limits.upload_dir + "/" + core::random_string(24);
            parser.get().body().open(upload_file.path.c_str(), beast::file_mode::write, ec);
            if (ec) {
              spdlog::error("cannot create upload file {}: {}", upload_file.path, ec.message());
              response = Response::error(500, "M_UNKNOWN", "Cannot store the upload");
              body_unread = true;
            } else {
              if (beast::iequals(parser.get()[bhttp::field::expect], "100-continue")) {
                bhttp::response<bhttp::empty_body> cont{bhttp::status::continue_, version};
                co_await bhttp::async_write(stream, cont, asio::redirect_error(asio::use_awaitable, ec));
              }
              if (!ec) ec = co_await read_body(stream, buffer, parser, true);
              parser.get().body().close();
              if (ec) {
                auto refused = body_error(ec, buffer, true);
                if (!refused) {
                  finish(ep, client_ip, info, ec == beast::error::timeout ? 408 : 499, false, 0);
                  break;
                }
                response = std::move(*refused);
                body_unread = true;
              } else {
                response = co_await handle(parser.get().base(), std::string(), upload_file.path, stream.socket(),
                                           ep, client_ip, info);
              }
            }
          } else {
            bhttp::request_parser<bhttp::string_body> parser(std::move(header_parser));
            parser.body_limit(limit);
            ec = co_await read_body(stream, buffer, parser, false);
            if (ec) {
              auto refused = body_error(ec, buffer, false);
              if (!refused) {
                finish(ep, client_ip, info, ec == beast::error::timeout ? 408 : 499, false, 0);
                break;
              }
              response = std::move(*refused);
              body_unread = true;
            } else {
              std::optional<LongPoll> lp;
              response = co_await handle(parser.get().base(), std::move(parser.get().body()), std::string(),
                                         stream.socket(), ep, client_ip, info, &buffer, &lp);
              if (lp) {
                parked.emplace(Parked{std::move(*lp), std::move(info), keep_alive, head_only, version, {}});
                socket = stream.release_socket();
                co_return true;
              }
            }
          }
        }
      }  // not a long-poll's answer
      if (response.status == kClientGone) {
        finish(ep, client_ip, info, 499, false, 0);
        break;
      }
      if (body_unread) keep_alive = false;
      info.ready = std::chrono::steady_clock::now();
      int status = response.status;
      uint64_t body_bytes = 0;
      ec = co_await write_response(stream, response, version, keep_alive, head_only, &body_bytes);
      finish(ep, client_ip, info, status, !ec, ec ? 0 : body_bytes);
      if (!ec && body_unread) {
        // Read (and drop) what the client is still sending for a while, so that closing does not
        // reset the connection before it has read the answer.
        boost::system::error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        std::vector<char> sink(64 * 1024);
        while (std::chrono::steady_clock::now() < deadline) {
          stream.expires_at(deadline);
          co_await stream.async_read_some(asio::buffer(sink), asio::redirect_error(asio::use_awaitable, ignored));
          if (ignored) break;
        }
        break;
      }
      if (ec || !keep_alive) break;
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    co_return false;
  }

  // A connection over its address's cap: a 429 and close, without reading the request.
  asio::awaitable<void> refuse(tcp::socket socket, const Endpoint& ep, std::string client_ip) {
    RequestInfo info;  // nothing of the request is read: logged as "- -"
    info.start = std::chrono::steady_clock::now();
    beast::tcp_stream stream(std::move(socket));
    Response response = Response::error(429, "M_LIMIT_EXCEEDED", "Too many connections from your address",
                                        {{"retry_after_ms", 1000}});
    bhttp::response<bhttp::string_body> res{bhttp::status::too_many_requests, 11};
    set_headers(res, response, false);
    res.body() = std::move(response.body);
    res.prepare_payload();
    boost::system::error_code ec;
    stream.expires_after(std::chrono::seconds(1));
    info.ready = std::chrono::steady_clock::now();
    size_t body_bytes = res.body().size();
    co_await bhttp::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    finish(ep, client_ip, info, 429, !ec, ec ? 0 : body_bytes);
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  // The upload's credentials, checked on a worker (it may read the database). Status 200 = allowed.
  asio::awaitable<Response> preauthenticate(const bhttp::request_header<>& head) {
    std::string authorization;
    if (auto it = head.find(bhttp::field::authorization); it != head.end()) authorization = it->value();
    std::string target(head.target());
    const Router* r = &router;
    std::function<Reply()> work = [r, authorization, target]() -> Reply {
      auto denied = r->preauthenticate(authorization, target);
      return denied ? *denied : Response{};
    };
    Reply reply = co_await run_on_workers(std::move(work));
    co_return std::get<Response>(std::move(reply));
  }

  // An Offload runs on the outbound pool: a handler waiting on an appservice (seconds, or its
  // whole timeout when the appservice hangs) must never hold one of the workers every other
  // request needs. The pool is small on purpose; AppServiceQueries caps how many of its threads
  // one appservice can hold (in-flight limit, circuit breaker), so a hung bridge delays only
  // calls to itself.
  asio::awaitable<Response> run_offload(Offload off) {
    auto home = co_await asio::this_coro::executor;
    co_await asio::post(asio::bind_executor(outbound.get_executor(), asio::use_awaitable));
    auto run = std::move(off.run);
    Reply reply = guarded([&]() -> Reply { return run(); });
    co_await asio::post(home, asio::use_awaitable);
    co_return std::get<Response>(std::move(reply));
  }

  // A Deferred answer: the connection waits without a thread until the work calls `complete`
  // (from its own thread); the answer is handed back on the connection's executor.
  asio::awaitable<Response> run_deferred(Deferred deferred) {
    auto home = co_await asio::this_coro::executor;
    auto initiate = [&deferred, home](auto handler) {
      auto shared = std::make_shared<decltype(handler)>(std::move(handler));
      auto start = std::move(deferred.start);
      start([shared, home](Response answer) {
        asio::post(home, [shared, answer = std::move(answer)]() mutable { (*shared)(std::move(answer)); });
      });
    };
    Response answer = co_await asio::async_initiate<const asio::use_awaitable_t<>, void(Response)>(
        std::move(initiate), asio::use_awaitable);
    co_return answer;
  }

  // /metrics on a metrics listener, /_synapse/metrics where the `metrics` resource is served.
  static std::optional<Response> metrics_answer(const bhttp::request_header<>& breq, const Endpoint& ep) {
    std::string_view path = breq.target();
    path = path.substr(0, path.find('?'));
    bool wanted = path == "/_synapse/metrics" ? (ep.kind == Endpoint::Kind::metrics || ep.serve_metrics)
                                              : (path == "/metrics" && ep.kind == Endpoint::Kind::metrics);
    if (!wanted) {
      if (ep.kind == Endpoint::Kind::metrics) return Response::error(404, "M_UNRECOGNIZED", "Unrecognized request");
      return std::nullopt;
    }
    if (breq.method() != bhttp::verb::get && breq.method() != bhttp::verb::head) {
      return Response::error(405, "M_UNRECOGNIZED", "Method not allowed for this endpoint");
    }
    Response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metrics::registry().expose();
    return r;
  }

  // `client_ip`: the session's peer, read once per connection (not two syscalls per request).
  asio::awaitable<Response> handle(bhttp::request_header<>& breq, std::string body, std::string body_file,
                                   tcp::socket& socket, const Endpoint& ep, const std::string& client_ip,
                                   RequestInfo& info, beast::flat_buffer* read_buffer = nullptr,
                                   std::optional<LongPoll>* park = nullptr) {
    if (auto m = metrics_answer(breq, ep)) {
      info.servlet = "/_synapse/metrics";
      co_return std::move(*m);
    }
    if (breq.method() == bhttp::verb::options) co_return Response::json(boost::json::object{});
    auto req = std::make_shared<Request>();
    req->method = std::string(breq.method_string());
    req->body = std::move(body);
    req->body_file = std::move(body_file);
    if (auto it = breq.find(bhttp::field::authorization); it != breq.end()) req->authorization = it->value();
    if (auto it = breq.find(bhttp::field::content_type); it != breq.end()) req->content_type = it->value();
    req->remote_address = info.forwarded_for.empty() ? client_ip : info.forwarded_for;
    req->local_port = ep.port;  // the listener's bound port
    if (auto it = breq.find(bhttp::field::user_agent); it != breq.end()) req->user_agent = it->value();
    const Router* r = &router;
    // Named before co_await: GCC 12 double-destroys lambda temporaries in co_await operands.
    const Router::Resolved route = r->resolve(*req, std::string(breq.target()));
    Reply reply;
    std::function<Reply()> work = [r, req, route]() { return r->run(*req, route); };
    if (route.runs == Runs::on_io_thread) {
      reply = work();  // no hand-off: the route never blocks for long (router.hpp, Runs)
    } else {
      reply = co_await run_on_workers(std::move(work));
    }
    // Read after the hop back: the router set them on the worker before it.
    info.requester = req->log_requester;
    if (!req->route.empty()) info.servlet = req->route;
    http_metrics().received.labels({method_label(info.method), info.servlet}).inc();
    info.counted_received = true;
    if (auto* off = std::get_if<Offload>(&reply)) co_return co_await run_offload(std::move(*off));
    if (auto* deferred = std::get_if<Deferred>(&reply)) co_return co_await run_deferred(std::move(*deferred));
    if (auto* lp = std::get_if<LongPoll>(&reply)) {
      // Nothing of the request is needed while it waits: free it, its parsed header fields and
      // the emptied read buffer (the session keeps what the answer and the access log need).
      req.reset();
      work = nullptr;
      breq = bhttp::request_header<>{};
      if (read_buffer && read_buffer->size() == 0) read_buffer->shrink_to_fit();
      if (park) {  // the caller waits, once this frame and its own are gone
        *park = std::move(*lp);
        co_return Response{};
      }
      Response answer;
      co_await wait_long_poll(*lp, socket, answer);
      co_return answer;
    }
    co_return std::move(std::get<Response>(reply));
  }

  asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, const Endpoint& ep) {
    while (true) {
      boost::system::error_code ec;
      tcp::socket socket = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec == asio::error::operation_aborted) co_return;
      if (ec) {
        // Out of file descriptors (or similar): back off instead of spinning on the error.
        spdlog::warn("accept failed: {}; pausing accepts for 100 ms", ec.message());
        asio::steady_timer pause(co_await asio::this_coro::executor, std::chrono::milliseconds(100));
        co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      socket.set_option(tcp::no_delay(true), ec);
      std::string address;
      if (auto peer = socket.remote_endpoint(ec); !ec) address = peer.address().to_string();
      auto counted = admit(address, ep);
      // A strand per connection: the notifier cancels long-poll timers from other threads.
      if (!counted) {
        spdlog::debug("refusing a connection from {}: it has {} open", address, limits.max_connections_per_address);
        asio::co_spawn(asio::make_strand(ioc), refuse(std::move(socket), ep, address), asio::detached);
        continue;
      }
      asio::co_spawn(asio::make_strand(ioc), session(std::move(socket), std::move(*counted), ep), asio::detached);
    }
  }
};

Server::Server(const Router& router, service::Notifier& notifier, ServerLimits limits)
    : impl_(std::make_unique<Impl>(router, notifier, limits)) {}

Server::~Server() {
  impl_->wakes.join();
  impl_->workers.join();
}

void Server::listen(const std::vector<Endpoint>& endpoints) {
  for (const auto& ep : endpoints) {
    boost::system::error_code ec;
    auto address = asio::ip::make_address(ep.address, ec);
    if (ec) throw std::runtime_error("invalid bind address '" + ep.address + "'");
    auto acceptor = std::make_unique<tcp::acceptor>(impl_->ioc);
    tcp::endpoint endpoint(address, ep.port);
    acceptor->open(endpoint.protocol(), ec);
    if (!ec) acceptor->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec && address.is_v6()) acceptor->set_option(asio::ip::v6_only(true), ec);
    if (!ec) acceptor->bind(endpoint, ec);
    if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      throw std::runtime_error("cannot listen on " + ep.address + ":" + std::to_string(ep.port) + ": " +
                               ec.message());
    }
    unsigned short port = acceptor->local_endpoint().port();
    spdlog::info("listening on {}:{}{}", ep.address, port, ep.kind == Endpoint::Kind::metrics ? " (metrics)" : "");
    impl_->acceptors.push_back(std::move(acceptor));
    Endpoint bound = ep;
    bound.port = port;  // the bound one when the config said 0
    impl_->endpoints.push_back(bound);
    // Synapse's logger name: synapse.access.http.<port>.
    if (ep.kind == Endpoint::Kind::client && !impl_->access_loggers.count(port)) {
      impl_->access_loggers[port] = core::named_logger("synapse.access.http." + std::to_string(port));
    }
  }
}

void Server::run() {
  for (size_t i = 0; i < impl_->acceptors.size(); ++i) {
    asio::co_spawn(impl_->ioc, impl_->accept_loop(*impl_->acceptors[i], impl_->endpoints[i]), asio::detached);
  }
  impl_->signals.async_wait([this](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    spdlog::info("received signal {}, shutting down", sig);
    stop();
  });
  int n = impl_->limits.io_threads > 0 ? impl_->limits.io_threads
                                       : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::thread> threads;
  for (int i = 1; i < n; ++i) threads.emplace_back([this] { impl_->ioc.run(); });
  impl_->ioc.run();
  for (auto& t : threads) t.join();
  // Long-polls still waiting hold timers and strand executors of this io_context in their
  // notifier callbacks: drop them now, before the io_context goes (the notifier outlives it).
  impl_->notifier.drop_waiters();
}

void Server::stop() {
  asio::post(impl_->ioc, [this] {
    for (auto& a : impl_->acceptors) {
      boost::system::error_code ec;
      a->close(ec);
    }
    impl_->ioc.stop();
  });
}

}  // namespace trestle::http
