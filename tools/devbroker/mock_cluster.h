#pragma once

// MockCluster: owns a librdkafka mock Kafka cluster (rdkafka_mock.h) and the
// dummy producer handle it lives on. Brokers listen on 127.0.0.1 ephemeral
// ports and speak the real Kafka protocol; all state is in memory.
//
// Thread safety: the mock runs its own I/O thread; every method here hands
// work to it through librdkafka's op queue, so methods may be called from any
// thread. The devbroker calls them from the control thread only (after setup).
//
// Lost wake-ups: in librdkafka 2.0.2 the mock thread serves its op queue and
// only then drains its wake-up pipe, so an op pushed in between (typically
// the second of two back-to-back calls) waits for the thread's 1 s poll
// timeout. A waker thread here watches calls in flight and, after 20 ms,
// opens and closes a TCP connection to a live broker's listener: socket
// activity wakes the mock thread, which then serves the op.
//
// librdkafka types stay in mock_cluster.cc; callers see Status only.

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"

namespace sluice::devbroker {

class MockCluster {
 public:
  // Creates a cluster of `broker_count` brokers with ids 1..broker_count.
  // `rdkafka_debug` is librdkafka's "debug" property ("" for none, e.g. "mock").
  static Result<std::unique_ptr<MockCluster>> Create(int broker_count,
                                                     const std::string& rdkafka_debug);
  ~MockCluster();
  MockCluster(const MockCluster&) = delete;
  MockCluster& operator=(const MockCluster&) = delete;

  // bootstrap.servers for clients: "127.0.0.1:P1,127.0.0.1:P2,...".
  const std::string& bootstraps() const { return bootstraps_; }
  // host:port of broker 1, the one the fixed-port forwarder targets.
  std::string FirstBroker() const;
  int broker_count() const { return broker_count_; }

  Status CreateTopic(const std::string& name, int partitions);
  Status SetBrokerDown(int32_t broker_id);
  Status SetBrokerUp(int32_t broker_id);
  Status SetBrokerRtt(int32_t broker_id, int rtt_ms);
  // The next `count` requests with `api_key` (any broker) fail with `error_code`.
  Status PushRequestErrors(int16_t api_key, int32_t error_code, size_t count);

 private:
  struct Handles;
  MockCluster(std::unique_ptr<Handles> handles, int broker_count);
  Status CheckBroker(int32_t broker_id) const;
  // Runs one call into the mock with the waker watching it.
  template <typename F>
  auto Call(F&& f);
  void WakerLoop();

  std::unique_ptr<Handles> handles_;
  int broker_count_;
  std::string bootstraps_;
  std::vector<std::string> broker_addresses_;

  std::mutex mu_;  // guards in_flight_, stop_
  std::condition_variable cv_;
  int in_flight_ = 0;
  bool stop_ = false;
  std::thread waker_;
};

// Topic names Kafka accepts: 1..249 of [A-Za-z0-9._-], not "." or "..".
bool IsValidTopicName(const std::string& name);

}  // namespace sluice::devbroker
