// trestle-thumbnailer SOURCE DEST WIDTH HEIGHT scale|crop
// Makes one thumbnail with libvips. The server runs it as a separate process, so image decoders
// (and their ~100 shared libraries) never live in the server: a hostile image can at worst kill
// this process, and an idle server stays small. Exit 0: written; 2: not a usable image (the
// reason on stderr); 1: bad arguments.
#include "service/media/thumbnailer.hpp"

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s SOURCE DEST WIDTH HEIGHT scale|crop\n", argv[0]);
    return 1;
  }
  int width = 0, height = 0;
  try {
    width = std::stoi(argv[3]);
    height = std::stoi(argv[4]);
  } catch (const std::exception&) {
    std::fprintf(stderr, "width and height must be numbers\n");
    return 1;
  }
  std::string method = argv[5];
  if (width <= 0 || height <= 0 || (method != "scale" && method != "crop")) {
    std::fprintf(stderr, "bad size or method\n");
    return 1;
  }
  try {
    if (auto err = trestle::service::media::make_thumbnail(argv[1], argv[2], width, height, method == "crop")) {
      std::fprintf(stderr, "%s\n", err->c_str());
      return 2;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
  return 0;
}
