// Boost.Beast HTTP/1.1 server on C++20 coroutines. Each connection is one coroutine; handler
// work (which may block on the database) hops to a worker pool and back, and a long-poll waits on
// a timer that the notifier cancels, so idle /syncs cost no thread.
#include "http/server.hpp"

#include "core/crypto.hpp"
#include "core/error.hpp"

#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <thread>

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
  asio::io_context ioc;
  asio::thread_pool workers;
  // Handlers' calls out of the server (http::Offload): see run_offload.
  asio::thread_pool outbound{8};
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  asio::signal_set signals{ioc, SIGINT, SIGTERM};

  Impl(const Router& r, service::Notifier& n, ServerLimits l)
      : router(r),
        notifier(n),
        limits(l),
        ioc(),
        workers(static_cast<size_t>(std::max(2, l.worker_threads))) {}

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

  // Waits for the long-poll's keys to change or its deadline; returns the final Response.
  asio::awaitable<Response> wait_long_poll(LongPoll lp) {
    auto ex = co_await asio::this_coro::executor;
    while (true) {
      int64_t remaining = lp.deadline_ms - steady_now_ms();
      bool deadline_reached = remaining <= 0;
      if (!deadline_reached) {
        auto timer = std::make_shared<asio::steady_timer>(ex, std::chrono::milliseconds(remaining));
        auto woken = std::make_shared<std::atomic<bool>>(false);
        uint64_t id = notifier.wait(lp.wake_keys, lp.notifier_position, [timer, woken, ex] {
          woken->store(true);
          asio::post(ex, [timer] { timer->cancel(); });
        });
        boost::system::error_code ec;
        if (!woken->load()) co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
        if (id != 0) notifier.cancel(id);
        deadline_reached = !woken->load();
      }
      auto poll = lp.poll;
      std::function<Reply()> work = [poll, deadline_reached]() -> Reply {
        return guarded([&] { return poll(deadline_reached); });
      };
      Reply next = co_await run_on_workers(std::move(work));
      if (auto* r = std::get_if<Response>(&next)) co_return std::move(*r);
      lp = std::move(std::get<LongPoll>(next));
      if (deadline_reached) co_return Response::error(500, "M_UNKNOWN", "long-poll did not answer");
    }
  }

  // Reads the rest of a message piece by piece: the timeout is per read (an idle client), not for
  // the whole body, so a large upload on a slow link is not cut off.
  template <class Parser>
  asio::awaitable<boost::system::error_code> read_body(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                                                       Parser& parser) {
    boost::system::error_code ec;
    while (!parser.is_done()) {
      stream.expires_after(std::chrono::seconds(60));
      co_await bhttp::async_read_some(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
    }
    stream.expires_never();
    co_return ec;
  }

  template <class Message>
  asio::awaitable<boost::system::error_code> write_message(beast::tcp_stream& stream, Message& msg) {
    boost::system::error_code ec;
    bhttp::serializer<false, typename Message::body_type, typename Message::fields_type> sr{msg};
    while (!sr.is_done()) {
      stream.expires_after(std::chrono::seconds(60));
      co_await bhttp::async_write_some(stream, sr, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
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

  asio::awaitable<void> session(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    while (true) {
      bhttp::request_parser<bhttp::empty_body> header_parser;
      header_parser.body_limit(boost::none);  // checked below, once the route's limit is known
      header_parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
      stream.expires_after(std::chrono::seconds(120));  // idle keep-alive / slow client bound
      boost::system::error_code ec;
      co_await bhttp::async_read_header(stream, buffer, header_parser, asio::redirect_error(asio::use_awaitable, ec));
      stream.expires_never();
      if (ec == bhttp::error::end_of_stream || ec == asio::error::operation_aborted ||
          ec == beast::error::timeout || ec == asio::error::connection_reset || ec == asio::error::eof) {
        break;
      }
      Response response;
      bool keep_alive = false;
      bool body_unread = false;  // answered before reading the body: close, after draining a little
      unsigned version = 11;
      RemoveFile upload_file;
      if (ec == bhttp::error::header_limit) {
        response = Response::error(431, "M_UNKNOWN", "Request headers too large");
      } else if (ec) {
        response = Response::error(400, "M_UNKNOWN", "Malformed HTTP request: " + ec.message());
      } else {
        auto& head = header_parser.get();
        keep_alive = head.keep_alive();
        version = head.version();
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
            if (!ec) ec = co_await read_body(stream, buffer, parser);
            parser.get().body().close();
            if (ec == bhttp::error::body_limit) {
              response = Response::error(413, "M_TOO_LARGE", "Request body too large");
              body_unread = true;
            } else if (ec) {
              break;  // the client went away or stalled mid-body
            } else {
              response = co_await handle(parser.get().base(), std::string(), upload_file.path, stream.socket());
            }
          }
        } else {
          bhttp::request_parser<bhttp::string_body> parser(std::move(header_parser));
          parser.body_limit(limit);
          ec = co_await read_body(stream, buffer, parser);
          if (ec == bhttp::error::body_limit) {
            response = Response::error(413, "M_TOO_LARGE", "Request body too large");
            body_unread = true;
          } else if (ec == beast::error::timeout || ec == asio::error::connection_reset || ec == asio::error::eof ||
                     ec == bhttp::error::partial_message) {
            break;
          } else if (ec) {
            response = Response::error(400, "M_UNKNOWN", "Malformed HTTP request: " + ec.message());
            keep_alive = false;
          } else {
            response = co_await handle(parser.get().base(), std::move(parser.get().body()), std::string(),
                                       stream.socket());
          }
        }
      }
      if (body_unread) keep_alive = false;
      if (!response.file_path.empty()) {
        bhttp::response<bhttp::file_body> res{static_cast<bhttp::status>(response.status), version};
        res.body().open(response.file_path.c_str(), beast::file_mode::scan, ec);
        if (!ec) {
          set_headers(res, response, keep_alive);
          res.prepare_payload();
          ec = co_await write_message(stream, res);
          if (ec || !keep_alive) break;
          continue;
        }
        spdlog::warn("cannot open media file {}: {}", response.file_path, ec.message());
        response = Response::error(404, "M_NOT_FOUND", "Media not found");
      }
      bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(response.status), version};
      set_headers(res, response, keep_alive);
      res.body() = std::move(response.body);
      res.prepare_payload();
      ec = co_await write_message(stream, res);
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

  asio::awaitable<Response> handle(const bhttp::request_header<>& breq, std::string body, std::string body_file,
                                   tcp::socket& socket) {
    if (breq.method() == bhttp::verb::options) co_return Response::json(boost::json::object{});
    auto req = std::make_shared<Request>();
    req->method = std::string(breq.method_string());
    req->body = std::move(body);
    req->body_file = std::move(body_file);
    if (auto it = breq.find(bhttp::field::authorization); it != breq.end()) req->authorization = it->value();
    if (auto it = breq.find(bhttp::field::content_type); it != breq.end()) req->content_type = it->value();
    boost::system::error_code ep_ec;
    auto peer = socket.remote_endpoint(ep_ec);
    if (!ep_ec) req->remote_address = peer.address().to_string();
    std::string target(breq.target());
    const Router* r = &router;
    // Named before co_await: GCC 12 double-destroys lambda temporaries in co_await operands.
    std::function<Reply()> work = [r, req, target]() { return r->dispatch(*req, target); };
    Reply reply = co_await run_on_workers(std::move(work));
    if (auto* off = std::get_if<Offload>(&reply)) co_return co_await run_offload(std::move(*off));
    if (auto* lp = std::get_if<LongPoll>(&reply)) {
      // A long-poll round never calls out; should one return an Offload, it runs in place.
      auto poll = std::move(lp->poll);
      lp->poll = [poll](bool deadline_reached) -> Reply {
        Reply next = poll(deadline_reached);
        if (auto* off = std::get_if<Offload>(&next)) return off->run();
        return next;
      };
      co_return co_await wait_long_poll(std::move(*lp));
    }
    co_return std::move(std::get<Response>(reply));
  }

  asio::awaitable<void> accept_loop(tcp::acceptor& acceptor) {
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
      // A strand per connection: the notifier cancels long-poll timers from other threads.
      asio::co_spawn(asio::make_strand(ioc), session(std::move(socket)), asio::detached);
    }
  }
};

Server::Server(const Router& router, service::Notifier& notifier, ServerLimits limits)
    : impl_(std::make_unique<Impl>(router, notifier, limits)) {}

Server::~Server() {
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
    spdlog::info("listening on {}:{}", ep.address, acceptor->local_endpoint().port());
    impl_->acceptors.push_back(std::move(acceptor));
  }
}

void Server::run() {
  for (auto& acceptor : impl_->acceptors) {
    asio::co_spawn(impl_->ioc, impl_->accept_loop(*acceptor), asio::detached);
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
