#include "core/metrics.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

namespace trestle::metrics {

namespace {

std::atomic<uint64_t> next_family_id{1};

// Per-thread cache of children: key = family id + label values, so a family destroyed (tests)
// and another created at the same address never share entries.
std::string cache_key(uint64_t family_id, const Labels& values) {
  std::string key(reinterpret_cast<const char*>(&family_id), sizeof family_id);
  for (const auto& v : values) {
    key += v;
    key.push_back('\0');
  }
  return key;
}

void append_help(std::string& out, const std::string& help) {
  for (char c : help) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out.push_back(c);
  }
}

void append_labels(std::string& out, const std::vector<std::string>& names, const Labels& values,
                   const char* extra_name = nullptr, const std::string& extra_value = {}) {
  if (names.empty() && !extra_name) return;
  out.push_back('{');
  bool first = true;
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    if (!first) out.push_back(',');
    first = false;
    out += names[i];
    out += "=\"";
    out += escape_label_value(values[i]);
    out.push_back('"');
  }
  if (extra_name) {
    if (!first) out.push_back(',');
    out += extra_name;
    out += "=\"";
    out += extra_value;
    out.push_back('"');
  }
  out.push_back('}');
}

void append_sample(std::string& out, const std::string& name, const std::vector<std::string>& names,
                   const Labels& values, double v, const char* extra_name = nullptr,
                   const std::string& extra_value = {}) {
  out += name;
  append_labels(out, names, values, extra_name, extra_value);
  out.push_back(' ');
  out += format_value(v);
  out.push_back('\n');
}

const char* type_name(Type t) {
  switch (t) {
    case Type::counter: return "counter";
    case Type::gauge: return "gauge";
    case Type::histogram: return "histogram";
  }
  return "untyped";
}

}  // namespace

std::string escape_label_value(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out.push_back(c);
  }
  return out;
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    char buf[32];
    auto [p, ec] = std::to_chars(buf, buf + sizeof buf, static_cast<int64_t>(v));
    (void)ec;
    return std::string(buf, p) + ".0";
  }
  char buf[64];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;
  return std::string(buf, p);
}

const std::vector<double>& default_buckets() {
  static const std::vector<double> b = {0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5,
                                        0.75,  1.0,  2.5,   5.0,  7.5,   10.0};
  return b;
}

Histogram::Histogram(const std::vector<double>* bounds)
    : bounds_(bounds), buckets_(new std::atomic<uint64_t>[bounds->size() + 1]) {
  for (size_t i = 0; i <= bounds_->size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void Histogram::observe(double v) {
  // Stored per bucket (not cumulative): one increment per observation.
  size_t i = std::lower_bound(bounds_->begin(), bounds_->end(), v) - bounds_->begin();
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::cumulative() const {
  std::vector<uint64_t> out(bounds_->size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_->size(); ++i) {
    total += buckets_[i].load(std::memory_order_relaxed);
    out[i] = total;
  }
  return out;
}

FamilyBase::FamilyBase(std::string name, std::string help, Type type, std::vector<std::string> label_names)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      id_(next_family_id.fetch_add(1)),
      label_names_(std::move(label_names)) {}

void FamilyBase::write_header(std::string& out) const {
  out += "# HELP ";
  out += name_;
  out.push_back(' ');
  append_help(out, help_);
  out += "\n# TYPE ";
  out += name_;
  out.push_back(' ');
  out += type_name(type_);
  out.push_back('\n');
}

template <class T>
T& Family<T>::create(const Labels& values) {
  if (values.size() != label_names_.size()) {
    throw std::logic_error("metric " + name_ + ": " + std::to_string(values.size()) + " label values for " +
                           std::to_string(label_names_.size()) + " names");
  }
  std::lock_guard lock(mu_);
  auto it = index_.find(values);
  if (it != index_.end()) return *it->second;
  if constexpr (std::is_same_v<T, Histogram>) {
    children_.emplace_back(&bounds_);
  } else {
    children_.emplace_back();
  }
  T* child = &children_.back();
  index_.emplace(values, child);
  return *child;
}

template <class T>
T& Family<T>::labels(const Labels& values) {
  // The family's identity for the per-thread cache, fixed at first use.
  static thread_local std::unordered_map<std::string, void*> cache;
  std::string key = cache_key(id_, values);
  auto it = cache.find(key);
  if (it != cache.end()) return *static_cast<T*>(it->second);
  T& child = create(values);
  cache.emplace(std::move(key), &child);
  return child;
}

template <class T>
void Family<T>::write(std::string& out) const {
  write_header(out);
  std::lock_guard lock(mu_);
  for (const auto& [values, child] : index_) {
    if constexpr (std::is_same_v<T, Histogram>) {
      auto cumulative = child->cumulative();
      for (size_t i = 0; i < bounds_.size(); ++i) {
        append_sample(out, name_ + "_bucket", label_names_, values, static_cast<double>(cumulative[i]), "le",
                      format_value(bounds_[i]));
      }
      append_sample(out, name_ + "_bucket", label_names_, values, static_cast<double>(cumulative.back()), "le",
                    "+Inf");
      append_sample(out, name_ + "_sum", label_names_, values, child->sum());
      append_sample(out, name_ + "_count", label_names_, values, static_cast<double>(child->count()));
    } else if (type_ == Type::counter) {
      append_sample(out, name_ + "_total", label_names_, values, child->value());
    } else {
      append_sample(out, name_, label_names_, values, child->value());
    }
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

void CallbackGauge::write(std::string& out) const {
  std::vector<Sample> samples;
  try {
    samples = collect_();
  } catch (...) {
    return;  // a source that cannot answer now is left out of this scrape
  }
  write_header(out);
  for (const auto& [values, v] : samples) {
    append_sample(out, type_ == Type::counter ? name_ + "_total" : name_, label_names_, values, v);
  }
}

template <class F, class... A>
F& Registry::get_or_add(const std::string& name, A&&... args) {
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it != families_.end()) {
    auto* f = dynamic_cast<F*>(it->second.get());
    if (!f) throw std::logic_error("metric " + name + " registered twice with different types");
    return *f;
  }
  auto f = std::make_shared<F>(name, std::forward<A>(args)...);
  F& ref = *f;
  families_.emplace(name, std::move(f));
  return ref;
}

Family<Counter>& Registry::counter(const std::string& name, const std::string& help,
                                   std::vector<std::string> label_names) {
  return get_or_add<Family<Counter>>(name, help, Type::counter, std::move(label_names));
}

Family<Gauge>& Registry::gauge(const std::string& name, const std::string& help, std::vector<std::string> label_names) {
  return get_or_add<Family<Gauge>>(name, help, Type::gauge, std::move(label_names));
}

Family<Histogram>& Registry::histogram(const std::string& name, const std::string& help,
                                       std::vector<std::string> label_names, std::vector<double> bounds) {
  std::sort(bounds.begin(), bounds.end());
  return get_or_add<Family<Histogram>>(name, help, Type::histogram, std::move(label_names), std::move(bounds));
}

void Registry::callback_gauge(const std::string& name, const std::string& help, std::vector<std::string> label_names,
                              std::function<std::vector<CallbackGauge::Sample>()> collect, Type type) {
  auto f = std::make_shared<CallbackGauge>(name, help, std::move(label_names), std::move(collect), type);
  std::lock_guard lock(mu_);
  families_[name] = std::move(f);
}

void Registry::remove(const std::string& name) {
  std::lock_guard lock(mu_);
  families_.erase(name);
}

std::string Registry::expose() const {
  std::vector<std::shared_ptr<FamilyBase>> families;
  {
    std::lock_guard lock(mu_);
    for (const auto& [name, f] : families_) families.push_back(f);
  }
  std::string out;
  for (const auto& f : families) f->write(out);
  return out;
}

Registry& registry() {
  static Registry r;
  return r;
}

namespace {

struct ProcStat {
  double utime = 0, stime = 0, start_seconds = 0, vsize = 0, rss_bytes = 0;
  bool ok = false;
};

ProcStat read_proc_stat() {
  ProcStat s;
  std::ifstream in("/proc/self/stat");
  std::string line;
  if (!std::getline(in, line)) return s;
  // The command name (field 2) may hold spaces: fields are counted after its closing ')'.
  auto close = line.rfind(')');
  if (close == std::string::npos) return s;
  std::istringstream rest(line.substr(close + 2));
  std::vector<std::string> f;
  std::string tok;
  while (rest >> tok) f.push_back(tok);
  // f[0] is field 3 (state): utime = field 14, stime 15, starttime 22, vsize 23, rss 24.
  if (f.size() < 22) return s;
  double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  s.utime = std::stod(f[11]) / ticks;
  s.stime = std::stod(f[12]) / ticks;
  double start_ticks = std::stod(f[19]);
  s.vsize = std::stod(f[20]);
  s.rss_bytes = std::stod(f[21]) * static_cast<double>(sysconf(_SC_PAGESIZE));
  // Boot time from /proc/stat's btime, plus the start in ticks since boot.
  std::ifstream st("/proc/stat");
  double btime = 0;
  while (std::getline(st, line)) {
    if (line.rfind("btime ", 0) == 0) {
      btime = std::stod(line.substr(6));
      break;
    }
  }
  s.start_seconds = btime + start_ticks / ticks;
  s.ok = true;
  return s;
}

double count_open_fds() {
  std::error_code ec;
  double n = 0;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end; it.increment(ec)) ++n;
  return n;
}

}  // namespace

void register_process_metrics(const std::string& version) {
  auto& r = registry();
  using S = std::vector<CallbackGauge::Sample>;
  r.callback_gauge("process_resident_memory_bytes", "Resident memory size in bytes.", {}, [] {
    auto s = read_proc_stat();
    return s.ok ? S{{{}, s.rss_bytes}} : S{};
  });
  r.callback_gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", {}, [] {
    auto s = read_proc_stat();
    return s.ok ? S{{{}, s.vsize}} : S{};
  });
  r.callback_gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", {}, [] {
    auto s = read_proc_stat();
    return s.ok ? S{{{}, s.start_seconds}} : S{};
  });
  // A counter read from /proc (exposed as process_cpu_seconds_total, as prometheus_client does).
  r.callback_gauge(
      "process_cpu_seconds", "Total user and system CPU time spent in seconds.", {},
      [] {
        auto s = read_proc_stat();
        return s.ok ? S{{{}, s.utime + s.stime}} : S{};
      },
      Type::counter);
  r.callback_gauge("process_open_fds", "Number of open file descriptors.", {}, [] { return S{{{}, count_open_fds()}}; });
  r.callback_gauge("process_max_fds", "Maximum number of open file descriptors.", {}, [] {
    rlimit lim{};
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return S{};
    return S{{{}, lim.rlim_cur == RLIM_INFINITY ? -1.0 : static_cast<double>(lim.rlim_cur)}};
  });
  r.callback_gauge("trestle_build_info", "Trestle's version (the value is always 1).", {"version"},
                   [version] { return S{{{version}, 1.0}}; });
}

}  // namespace trestle::metrics
