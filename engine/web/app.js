// inflight live view: status strip, live decision table, and one panel per pipeline.
// Plain ES2020 in one file, no build step. Data from the server is only ever inserted as text.
'use strict';
(() => {
  const LC = window.LightweightCharts;
  const $ = (id) => document.getElementById(id);
  const TOKEN = new URLSearchParams(location.search).get('token');
  const MAX_ROWS = 500; // rows in the DOM
  const KEPT_ROWS = 2000; // decisions kept for inflightView.data()
  const HISTORY = 2000; // replay asked for on connect: more than the table shows, for the chart markers
  const BAR_LIMIT = 500;
  const MAX_FIXES = 50;
  const MARKERS_PER_KEY = 1000;
  const ACTIONS = { trading: ['BUY', 'SELL', 'HOLD'], flight: ['REBOOK', 'PROTECT', 'ESCALATE', 'NONE'],
    code: ['FIX', 'SUGGEST'] };
  const STYLED_ACTIONS = new Set(Object.values(ACTIONS).flat());
  const STYLED_BY = new Set(['rules', 'llm', 'fallback', 'budget']);
  const C = { up: '#26a69a', down: '#ef5350', upA: 'rgba(38,166,154,.5)', downA: 'rgba(239,83,80,.5)',
    upV: 'rgba(38,166,154,.28)', downV: 'rgba(239,83,80,.28)', macd: '#4c8dff', signal: '#f5a623',
    rsi: '#c792ea', level: '#56647a', grid: '#1e2630', line: '#262f3b', text: '#8492a4', bg: '#151b23' };

  // Test hook (tests/browser/view.mjs polls it): plain counts, cheap to serialize, that only grow while
  // the page is left alone; data() returns the arrays behind them.
  const kept = { rows: [], candles: [], rsiPoints: [], macdPoints: [], markers: [] };
  const view = window.inflightView = {
    pipeline: null, rows: 0, candles: 0, rsiPoints: 0, macdPoints: 0, markers: 0, missed: 0,
    data: () => Object.fromEntries(Object.entries(kept).map(([k, v]) => [k, [...v]])),
  };

  const state = {
    pipeline: null, history: HISTORY, selectedKey: null, filters: { key: '', action: '', decided_by: '' },
    es: null, esGen: 0, lastSeq: 0, retryTimer: 0, pending: [], flushTimer: 0,
    keys: [], seenKeys: new Set(), keysDirty: false, latestByKey: new Map(),
  };

  // ---------- helpers ----------
  function api(path, params = {}) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== '' && v != null) q.set(k, v);
    if (TOKEN) q.set('token', TOKEN); // EventSource cannot send headers, so the token rides in the query
    const s = q.toString();
    return s ? `${path}?${s}` : path;
  }
  async function getJSON(path, params) {
    const r = await fetch(api(path, params), { cache: 'no-store' });
    if (!r.ok) throw Object.assign(new Error(`HTTP ${r.status}`), { status: r.status });
    return r.json();
  }
  // Strings become text nodes: data never reaches innerHTML.
  function el(tag, cls, ...kids) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    for (const k of kids) if (k != null) e.append(typeof k === 'object' ? k : String(k));
    return e;
  }
  const titled = (e, title) => { e.title = title ?? ''; return e; };
  const keyed = (e, key) => { e.dataset.key = key ?? ''; return e; };
  const badge = (a) => el('span', STYLED_ACTIONS.has(a) ? `badge a-${a}` : 'badge', a ?? '?');
  const byChip = (by) => el('span', STYLED_BY.has(by) ? `by by-${by}` : 'by', by ?? '?');

  const pad = (n) => String(n).padStart(2, '0');
  const MONTHS = 'Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec'.split(' ');
  function fmtTime(t, withDate = true) {
    const d = new Date(t);
    if (Number.isNaN(d.getTime())) return String(t ?? '—');
    const hms = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
    return withDate ? `${MONTHS[d.getUTCMonth()]} ${pad(d.getUTCDate())} ${hms}` : hms;
  }
  function fmtRate(x) {
    if (!Number.isFinite(x)) return '—';
    if (x >= 1e6) return `${(x / 1e6).toFixed(2)}M`;
    return x >= 100 ? Math.round(x).toLocaleString('en-US') : x.toFixed(1);
  }
  const fmtInt = (x) => (Number.isFinite(x) ? x.toLocaleString('en-US') : '—');
  const fmtNum = (x, d) => (Number.isFinite(x) ? x.toFixed(d) : '—');
  function fmtDuration(s) {
    if (!Number.isFinite(s)) return '—';
    if (s < 60) return `${s.toFixed(1)} s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${pad(Math.floor(s % 60))}s`;
    return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
  }
  function fmtBytes(n) {
    let i = 0;
    for (; n >= 1024 && i < 3; i++) n /= 1024;
    return Number.isFinite(n) ? `${i ? n.toFixed(1) : n} ${['B', 'KiB', 'MiB', 'GiB'][i]}` : '—';
  }
  // Prices run from 0.0001 to 100000: decimals follow the magnitude.
  const decimalsFor = (p) => Math.min(8, Math.max(2, Math.ceil(3 - Math.log10(Math.abs(p) || 1))));
  const finite = (...xs) => xs.every(Number.isFinite);

  // ---------- status strip ----------
  function setMetric(id, value, title, cls) {
    const m = $(id);
    m.querySelector('b').textContent = value;
    m.title = title || '';
    m.classList.remove('warn', 'bad', 'good', 'done');
    if (cls) m.classList.add(cls);
  }
  function setConn(kind, text) {
    $('conn').className = `conn conn-${kind}`;
    $('conn').textContent = text;
  }
  function renderMissed() {
    setMetric('m-missed', fmtInt(view.missed), 'decisions this page lost because it fell behind the stream',
      view.missed > 0 ? 'warn' : '');
  }
  function renderStats(s) {
    setMetric('m-eps', fmtRate(s.events_per_s), `${fmtInt(s.events_in)} events in`);
    setMetric('m-dps', fmtRate(s.decisions_per_s), `${fmtInt(s.decisions)} decisions out`);
    const lag = s.lag_seconds;
    if (s.replay_speed) {
      // A replay of old data: the wall clock minus its event time says nothing.
      setMetric('m-lag', `replay ${s.replay_speed}x`,
        s.frontier ? `event-time frontier ${s.frontier}` : 'no event time yet', '');
    } else {
      setMetric('m-lag', lag == null ? '—' : fmtDuration(lag),
        s.frontier ? `event-time frontier ${s.frontier}` : 'no event time yet', lag > 30 ? 'bad' : lag > 5 ? 'warn' : '');
    }
    const dl = s.dead_letters || {};
    const reasons = Object.entries(dl.by_reason || {}).map(([r, n]) => `${r}: ${n}`).join('\n');
    setMetric('m-dead', fmtInt(dl.total ?? 0), reasons || 'none', dl.total > 0 ? 'warn' : '');
    const l = s.llm;
    if (l) {
      const lat = l.latency_ms || {};
      setMetric('m-llm', fmtInt(l.in_flight), `calls ${fmtInt(l.calls)}, fallbacks ${fmtInt(l.fallbacks)}\n` +
        `latency p50 ${fmtNum(lat.p50, 1)} ms, p99 ${fmtNum(lat.p99, 1)} ms`);
    } else {
      setMetric('m-llm', 'off', 'no LLM stage in this run');
    }
    const cl = s.clients || {};
    setMetric('m-clients', fmtInt(cl.connected), `${fmtInt(cl.disconnected_slow ?? 0)} dropped for being slow`);
    setMetric('m-state', s.done ? 'done' : 'running', s.done ? 'the run finished' : 'the run is in progress',
      s.done ? 'done' : 'good');
    $('uptime').textContent = `up ${fmtDuration(s.uptime_s)}`;
    $('operators').replaceChildren(...(s.operators || []).flatMap((o, i) =>
      [i ? ' › ' : '', el('b', null, o.name), ` ${fmtInt(o.in)}→${fmtInt(o.out)}`]));
    const cp = s.checkpoint;
    $('checkpoint').textContent = cp
      ? `last checkpoint ${fmtTime(cp.time, false)} UTC · ${fmtBytes(cp.bytes)} in ${fmtNum(cp.duration_ms, 0)} ms`
      : '';
  }
  let statsBusy = false;
  async function pollStats() {
    if (statsBusy) return;
    statsBusy = true;
    try {
      renderStats(await getJSON('/api/stats'));
    } catch (e) {
      setMetric('m-state', e.status === 401 ? 'denied' : 'offline', `stats: ${e.message}`, 'bad');
    } finally {
      statsBusy = false;
    }
  }

  // ---------- decision stream ----------
  // A connect made here (start, filter change, retry after a fatal close) has no Last-Event-ID, so the
  // server replays history and the table starts over; the browser's own reconnects resume by id.
  function connect() {
    clearTimeout(state.retryTimer);
    if (state.es) state.es.close();
    const gen = ++state.esGen;
    state.lastSeq = 0;
    state.pending = [];
    kept.rows = [];
    $('decisions').tBodies[0].replaceChildren();
    updateEmpty();
    const f = state.filters;
    const es = state.es = new EventSource(api('/api/decisions',
      { history: state.history, key: f.key, action: f.action, decided_by: f.decided_by }));
    setConn('wait', 'connecting');
    es.onopen = () => { if (gen === state.esGen) setConn('live', 'live'); };
    es.addEventListener('decision', (e) => {
      const seq = Number(e.lastEventId);
      if (gen !== state.esGen || (seq && seq <= state.lastSeq)) return; // a repeat after a reconnect
      if (seq) state.lastSeq = seq;
      let d;
      try { d = JSON.parse(e.data); } catch { return; }
      if (d && typeof d === 'object') onDecision(d);
    });
    es.addEventListener('missed', (e) => {
      try { view.missed += Number(JSON.parse(e.data).missed) || 0; } catch { /* a bad frame counts nothing */ }
      renderMissed();
    });
    es.addEventListener('end', (e) => {
      if (gen !== state.esGen) return;
      let n = null;
      try { n = JSON.parse(e.data).decisions; } catch { /* keep the plain label */ }
      es.close(); // the run is over: nothing more comes, and a reconnect would only replay it
      setConn('done', n == null ? 'run finished' : `run finished: ${fmtInt(n)} decisions`);
    });
    es.addEventListener('bye', (e) => {
      let reason = 'closed';
      try { reason = JSON.parse(e.data).reason || reason; } catch { /* keep the default */ }
      setConn('done', `server: ${reason}`);
    });
    es.onerror = () => {
      if (gen !== state.esGen) return;
      if (es.readyState === EventSource.CLOSED) { // an HTTP error: the browser gives up, we retry
        setConn('down', 'offline');
        state.retryTimer = setTimeout(connect, 3000);
      } else if (!$('conn').classList.contains('conn-done')) {
        setConn('wait', 'reconnecting');
      }
    };
  }

  function onDecision(d) {
    view.rows++;
    kept.rows.push(d);
    if (kept.rows.length > KEPT_ROWS) kept.rows = kept.rows.slice(-KEPT_ROWS);
    state.pending.push(d);
    if (d.key != null) {
      state.latestByKey.set(d.key, d);
      if (!state.seenKeys.has(d.key) && state.seenKeys.size < 2000) {
        state.seenKeys.add(d.key);
        state.keysDirty = true;
      }
    }
    addActionOption(d.action);
    if (PANELS[state.pipeline]) PANELS[state.pipeline].decision(d);
    if (!state.flushTimer) state.flushTimer = setTimeout(flush, 100);
  }

  // Batched, so that a replay of thousands of decisions builds the DOM once.
  function flush() {
    state.flushTimer = 0;
    const batch = state.pending.slice(-MAX_ROWS);
    state.pending = [];
    const tbody = $('decisions').tBodies[0];
    const fresh = batch.length <= 5;
    tbody.prepend(...batch.reverse().map((d) => decisionRow(d, fresh)));
    while (tbody.rows.length > MAX_ROWS) tbody.lastChild.remove();
    updateEmpty();
    if (state.keysDirty) renderKeyList();
    if (PANELS[state.pipeline]) PANELS[state.pipeline].render();
  }

  function decisionRow(d, fresh) {
    const tr = el('tr', d.key === state.selectedKey ? 'sel' : fresh ? 'fresh' : '',
      titled(el('td', 't', fmtTime(d.event_time)), `event ${d.event_time ?? '—'}\ndecided ${d.decided_at ?? '—'}`),
      titled(el('td', 'k', d.key ?? '—'), d.key), el('td', null, badge(d.action)),
      el('td', 'num', fmtNum(d.confidence, 2)), el('td', null, byChip(d.decided_by)),
      titled(el('td', 'r', d.reason ?? ''), d.reason));
    return keyed(tr, d.key);
  }

  function updateEmpty() {
    const n = $('decisions').tBodies[0].rows.length;
    const f = state.filters;
    const filtered = f.key || f.action || f.decided_by;
    $('decisions-empty').hidden = n > 0;
    $('decisions-empty').textContent = filtered ? 'No decisions match these filters yet.' : 'Waiting for decisions…';
    $('row-count').textContent = n
      ? `${fmtInt(n)} shown${n >= MAX_ROWS ? ' (latest)' : ''}${filtered ? ' · filtered' : ''}` : '';
  }

  function addActionOption(action) {
    const sel = $('f-action');
    if (typeof action === 'string' && action && ![...sel.options].some((o) => o.value === action)) {
      sel.append(new Option(action, action));
    }
  }

  // ---------- filters and key selection ----------
  function readFilters() {
    const next = { key: $('f-key').value.trim(), action: $('f-action').value, decided_by: $('f-by').value };
    if (JSON.stringify(next) === JSON.stringify(state.filters)) return;
    state.filters = next;
    connect();
  }
  let keyTimer = 0;
  $('f-key').addEventListener('input', () => { clearTimeout(keyTimer); keyTimer = setTimeout(readFilters, 400); });
  for (const id of ['f-key', 'f-action', 'f-by']) $(id).addEventListener('change', readFilters);
  $('decisions').tBodies[0].addEventListener('click', (e) => {
    const tr = e.target.closest('tr');
    if (tr && tr.dataset.key) selectKey(tr.dataset.key);
  });

  function selectKey(key) {
    if (key == null || key === '') return;
    state.selectedKey = key;
    for (const tr of $('decisions').tBodies[0].rows) tr.classList.toggle('sel', tr.dataset.key === key);
    if (PANELS[state.pipeline]) PANELS[state.pipeline].select(key);
  }

  function renderKeyList() {
    state.keysDirty = false;
    const all = [...new Set([...state.keys, ...state.seenKeys])].sort().slice(0, 1000);
    $('key-list').replaceChildren(...all.map((k) => new Option(k, k)));
  }

  // ---------- trading: candles + RSI + MACD ----------
  const T = {
    charts: [], price: null, volume: null, rsi: null, macd: null, signal: null, hist: null,
    bars: [], index: new Map(), times: new Set(), sig: '', busy: false, precision: '', macdDecimals: 4, hover: undefined,
    markerStore: new Map(), markerSig: '',
  };

  function chartOptions(showTime, logo) {
    return {
      autoSize: true,
      layout: { background: { type: 'solid', color: C.bg }, textColor: C.text, fontSize: 11, attributionLogo: logo },
      grid: { vertLines: { color: C.grid }, horzLines: { color: C.grid } },
      rightPriceScale: { borderColor: C.line, minimumWidth: 84 }, // equal widths keep the time axes aligned
      timeScale: { visible: showTime, borderColor: C.line, timeVisible: true, secondsVisible: true, rightOffset: 3 },
      crosshair: { mode: LC.CrosshairMode.Normal },
    };
  }

  function setupCharts() {
    if (!LC) { $('bars-note').textContent = 'the chart library did not load'; return; }
    const line = (chart, color) => chart.addLineSeries({ color, lineWidth: 1.5, priceLineVisible: false });
    // The TradingView logo on the top pane is the attribution its license asks for.
    const price = LC.createChart($('c-price'), chartOptions(false, true));
    T.price = price.addCandlestickSeries({ upColor: C.up, downColor: C.down, borderVisible: false,
      wickUpColor: C.up, wickDownColor: C.down });
    T.price.priceScale().applyOptions({ scaleMargins: { top: 0.12, bottom: 0.2 } });
    T.volume = price.addHistogramSeries({ priceScaleId: 'vol', priceFormat: { type: 'volume' },
      lastValueVisible: false, priceLineVisible: false });
    price.priceScale('vol').applyOptions({ scaleMargins: { top: 0.84, bottom: 0 } });

    const rsi = LC.createChart($('c-rsi'), chartOptions(false, false));
    T.rsi = line(rsi, C.rsi);
    T.rsi.applyOptions({ autoscaleInfoProvider: () => ({ priceRange: { minValue: 0, maxValue: 100 } }) });
    for (const price of [30, 70]) {
      T.rsi.createPriceLine({ price, color: C.level, lineWidth: 1, lineStyle: LC.LineStyle.Dashed, title: '' });
    }

    const macd = LC.createChart($('c-macd'), chartOptions(true, false));
    T.hist = macd.addHistogramSeries({ priceLineVisible: false, lastValueVisible: false });
    T.macd = line(macd, C.macd);
    T.signal = line(macd, C.signal);
    T.charts = [price, rsi, macd];

    // Every pane has one point per bar (whitespace where an indicator has no value yet), so logical
    // ranges and crosshair times line up exactly across the panes.
    let syncing = false;
    T.charts.forEach((c, i) => c.timeScale().subscribeVisibleLogicalRangeChange((r) => {
      if (syncing || !r) return;
      syncing = true;
      T.charts.forEach((o, j) => { if (j !== i) o.timeScale().setVisibleLogicalRange(r); });
      syncing = false;
    }));
    const anchors = [T.price, T.rsi, T.macd];
    const valueAt = [(b) => b.close, (b) => b.rsi, (b) => b.macd && b.macd.value];
    T.charts.forEach((c, i) => c.subscribeCrosshairMove((p) => {
      if (syncing || (p.point && !p.sourceEvent)) return; // only follow the mouse, not our own moves
      syncing = true;
      T.hover = p.point ? p.time : undefined; // the legends keep showing this bar across data updates
      const bar = T.hover != null ? T.bars[T.index.get(T.hover)] : undefined;
      T.charts.forEach((o, j) => {
        const v = bar && valueAt[j](bar);
        if (j === i) return;
        if (Number.isFinite(v)) o.setCrosshairPosition(v, p.time, anchors[j]); else o.clearCrosshairPosition();
      });
      syncing = false;
      renderLegends(bar);
    }));
    $('key-select').addEventListener('change', (e) => selectKey(e.target.value));
  }

  function renderLegends(bar = T.bars[T.index.get(T.hover) ?? T.bars.length - 1]) {
    const lp = $('lg-price'), lr = $('lg-rsi'), lm = $('lg-macd');
    lp.replaceChildren(el('b', null, state.selectedKey ?? ''));
    lr.replaceChildren(el('b', null, 'RSI 14'));
    lm.replaceChildren(el('b', null, 'MACD 12 26 9'));
    if (!bar) return;
    const dp = decimalsFor(bar.close);
    const dir = bar.close >= bar.open ? 'up' : 'down';
    for (const f of ['open', 'high', 'low', 'close']) {
      lp.append(el('span', dir, `${f[0].toUpperCase()} ${fmtNum(bar[f], dp)}`));
    }
    lp.append(el('span', null, `V ${fmtNum(bar.volume, 2)}`), el('span', null, fmtTime(bar.time * 1000)));
    lr.append(el('span', 'rsi', fmtNum(bar.rsi, 2)));
    const m = bar.macd;
    if (m) {
      const md = T.macdDecimals + 1;
      lm.append(el('span', 'mac', fmtNum(m.value, md)), el('span', 'sig', fmtNum(m.signal, md)),
        el('span', m.histogram >= 0 ? 'up' : 'down', fmtNum(m.histogram, md)));
    }
  }

  function setBars(raw) {
    // lightweight-charts throws on unsorted or repeated times: one bar per second, ascending.
    const byTime = new Map();
    for (const b of Array.isArray(raw) ? raw : []) {
      if (b && finite(b.time, b.open, b.high, b.low, b.close)) byTime.set(Math.floor(b.time / 1000), b);
    }
    const times = [...byTime.keys()].sort((a, b) => a - b);
    const last = byTime.get(times[times.length - 1]);
    const sig = `${state.selectedKey}|${times.length}|${times[0]}|${JSON.stringify(last)}`;
    if (sig === T.sig) return;
    const keyChanged = !T.sig.startsWith(`${state.selectedKey}|`);
    T.sig = sig;

    const candles = [], vols = [], rsi = [], macd = [], signal = [], hist = [], rsiPoints = [], macdPoints = [];
    T.bars = [];
    T.index = new Map();
    for (const time of times) {
      const b = byTime.get(time);
      T.index.set(time, T.bars.length);
      T.bars.push({ ...b, time });
      candles.push({ time, open: b.open, high: b.high, low: b.low, close: b.close });
      vols.push({ time, value: Number.isFinite(b.volume) ? b.volume : 0, color: b.close >= b.open ? C.upV : C.downV });
      if (Number.isFinite(b.rsi)) rsiPoints.push({ time, value: b.rsi });
      rsi.push(Number.isFinite(b.rsi) ? { time, value: b.rsi } : { time });
      const m = b.macd;
      if (m && finite(m.value, m.signal, m.histogram)) {
        macd.push({ time, value: m.value });
        signal.push({ time, value: m.signal });
        hist.push({ time, value: m.histogram, color: m.histogram >= 0 ? C.upA : C.downA });
        macdPoints.push({ time, value: m.value, signal: m.signal, histogram: m.histogram });
      } else {
        for (const a of [macd, signal, hist]) a.push({ time });
      }
    }
    if (last) {
      const p = decimalsFor(last.close);
      const mp = decimalsFor(Math.max(1e-9, ...macdPoints.map((m) => Math.abs(m.value))));
      if (`${p}/${mp}` !== T.precision) {
        T.precision = `${p}/${mp}`;
        T.macdDecimals = mp;
        T.price.applyOptions({ priceFormat: { type: 'price', precision: p, minMove: 10 ** -p } });
        const macdFormat = { priceFormat: { type: 'price', precision: mp, minMove: 10 ** -mp } };
        for (const s of [T.macd, T.signal, T.hist]) s.applyOptions(macdFormat);
      }
    }
    for (const [series, data] of [[T.price, candles], [T.volume, vols], [T.rsi, rsi], [T.macd, macd],
      [T.signal, signal], [T.hist, hist]]) series.setData(data);
    T.times = new Set(times);
    Object.assign(kept, { candles, rsiPoints, macdPoints });
    Object.assign(view, { candles: candles.length, rsiPoints: rsiPoints.length, macdPoints: macdPoints.length });
    if (keyChanged) T.charts.forEach((c) => c.timeScale().scrollToRealTime());
    T.markerSig = '';
    renderMarkers();
    renderLegends();
    $('bars-note').textContent = times.length ? `${times.length} bars · last ${fmtTime(last.time)} UTC`
      : 'no bars yet';
  }

  function renderMarkers() {
    if (!T.price) return;
    const store = T.markerStore.get(state.selectedKey);
    // A marker must sit on a bar the chart has; decisions older than the bars shown are left out.
    const ms = store ? [...store.values()].filter((m) => T.times.has(m.time)).sort((a, b) => a.time - b.time) : [];
    const sig = `${state.selectedKey}|${ms.length}|${ms.length && ms[0].time}|${ms.length && ms[ms.length - 1].time}`;
    if (sig === T.markerSig) return;
    T.markerSig = sig;
    T.price.setMarkers(ms);
    kept.markers = ms;
    view.markers = ms.length;
  }

  function renderLastDecision() {
    const d = state.latestByKey.get(state.selectedKey);
    $('last-decision').replaceChildren(...(d
      ? ['latest', badge(d.action), `${fmtTime(d.event_time, false)} · ${d.reason ?? ''}`] : []));
    $('last-decision').title = d ? d.reason ?? '' : '';
  }

  async function refreshKeys() {
    try {
      const keys = await getJSON('/api/keys');
      if (!Array.isArray(keys)) return;
      if (keys.join('\n') !== state.keys.join('\n')) {
        state.keys = keys.map(String);
        renderKeySelect();
        renderKeyList();
      }
      if (state.selectedKey == null && state.keys.length) selectKey(state.keys[0]);
    } catch { /* the next poll retries */ }
  }

  function renderKeySelect() {
    const keys = [...state.keys];
    if (state.selectedKey != null && !keys.includes(state.selectedKey)) keys.unshift(state.selectedKey);
    $('key-select').replaceChildren(...keys.map((k) => new Option(k, k, false, k === state.selectedKey)));
  }

  async function pollBars() {
    const key = state.selectedKey;
    if (key == null || T.busy || !T.price) return;
    T.busy = true;
    try {
      const bars = await getJSON(`/api/keys/${encodeURIComponent(key)}/bars`, { limit: BAR_LIMIT });
      if (key === state.selectedKey) setBars(bars);
    } catch (e) {
      if (key === state.selectedKey && e.status === 404) {
        setBars([]);
        $('bars-note').textContent = 'no bars for this key';
      }
    } finally {
      T.busy = false;
      if (key !== state.selectedKey) pollBars(); // the key changed while we waited
    }
  }

  const tradingPanel = {
    decision(d) {
      if (state.selectedKey == null && d.key != null) selectKey(d.key);
      if ((d.action !== 'BUY' && d.action !== 'SELL') || d.key == null || d.id == null) return;
      const time = Math.floor(Date.parse(d.event_time) / 1000); // event_time is the bar's end: its chart time
      if (!Number.isFinite(time)) return;
      if (!T.markerStore.has(d.key)) T.markerStore.set(d.key, new Map());
      const store = T.markerStore.get(d.key); // by decision id, so replays after a reconnect add nothing
      store.set(String(d.id), d.action === 'BUY'
        ? { time, position: 'belowBar', color: C.up, shape: 'arrowUp', text: 'BUY' }
        : { time, position: 'aboveBar', color: C.down, shape: 'arrowDown', text: 'SELL' });
      if (store.size > MARKERS_PER_KEY) store.delete(store.keys().next().value);
    },
    render() { renderMarkers(); renderLastDecision(); },
    select(key) {
      renderKeySelect();
      renderLastDecision();
      if (!T.sig.startsWith(`${key}|`)) { T.bars = []; T.index = new Map(); } // until the key's bars arrive
      renderLegends();
      pollBars();
    },
  };

  // ---------- flight: affected bookings ----------
  const bookings = new Map(); // booking key -> its latest decision
  const route = (f) => (f ? `${f.origin ?? '?'}→${f.destination ?? '?'}` : '');

  function bookingRow(d) {
    const ev = d.evidence || {};
    const b = ev.booking || {}, st = ev.status || {}, alt = ev.alternative, conn = ev.connection;
    const delay = ev.delay_minutes ?? st.delay_minutes;
    const disrupted = st.flight_id
      ? `${st.flight_id} ${String(st.status ?? '').toLowerCase()}${delay ? ` +${delay} min` : ''} ${route(ev.flight)}`
      : '—';
    const leg = ev.broken_leg
      ? `${ev.broken_leg}${conn && conn.flight_id === ev.broken_leg ? ` ${route(conn)}` : ''}` : '—';
    const altTd = alt
      ? el('td', null, `${alt.flight_id ?? '?'} ${route(alt)} · dep ${fmtTime(alt.departure)}`)
      : el('td', 'muted', 'no alternative');
    const tr = el('tr', d.key === state.selectedKey ? 'sel' : '', el('td', 'k', b.booking_id ?? d.key),
      el('td', 'num', b.passengers ?? '—'), el('td', null, disrupted), el('td', null, leg),
      el('td', null, badge(d.action)), altTd, el('td', 't', fmtTime(d.event_time)));
    return keyed(titled(tr, d.reason), d.key);
  }

  const flightPanel = {
    decision(d) {
      if (d.key == null) return;
      const prev = bookings.get(d.key);
      // Replays can bring an older decision after a newer one: event time, then decision time, decide.
      if (!prev || `${d.event_time}|${d.decided_at}` >= `${prev.event_time}|${prev.decided_at}`) bookings.set(d.key, d);
    },
    render() {
      const latest = [...bookings.keys()].sort().slice(0, 1000).map((k) => bookings.get(k));
      $('bookings').tBodies[0].replaceChildren(...latest.map(bookingRow));
      $('bookings-empty').hidden = latest.length > 0;
      const counts = new Map();
      for (const d of latest) counts.set(d.action, (counts.get(d.action) || 0) + 1);
      $('booking-summary').replaceChildren(...[...counts].sort().map(([a, n]) => el('span', 'count', badge(a), n)));
    },
    select(key) {
      for (const tr of $('bookings').tBodies[0].rows) {
        tr.classList.toggle('sel', tr.dataset.key === key);
        if (tr.dataset.key === key) tr.scrollIntoView({ block: 'nearest' });
      }
    },
  };

  // ---------- code: fixes with their diffs ----------
  let fixes = []; // newest first

  function renderDiff(text) {
    if (typeof text !== 'string' || !text) return el('div', 'diff-none', 'no diff');
    const pre = el('pre', 'diff');
    let inHunk = false;
    for (const line of text.replace(/\n$/, '').split('\n')) {
      if (line.startsWith('@@')) inHunk = true;
      // '---'/'+++' name the files only before the first hunk; inside one they are removed/added lines.
      const cls = line.startsWith('@@') ? 'hunk' : !inHunk && /^(---|\+\+\+) /.test(line) ? 'meta'
        : line[0] === '+' ? 'add' : line[0] === '-' ? 'del' : line[0] === '\\' ? 'meta' : '';
      pre.append(el('span', cls, line || ' '));
    }
    return pre;
  }

  function fixCard(d) {
    const ev = d.evidence || {};
    const name = d.key && d.key !== '-' ? d.key : (ev.file || 'snippet'); // '-': code sent without a file name
    const what = [ev.language, ev.error_type, ev.error_line != null ? `line ${ev.error_line}` : null]
      .filter(Boolean).join(' · ');
    const ok = ev.validated === true;
    const head = el('div', 'fix-head', titled(el('span', 'fix-file', name), name), badge(d.action),
      el('span', 'fix-meta', `conf ${fmtNum(d.confidence, 2)}`),
      el('span', ok ? 'ok' : 'ko', `validated ${ok ? '✓' : '✗'}`), byChip(d.decided_by));
    const reason = el('div', 'fix-reason', what ? el('span', 'muted', `${what} · `) : null, d.reason ?? '');
    return keyed(el('article', d.key === state.selectedKey ? 'fix sel' : 'fix', head, reason, renderDiff(ev.diff)),
      d.key);
  }

  const codePanel = {
    decision(d) {
      if (d.id != null && fixes.some((f) => f.id === d.id)) return; // a replay after a reconnect
      fixes = [d, ...fixes].slice(0, MAX_FIXES);
    },
    render() {
      $('fixes').replaceChildren(...fixes.map(fixCard));
      $('fixes-empty').hidden = fixes.length > 0;
      const ok = fixes.filter((f) => f.evidence && f.evidence.validated === true).length;
      $('fix-summary').replaceChildren(el('span', 'count', `${fixes.length} latest · ${ok} validated`));
    },
    select(key) {
      const cards = [...$('fixes').children];
      for (const c of cards) c.classList.toggle('sel', c.dataset.key === key);
      const first = cards.find((c) => c.dataset.key === key);
      if (first) first.scrollIntoView({ block: 'nearest' });
    },
  };

  const PANELS = { trading: tradingPanel, flight: flightPanel, code: codePanel };

  // ---------- start ----------
  async function start() {
    let info;
    while (!info) {
      try {
        info = await getJSON('/api/info');
      } catch (e) {
        setConn('down', e.status === 401 ? 'unauthorized: check the token' : 'server unreachable');
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
    const p = state.pipeline = view.pipeline = String(info.pipeline ?? 'unknown');
    $('pipeline').textContent = p;
    $('version').textContent = info.version ? `v${info.version}` : '';
    document.title = `inflight · ${p}`;
    if (ACTIONS[p]) document.body.classList.add(`p-${p}`);
    if (Number.isFinite(info.history)) state.history = Math.max(0, Math.min(HISTORY, info.history));
    for (const a of ACTIONS[p] || []) addActionOption(a);
    if (ACTIONS[p]) $(`view-${p}`).hidden = false;
    if (p === 'trading') {
      setupCharts();
      refreshKeys();
      setInterval(refreshKeys, 5000);
      setInterval(pollBars, 1000);
    }
    connect();
    renderMissed();
    pollStats();
    setInterval(pollStats, 1000);
  }

  start();
})();
