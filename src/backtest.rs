//! `inflight backtest`: the trading decisions of a file, of two files side by side (`--compare`),
//! or of a run of the pipeline itself (rules, or recorded LLM calls with `--llm-replay`), filled
//! against the ticks; a summary, a JSON report, an equity chart (`--chart`, drawn with plotters)
//! and the chart's page on `--serve`.

use anyhow::{Context, Result, bail};
use clap::Args;
use inflight::pipelines::trading::backtest::{Costs, Report, backtest, read_orders, read_prices};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Backtest trading decisions against the ticks they were made on: each BUY or SELL is filled at
/// its asset's first tick at or after the decision's event_time; P&L, fees and drawdown.
#[derive(Args)]
pub struct BacktestArgs {
    /// The ticks: market-event JSON lines.
    #[arg(short, long)]
    input: PathBuf,
    /// The decisions: JSON lines as `run trading` writes them. Without it (and without
    /// --compare), the trading pipeline is run on --input first and its decisions are backtested.
    #[arg(long, conflicts_with = "compare")]
    decisions: Option<PathBuf>,
    /// Two decision files backtested side by side, in one table (e.g. rules and LLM decisions).
    #[arg(long, num_args = 2, value_names = ["A", "B"])]
    compare: Vec<PathBuf>,
    /// Run the pipeline with its LLM stage answered from this call log (`run --llm-log`): no
    /// request is made.
    #[arg(long, conflicts_with_all = ["decisions", "compare"])]
    llm_replay: Option<PathBuf>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Fee on each trade's value, in basis points.
    #[arg(long, default_value_t = 10.0)]
    fee_bps: f64,
    /// Units per BUY or SELL that carries no suggested_size (a SELL sells at most what is held).
    #[arg(long, default_value_t = 1.0)]
    size: f64,
    /// Draw the total equity over time into this file: .html (a self-contained page) or .svg.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// After the backtest, serve the chart and the report on this address (e.g. 127.0.0.1:8090)
    /// until interrupted.
    #[arg(long)]
    serve: Option<String>,
    /// Flags for the pipeline run (after `--`), e.g. `-- --config trading.toml`.
    #[arg(last = true)]
    run_args: Vec<String>,
}

/// One backtested decision set.
struct Run {
    name: String,
    report: Report,
}

/// Runs `inflight backtest`.
pub fn run(args: BacktestArgs) -> Result<()> {
    let BacktestArgs { fee_bps, size, .. } = args;
    if !(fee_bps.is_finite() && fee_bps >= 0.0) {
        bail!("--fee-bps {fee_bps} must be a number of basis points, 0 or more");
    }
    if !(size.is_finite() && size > 0.0) {
        bail!("--size {size} must be a positive number of units");
    }
    for (flag, path) in [("--report", &args.report), ("--chart", &args.chart)] {
        if let Some(dir) = path.as_deref().and_then(Path::parent).filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
            bail!("{flag}: directory {} does not exist", dir.display());
        }
    }
    let chart = args.chart.as_deref().map(ChartKind::of).transpose()?;
    if !args.run_args.is_empty() && (args.decisions.is_some() || !args.compare.is_empty()) {
        bail!("flags after `--` are for the pipeline run; with --decisions or --compare nothing is run");
    }
    let listener = args.serve.as_deref().map(bind).transpose()?;
    let read = |p: &Path| std::fs::read_to_string(p).with_context(|| format!("{}: cannot read", p.display()));
    let (prices, skipped) = read_prices(&read(&args.input)?);
    let costs = Costs { fee_bps };
    let mut sets: Vec<(String, String)> = Vec::new();
    let _ran; // the run's directory lives until its decisions are read
    if let Some(path) = &args.decisions {
        sets.push((path.display().to_string(), read(path)?));
    } else if !args.compare.is_empty() {
        for path in &args.compare {
            sets.push((path.display().to_string(), read(path)?));
        }
    } else {
        let (dir, decisions) = run_pipeline(&args.input, args.llm_replay.as_deref(), &args.run_args)?;
        _ran = dir;
        let name = if args.llm_replay.is_some() { "pipeline (LLM replayed)" } else { "pipeline (rules)" };
        sets.push((name.to_owned(), read(&decisions)?));
    }
    let mut runs = Vec::new();
    for (name, text) in sets {
        let orders = read_orders(&text, size).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        eprintln!(
            "inflight: backtest of {} orders from {name} on {} ticks ({} lines skipped)",
            orders.len(),
            prices.len(),
            skipped
        );
        runs.push(Run { name, report: backtest(&prices, &orders, costs) });
    }
    if let [only] = &runs[..] {
        summary(&only.report);
    } else {
        eprint!("{}", table(&runs));
    }
    let json = report_json(&runs)?;
    if let Some(path) = &args.report {
        std::fs::write(path, json.clone() + "\n").with_context(|| format!("{}: cannot write", path.display()))?;
    }
    let svg = chart_svg(&runs)?;
    if let (Some(path), Some(kind)) = (&args.chart, chart) {
        let text = match kind {
            ChartKind::Svg => svg.clone(),
            ChartKind::Html => page(&svg, &runs),
        };
        std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))?;
        eprintln!("  chart          {}", path.display());
    }
    if let Some(listener) = listener {
        serve(listener, page(&svg, &runs), json)?;
    }
    Ok(())
}

/// Runs `run trading` (this same binary) on `input`; returns its directory and decisions file.
fn run_pipeline(input: &Path, replay: Option<&Path>, extra: &[String]) -> Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let decisions = dir.path().join("decisions.jsonl");
    let exe = std::env::current_exe().context("finding this executable")?;
    let mut command = Command::new(exe);
    command.args(["run", "trading", "--input"]).arg(input).arg("-o").arg(&decisions);
    if let Some(log) = replay {
        if !log.is_file() {
            bail!("--llm-replay: {} is not a file", log.display());
        }
        command.arg("--llm-replay").arg(log);
    }
    // Dead letters to a file of the run (the run's summary counts them), not onto this stderr.
    if !extra.iter().any(|a| a == "--dead-letter" || a.starts_with("--dead-letter=")) {
        command.arg("--dead-letter").arg(dir.path().join("dead-letters.jsonl"));
    }
    command.args(extra);
    eprintln!("inflight: running the trading pipeline on {} for its decisions", input.display());
    // Its summary and errors go to this stderr.
    let status = command.status().context("running the pipeline")?;
    if !status.success() {
        bail!("the pipeline run failed ({status}); its error is above");
    }
    Ok((dir, decisions))
}

fn summary(r: &Report) {
    let t = &r.total;
    eprintln!(
        "  trades         {:>14}  ({} not filled: no later tick, or a SELL with nothing held)",
        t.trades, t.unfilled
    );
    eprintln!(
        "  P&L            {:>14.2}  (realized {:.2}, unrealized {:.2}, fees {:.2})",
        t.pnl, t.realized, t.unrealized, t.fees
    );
    eprintln!("  max drawdown   {:>14.2}", t.max_drawdown);
    eprintln!("  hit rate       {:>13.1} %  (SELLs with a gain)", t.hit_rate * 100.0);
    let mut best: Vec<_> = r.assets.iter().filter(|(_, a)| a.trades > 0).collect();
    best.sort_by(|a, b| b.1.pnl.total_cmp(&a.1.pnl).then(a.0.cmp(b.0)));
    for (name, a) in best.iter().take(10) {
        eprintln!("  {name:<14} {:>14.2}  ({} trades, position {})", a.pnl, a.trades, a.position);
    }
}

/// The totals of several runs, one column each.
fn table(runs: &[Run]) -> String {
    let width = runs.iter().map(|r| r.name.len()).max().unwrap_or(0).max(14);
    let mut out = format!("  {:<14}", "");
    for r in runs {
        let _ = write!(out, " {:>width$}", r.name);
    }
    out.push('\n');
    type Cell = fn(&Report) -> String;
    let rows: [(&str, Cell); 9] = [
        ("trades", |r| r.total.trades.to_string()),
        ("not filled", |r| r.total.unfilled.to_string()),
        ("P&L", |r| format!("{:.2}", r.total.pnl)),
        ("realized", |r| format!("{:.2}", r.total.realized)),
        ("unrealized", |r| format!("{:.2}", r.total.unrealized)),
        ("fees", |r| format!("{:.2}", r.total.fees)),
        ("max drawdown", |r| format!("{:.2}", r.total.max_drawdown)),
        ("hit rate %", |r| format!("{:.1}", r.total.hit_rate * 100.0)),
        ("assets traded", |r| r.assets.values().filter(|a| a.trades > 0).count().to_string()),
    ];
    for (label, cell) in rows {
        let _ = write!(out, "  {label:<14}");
        for r in runs {
            let _ = write!(out, " {:>width$}", cell(&r.report));
        }
        out.push('\n');
    }
    out
}

/// One run: its report as is. Several: `{"compare": [{"decisions": NAME, "total", "assets"}, …]}`.
fn report_json(runs: &[Run]) -> Result<String> {
    let value = match runs {
        [only] => serde_json::to_value(&only.report)?,
        _ => {
            let each = runs.iter().map(|r| {
                let mut v = serde_json::to_value(&r.report)?;
                v["decisions"] = r.name.clone().into();
                Ok(v)
            });
            serde_json::json!({ "compare": each.collect::<Result<Vec<_>>>()? })
        }
    };
    serde_json::to_string_pretty(&value).context("writing the report")
}

#[derive(Clone, Copy)]
enum ChartKind {
    Html,
    Svg,
}

impl ChartKind {
    fn of(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("html" | "htm") => Ok(ChartKind::Html),
            Some("svg") => Ok(ChartKind::Svg),
            _ => bail!("--chart {}: the chart is written as .html or .svg", path.display()),
        }
    }
}

/// Points kept per curve: at most two per bucket (its lowest and highest, in time order), so a
/// million-tick curve draws as fast as a small one and keeps its peaks and troughs.
const BUCKETS: usize = 1_000;

fn thin(curve: &[(u64, f64)], from: u64, to: u64) -> Vec<(f64, f64)> {
    let span = (to - from).max(1) as f64;
    let bucket = |t: u64| (((t - from) as f64 / span) * (BUCKETS - 1) as f64) as usize;
    let mut out: Vec<(u64, f64)> = Vec::new();
    let mut i = 0;
    while i < curve.len() {
        let b = bucket(curve[i].0);
        let mut j = i;
        let (mut lo, mut hi) = (i, i);
        while j < curve.len() && bucket(curve[j].0) == b {
            if curve[j].1 < curve[lo].1 {
                lo = j;
            }
            if curve[j].1 > curve[hi].1 {
                hi = j;
            }
            j += 1;
        }
        out.push(curve[lo.min(hi)]);
        if lo != hi {
            out.push(curve[lo.max(hi)]);
        }
        i = j;
    }
    out.into_iter().map(|(t, e)| ((t - from) as f64 / 60_000.0, e)).collect()
}

/// The equity curves of all runs on one chart, as SVG.
fn chart_svg(runs: &[Run]) -> Result<String> {
    use plotters::prelude::*;
    let times = runs.iter().flat_map(|r| r.report.equity.iter().map(|(t, _)| *t));
    let (from, to) = times.fold((u64::MAX, 0), |(a, b), t| (a.min(t), b.max(t)));
    let from = from.min(to);
    let curves: Vec<Vec<(f64, f64)>> = runs.iter().map(|r| thin(&r.report.equity, from, to)).collect();
    let ys = curves.iter().flatten().map(|(_, e)| *e);
    let (lo, hi) = ys.fold((0.0f64, 0.0f64), |(a, b), e| (a.min(e), b.max(e)));
    let pad = ((hi - lo) * 0.05).max(1e-6);
    let minutes = ((to - from) as f64 / 60_000.0).max(1e-3);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 480)).into_drawing_area();
        let fail = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing the chart: {e}");
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Total equity (P&L after fees)", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..minutes, (lo - pad)..(hi + pad))
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .x_desc(format!("minutes since {}", inflight::engine::time::format_rfc3339(from)))
            .y_desc("equity")
            .draw()
            .map_err(|e| fail(&e))?;
        let colors = [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44)];
        for (i, (run, curve)) in runs.iter().zip(curves).enumerate() {
            let color = colors[i % colors.len()];
            chart
                .draw_series(LineSeries::new(curve, color.stroke_width(2)))
                .map_err(|e| fail(&e))?
                .label(run.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(svg)
}

/// A self-contained page: the chart and the totals table.
fn page(svg: &str, runs: &[Run]) -> String {
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>inflight backtest</title>\
         <style>body{{font-family:sans-serif;margin:2em}}pre{{background:#f6f6f6;padding:1em}}</style></head>\n\
         <body><h1>inflight backtest</h1>\n{svg}\n<pre>{}</pre>\n</body></html>\n",
        escape(&table(runs))
    )
}

fn bind(addr: &str) -> Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("--serve {addr}: cannot listen"))?;
    listener.set_nonblocking(true).context("--serve")?;
    Ok(listener)
}

/// Serves the page on `/` and the report on `/report.json` until the process is interrupted.
fn serve(listener: std::net::TcpListener, page: String, report: String) -> Result<()> {
    use axum::routing::get;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let html = axum::response::Html(page);
        let json = ([(axum::http::header::CONTENT_TYPE, "application/json")], report);
        let app = axum::Router::new().route("/", get(move || async move { html })).route(
            "/report.json",
            get(move || async move { json }),
        );
        eprintln!("inflight: the backtest's chart on http://{addr}/ and its report on http://{addr}/report.json (Ctrl-C stops)");
        axum::serve(listener, app).await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::thin;

    #[test]
    fn thinning_keeps_each_buckets_lowest_and_highest_in_time_order() {
        let curve: Vec<(u64, f64)> =
            (0..100_000u64).map(|t| (t, ((t % 7) as f64) - (t / 50_000) as f64 * 100.0)).collect();
        let kept = thin(&curve, 0, 99_999);
        assert!(kept.len() <= 2 * super::BUCKETS, "{}", kept.len());
        assert!(kept.windows(2).all(|w| w[0].0 <= w[1].0), "in time order");
        let (lo, hi) = kept.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, e)| (a.min(*e), b.max(*e)));
        assert_eq!((lo, hi), (-100.0, 6.0), "the extremes survive");
    }
}
