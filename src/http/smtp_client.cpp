#include "http/smtp_client.hpp"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace trestle::http {

namespace {

using Clock = std::chrono::steady_clock;

class Conn {
public:
  explicit Conn(Clock::time_point deadline) : deadline_(deadline) {}
  ~Conn() {
    if (fd_ >= 0) ::close(fd_);
  }

  std::string connect(const std::string& host, int port) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res); rc != 0) {
      return std::string("cannot resolve ") + host + ": " + gai_strerror(rc);
    }
    std::string err = "no address";
    for (addrinfo* a = res; a; a = a->ai_next) {
      int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
      if (fd < 0) continue;
      if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0 || (errno == EINPROGRESS && wait(fd, POLLOUT))) {
        int so = 0;
        socklen_t len = sizeof so;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &len);
        if (so == 0) {
          fd_ = fd;
          err.clear();
          break;
        }
        err = std::strerror(so);
      } else {
        err = timed_out() ? "timeout" : std::strerror(errno);
      }
      ::close(fd);
    }
    ::freeaddrinfo(res);
    return err.empty() ? "" : "cannot connect to " + host + ":" + std::to_string(port) + ": " + err;
  }

  // Reads one (possibly multi-line) reply; returns its code, 0 on failure.
  int reply() {
    for (;;) {
      auto eol = buf_.find("\r\n");
      if (eol == std::string::npos) eol = buf_.find('\n');
      if (eol != std::string::npos) {
        std::string line = buf_.substr(0, eol);
        buf_.erase(0, eol + (buf_[eol] == '\r' ? 2 : 1));
        last_ = line;
        if (line.size() < 3) return 0;
        if (line.size() > 3 && line[3] == '-') continue;  // more lines follow
        try {
          return std::stoi(line.substr(0, 3));
        } catch (...) {
          return 0;
        }
      }
      if (buf_.size() > 64 * 1024 || !wait(fd_, POLLIN)) return 0;
      char tmp[4096];
      ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        return 0;
      }
      buf_.append(tmp, static_cast<size_t>(n));
    }
  }

  bool send(const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n < 0) {
        if ((errno == EAGAIN || errno == EINTR) && wait(fd_, POLLOUT)) continue;
        return false;
      }
      off += static_cast<size_t>(n);
    }
    return true;
  }

  // Sends `command` and expects a reply with code `want` (first digit match when want < 10).
  std::string step(const std::string& command, int want) {
    if (!command.empty() && !send(command + "\r\n")) return "send failed";
    int code = reply();
    last_code_ = code;
    bool ok = want < 10 ? code / 100 == want : code == want;
    if (ok) return "";
    if (code == 0) return timed_out() ? "timeout" : "connection lost";
    return "SMTP server answered '" + last_ + "'";
  }

  bool timed_out() const { return Clock::now() >= deadline_; }
  int last_code() const { return last_code_; }

private:
  bool wait(int fd, short events) {
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now()).count();
      if (left <= 0) return false;
      pollfd p{fd, events, 0};
      int rc = ::poll(&p, 1, static_cast<int>(left));
      if (rc > 0) return true;
      if (rc < 0 && errno == EINTR) continue;
      return false;
    }
  }

  Clock::time_point deadline_;
  int fd_ = -1;
  std::string buf_;
  std::string last_;
  int last_code_ = 0;
};

// CRLF line ends and dot-stuffing (RFC 5321 4.5.2), ending with the lone ".".
std::string data_block(const std::string& message) {
  std::string out;
  out.reserve(message.size() + 64);
  size_t start = 0;
  while (start <= message.size()) {
    size_t eol = message.find('\n', start);
    std::string line = message.substr(start, eol == std::string::npos ? std::string::npos : eol - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (eol == std::string::npos && line.empty()) break;
    if (!line.empty() && line[0] == '.') out += '.';
    out += line + "\r\n";
    if (eol == std::string::npos) break;
    start = eol + 1;
  }
  return out + ".";
}

bool bad_address(const std::string& a) { return a.find_first_of("\r\n<>") != std::string::npos; }

}  // namespace

std::string smtp_send(const std::string& host, int port, const std::string& from, const std::string& to,
                      const std::string& message, int timeout_ms) {
  if (bad_address(from) || bad_address(to)) return "invalid address";
  Conn c(Clock::now() + std::chrono::milliseconds(timeout_ms));
  if (auto e = c.connect(host, port); !e.empty()) return e;
  if (auto e = c.step("", 220); !e.empty()) return e;
  // EHLO, or HELO for a server that knows only RFC 821 (SyTest's test mail server).
  if (auto e = c.step("EHLO trestle", 250); !e.empty()) {
    if (c.last_code() / 100 != 5) return e;
    if (auto e2 = c.step("HELO trestle", 250); !e2.empty()) return e2;
  }
  for (auto [cmd, want] : {std::pair<std::string, int>{"MAIL FROM:<" + from + ">", 2}, {"RCPT TO:<" + to + ">", 2},
                           {"DATA", 354}, {data_block(message), 2}}) {
    if (auto e = c.step(cmd, want); !e.empty()) return e;
  }
  c.step("QUIT", 2);  // the message is accepted already; a sloppy goodbye does not matter
  return "";
}

}  // namespace trestle::http
