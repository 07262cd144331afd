#pragma once
// Running a helper program with a deadline. Used to keep risky or heavy libraries (image
// decoders) out of the server process: a crash or a hang there cannot take the server with it.
#include <string>
#include <vector>

namespace trestle::core {

struct ProcessResult {
  int exit_code = -1;       // -1 when it did not exit normally (signal, timeout, spawn failure)
  bool timed_out = false;
  std::string error_output;  // what it wrote to stderr (bounded)
};

// Runs `path` with `args` (argv[1..]) and no stdin, waits at most `timeout_ms` (then kills it).
ProcessResult run_process(const std::string& path, const std::vector<std::string>& args, int timeout_ms);

// The directory of the running executable (helper programs are installed beside it).
std::string executable_dir();

}  // namespace trestle::core
