package sluice.peers;

import java.io.BufferedWriter;
import java.io.FileWriter;
import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.SplittableRandom;
import java.util.TreeMap;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The generator and the output reader of bench/peers/run.sh.
 *
 * <pre>
 * gen   --brokers B --topic T --kind payments|clicks [--count N] [--users U] [--step-ms S]
 *       [--rate R --duration-s D] [--seed S]
 * watch --brokers B --topic T --kind alerts|sessions|input [--tuples FILE] [--latency-from-us US]
 *       [--idle-exit-s S]
 * </pre>
 *
 * <p>gen without --rate writes a bounded stream with synthetic event time ending 4 h before now,
 * framed by markers: user "m-start" first (an alert on arrival, or a session the first event
 * closes) and "m-end" last (its output follows every other output of the stream). With --rate it
 * writes payments at that rate for --duration-s seconds with ts = the wall clock and "sent_us" =
 * the produce time in microseconds.
 *
 * <p>watch reads an output topic from the beginning and prints one JSON line per marker output
 * (its Kafka CreateTime and the time it was read), and at the end (idle for --idle-exit-s after
 * the end marker, or after the last record in latency mode) a summary: counts by rule, the
 * latency of alerts whose payment carries sent_us >= --latency-from-us.
 */
public final class Tools {
  private static final String[] COUNTRIES = {"DE", "FR", "US", "GB", "NL", "ES", "IT", "PL"};
  private static final String[] SWITCH = {"BR", "JP", "ZA", "MX", "IN", "AR", "KR", "EG"};
  private static final String[] PAGES = {
    "/home", "/search", "/item", "/item/reviews", "/cart", "/checkout", "/account", "/help"
  };

  public static void main(String[] args) throws Exception {
    if (args.length == 0) {
      System.err.println("usage: Tools gen|watch --flags");
      System.exit(2);
    }
    Map<String, String> f = flags(Arrays.copyOfRange(args, 1, args.length));
    switch (args[0]) {
      case "gen" -> gen(f);
      case "watch" -> watch(f);
      default -> {
        System.err.println("unknown command " + args[0]);
        System.exit(2);
      }
    }
  }

  static Map<String, String> flags(String[] a) {
    Map<String, String> m = new HashMap<>();
    for (int i = 0; i + 1 < a.length; i += 2) m.put(a[i].replaceFirst("^--", ""), a[i + 1]);
    return m;
  }

  // ---- generator -----------------------------------------------------------

  static final class Gen {
    final SplittableRandom rng;
    final int users;
    final boolean clicks;
    long seq = 0;
    int[] page;
    String lastKey;
    String lastPayment;  // for producer retries (a repeated transaction_id)
    String lastPaymentKey;

    Gen(long seed, int users, boolean clicks) {
      this.rng = new SplittableRandom(seed);
      this.users = users;
      this.clicks = clicks;
      if (clicks) page = new int[users];
    }

    int pickUser() {
      // Skewed like tools/event_generator.cc: u^1.5, low ids are hot.
      return (int) (Math.pow(rng.nextDouble(), 1.5) * users) % users;
    }

    /** The next record at event time ts (sentUs >= 0: add "sent_us"). */
    String next(long ts, long sentUs) {
      ++seq;
      if (clicks) return click(pickUser(), ts);
      // 0.5% of payments are a producer's retry of the previous one (same transaction_id).
      if (lastPayment != null && rng.nextInt(200) == 0) {
        lastKey = lastPaymentKey;
        String r = lastPayment;
        lastPayment = null;
        return r;
      }
      int user = pickUser();
      String country = COUNTRIES[user % 8];
      long cents = 100 + rng.nextInt(30000);
      String status = "approved";
      int r = rng.nextInt(1000);
      if (r < 5) cents = 100L * (9000 + rng.nextInt(1000));  // large_amount
      else if (r < 7) country = SWITCH[rng.nextInt(8)];  // new_country
      else if (r < 27) status = "declined";  // filtered out
      else if (r < 32) cents = 0;  // filtered out
      StringBuilder b = new StringBuilder(160);
      b.append("{\"user_id\":\"u").append(user).append("\",\"amount\":");
      appendCents(b, cents);
      b.append(",\"currency\":\"EUR\",\"country\":\"").append(country);
      b.append("\",\"status\":\"").append(status).append("\",\"ts\":").append(ts);
      b.append(",\"transaction_id\":\"t-").append(seq).append('"');
      if (sentUs >= 0) b.append(",\"sent_us\":").append(sentUs);
      b.append('}');
      lastKey = "u" + user;
      lastPayment = b.toString();
      lastPaymentKey = lastKey;
      return lastPayment;
    }

    String click(int user, long ts) {
      int p = page[user] = (page[user] + 1 + rng.nextInt(3)) % 8;
      lastKey = "u" + user;
      StringBuilder b = new StringBuilder(100);
      b.append("{\"user_id\":\"u").append(user).append("\",\"page\":\"").append(PAGES[p]);
      b.append("\",\"ts\":").append(ts);
      if (p == 5) appendCents(b.append(",\"amount\":"), 500 + rng.nextInt(20000));
      b.append('}');
      return b.toString();
    }

    static void appendCents(StringBuilder b, long cents) {
      b.append(cents / 100).append('.');
      long c = cents % 100;
      if (c < 10) b.append('0');
      b.append(c);
    }

    static String marker(String user, long ts, boolean clicks, long sentUs) {
      if (clicks) return "{\"user_id\":\"" + user + "\",\"page\":\"/marker\",\"ts\":" + ts + "}";
      return "{\"user_id\":\"" + user + "\",\"amount\":999999.00,\"currency\":\"EUR\",\"country\":\"DE\","
          + "\"status\":\"approved\",\"ts\":" + ts + ",\"transaction_id\":\"" + user + "-" + ts + "\""
          + (sentUs >= 0 ? ",\"sent_us\":" + sentUs : "") + "}";
    }
  }

  static KafkaProducer<String, String> producer(String brokers) {
    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
    p.put(ProducerConfig.ACKS_CONFIG, "all");
    p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
    p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
    p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, "lz4");
    p.put(ProducerConfig.BATCH_SIZE_CONFIG, "262144");
    p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    return new KafkaProducer<>(p);
  }

  static void gen(Map<String, String> f) throws Exception {
    String brokers = f.getOrDefault("brokers", "127.0.0.1:9092");
    String topic = f.get("topic");
    boolean clicks = "clicks".equals(f.getOrDefault("kind", "payments"));
    long count = Long.parseLong(f.getOrDefault("count", "1000000"));
    int users = Integer.parseInt(f.getOrDefault("users", "100000"));
    long step = Long.parseLong(f.getOrDefault("step-ms", "10"));
    double rate = Double.parseDouble(f.getOrDefault("rate", "0"));
    double durationS = Double.parseDouble(f.getOrDefault("duration-s", "30"));
    long seed = Long.parseLong(f.getOrDefault("seed", "1"));
    Gen g = new Gen(seed, users, clicks);
    long t0 = System.nanoTime();
    long n = 0;
    double paced = 0;
    try (KafkaProducer<String, String> p = producer(brokers)) {
      if (f.containsKey("only-marker")) {
        // One marker payment at the wall clock (an alert on arrival): a contender is up.
        String m = f.get("only-marker");
        long wallUs = System.currentTimeMillis() * 1000L;
        p.send(new ProducerRecord<>(topic, m, Gen.marker(m, wallUs / 1000L, false, -1)));
        p.flush();
      } else if (rate <= 0) {
        // Bounded stream, synthetic event time ending 4 h before now (inside max_future and
        // max_past for every marker), 2% of events up to 3 s out of order (never late at 5 s).
        long end = System.currentTimeMillis() - 4 * 3_600_000L;
        long ts = end - count * step;
        String m = clicks ? "m-start" : "m-start";
        long startTs = clicks ? ts - 2 * 3_600_000L : ts;
        p.send(new ProducerRecord<>(topic, m, Gen.marker(m, startTs, clicks, -1)));
        long maxTs = ts;
        for (long i = 0; i < count; i++) {
          ts += g.rng.nextLong(2 * step + 1);
          long t = ts;
          if (g.rng.nextInt(50) == 0) t -= g.rng.nextLong(3000);
          String v = g.next(t, -1);
          maxTs = Math.max(maxTs, t);
          p.send(new ProducerRecord<>(topic, g.lastKey, v));
          ++n;
        }
        if (clicks) {
          // m-end's session closes when m-end2 moves the watermark past it and every other.
          p.send(new ProducerRecord<>(topic, "m-end", Gen.marker("m-end", maxTs + 3_600_000L, true, -1)));
          p.send(new ProducerRecord<>(topic, "m-end2", Gen.marker("m-end2", maxTs + 3 * 3_600_000L, true, -1)));
        } else {
          // An alert on arrival, and a watermark past every payment's time.
          p.send(new ProducerRecord<>(topic, "m-end", Gen.marker("m-end", maxTs + 60_000L, false, -1)));
        }
        p.flush();
      } else {
        // Live: ts = wall clock, paced in 1 ms steps.
        long deadline = t0 + (long) (durationS * 1e9);
        long now;
        while ((now = System.nanoTime()) < deadline) {
          long due = (long) ((now - t0) / 1e9 * rate);
          while (n < due) {
            long wallUs = System.currentTimeMillis() * 1000L + (System.nanoTime() / 1000L) % 1000L;
            String v = g.next(wallUs / 1000L, wallUs);
            p.send(new ProducerRecord<>(topic, g.lastKey, v));
            ++n;
          }
          Thread.sleep(0, 500_000);
        }
        paced = (System.nanoTime() - t0) / 1e9;
        // The rolling rules of the last payments fire once the watermark passes them.
        Thread.sleep(6000);
        long wallUs = System.currentTimeMillis() * 1000L;
        p.send(new ProducerRecord<>(topic, "m-end", Gen.marker("m-end", wallUs / 1000L, false, wallUs)));
        p.flush();
      }
    }
    double s = paced > 0 ? paced : (System.nanoTime() - t0) / 1e9;
    System.out.printf("{\"event\":\"generated\",\"records\":%d,\"seconds\":%.3f,\"rate\":%.0f}%n", n, s, n / s);
  }

  // ---- output reader -------------------------------------------------------

  static String field(String s, String name) {
    String pat = "\"" + name + "\":";
    int i = s.indexOf(pat);
    if (i < 0) return null;
    i += pat.length();
    if (s.charAt(i) == '"') {
      int j = s.indexOf('"', i + 1);
      return s.substring(i + 1, j);
    }
    int j = i;
    while (j < s.length() && ",}]".indexOf(s.charAt(j)) < 0) j++;
    return s.substring(i, j);
  }

  static long pct(long[] sorted, double q) {
    if (sorted.length == 0) return -1;
    int i = (int) Math.min(sorted.length - 1, Math.floor(q * sorted.length));
    return sorted[i];
  }

  static String latencyJson(List<Long> v) {
    long[] a = v.stream().mapToLong(Long::longValue).toArray();
    Arrays.sort(a);
    return String.format(
        "{\"n\":%d,\"p50_ms\":%.1f,\"p99_ms\":%.1f,\"p999_ms\":%.1f,\"max_ms\":%.1f}",
        a.length, pct(a, 0.5) / 1e3, pct(a, 0.99) / 1e3, pct(a, 0.999) / 1e3,
        a.length == 0 ? -1e-3 : a[a.length - 1] / 1e3);
  }

  static void watch(Map<String, String> f) throws IOException {
    String brokers = f.getOrDefault("brokers", "127.0.0.1:9092");
    String topic = f.get("topic");
    boolean sessions = "sessions".equals(f.getOrDefault("kind", "alerts"));
    boolean input = "input".equals(f.getOrDefault("kind", "alerts"));
    long latencyFrom = Long.parseLong(f.getOrDefault("latency-from-us", "-1"));
    double idleExit = Double.parseDouble(f.getOrDefault("idle-exit-s", "3"));
    String tuplesFile = f.get("tuples");
    // Give up this long after starting (a contender that does not keep up): the summary then
    // says "complete":false and covers what was read.
    double deadlineS = Double.parseDouble(f.getOrDefault("deadline-s", "0"));
    long deadlineNs = deadlineS > 0 ? System.nanoTime() + (long) (deadlineS * 1e9) : 0;
    BufferedWriter tuples = tuplesFile == null ? null : new BufferedWriter(new FileWriter(tuplesFile));
    Properties p = new Properties();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    p.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, "5");
    p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    Map<String, Long> counts = new TreeMap<>();
    Map<String, List<Long>> lat = new TreeMap<>();
    long records = 0;
    boolean endSeen = false;
    long lastRecordNs = System.nanoTime();
    try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
      List<TopicPartition> parts = new ArrayList<>();
      c.partitionsFor(topic).forEach(pi -> parts.add(new TopicPartition(topic, pi.partition())));
      c.assign(parts);
      c.seekToBeginning(parts);
      System.out.println("{\"event\":\"ready\"}");
      System.out.flush();
      while (true) {
        ConsumerRecords<byte[], byte[]> rs = c.poll(Duration.ofMillis(20));
        long nowUs = System.currentTimeMillis() * 1000L + (System.nanoTime() / 1000L) % 1000L;
        for (ConsumerRecord<byte[], byte[]> r : rs) {
          String v = new String(r.value(), java.nio.charset.StandardCharsets.UTF_8);
          if (input) {
            // The input topic itself: the hop from the producer to a consumer, no processing.
            String user = field(v, "user_id");
            if (user != null && user.startsWith("m-")) {
              if (user.equals("m-end")) endSeen = true;
              continue;
            }
            ++records;
            String sent = field(v, "sent_us");
            if (latencyFrom >= 0 && sent != null && Long.parseLong(sent) >= latencyFrom) {
              lat.computeIfAbsent("input", k -> new ArrayList<>()).add(nowUs - Long.parseLong(sent));
            }
            continue;
          }
          String key = field(v, "key");
          if (key != null && key.startsWith("m-")) {
            if (sessions && !v.contains("\"window_start\"")) continue;
            System.out.printf("{\"event\":\"marker\",\"key\":\"%s\",\"create_ms\":%d,\"read_us\":%d}%n",
                key, r.timestamp(), nowUs);
            System.out.flush();
            if (key.equals("m-end")) endSeen = true;
            continue;
          }
          ++records;
          if (sessions) {
            if (tuples != null) {
              tuples.write(key + " " + field(v, "window_start") + " " + field(v, "window_end") + " "
                  + field(v, "events") + " " + field(v, "pages") + " " + field(v, "first_page") + " "
                  + field(v, "last_page") + " " + field(v, "duration") + " "
                  + String.format("%.2f", Double.parseDouble(orZero(field(v, "revenue")))) + "\n");
            }
            counts.merge("sessions", 1L, Long::sum);
          } else {
            String rule = field(v, "rule");
            counts.merge(rule, 1L, Long::sum);
            int ev = v.indexOf("\"event\":");
            String evs = ev < 0 ? v : v.substring(ev);
            if (tuples != null) tuples.write(rule + " " + key + " " + field(evs, "transaction_id") + "\n");
            String sent = field(evs, "sent_us");
            if (latencyFrom >= 0 && sent != null) {
              long s = Long.parseLong(sent);
              if (s >= latencyFrom) {
                String cls = rule.equals("large_amount") ? "large_amount" : "rolling";
                lat.computeIfAbsent(cls, k -> new ArrayList<>()).add(nowUs - s);
                lat.computeIfAbsent("all", k -> new ArrayList<>()).add(nowUs - s);
              }
            }
          }
        }
        if (!rs.isEmpty()) lastRecordNs = System.nanoTime();
        else if (endSeen && (System.nanoTime() - lastRecordNs) / 1e9 > idleExit) break;
        if (deadlineNs > 0 && System.nanoTime() > deadlineNs) break;
      }
    }
    if (tuples != null) tuples.close();
    StringBuilder b = new StringBuilder("{\"event\":\"summary\",\"complete\":" + endSeen + ",\"records\":" + records + ",\"counts\":{");
    boolean first = true;
    for (var e : counts.entrySet()) {
      b.append(first ? "" : ",").append('"').append(e.getKey()).append("\":").append(e.getValue());
      first = false;
    }
    b.append("},\"latency\":{");
    first = true;
    for (var e : lat.entrySet()) {
      b.append(first ? "" : ",").append('"').append(e.getKey()).append("\":").append(latencyJson(e.getValue()));
      first = false;
    }
    b.append("}}");
    System.out.println(b);
  }

  static String orZero(String s) {
    return s == null || s.equals("null") ? "0" : s;
  }
}
