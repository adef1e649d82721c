package pitstop.state;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.sql.Date;
import java.time.Duration;
import java.time.LocalDate;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.spark.api.java.function.MapFunction;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.streaming.OutputMode;
import org.apache.spark.sql.streaming.StatefulProcessorWithInitialState;
import org.apache.spark.sql.streaming.TTLConfig;
import org.apache.spark.sql.streaming.TimeMode;
import org.apache.spark.sql.streaming.TimerValues;
import org.apache.spark.sql.streaming.ValueState;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.StructType;
import scala.jdk.javaapi.CollectionConverters;

/**
 * Each battery's recent history in Spark state, kept in the JVM: the fate of each reading and
 * the stored days behind its model window.
 *
 * <p>One state value per battery holds the days it reported within the last {@code windowDays +
 * lateAfterDays} of its latest reading (day, record hash, daily cycles, health signals) and the
 * first day it ever reported. A micro-batch's readings of the battery are decided against what
 * earlier micro-batches stored: more than {@code lateAfterDays} before the latest stored reading is
 * late; a stored date from another record, or one taken earlier in the batch (lowest Kafka offset
 * first), is a duplicate; the very record already stored is "stored"; anything else is new, and
 * leaves with the days of its window -- from the battery's first day or {@code windowDays} back,
 * whichever is later -- for Python to turn into model input (models.features).
 *
 * <p>Input rows: {@code _key} (battery id, or "" for messages that broke the contract), {@code
 * _source} (record hash), then the parsed message. Output rows: the parsed message with {@code
 * reason} set for a rejected reading, and {@code fate}, {@code first_seen}, {@code window_start}
 * (days since epoch) and {@code window} (packed days, see {@link #DAY_BYTES}).
 */
public final class BatteryHistory
    extends StatefulProcessorWithInitialState<String, Row, Row, Row> {

  /** State layout number, stored with every value: a new layout gets a new number. */
  static final int LAYOUT = 1;

  /** Health signals per day, in the contract's order. */
  static final int SIGNALS = 4;

  /** A stored day: int32 day, int64 record hash, float64 cycles, float64 x SIGNALS. */
  static final int STATE_DAY_BYTES = 4 + 8 + 8 + 8 * SIGNALS;

  /** A window day: int32 day, float64 cycles, float64 x SIGNALS (NaN where none). */
  static final int DAY_BYTES = 4 + 8 + 8 * SIGNALS;

  static final String NEW = "new";
  static final String REJECTED = "rejected";
  static final String STORED = "stored";

  private final int windowDays;
  private final int lateAfterDays;
  private final long ttlMillis;
  private final String[] signals;
  private transient ValueState<byte[]> state;
  private transient Fields fields;

  BatteryHistory(int windowDays, int lateAfterDays, long ttlMillis, String[] signals) {
    this.windowDays = windowDays;
    this.lateAfterDays = lateAfterDays;
    this.ttlMillis = ttlMillis;
    this.signals = signals;
  }

  /**
   * The state step over keyed rows (see the class comment). {@code signals} names the health
   * signal columns, comma-separated; {@code seed} (rows of _key, first_day, days: array of (date,
   * source, cycles, signals...)) seeds a new checkpoint, or is null.
   */
  public static Dataset<Row> decide(
      Dataset<Row> keyed,
      String outputSchemaJson,
      int windowDays,
      int lateAfterDays,
      long ttlMillis,
      String signals,
      Dataset<Row> seed) {
    StructType output = (StructType) DataType.fromJson(outputSchemaJson);
    BatteryHistory processor =
        new BatteryHistory(windowDays, lateAfterDays, ttlMillis, signals.split(","));
    MapFunction<Row, String> byKey = r -> r.getString(0);
    if (seed == null) {
      return keyed
          .groupByKey(byKey, Encoders.STRING())
          .transformWithState(
              processor, TimeMode.ProcessingTime(), OutputMode.Append(), Encoders.row(output));
    }
    return keyed
        .groupByKey(byKey, Encoders.STRING())
        .transformWithState(
            processor,
            TimeMode.ProcessingTime(),
            OutputMode.Append(),
            seed.groupByKey(byKey, Encoders.STRING()),
            Encoders.row(output),
            Encoders.row(seed.schema()));
  }

  @Override
  public void init(OutputMode outputMode, TimeMode timeMode) {
    state =
        getHandle()
            .getValueState(
                "history", Encoders.BINARY(), TTLConfig.apply(Duration.ofMillis(ttlMillis)));
  }

  @Override
  public scala.collection.Iterator<Row> handleInputRows(
      String key, scala.collection.Iterator<Row> input, TimerValues timerValues) {
    List<Row> rows = new ArrayList<>();
    input.foreach(rows::add);
    if (rows.isEmpty()) {
      return CollectionConverters.asScala(new ArrayList<Row>().iterator());
    }
    if (fields == null) {
      fields = new Fields(rows.get(0), signals);
    }
    List<Row> out = new ArrayList<>(rows.size());
    if (key.isEmpty()) { // messages that broke the contract: no state, passed on
      for (Row row : rows) {
        out.add(output(row, null, REJECTED, false, null, null));
      }
      return CollectionConverters.asScala(out.iterator());
    }
    History history = state.exists() ? History.decode(state.get()) : null;
    Decided decided = advance(history, rows);
    if (decided.history != null) {
      state.update(decided.history.encode());
    }
    for (int i = 0; i < rows.size(); i++) {
      Outcome o = decided.outcomes[i];
      out.add(output(rows.get(i), o.reason, o.fate, o.firstSeen, o.windowStart, o.window));
    }
    return CollectionConverters.asScala(out.iterator());
  }

  @Override
  public void handleInitialState(String key, Row seed, TimerValues timerValues) {
    int firstDay = epochDay(seed.getAs("first_day"));
    List<Row> days = seed.getList(seed.fieldIndex("days"));
    double[][] values = new double[days.size()][];
    int[] day = new int[days.size()];
    long[] source = new long[days.size()];
    for (int i = 0; i < days.size(); i++) {
      Row d = days.get(i);
      day[i] = epochDay(d.getAs("date"));
      source[i] = d.getLong(d.fieldIndex("source"));
      values[i] = new double[1 + SIGNALS];
      values[i][0] = d.getDouble(d.fieldIndex("cycles"));
      for (int s = 0; s < SIGNALS; s++) {
        int at = d.fieldIndex(signals[s]);
        values[i][1 + s] = d.isNullAt(at) ? Double.NaN : d.getDouble(at);
      }
    }
    state.update(new History(firstDay, day, source, values).sorted().encode());
  }

  /** Decide one battery's rows of a micro-batch against its history (null: none yet). */
  Decided advance(History history, List<Row> rows) {
    Integer[] order = new Integer[rows.size()];
    for (int i = 0; i < order.length; i++) {
      order[i] = i;
    }
    Arrays.sort(order, fields.byPosition(rows));
    Map<Integer, Long> stored = new HashMap<>();
    Integer latest = null;
    if (history != null) {
      for (int i = 0; i < history.day.length; i++) {
        stored.put(history.day[i], history.source[i]);
      }
      latest = history.day[history.day.length - 1];
    }
    Outcome[] outcomes = new Outcome[rows.size()];
    Set<Integer> taken = new HashSet<>();
    List<Integer> fresh = new ArrayList<>();
    for (int index : order) {
      Row row = rows.get(index);
      int day = fields.day(row);
      if (latest != null && day < latest - lateAfterDays) {
        outcomes[index] = Outcome.rejected(lateReason(day, latest));
      } else if (stored.containsKey(day)) {
        outcomes[index] =
            stored.get(day) == fields.source(row)
                ? Outcome.of(STORED)
                : Outcome.rejected("duplicate");
      } else if (!taken.add(day)) {
        outcomes[index] = Outcome.rejected("duplicate");
      } else {
        fresh.add(index);
      }
    }
    if (fresh.isEmpty()) {
      return new Decided(null, outcomes);
    }
    History merged = History.merge(history, fresh, rows, fields);
    int earliest = fresh.get(0);
    for (int index : fresh) {
      if (fields.day(rows.get(index)) < fields.day(rows.get(earliest))) {
        earliest = index;
      }
    }
    for (int index : fresh) {
      int end = fields.day(rows.get(index));
      int start = Math.max(merged.firstDay, end - windowDays + 1);
      outcomes[index] =
          new Outcome(NEW, null, history == null && index == earliest, start, merged.window(start, end));
    }
    // Windows first, trimming after: an out-of-order reading of this batch may need days that
    // the batch's newest reading pushes out of reach.
    return new Decided(merged.keepFrom(merged.latest() - (windowDays + lateAfterDays) + 1), outcomes);
  }

  /** Days since 1970-01-01 of a date value (java.sql.Date, or LocalDate with the Java 8 API). */
  static int epochDay(Object date) {
    if (date instanceof LocalDate) {
      return (int) ((LocalDate) date).toEpochDay();
    }
    return (int) ((Date) date).toLocalDate().toEpochDay();
  }

  private String lateReason(int day, int latest) {
    return "late: "
        + LocalDate.ofEpochDay(day)
        + " is more than "
        + lateAfterDays
        + " days before the battery's latest reading "
        + LocalDate.ofEpochDay(latest);
  }

  private Row output(
      Row row, String reason, String fate, boolean firstSeen, Integer windowStart, byte[] window) {
    int width = row.length() - 2; // without _key and _source
    Object[] values = new Object[width + 4];
    for (int i = 0; i < width; i++) {
      values[i] = row.get(i + 2);
    }
    if (REJECTED.equals(fate) && reason != null) {
      values[fields.reason - 2] = reason;
    }
    values[width] = fate;
    values[width + 1] = firstSeen;
    values[width + 2] = windowStart;
    values[width + 3] = window;
    return RowFactory.create(values);
  }

  /** Where a row's fields are (looked up once, from the first row's schema). */
  static final class Fields implements java.io.Serializable {
    final int source;
    final int date;
    final int cycles;
    final int[] health;
    final int topic;
    final int partition;
    final int offset;
    final int reason;

    Fields(Row sample, String[] signals) {
      source = sample.fieldIndex("_source");
      date = sample.fieldIndex("date");
      cycles = sample.fieldIndex("daily_cycles_used");
      health = new int[signals.length];
      for (int s = 0; s < signals.length; s++) {
        health[s] = sample.fieldIndex(signals[s]);
      }
      topic = sample.fieldIndex("topic");
      partition = sample.fieldIndex("partition");
      offset = sample.fieldIndex("offset");
      reason = sample.fieldIndex("reason");
    }

    int day(Row row) {
      return epochDay(row.get(date));
    }

    long source(Row row) {
      return row.getLong(source);
    }

    /** Row indices in Kafka order: topic, partition, offset (the lowest wins a duplicate). */
    Comparator<Integer> byPosition(List<Row> rows) {
      return Comparator.comparing((Integer i) -> rows.get(i).getString(topic))
          .thenComparingInt(i -> rows.get(i).getInt(partition))
          .thenComparingLong(i -> rows.get(i).getLong(offset));
    }

    double[] values(Row row) {
      double[] v = new double[1 + health.length];
      v[0] = row.getDouble(cycles);
      for (int s = 0; s < health.length; s++) {
        v[1 + s] = row.isNullAt(health[s]) ? Double.NaN : row.getDouble(health[s]);
      }
      return v;
    }
  }

  /** One reading's fate; a new one carries its window's first day and packed days. */
  static final class Outcome {
    final String fate;
    final String reason;
    final boolean firstSeen;
    final Integer windowStart;
    final byte[] window;

    Outcome(String fate, String reason, boolean firstSeen, Integer windowStart, byte[] window) {
      this.fate = fate;
      this.reason = reason;
      this.firstSeen = firstSeen;
      this.windowStart = windowStart;
      this.window = window;
    }

    static Outcome of(String fate) {
      return new Outcome(fate, null, false, null, null);
    }

    static Outcome rejected(String reason) {
      return new Outcome(REJECTED, reason, false, null, null);
    }
  }

  /** A micro-batch's decisions for one battery, and its new history (null: unchanged). */
  static final class Decided {
    final History history;
    final Outcome[] outcomes;

    Decided(History history, Outcome[] outcomes) {
      this.history = history;
      this.outcomes = outcomes;
    }
  }

  /** A battery's stored days, sorted by day, and the first day it ever reported. */
  static final class History {
    final int firstDay;
    final int[] day;
    final long[] source;
    final double[][] values; // per day: cycles, then the health signals

    History(int firstDay, int[] day, long[] source, double[][] values) {
      this.firstDay = firstDay;
      this.day = day;
      this.source = source;
      this.values = values;
    }

    int latest() {
      return day[day.length - 1];
    }

    static History merge(History old, List<Integer> fresh, List<Row> rows, Fields fields) {
      int have = old == null ? 0 : old.day.length;
      int n = have + fresh.size();
      int[] day = new int[n];
      long[] source = new long[n];
      double[][] values = new double[n][];
      if (old != null) {
        System.arraycopy(old.day, 0, day, 0, have);
        System.arraycopy(old.source, 0, source, 0, have);
        System.arraycopy(old.values, 0, values, 0, have);
      }
      int firstDay = old == null ? Integer.MAX_VALUE : old.firstDay;
      for (int k = 0; k < fresh.size(); k++) {
        Row row = rows.get(fresh.get(k));
        day[have + k] = fields.day(row);
        source[have + k] = fields.source(row);
        values[have + k] = fields.values(row);
        firstDay = Math.min(firstDay, day[have + k]);
      }
      return new History(firstDay, day, source, values).sorted();
    }

    History sorted() {
      Integer[] order = new Integer[day.length];
      for (int i = 0; i < order.length; i++) {
        order[i] = i;
      }
      Arrays.sort(order, Comparator.comparingInt(i -> day[i]));
      int[] d = new int[day.length];
      long[] s = new long[day.length];
      double[][] v = new double[day.length][];
      for (int i = 0; i < order.length; i++) {
        d[i] = day[order[i]];
        s[i] = source[order[i]];
        v[i] = values[order[i]];
      }
      return new History(firstDay, d, s, v);
    }

    /** The stored days from `first` on (the first day ever reported is kept). */
    History keepFrom(int first) {
      int from = 0;
      while (from < day.length && day[from] < first) {
        from++;
      }
      return new History(
          firstDay,
          Arrays.copyOfRange(day, from, day.length),
          Arrays.copyOfRange(source, from, source.length),
          Arrays.copyOfRange(values, from, values.length));
    }

    /** The days in [start, end], packed (DAY_BYTES each). */
    byte[] window(int start, int end) {
      int count = 0;
      for (int d : day) {
        if (d >= start && d <= end) {
          count++;
        }
      }
      ByteBuffer out = ByteBuffer.allocate(count * DAY_BYTES).order(ByteOrder.LITTLE_ENDIAN);
      for (int i = 0; i < day.length; i++) {
        if (day[i] >= start && day[i] <= end) {
          out.putInt(day[i]);
          for (double v : values[i]) {
            out.putDouble(v);
          }
        }
      }
      return out.array();
    }

    byte[] encode() {
      ByteBuffer out =
          ByteBuffer.allocate(8 + day.length * STATE_DAY_BYTES).order(ByteOrder.LITTLE_ENDIAN);
      out.putInt(LAYOUT).putInt(firstDay);
      for (int i = 0; i < day.length; i++) {
        out.putInt(day[i]).putLong(source[i]);
        for (double v : values[i]) {
          out.putDouble(v);
        }
      }
      return out.array();
    }

    static History decode(byte[] bytes) {
      ByteBuffer in = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
      int layout = in.getInt();
      if (layout != LAYOUT) {
        throw new IllegalStateException(
            "Battery state layout " + layout + " is not one this job can read.");
      }
      int firstDay = in.getInt();
      int n = (bytes.length - 8) / STATE_DAY_BYTES;
      int[] day = new int[n];
      long[] source = new long[n];
      double[][] values = new double[n][1 + SIGNALS];
      for (int i = 0; i < n; i++) {
        day[i] = in.getInt();
        source[i] = in.getLong();
        for (int s = 0; s < 1 + SIGNALS; s++) {
          values[i][s] = in.getDouble();
        }
      }
      return new History(firstDay, day, source, values);
    }
  }
}
