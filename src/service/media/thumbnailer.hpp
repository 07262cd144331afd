#pragma once
// Image thumbnails with libvips (the only file that includes it). Never a hand-written decoder.
// Linked only into trestle-thumbnailer (src/tools), which the server runs per thumbnail.
#include <optional>
#include <string>

namespace trestle::service::media {

// Starts libvips once per process (safe to call again).
void init_image_library();

// Writes a thumbnail of the image at `source` to `dest` (the format follows dest's extension:
// .jpg or .png). "crop": exactly width x height, cut from the centre; "scale": fits inside
// width x height keeping the aspect ratio. Never enlarges. Returns an error text on failure
// (undecodable image), nullopt on success.
std::optional<std::string> make_thumbnail(const std::string& source, const std::string& dest, int width, int height,
                                          bool crop);

}  // namespace trestle::service::media
