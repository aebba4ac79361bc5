// The trading job on Apache Flink's DataStream API: the Flink side of `scripts/compare.sh`.
//
// Written the way a Flink user would: FileSource of text lines, Jackson (Flink's shaded copy) to
// parse each JSON tick, event-time watermarks, keyBy(asset) into 1 s tumbling event-time windows
// aggregated to OHLCV bars, then keyBy(asset) into a KeyedProcessFunction that updates TA-Lib's
// RSI(14) and MACD(12,26,9) incrementally on bar closes and applies the specification's rules,
// printing a JSON decision whenever an asset's action changes (the job of scripts/python_loop.py). Heap state, no checkpoints, parallelism from the command line.
// Not used by the build or the tests; scripts/flink.sh compiles and runs it.
//
//   java -cp "$FLINK_LIB/*:classes" TradingJob ticks.jsonl 2 > decisions.jsonl
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayDeque;
import org.apache.flink.api.common.RuntimeExecutionMode;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.functions.FlatMapFunction;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.connector.file.src.FileSource;
import org.apache.flink.connector.file.src.reader.TextLineInputFormat;
import org.apache.flink.core.fs.Path;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.Collector;

public class TradingJob {
  static final long WINDOW_MS = 1000;

  public static class Tick {
    public String asset;
    public long time;
    public double price;
    public double volume;
    public String trend;
  }

  static final class Rsi {
    final int n = 14;
    Double prev;
    int changes;
    double gain, loss;

    Double update(double close) {
      Double p = prev;
      prev = close;
      if (p == null) return null;
      double change = close - p;
      if (changes < n) {
        if (change < 0) loss -= change; else gain += change;
        changes++;
        if (changes < n) return null;
        loss /= n;
        gain /= n;
      } else {
        loss *= n - 1;
        gain *= n - 1;
        if (change < 0) loss -= change; else gain += change;
        loss /= n;
        gain /= n;
      }
      double total = gain + loss;
      return Math.abs(total) < 1e-14 ? 0.0 : 100.0 * (gain / total);
    }
  }

  // TA_MACD: both EMAs start on the 26th close (the fast one seeded with the last 12 closes).
  static final class Macd {
    final ArrayDeque<Double> closes = new ArrayDeque<>();
    boolean seeded;
    double fast, slow;
    int signalSeen;
    double signalSum;
    Double signal;

    double[] update(double close) {
      double value;
      if (!seeded) {
        closes.addLast(close);
        if (closes.size() < 26) return null;
        double all = 0, last = 0;
        int i = 0;
        for (double c : closes) {
          all += c;
          if (i++ >= 26 - 12) last += c;
        }
        fast = last / 12;
        slow = all / 26;
        seeded = true;
        closes.clear();
        value = fast - slow;
      } else {
        fast = (close - fast) * (2.0 / 13) + fast;
        slow = (close - slow) * (2.0 / 27) + slow;
        value = fast - slow;
      }
      if (signal != null) {
        signal = (value - signal) * (2.0 / 10) + signal;
      } else {
        signalSum += value;
        if (++signalSeen == 9) signal = signalSum / 9;
      }
      if (signal == null) return null;
      return new double[] {value, signal, value - signal};
    }
  }

  static final class Parse implements FlatMapFunction<String, Tick> {
    transient ObjectMapper mapper;

    @Override
    public void flatMap(String line, Collector<Tick> out) {
      if (mapper == null) mapper = new ObjectMapper();
      try {
        JsonNode e = mapper.readTree(line);
        Tick t = new Tick();
        t.asset = e.get("asset").asText();
        t.time = Instant.parse(e.get("timestamp").asText()).toEpochMilli();
        t.price = e.get("price").asDouble();
        t.volume = e.get("volume").asDouble();
        JsonNode ctx = e.get("market_context");
        JsonNode trend = ctx == null ? null : ctx.get("trend");
        t.trend = trend == null ? null : trend.asText();
        out.collect(t);
      } catch (Exception bad) {
        // Malformed lines are skipped, as in the Python loop.
      }
    }
  }

  /** An open bar: the window's aggregate. Close (and its trend) from the latest tick by time. */
  public static final class BarAcc {
    public double high = Double.NEGATIVE_INFINITY, low = Double.POSITIVE_INFINITY, close, volume;
    public long closeTime = Long.MIN_VALUE;
    public String trend;
  }

  /** A closed bar. */
  public static final class Bar {
    public String asset;
    public long end;
    public double close;
    public String trend;
  }

  static final class BarAgg implements AggregateFunction<Tick, BarAcc, BarAcc> {
    public BarAcc createAccumulator() {
      return new BarAcc();
    }

    public BarAcc add(Tick t, BarAcc a) {
      a.high = Math.max(a.high, t.price);
      a.low = Math.min(a.low, t.price);
      a.volume += t.volume;
      if (t.time >= a.closeTime) {
        a.closeTime = t.time;
        a.close = t.price;
        a.trend = t.trend;
      }
      return a;
    }

    public BarAcc getResult(BarAcc a) {
      return a;
    }

    public BarAcc merge(BarAcc a, BarAcc b) {
      throw new UnsupportedOperationException("tumbling windows do not merge");
    }
  }

  static final class CloseBar extends ProcessWindowFunction<BarAcc, Bar, String, TimeWindow> {
    @Override
    public void process(String asset, Context cx, Iterable<BarAcc> bars, Collector<Bar> out) {
      for (BarAcc a : bars) {
        Bar b = new Bar();
        b.asset = asset;
        b.end = cx.window().getEnd();
        b.close = a.close;
        b.trend = a.trend;
        out.collect(b);
      }
    }
  }

  /** Per-asset indicator state and the last action. */
  public static final class AssetState {
    final Rsi rsi = new Rsi();
    final Macd macd = new Macd();
    String last;
  }

  /** Indicators on bar closes (a key's bars arrive in window order) and the rules. */
  static final class Decide extends KeyedProcessFunction<String, Bar, String> {
    transient ValueState<AssetState> state;

    @Override
    public void open(OpenContext cx) {
      state = getRuntimeContext().getState(new ValueStateDescriptor<>("asset", AssetState.class));
    }

    @Override
    public void processElement(Bar b, Context cx, Collector<String> out) throws Exception {
      AssetState s = state.value();
      if (s == null) s = new AssetState();
      Double r = s.rsi.update(b.close);
      double[] m = s.macd.update(b.close);
      if (r != null && m != null) {
        String action;
        double conf;
        if (r > 70) {
          action = "SELL";
          conf = 0.85;
        } else if (m[2] > 10 && "bullish".equals(b.trend)) {
          action = "BUY";
          conf = 0.92;
        } else {
          action = "HOLD";
          conf = 0.65;
        }
        if (!action.equals(s.last)) {
          s.last = action;
          out.collect("{\"key\":\"" + b.asset + "\",\"action\":\"" + action + "\",\"confidence\":" + conf
              + ",\"event_time\":" + b.end + ",\"rsi\":" + r + ",\"macd\":{\"value\":" + m[0]
              + ",\"signal\":" + m[1] + ",\"histogram\":" + m[2] + "}}");
        }
      }
      state.update(s);
    }
  }

  public static void main(String[] args) throws Exception {
    String file = args[0];
    int parallelism = args.length > 1 ? Integer.parseInt(args[1]) : 2;
    StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
    env.setRuntimeMode(RuntimeExecutionMode.STREAMING);
    env.setParallelism(parallelism);
    FileSource<String> source =
        FileSource.forRecordStreamFormat(new TextLineInputFormat(), new Path(file)).build();
    env.fromSource(source, WatermarkStrategy.noWatermarks(), "ticks")
        // One file is one split: spread the parsing over every subtask, as inflight does.
        .rebalance()
        .flatMap(new Parse())
        .returns(Tick.class)
        .assignTimestampsAndWatermarks(
            WatermarkStrategy.<Tick>forMonotonousTimestamps().withTimestampAssigner((t, ts) -> t.time))
        .keyBy(t -> t.asset)
        .window(TumblingEventTimeWindows.of(Duration.ofMillis(WINDOW_MS)))
        .aggregate(new BarAgg(), new CloseBar())
        .keyBy(b -> b.asset)
        .process(new Decide())
        .print();
    env.execute("trading");
  }
}
