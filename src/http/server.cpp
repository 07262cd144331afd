// Boost.Beast HTTP/1.1 server on C++20 coroutines. Each connection is one coroutine; handler
// work (which may block on the database) hops to a worker pool and back, and a long-poll waits on
// a timer that the notifier cancels, so idle /syncs cost no thread.
#include "http/server.hpp"

#include "core/error.hpp"

#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
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

void add_common_headers(bhttp::response<bhttp::string_body>& res) {
  res.set(bhttp::field::server, "Trestle");
  // The spec asks every CS API response to carry permissive CORS headers.
  res.set(bhttp::field::access_control_allow_origin, "*");
  res.set(bhttp::field::access_control_allow_methods, "GET, HEAD, POST, PUT, DELETE, OPTIONS");
  res.set(bhttp::field::access_control_allow_headers,
          "X-Requested-With, Content-Type, Authorization, Date");
}

}  // namespace

struct Server::Impl {
  const Router& router;
  service::Notifier& notifier;
  ServerLimits limits;
  asio::io_context ioc;
  asio::thread_pool workers;
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

  asio::awaitable<void> session(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    while (true) {
      bhttp::request_parser<bhttp::string_body> parser;
      parser.body_limit(limits.max_body_bytes);
      parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
      stream.expires_after(std::chrono::seconds(120));  // idle keep-alive / slow client bound
      boost::system::error_code ec;
      co_await bhttp::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
      stream.expires_never();
      if (ec == bhttp::error::end_of_stream || ec == asio::error::operation_aborted ||
          ec == beast::error::timeout || ec == asio::error::connection_reset || ec == asio::error::eof) {
        break;
      }
      Response response;
      bool keep_alive = false;
      unsigned version = 11;
      if (ec == bhttp::error::body_limit) {
        response = Response::error(413, "M_TOO_LARGE", "Request body too large");
      } else if (ec == bhttp::error::header_limit) {
        response = Response::error(431, "M_UNKNOWN", "Request headers too large");
      } else if (ec) {
        response = Response::error(400, "M_UNKNOWN", "Malformed HTTP request: " + ec.message());
      } else {
        auto& breq = parser.get();
        keep_alive = breq.keep_alive();
        version = breq.version();
        response = co_await handle(breq, stream.socket());
      }
      bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(response.status), version};
      add_common_headers(res);
      res.set(bhttp::field::content_type, response.content_type);
      for (auto& [k, v] : response.headers) res.set(k, v);
      res.body() = std::move(response.body);
      res.keep_alive(keep_alive);
      res.prepare_payload();
      stream.expires_after(std::chrono::seconds(60));
      co_await bhttp::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !keep_alive) break;
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  asio::awaitable<Response> handle(bhttp::request<bhttp::string_body>& breq, tcp::socket& socket) {
    if (breq.method() == bhttp::verb::options) co_return Response::json(boost::json::object{});
    auto req = std::make_shared<Request>();
    req->method = std::string(breq.method_string());
    req->body = std::move(breq.body());
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
    if (auto* lp = std::get_if<LongPoll>(&reply)) co_return co_await wait_long_poll(std::move(*lp));
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
