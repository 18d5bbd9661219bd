/**
 * The panel of one computation: its version, rates, instances (worker, host,
 * state, load), errors and dead letters, the timeline of its deploys, swaps,
 * canaries, rollbacks and scales with each one's measured pause, and a live
 * tail of its logs.
 */
import { html } from 'htm/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { fetchDeadLetters, fetchHistory, followLogs, type ComputationView, type DeadLetterView, type LogLine, type StatusView, type TimelineEntry } from './api.js';
import { RateChart, type RateSeries } from './chart.js';
import { clock, dayAndClock, ms, rate } from './format.js';

/** Log lines kept on screen. */
const LOG_LINES = 200;
const HISTORY_REFRESH_MS = 2_000;

export function Panel(props: { name: string; status: StatusView; series: RateSeries | undefined; onClose: () => void }) {
  const { name, status } = props;
  const c = status.computations.find((x) => x.name === name);
  return html`
    <aside class="panel" data-panel=${name}>
      <header>
        <h2>${name}</h2>
        <button class="close" onClick=${props.onClose} aria-label="close">×</button>
      </header>
      ${c ? html`<${Summary} c=${c} />` : html`<p class="gone">${name} is not deployed now.</p>`}
      ${c && props.series && html`<section><h3>records per second</h3><${RateChart} series=${props.series} width=${440} /></section>`}
      ${c && html`<${Instances} c=${c} status=${status} />`}
      <${Timeline} name=${name} version=${c?.version} />
      ${c && c.deadLetters > 0 && html`<${DeadLetters} name=${name} count=${c.deadLetters} />`}
      <${Logs} name=${name} />
    </aside>`;
}

function Summary(props: { c: ComputationView }) {
  const { c } = props;
  return html`
    <dl class="summary">
      <dt>version</dt><dd data-version=${c.version}>v${c.version} <span class="muted">${c.lang} · sha ${c.sha.slice(0, 12)}</span></dd>
      <dt>rates</dt><dd>in ${rate(c.inPerSec)} · out ${rate(c.outPerSec)}</dd>
      <dt>reads</dt><dd>${c.istreams.length ? c.istreams.map((i) => `${i.stream} (${i.grouping})`).join(', ') : 'nothing (a source)'}</dd>
      <dt>writes</dt><dd>${c.ostreams.length ? c.ostreams.join(', ') : 'nothing (a sink)'}</dd>
      ${c.group && html`<dt>fused</dt><dd>in group ${c.group}</dd>`}
      <dt>errors</dt><dd class=${c.errors ? 'bad' : ''} data-errors=${c.errors}>${c.errors}</dd>
      <dt>dead letters</dt><dd class=${c.deadLetters ? 'bad' : ''} data-dead-letters=${c.deadLetters}>${c.deadLetters}${c.deadLetters ? html` <span class="muted">(topo tap --dead-letters ${c.name})</span>` : ''}</dd>
      ${c.coolDown && html`<dt>cool-down</dt><dd class="bad">${JSON.stringify(c.coolDown)}</dd>`}
      ${c.stuckCount ? html`<dt>stuck</dt><dd class="bad">${c.stuckCount} time(s)</dd>` : ''}
      ${c.lostSinceCheckpoint ? html`<dt>lost</dt><dd class="bad">${c.lostSinceCheckpoint} record(s) since a checkpoint</dd>` : ''}
    </dl>`;
}

function Instances(props: { c: ComputationView; status: StatusView }) {
  const workers = new Map(props.status.workers.map((w) => [w.workerId, w]));
  return html`
    <section>
      <h3>instances</h3>
      <table class="instances">
        <thead><tr><th>#</th><th>worker</th><th>host</th><th>state</th><th>in</th><th>out</th><th>busy</th><th>held</th><th>queue</th><th>errors</th></tr></thead>
        <tbody>
          ${props.c.instances.map((i) => {
            const w = workers.get(i.workerId);
            return html`
              <tr data-instance=${i.instanceId}>
                <td>${i.index}</td>
                <td class=${w?.alive === false ? 'bad' : ''}>${i.workerId}${w?.alive === false ? ' (dead)' : ''}</td>
                <td>${w?.host ?? '?'}</td>
                <td>${i.state}</td>
                <td>${rate(i.inPerSec)}</td>
                <td>${rate(i.outPerSec)}</td>
                <td>${i.metrics.busyMs !== undefined ? `${Math.round(i.metrics.busyMs / 10)}%` : ''}</td>
                <td>${i.metrics.backpressuredMs !== undefined ? `${Math.round(i.metrics.backpressuredMs / 10)}%` : ''}</td>
                <td>${i.metrics.queueDepth ?? ''}</td>
                <td>${i.metrics.errors}${i.metrics.deadLetters ? ` / dlq ${i.metrics.deadLetters}` : ''}</td>
              </tr>
              ${i.lastError && html`<tr class="error-row"><td colspan="10">${i.lastError}</td></tr>`}`;
          })}
        </tbody>
      </table>
    </section>`;
}

function describe(e: TimelineEntry): string {
  switch (e.action) {
    case 'swap':
    case 'canary':
    case 'promote':
    case 'rollback':
      return e.fromVersion !== undefined ? `v${e.fromVersion} → v${e.version}` : `v${e.version}`;
    default:
      return `v${e.version}`;
  }
}

function Timeline(props: { name: string; version: number | undefined }) {
  const [entries, setEntries] = useState<TimelineEntry[] | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  useEffect(() => {
    const abort = new AbortController();
    const load = (): void => {
      fetchHistory(props.name, abort.signal).then((e) => { setEntries(e); setError(undefined); })
        .catch((err: Error) => { if (!abort.signal.aborted) setError(err.message); });
    };
    load();
    // Scales, moves and fusion keep the version, so the version alone does not say when to look again.
    const timer = setInterval(load, HISTORY_REFRESH_MS);
    return () => { abort.abort(); clearInterval(timer); };
  }, [props.name, props.version]);
  return html`
    <section>
      <h3>timeline</h3>
      ${error && html`<p class="bad">${error}</p>`}
      ${entries === undefined ? html`<p class="muted">loading…</p>` : entries.length === 0 ? html`<p class="muted">no history</p>` : html`
        <ol class="timeline">
          ${[...entries].reverse().map((e) => html`
            <li class=${`entry result-${e.result}`} data-action=${e.action} data-version=${e.version} data-result=${e.result}>
              <span class="when" title=${dayAndClock(e.at)}>${clock(e.at)}</span>
              <span class="action">${e.action}</span>
              <span class="versions">${describe(e)}</span>
              <span class="result">${e.result}</span>
              ${e.pauseMs !== undefined && html`<span class="pause" data-pause-ms=${e.pauseMs}>paused ${ms(e.pauseMs)}</span>`}
              ${e.loadMs !== undefined && html`<span class="load">load ${ms(e.loadMs)}</span>`}
              ${e.error && html`<div class="entry-error">${e.error}</div>`}
            </li>`)}
        </ol>`}
    </section>`;
}

/** The latest dead letters, read again whenever the count in the status changes. */
function DeadLetters(props: { name: string; count: number }) {
  const [letters, setLetters] = useState<DeadLetterView[] | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  useEffect(() => {
    const abort = new AbortController();
    fetchDeadLetters(props.name, abort.signal).then((d) => { setLetters(d); setError(undefined); })
      .catch((err: Error) => { if (!abort.signal.aborted) setError(err.message); });
    return () => abort.abort();
  }, [props.name, props.count]);
  return html`
    <section>
      <h3>dead letters <span class="muted">(latest; all: topo tap --dead-letters ${props.name})</span></h3>
      ${error && html`<p class="bad">${error}</p>`}
      ${letters === undefined ? html`<p class="muted">loading…</p>` : html`
        <ol class="dead-letters">
          ${[...letters].reverse().map((d) => html`
            <li data-seq=${d.seq}>
              <span class="when">${clock(d.at)}</span> <b>${d.reason}</b> <span class="muted">on ${d.stream} · ${d.instanceId}</span>
              <div class="dl-error">${d.error}</div>
              ${d.key !== undefined && html`<div class="dl-record"><span class="muted">key</span> ${d.key} <span class="muted">value</span> ${d.value ?? ''}</div>`}
              ${d.rawBytes !== undefined && html`<div class="muted">${d.rawBytes} raw byte(s)</div>`}
            </li>`)}
        </ol>`}
    </section>`;
}

function logText(l: LogLine): { at: string; level: string; version: string; msg: string; rest: string } {
  // The runtime's own bindings (runtime/worker/logs.ts) say what the panel already shows; the version is shown apart.
  const { time, level, msg, version, computation: _c, instance: _i, instanceId: _id, index: _x, worker: _w, pid: _p, hostname: _h, ...rest } = l.line;
  const levelName = typeof level === 'number' ? ({ 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' } as Record<number, string>)[level] ?? String(level) : String(level ?? '');
  return {
    at: typeof time === 'number' ? clock(time) : '',
    version: typeof version === 'number' ? `v${version}` : version === undefined ? '' : String(version),
    level: levelName,
    msg: typeof msg === 'string' ? msg : JSON.stringify(msg ?? ''),
    rest: Object.keys(rest).length ? JSON.stringify(rest) : '',
  };
}

function Logs(props: { name: string }) {
  const [lines, setLines] = useState<LogLine[]>([]);
  const box = useRef<HTMLDivElement>(null);
  const following = useRef(true);
  useEffect(() => {
    // An EventSource reconnects by itself and is sent the backlog again: start over then.
    return followLogs(props.name, (l) => setLines((prev) => [...prev.slice(-(LOG_LINES - 1)), l]), () => setLines([]));
  }, [props.name]);
  // Newest at the bottom, kept in view unless the reader scrolled up.
  useEffect(() => {
    const el = box.current;
    if (el && following.current) el.scrollTop = el.scrollHeight;
  }, [lines]);
  const onScroll = (): void => {
    const el = box.current;
    if (el) following.current = el.scrollHeight - el.scrollTop - el.clientHeight < 30;
  };
  return html`
    <section>
      <h3>logs <span class="muted">(live)</span></h3>
      <div class="logs" ref=${box} onScroll=${onScroll}>
        ${lines.length === 0 ? html`<p class="muted">no log lines yet</p>` : lines.map((l) => {
          const t = logText(l);
          return html`<div class=${`log level-${t.level}`}><span class="when">${t.at}</span> <span class="level">${t.level}</span> <span class="inst">[${l.index}]</span> <span class="muted">${t.version}</span> ${t.msg} <span class="muted">${t.rest}</span></div>`;
        })}
      </div>
    </section>`;
}
