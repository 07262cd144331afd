#pragma once
// A small Prometheus client: counters, gauges and histograms with labels, and the text exposition
// format (version 0.0.4). Debian 12 packages no C++ one.
//
// Cheap on hot paths: a child (one label set) is a few atomics; `labels()` finds it in a
// per-thread cache without a lock (the family's mutex is taken only the first time a thread sees a
// label set). Children are never removed, so references stay valid for the process's life. Keep
// label values bounded (route templates, status codes, appservice IDs), never user input.
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace trestle::metrics {

using Labels = std::vector<std::string>;  // values, in the family's label-name order

class Counter {
public:
  void inc(double v = 1) { value_.fetch_add(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

private:
  std::atomic<double> value_{0};
};

class Gauge {
public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void inc(double v = 1) { value_.fetch_add(v, std::memory_order_relaxed); }
  void dec(double v = 1) { value_.fetch_sub(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

private:
  std::atomic<double> value_{0};
};

class Histogram {
public:
  explicit Histogram(const std::vector<double>* bounds);
  void observe(double v);
  // Cumulative counts per bound, then +Inf last; sum; count.
  std::vector<uint64_t> cumulative() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }

private:
  const std::vector<double>* bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // bounds_->size() + 1 (the last is +Inf)
  std::atomic<double> sum_{0};
  std::atomic<uint64_t> count_{0};
};

// Prometheus' client default buckets (seconds), as Synapse's histograms use.
const std::vector<double>& default_buckets();

enum class Type { counter, gauge, histogram };

class FamilyBase {
public:
  FamilyBase(std::string name, std::string help, Type type, std::vector<std::string> label_names);
  virtual ~FamilyBase() = default;
  const std::string& name() const { return name_; }
  virtual void write(std::string& out) const = 0;

protected:
  void write_header(std::string& out) const;
  std::string name_, help_;
  Type type_;
  uint64_t id_;  // unique for the process's life (per-thread caches key on it)
  std::vector<std::string> label_names_;
};

template <class T>
class Family : public FamilyBase {
public:
  Family(std::string name, std::string help, Type type, std::vector<std::string> label_names,
         std::vector<double> bounds = {})
      : FamilyBase(std::move(name), std::move(help), type, std::move(label_names)), bounds_(std::move(bounds)) {}
  // The child for these label values (as many as label names).
  T& labels(const Labels& values);
  T& labels(std::initializer_list<std::string> values) { return labels(Labels(values)); }
  void write(std::string& out) const override;

private:
  T& create(const Labels& values);
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::map<Labels, T*> index_;
  std::deque<T> children_;  // stable addresses
};

// A gauge read when scraped: `collect` returns (label values, value) pairs.
class CallbackGauge : public FamilyBase {
public:
  using Sample = std::pair<Labels, double>;
  CallbackGauge(std::string name, std::string help, std::vector<std::string> label_names,
                std::function<std::vector<Sample>()> collect, Type type = Type::gauge)
      : FamilyBase(std::move(name), std::move(help), type, std::move(label_names)), collect_(std::move(collect)) {}
  void write(std::string& out) const override;

private:
  std::function<std::vector<Sample>()> collect_;
};

class Registry {
public:
  // Families are created once (at start-up or on first use); asking again for a name returns the
  // same family (its help, labels and buckets must agree).
  Family<Counter>& counter(const std::string& name, const std::string& help, std::vector<std::string> label_names = {});
  Family<Gauge>& gauge(const std::string& name, const std::string& help, std::vector<std::string> label_names = {});
  Family<Histogram>& histogram(const std::string& name, const std::string& help,
                               std::vector<std::string> label_names = {}, std::vector<double> bounds = default_buckets());
  // Replaces any earlier callback of the same name (a test server may build twice).
  void callback_gauge(const std::string& name, const std::string& help, std::vector<std::string> label_names,
                      std::function<std::vector<CallbackGauge::Sample>()> collect, Type type = Type::gauge);
  void remove(const std::string& name);
  // The text exposition format, families in name order.
  std::string expose() const;

private:
  template <class F, class... A>
  F& get_or_add(const std::string& name, A&&... args);
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<FamilyBase>> families_;
};

// The process's registry, where all instrumentation goes.
Registry& registry();

// Formatting helpers (exposed for tests).
std::string escape_label_value(const std::string& v);
std::string format_value(double v);

// Process metrics from /proc (process_resident_memory_bytes, ..._cpu_seconds_total, open fds,
// start time) and trestle_build_info; registered once.
void register_process_metrics(const std::string& version);

}  // namespace trestle::metrics
