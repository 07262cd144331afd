#include "service/media/thumbnailer.hpp"

#include <vips/vips8>

#include <mutex>
#include <stdexcept>

namespace trestle::service::media {

void init_image_library() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (VIPS_INIT("trestle") != 0) throw std::runtime_error("cannot start libvips: " + std::string(vips_error_buffer()));
    // Thumbnails are written once and kept on disk: vips' operation cache would only hold
    // memory (and open files) for images we will not read again.
    vips_cache_set_max(0);
    vips_cache_set_max_mem(0);
    vips_cache_set_max_files(0);
    // Uploads are untrusted input: only the loaders libvips considers safe for it.
    vips_block_untrusted_set(TRUE);
  });
}


std::optional<std::string> make_thumbnail(const std::string& source, const std::string& dest, int width, int height,
                                          bool crop) {
  init_image_library();
  // Only the common web image formats, whatever the uploader claimed the content type was.
  const char* loader = vips_foreign_find_load(source.c_str());
  if (!loader) {
    vips_error_clear();
    return std::string("not a supported image");
  }
  std::string name = loader;  // the loader's class name, e.g. VipsForeignLoadPngFile
  bool allowed = false;
  for (const char* prefix : {"VipsForeignLoadJpeg", "VipsForeignLoadPng", "VipsForeignLoadNsgif", "VipsForeignLoadGif",
                             "VipsForeignLoadWebp"}) {
    if (name.starts_with(prefix)) allowed = true;
  }
  if (!allowed) return "not a supported image format";
  try {
    // Decompression bombs: a small file can declare a huge canvas. The header alone tells, and
    // anything over Synapse's default max_image_pixels (32M) is refused before decoding.
    constexpr int64_t kMaxImagePixels = 32ll * 1024 * 1024;
    vips::VImage header = vips::VImage::new_from_file(source.c_str(), vips::VImage::option()->set("access", VIPS_ACCESS_SEQUENTIAL));
    if (static_cast<int64_t>(header.width()) * header.height() > kMaxImagePixels) {
      return std::string("image is too large to thumbnail");
    }
    auto options = vips::VImage::option()
                       ->set("height", height)
                       ->set("size", VIPS_SIZE_DOWN)
                       // Decode failures are errors, not grey images.
                       ->set("fail_on", VIPS_FAIL_ON_ERROR);
    if (crop) options->set("crop", VIPS_INTERESTING_CENTRE);
    vips::VImage thumb = vips::VImage::thumbnail(source.c_str(), width, options);
    if (dest.ends_with(".jpg")) {
      thumb.jpegsave(dest.c_str(), vips::VImage::option()->set("Q", 80)->set("strip", true));
    } else {
      thumb.pngsave(dest.c_str(), vips::VImage::option()->set("strip", true));
    }
    return std::nullopt;
  } catch (const vips::VError& e) {
    std::string why = e.what();
    vips_error_clear();
    return why.empty() ? std::string("cannot decode image") : why;
  }
}

}  // namespace trestle::service::media
