package sluice.peers;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.configuration.CheckpointingOptions;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.StateBackendOptions;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.EventTimeSessionWindows;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.Collector;
import org.apache.kafka.clients.producer.ProducerRecord;

/**
 * Flink versions of examples/jobs/fraud.yaml and examples/jobs/sessions.yaml, run in-process
 * (a local MiniCluster) with parallelism 1, the embedded RocksDB state backend (incremental
 * checkpoints) and a checkpoint every 10 s.
 *
 * <pre>
 * java -jar peers-flink.jar fraud|sessions --brokers B --input T --output T
 *     [--checkpoint-dir DIR] [--checkpoint-ms 10000]
 * </pre>
 */
public final class FlinkJobs {
  static final long OUT_OF_ORDER_MS = 5000;

  public static void main(String[] args) throws Exception {
    String job = args[0];
    Map<String, String> f = new java.util.HashMap<>();
    for (int i = 1; i + 1 < args.length; i += 2) f.put(args[i].replaceFirst("^--", ""), args[i + 1]);
    String brokers = f.getOrDefault("brokers", "127.0.0.1:9092");
    Configuration conf = new Configuration();
    conf.set(StateBackendOptions.STATE_BACKEND, "rocksdb");
    conf.set(CheckpointingOptions.INCREMENTAL_CHECKPOINTS, true);
    conf.set(CheckpointingOptions.CHECKPOINTS_DIRECTORY,
        "file://" + f.getOrDefault("checkpoint-dir", "/tmp/peer-flink-checkpoints"));
    StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(conf);
    env.setParallelism(1);
    env.enableCheckpointing(Long.parseLong(f.getOrDefault("checkpoint-ms", "10000")));

    KafkaSink<Tuple2<String, String>> sink = KafkaSink.<Tuple2<String, String>>builder()
        .setBootstrapServers(brokers)
        .setRecordSerializer(new OutputSerializer(f.get("output")))
        .setDeliveryGuarantee(DeliveryGuarantee.AT_LEAST_ONCE)
        .build();
    if (job.equals("fraud")) {
      KafkaSource<Payment> source = KafkaSource.<Payment>builder()
          .setBootstrapServers(brokers)
          .setTopics(f.get("input"))
          .setGroupId("peer-flink-fraud")
          .setStartingOffsets(OffsetsInitializer.earliest())
          .setValueOnlyDeserializer(new PaymentSchema())
          .build();
      WatermarkStrategy<Payment> wms = WatermarkStrategy.<Payment>forBoundedOutOfOrderness(
              Duration.ofMillis(OUT_OF_ORDER_MS))
          .withTimestampAssigner((p, ts) -> p.ts);
      env.fromSource(source, wms, "payments")
          .filter(p -> p != null && p.passes())
          .keyBy(p -> p.user_id)
          .process(new FraudFunction())
          .sinkTo(sink);
    } else {
      KafkaSource<Click> source = KafkaSource.<Click>builder()
          .setBootstrapServers(brokers)
          .setTopics(f.get("input"))
          .setGroupId("peer-flink-sessions")
          .setStartingOffsets(OffsetsInitializer.earliest())
          .setValueOnlyDeserializer(new ClickSchema())
          .build();
      WatermarkStrategy<Click> wms = WatermarkStrategy.<Click>forBoundedOutOfOrderness(
              Duration.ofMillis(OUT_OF_ORDER_MS))
          .withTimestampAssigner((c, ts) -> c.ts);
      DataStream<Click> clicks = env.fromSource(source, wms, "clicks").filter(c -> c != null);
      clicks.keyBy(c -> c.user_id)
          .window(EventTimeSessionWindows.withGap(Duration.ofMinutes(30)))
          .aggregate(new SessionAggregate(), new SessionResult())
          .sinkTo(sink);
    }
    env.execute("peer-" + job);
  }

  /** Payload deserialization; a record that is not a payment is dropped (Sluice: dead letter). */
  static final class PaymentSchema implements DeserializationSchema<Payment> {
    @Override
    public Payment deserialize(byte[] message) {
      return Payment.parse(message);
    }

    @Override
    public void deserialize(byte[] message, Collector<Payment> out) {
      Payment p = Payment.parse(message);
      if (p != null) out.collect(p);
    }

    @Override
    public boolean isEndOfStream(Payment next) {
      return false;
    }

    @Override
    public TypeInformation<Payment> getProducedType() {
      return TypeInformation.of(Payment.class);
    }
  }

  static final class ClickSchema implements DeserializationSchema<Click> {
    @Override
    public Click deserialize(byte[] message) {
      return Click.parse(message);
    }

    @Override
    public void deserialize(byte[] message, Collector<Click> out) {
      Click c = Click.parse(message);
      if (c != null) out.collect(c);
    }

    @Override
    public boolean isEndOfStream(Click next) {
      return false;
    }

    @Override
    public TypeInformation<Click> getProducedType() {
      return TypeInformation.of(Click.class);
    }
  }

  /** (key, JSON) to a record whose Kafka timestamp is the wall clock, as Sluice's CreateTime. */
  static final class OutputSerializer implements KafkaRecordSerializationSchema<Tuple2<String, String>> {
    private final String topic;

    OutputSerializer(String topic) {
      this.topic = topic;
    }

    @Override
    public ProducerRecord<byte[], byte[]> serialize(Tuple2<String, String> e, KafkaSinkContext c, Long ts) {
      return new ProducerRecord<>(topic, null, System.currentTimeMillis(),
          e.f0.getBytes(StandardCharsets.UTF_8), e.f1.getBytes(StandardCharsets.UTF_8));
    }
  }

  /**
   * The four rules: one user's FraudState in a RocksDB ValueState (as bytes), an event-time
   * timer at each payment's time for its rolling rules.
   */
  static final class FraudFunction extends KeyedProcessFunction<String, Payment, Tuple2<String, String>> {
    private transient ValueState<byte[]> state;
    private transient List<String> alerts;

    @Override
    public void open(OpenContext ctx) {
      state = getRuntimeContext().getState(
          new ValueStateDescriptor<>("fraud", PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO));
      alerts = new ArrayList<>();
    }

    @Override
    public void processElement(Payment p, Context ctx, Collector<Tuple2<String, String>> out)
        throws Exception {
      FraudState s = FraudState.fromBytes(state.value());
      alerts.clear();
      if (s.onPayment(p, ctx.timerService().currentWatermark(), alerts)) {
        ctx.timerService().registerEventTimeTimer(p.ts);
      }
      state.update(s.toBytes());
      for (String a : alerts) out.collect(Tuple2.of(p.user_id, a));
    }

    @Override
    public void onTimer(long t, OnTimerContext ctx, Collector<Tuple2<String, String>> out)
        throws Exception {
      FraudState s = FraudState.fromBytes(state.value());
      long wm = ctx.timerService().currentWatermark();
      if (s.minPending() > wm) return;  // evaluated by an earlier timer
      alerts.clear();
      s.onWatermark(ctx.getCurrentKey(), wm, alerts);
      if (s.isEmpty()) state.clear();
      else state.update(s.toBytes());
      for (String a : alerts) out.collect(Tuple2.of(ctx.getCurrentKey(), a));
    }
  }

  static final class SessionAggregate implements AggregateFunction<Click, SessionAgg, SessionAgg> {
    @Override
    public SessionAgg createAccumulator() {
      return new SessionAgg();
    }

    @Override
    public SessionAgg add(Click c, SessionAgg a) {
      return a.add(c);
    }

    @Override
    public SessionAgg getResult(SessionAgg a) {
      return a;
    }

    @Override
    public SessionAgg merge(SessionAgg a, SessionAgg b) {
      return a.merge(b);
    }
  }

  static final class SessionResult
      extends ProcessWindowFunction<SessionAgg, Tuple2<String, String>, String, TimeWindow> {
    @Override
    public void process(String key, Context ctx, Iterable<SessionAgg> aggs,
        Collector<Tuple2<String, String>> out) {
      for (SessionAgg a : aggs) {
        out.collect(Tuple2.of(key, a.toJson(key, ctx.window().getStart(), ctx.window().getEnd())));
      }
    }
  }
}
