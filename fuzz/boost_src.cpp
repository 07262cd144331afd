// The fuzz build compiles Boost.JSON and Boost.URL from source, instrumented, so coverage guides
// the fuzzer through their parsers too (the normal build links the prebuilt libraries).
#include <boost/json/src.hpp>
#include <boost/url/src.hpp>
