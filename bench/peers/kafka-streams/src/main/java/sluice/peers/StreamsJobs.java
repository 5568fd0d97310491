package sluice.peers;

import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.SessionWindows;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.processor.TimestampExtractor;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;

/**
 * Kafka Streams versions of examples/jobs/fraud.yaml and examples/jobs/sessions.yaml.
 *
 * <pre>
 * java -jar peers-kafka-streams.jar fraud|sessions --brokers B --input T --output T
 *     [--app-id ID] [--state-dir DIR] [--commit-ms 10000]
 * </pre>
 *
 * One stream thread, at_least_once, RocksDB stores (the default) with changelog topics, event
 * time from the payload's ts. Kafka Streams has no watermark: the fraud job's watermark is the
 * task's stream time (max ts) - 5 s - 1 ms, as Sluice and Flink compute it, kept by the processor;
 * the sessions job's 5 s of out-of-orderness is the session windows' grace period.
 */
public final class StreamsJobs {
  static final long OUT_OF_ORDER_MS = 5000;

  public static void main(String[] args) throws Exception {
    String job = args[0];
    Map<String, String> f = new java.util.HashMap<>();
    for (int i = 1; i + 1 < args.length; i += 2) f.put(args[i].replaceFirst("^--", ""), args[i + 1]);
    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, f.getOrDefault("app-id", "peer-ks-" + job));
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, f.getOrDefault("brokers", "127.0.0.1:9092"));
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
    p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Long.parseLong(f.getOrDefault("commit-ms", "10000")));
    p.put(StreamsConfig.STATE_DIR_CONFIG, f.getOrDefault("state-dir", "/tmp/peer-ks-state"));
    p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, f.getOrDefault("guarantee", StreamsConfig.AT_LEAST_ONCE));
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
    StreamsBuilder b = new StreamsBuilder();
    String in = f.get("input"), out = f.get("output");
    if (job.equals("fraud")) fraud(b, in, out);
    else sessions(b, in, out);
    KafkaStreams streams = new KafkaStreams(b.build(), p);
    CountDownLatch done = new CountDownLatch(1);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      streams.close(Duration.ofSeconds(20));
      done.countDown();
    }));
    streams.setUncaughtExceptionHandler(e -> {
      e.printStackTrace();
      return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
    });
    streams.start();
    done.await();
  }

  // ---- serdes ------------------------------------------------------------

  static <T> Serde<T> serde(java.util.function.Function<byte[], T> read, java.util.function.Function<T, byte[]> write) {
    return Serdes.serdeFrom((topic, v) -> v == null ? null : write.apply(v),
        (Deserializer<T>) (topic, bytes) -> bytes == null ? null : read.apply(bytes));
  }

  /** Event time from the payload, parsed once by the value serde. */
  static final class PayloadTime implements TimestampExtractor {
    @Override
    public long extract(ConsumerRecord<Object, Object> r, long partitionTime) {
      Object v = r.value();
      if (v instanceof Payment p) return p.ts;
      if (v instanceof Click c) return c.ts;
      return -1;  // dropped by Kafka Streams (Sluice: dead letter)
    }
  }

  // ---- fraud -------------------------------------------------------------

  static void fraud(StreamsBuilder b, String in, String out) {
    Serde<Payment> payments = serde(Payment::parse, pm -> pm.raw.getBytes(java.nio.charset.StandardCharsets.UTF_8));
    b.addStateStore(Stores.keyValueStoreBuilder(
        Stores.persistentKeyValueStore("fraud-users"), Serdes.String(), Serdes.ByteArray())
        .withCachingEnabled());
    b.addStateStore(Stores.keyValueStoreBuilder(
        Stores.persistentKeyValueStore("fraud-pending"), Serdes.Bytes(), Serdes.String())
        .withCachingEnabled());
    b.stream(in, Consumed.with(Serdes.String(), payments).withTimestampExtractor(new PayloadTime()))
        .filter((k, pm) -> pm != null && pm.passes())
        .process(FraudProcessor::new, "fraud-users", "fraud-pending")
        .to(out, Produced.with(Serdes.String(), Serdes.String()));
  }

  /**
   * The four rules over a per-user state (FraudState) and a store of pending rolling
   * evaluations ordered by event time; both RocksDB stores with changelogs.
   */
  static final class FraudProcessor implements Processor<String, Payment, String, String> {
    private ProcessorContext<String, String> ctx;
    private KeyValueStore<String, byte[]> users;
    private KeyValueStore<Bytes, String> pending;
    private long maxTs = Long.MIN_VALUE;
    private long seq;
    private long minPending = Long.MIN_VALUE;  // unknown after a start: scan once
    private Bytes scanFrom = Bytes.wrap(new byte[16]);
    private final List<String> alerts = new ArrayList<>();

    @Override
    public void init(ProcessorContext<String, String> context) {
      ctx = context;
      users = context.getStateStore("fraud-users");
      pending = context.getStateStore("fraud-pending");
      maxTs = context.currentStreamTimeMs() > 0 ? context.currentStreamTimeMs() : Long.MIN_VALUE;
      seq = System.nanoTime();
    }

    private long watermark() {
      return maxTs == Long.MIN_VALUE ? Long.MIN_VALUE : maxTs - OUT_OF_ORDER_MS - 1;
    }

    @Override
    public void process(Record<String, Payment> r) {
      Payment pm = r.value();
      String user = pm.user_id;
      long wm = watermark();
      FraudState s = FraudState.fromBytes(users.get(user));
      alerts.clear();
      boolean waits = s.onPayment(pm, wm, alerts);
      users.put(user, s.toBytes());
      emit(user);
      if (waits) {
        pending.put(Bytes.wrap(ByteBuffer.allocate(16).putLong(pm.ts).putLong(seq++).array()), user);
        if (minPending != Long.MIN_VALUE) minPending = Math.min(minPending, pm.ts);
      }
      if (pm.ts > maxTs) maxTs = pm.ts;
      long now = watermark();
      if (minPending != Long.MIN_VALUE && minPending > now) return;
      // The users whose pending payments the watermark reached, in event-time order.
      List<KeyValue<Bytes, String>> due = new ArrayList<>();
      minPending = Long.MAX_VALUE;
      // From the last key evaluated: RocksDB would otherwise step over the tombstones of every
      // entry deleted so far.
      Bytes to = Bytes.wrap(ByteBuffer.allocate(16).putLong(now).putLong(Long.MAX_VALUE).array());
      try (KeyValueIterator<Bytes, String> it = pending.range(scanFrom, to)) {
        while (it.hasNext()) {
          KeyValue<Bytes, String> kv = it.next();
          long t = ByteBuffer.wrap(kv.key.get()).getLong();
          if (t > now) {
            minPending = t;
            break;
          }
          due.add(kv);
        }
      }
      for (KeyValue<Bytes, String> kv : due) {
        pending.delete(kv.key);
        scanFrom = kv.key;
        byte[] st = users.get(kv.value);
        if (st == null) continue;
        FraudState u = FraudState.fromBytes(st);
        if (u.minPending() > now) continue;  // evaluated with an earlier entry of the user
        alerts.clear();
        u.onWatermark(kv.value, now, alerts);
        users.put(kv.value, u.isEmpty() ? null : u.toBytes());
        emit(kv.value);
      }
    }

    private void emit(String user) {
      // The output's Kafka timestamp is the wall clock, as Sluice's CreateTime.
      long wall = System.currentTimeMillis();
      for (String a : alerts) ctx.forward(new Record<>(user, a, wall));
    }
  }

  // ---- sessions ----------------------------------------------------------

  static void sessions(StreamsBuilder b, String in, String out) {
    Serde<Click> clicks = serde(Click::parse, c -> {
      try {
        return Payment.MAPPER.writeValueAsBytes(c);
      } catch (Exception e) {
        throw new RuntimeException(e);
      }
    });
    Serde<SessionAgg> aggs = serde(SessionAgg::fromBytes, SessionAgg::toBytes);
    b.stream(in, Consumed.with(Serdes.String(), clicks).withTimestampExtractor(new PayloadTime()))
        .filter((k, c) -> c != null)
        .groupByKey(Grouped.with(Serdes.String(), clicks))
        .windowedBy(SessionWindows.ofInactivityGapAndGrace(Duration.ofMinutes(30), Duration.ofMillis(OUT_OF_ORDER_MS)))
        .aggregate(SessionAgg::new, (k, c, a) -> a.add(c), (k, a1, a2) -> a1.merge(a2),
            Materialized.<String, SessionAgg, org.apache.kafka.streams.state.SessionStore<Bytes, byte[]>>as("sessions")
                .withKeySerde(Serdes.String()).withValueSerde(aggs))
        .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()))
        .toStream()
        .process(SessionOut::new)
        .to(out, Produced.with(Serdes.String(), Serdes.String()));
  }

  /** A closed session as Sluice writes it; Kafka Streams' session end is the last click. */
  static final class SessionOut implements Processor<Windowed<String>, SessionAgg, String, String> {
    private ProcessorContext<String, String> ctx;

    @Override
    public void init(ProcessorContext<String, String> context) {
      ctx = context;
    }

    @Override
    public void process(Record<Windowed<String>, SessionAgg> r) {
      if (r.value() == null) return;
      Windowed<String> w = r.key();
      String json = r.value().toJson(w.key(), w.window().start(), w.window().end() + 30 * 60_000L);
      ctx.forward(new Record<>(w.key(), json, System.currentTimeMillis()));
    }
  }
}
