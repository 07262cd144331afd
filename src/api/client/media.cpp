// The media repository (spec: content-repo.yaml, authed-content-repo.yaml, content_repo.md):
// upload, asynchronous create + upload, download, thumbnails, config, URL previews (disabled).
// Downloads are served by the authenticated /_matrix/client/v1/media endpoints; the legacy
// /_matrix/media/v3 ones only serve media uploaded before the freeze (enable_authenticated_media).
#include "api/handler_util.hpp"
#include "api/routes.hpp"

#include <cstring>
#include <filesystem>
#include <fstream>

namespace trestle::api {

using boost::json::object;
using http::Auth;

namespace {

// Removes a temp file that was not moved into the store (errors, a rejected upload).
struct TempFile {
  std::string path;
  ~TempFile() {
    std::error_code ec;
    if (!path.empty()) std::filesystem::remove(path, ec);
  }
};

// The upload's bytes as a file: streamed there by the transport, or written from the body.
std::string body_as_file(service::Homeserver& hs, const http::Request& req, TempFile& guard) {
  if (!req.body_file.empty()) {
    guard.path = req.body_file;
    return req.body_file;
  }
  if (req.body.size() > hs.media.max_upload_size()) throw MatrixError(413, "M_TOO_LARGE", "Upload is too large");
  guard.path = hs.media.new_temp_path();
  std::ofstream out(guard.path, std::ios::binary);
  out.write(req.body.data(), static_cast<std::streamsize>(req.body.size()));
  out.close();
  if (!out) throw MatrixError::unknown("Cannot store the upload");
  return guard.path;
}

std::optional<std::string> upload_content_type(const http::Request& req) {
  if (req.content_type.empty()) return std::nullopt;
  return req.content_type;
}

std::optional<std::string> upload_file_name(const http::Request& req) {
  auto name = req.query_param("filename");
  if (name && name->empty()) return std::nullopt;
  return name;
}

// Types a browser may render in place without risk to the origin (Synapse's list); everything
// else is an attachment.
bool inline_safe(const std::string& content_type) {
  static const char* types[] = {
      "text/css",   "text/plain",  "text/csv",   "application/json", "application/ld+json", "image/jpeg",
      "image/gif",  "image/png",   "image/apng", "image/webp",       "image/avif",          "video/mp4",
      "video/webm", "video/ogg",   "video/quicktime", "audio/mp4",   "audio/webm",          "audio/aac",
      "audio/mpeg", "audio/ogg",   "audio/wave", "audio/wav",        "audio/x-wav",         "audio/x-pn-wav",
      "audio/flac", "audio/x-flac"};
  std::string t = content_type.substr(0, content_type.find(';'));
  while (!t.empty() && t.back() == ' ') t.pop_back();
  for (auto& ch : t) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  for (const char* s : types) {
    if (t == s) return true;
  }
  return false;
}

// Content-Disposition per RFC 6266: a plain quoted filename when it is printable ASCII, else
// RFC 5987's filename*=utf-8''percent-encoded form.
std::string content_disposition(const std::string& content_type, const std::optional<std::string>& file_name) {
  std::string d = inline_safe(content_type) ? "inline" : "attachment";
  if (!file_name || file_name->empty()) return d;
  bool plain = true;
  for (unsigned char ch : *file_name) {
    if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\') plain = false;
  }
  if (plain) return d + "; filename=\"" + *file_name + "\"";
  static const char* hex = "0123456789ABCDEF";
  std::string enc;
  for (unsigned char ch : *file_name) {
    // attr-char of RFC 5987.
    if (std::isalnum(ch) || std::strchr("!#$&+-.^_`|~", ch)) {
      enc.push_back(static_cast<char>(ch));
    } else {
      enc.push_back('%');
      enc.push_back(hex[ch >> 4]);
      enc.push_back(hex[ch & 15]);
    }
  }
  return d + "; filename*=utf-8''" + enc;
}

http::Reply serve(const service::media::Served& s, const std::optional<std::string>& name_override) {
  http::Response r;
  r.content_type = s.content_type;
  r.file_path = s.path;
  r.headers.emplace_back("Content-Disposition", content_disposition(s.content_type, name_override ? name_override : s.file_name));
  r.headers.emplace_back("Content-Security-Policy",
                         "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; "
                         "style-src 'unsafe-inline'; media-src 'self'; object-src 'self';");
  r.headers.emplace_back("Cross-Origin-Resource-Policy", "cross-origin");
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  r.headers.emplace_back("Cache-Control", "public, max-age=86400, s-maxage=86400");
  return r;
}

int64_t required_query_int(const http::Request& req, const char* key) {
  auto v = query_int(req, key);
  if (!v) throw MatrixError::missing_param(std::string("Missing '") + key + "' parameter");
  return *v;
}

}  // namespace

void add_media_routes(http::Router& r, service::Homeserver& hs) {
  // enable_media_repo: false (a media worker or an external media repository serves media):
  // these paths are not this process's, as in Synapse (404 M_UNRECOGNIZED).
  if (!hs.config.serves_media) return;
  auto upload = [&hs](http::Request& req, const service::Requester& who) -> http::Reply {
    TempFile guard;
    std::string file = body_as_file(hs, req, guard);
    auto uri = hs.media.upload(who.user_id, file, upload_content_type(req), upload_file_name(req));
    return ok(object{{"content_uri", uri}});
  };
  r.add("POST", "/_matrix/media/v3/upload", Auth::required, upload);
  r.add("POST", "/_matrix/media/r0/upload", Auth::required, upload);

  r.add("POST", "/_matrix/media/v1/create", Auth::required, [&hs](http::Request&, const service::Requester& who) {
    auto c = hs.media.create(who.user_id);
    return ok(object{{"content_uri", c.content_uri}, {"unused_expires_at", c.unused_expires_at}});
  });
  r.add("PUT", "/_matrix/media/v3/upload/{}/{}", Auth::required, [&hs](http::Request& req, const service::Requester& who) {
    TempFile guard;
    std::string file = body_as_file(hs, req, guard);
    hs.media.upload_to(who.user_id, req.params[0], req.params[1], file, upload_content_type(req), upload_file_name(req));
    return ok();
  });

  auto config = [&hs](http::Request&, const service::Requester&) {
    return ok(object{{"m.upload.size", hs.media.max_upload_size()}});
  };
  r.add("GET", "/_matrix/client/v1/media/config", Auth::required, config);
  r.add("GET", "/_matrix/media/v3/config", Auth::required, config);
  r.add("GET", "/_matrix/media/r0/config", Auth::required, config);

  auto preview = [](http::Request&, const service::Requester&) -> http::Reply {
    throw MatrixError::forbidden("URL previews are disabled on this server");
  };
  r.add("GET", "/_matrix/client/v1/media/preview_url", Auth::required, preview);
  r.add("GET", "/_matrix/media/v3/preview_url", Auth::required, preview);

  // Downloads and thumbnails: authenticated (legacy = false) and the frozen legacy ones.
  for (bool legacy : {false, true}) {
    std::vector<std::string> prefixes = legacy ? std::vector<std::string>{"/_matrix/media/v3", "/_matrix/media/r0"}
                                               : std::vector<std::string>{"/_matrix/client/v1/media"};
    Auth auth = legacy ? Auth::none : Auth::required;
    for (const auto& p : prefixes) {
      auto download = [&hs, legacy](http::Request& req, const service::Requester&) {
        auto served = hs.media.download(req.params[0], req.params[1], legacy);
        std::optional<std::string> name;
        if (req.params.size() > 2 && !req.params[2].empty()) name = req.params[2];
        return serve(served, name);
      };
      r.add("GET", p + "/download/{}/{}", auth, download);
      r.add("GET", p + "/download/{}/{}/{}", auth, download);
      r.add("GET", p + "/thumbnail/{}/{}", auth, [&hs, legacy](http::Request& req, const service::Requester&) {
        int64_t width = required_query_int(req, "width");
        int64_t height = required_query_int(req, "height");
        auto method = req.query_param("method").value_or("scale");
        return serve(hs.media.thumbnail(req.params[0], req.params[1], width, height, method, legacy), std::nullopt);
      });
    }
  }
}

}  // namespace trestle::api
