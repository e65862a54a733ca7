package pipeteer.bench;

import java.io.ByteArrayOutputStream;
import java.io.FileWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Comparator;
import java.util.Locale;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.kstream.Produced;

/**
 * The Kafka Streams peer of bench/bench_kafka_stage.py: one consume-transform-produce stage,
 * exactly-once (exactly_once_v2), a commit every 100 ms, Kafka Streams' defaults otherwise.
 *
 * <pre>
 * java -cp 'JARS/*:JARS/classes' pipeteer.bench.UpperStage BOOTSTRAP INPUT OUTPUT APPLICATION_ID \
 *     REC_SCHEMA OUT_SCHEMA [CONFIG=VALUE ...]
 * </pre>
 *
 * The transform is the bench's: decode the Avro record (single-object encoding: C3 01, the
 * schema's 8-byte little-endian CRC-64-AVRO fingerprint, the binary body; Avro's own
 * BinaryMessageDecoder checks both), upper-case its text, encode it as the output schema. The
 * schemas come from the bench (pipeteer's codec), so both sides frame records alike. CONFIG=VALUE
 * pairs are Kafka Streams settings; client settings among them (batch.size, linger.ms) reach the
 * clients that know them.
 *
 * Like the bench's Python stages, it notes when the transform first ran and when it ran for the
 * BENCH_N-th time in the file BENCH_PROBE, as "first SECONDS" / "last SECONDS" on
 * System.nanoTime(): CLOCK_MONOTONIC on Linux, the clock of Python's time.monotonic().
 */
public final class UpperStage {
    private UpperStage() {}

    public static void main(String[] args) throws Exception {
        if (args.length < 6) {
            System.err.println("usage: UpperStage BOOTSTRAP INPUT OUTPUT APPLICATION_ID REC_SCHEMA OUT_SCHEMA [CONFIG=VALUE ...]");
            System.exit(2);
        }
        Schema recSchema = new Schema.Parser().parse(args[4]);
        Schema outSchema = new Schema.Parser().parse(args[5]);

        Properties props = new Properties();
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, args[3]);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, "100");
        Path stateDir = Files.createTempDirectory("pipeteer-bench-kstreams-");
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        for (int i = 6; i < args.length; i++) {
            String[] kv = args[i].split("=", 2);
            if (kv.length != 2) {
                System.err.println("UpperStage: '" + args[i] + "' is not CONFIG=VALUE");
                System.exit(2);
            }
            props.put(kv[0], kv[1]);
        }

        Probe probe = new Probe(System.getenv("BENCH_PROBE"), Long.parseLong(System.getenv().getOrDefault("BENCH_N", "0")));
        // one codec pair per stream thread (Avro's encoders and decoders reuse buffers)
        ThreadLocal<Upper> upper = ThreadLocal.withInitial(() -> new Upper(recSchema, outSchema, probe));

        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(args[1], Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()).withName("input"))
                .mapValues(value -> upper.get().apply(value), Named.as("upper"))
                .to(args[2], Produced.with(Serdes.ByteArray(), Serdes.ByteArray()).withName("output"));

        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        CountDownLatch failed = new CountDownLatch(1);
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.ERROR) {
                failed.countDown();
            }
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(10));
            try (Stream<Path> paths = Files.walk(stateDir)) {
                paths.sorted(Comparator.reverseOrder()).forEach(path -> path.toFile().delete());
            } catch (IOException e) {
                System.err.println("UpperStage: could not remove " + stateDir + ": " + e);
            }
        }));
        streams.start();
        failed.await();
        System.err.println("UpperStage: Kafka Streams is in state ERROR");
        Runtime.getRuntime().halt(1);
    }

    /** Decode, upper-case the text, encode: the bench's transform. */
    static final class Upper {
        private final BinaryMessageDecoder<GenericRecord> decoder;
        private final BinaryMessageEncoder<GenericRecord> encoder;
        private final Schema outSchema;
        private final Probe probe;
        private final ByteArrayOutputStream buffer = new ByteArrayOutputStream();
        private GenericRecord reused;

        Upper(Schema recSchema, Schema outSchema, Probe probe) {
            this.decoder = new BinaryMessageDecoder<>(GenericData.get(), recSchema);
            this.encoder = new BinaryMessageEncoder<>(GenericData.get(), outSchema);
            this.outSchema = outSchema;
            this.probe = probe;
        }

        byte[] apply(byte[] value) {
            try {
                reused = decoder.decode(value, reused);
                probe.ran();
                GenericRecord out = new GenericData.Record(outSchema);
                out.put("n", reused.get("n"));
                out.put("text", reused.get("text").toString().toUpperCase(Locale.ROOT));
                buffer.reset();
                encoder.encode(out, buffer);
                return buffer.toByteArray();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    }

    /** Notes the first and the BENCH_N-th run of the transform (counted over all stream threads). */
    static final class Probe {
        private final String path;
        private final long last;
        private final AtomicLong count = new AtomicLong();

        Probe(String path, long last) {
            this.path = path;
            this.last = last;
        }

        void ran() {
            long n = count.incrementAndGet();
            if (path == null || (n != 1 && n != last)) {
                return;
            }
            double now = System.nanoTime() / 1e9;
            StringBuilder notes = new StringBuilder();
            if (n == 1) {
                notes.append("first ").append(now).append('\n');
            }
            if (n == last) { // (a run of one record has both notes at once)
                notes.append("last ").append(now).append('\n');
            }
            try (FileWriter f = new FileWriter(path, true)) {
                f.write(notes.toString());
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    }
}
