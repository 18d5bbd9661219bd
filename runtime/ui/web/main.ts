/**
 * The topo web UI: the running topology's graph, live, with a panel per
 * computation. Served by the controller (runtime/controller/uiAssets.ts) and
 * bundled by bin/build-ui.mjs. Read-only: changes go through the CLI.
 */
import { html, render } from 'htm/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { followStatus, type Connection, type StatusView, type WorkerStatus } from './api.js';
import { pushSample, type RateSeries } from './chart.js';
import { ago, clock } from './format.js';
import { Graph, layOut, structureKey, type Layout } from './graph.js';
import { Panel } from './panel.js';
import './style.css';

/** The computation named in the address (#c=<name>), so a panel can be linked to and survives a reload. */
function selectedFromHash(): string | undefined {
  const m = /^#c=(.+)$/.exec(location.hash);
  if (!m) return undefined;
  try {
    return decodeURIComponent(m[1]!);
  } catch {
    return undefined;
  }
}

function App() {
  const [status, setStatus] = useState<StatusView | undefined>(undefined);
  const [receivedAt, setReceivedAt] = useState(0);
  const [connection, setConnection] = useState<Connection>('connecting');
  const [layout, setLayout] = useState<Layout | undefined>(undefined);
  const [layoutError, setLayoutError] = useState<string | undefined>(undefined);
  const [selected, setSelected] = useState<string | undefined>(selectedFromHash());
  const series = useRef(new Map<string, RateSeries>());
  const layingOut = useRef<string | undefined>(undefined);

  useEffect(() => followStatus((s) => {
    const now = Date.now();
    const names = new Set(s.computations.map((c) => c.name));
    for (const c of s.computations) {
      let r = series.current.get(c.name);
      if (!r) series.current.set(c.name, (r = { t: [], in: [], out: [] }));
      pushSample(r, now, c.inPerSec, c.outPerSec);
    }
    for (const n of series.current.keys()) if (!names.has(n)) series.current.delete(n);
    setStatus(s);
    setReceivedAt(now);
    setConnection('live');
  }, setConnection), []);

  useEffect(() => {
    const onHash = (): void => setSelected(selectedFromHash());
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);

  useEffect(() => {
    if (!status) return;
    const key = structureKey(status);
    if (key === layout?.key || key === layingOut.current) return;
    layingOut.current = key;
    layOut(status).then((l) => { if (layingOut.current === key) { setLayout(l); setLayoutError(undefined); } })
      .catch((err: Error) => setLayoutError(err.message));
  }, [status]);

  const select = (name: string | undefined): void => {
    history.replaceState(null, '', name === undefined ? location.pathname : `#c=${encodeURIComponent(name)}`);
    setSelected(name);
  };

  return html`
    <header class="top">
      <h1>topo</h1>
      <span class=${`connection ${connection}`} data-connection=${connection}>${connection === 'live' ? 'live' : connection === 'connecting' ? 'connecting…' : 'controller unreachable'}</span>
      ${status && html`<span class="muted">${status.natsUrl ?? ''} · ${status.computations.length} computation(s) · updated ${clock(receivedAt)}</span>`}
      <span class="legend"><i class="pressure-none"></i>flowing <i class="pressure-some"></i>held back ≥5% <i class="pressure-high"></i>held back ≥25%</span>
    </header>
    ${status && html`<${Workers} workers=${status.workers} />`}
    <main class=${selected ? 'with-panel' : ''}>
      <div class="canvas">
        ${layoutError && html`<p class="bad">layout failed: ${layoutError}</p>`}
        ${!status ? html`<p class="muted">waiting for the controller…</p>`
          : status.computations.length === 0 ? html`<p class="muted" data-empty="true">nothing deployed yet: <code>topo deploy file.ts</code></p>`
          : layout ? html`<${Graph} status=${status} layout=${layout} selected=${selected} onSelect=${select} />`
          : html`<p class="muted">laying out…</p>`}
      </div>
      ${selected && status && html`<${Panel} key=${selected} name=${selected} status=${status} series=${series.current.get(selected)} onClose=${() => select(undefined)} />`}
    </main>`;
}

function Workers(props: { workers: WorkerStatus[] }) {
  return html`
    <nav class="workers" aria-label="workers">
      ${props.workers.length === 0 ? html`<span class="muted">no workers registered</span>` : props.workers.map((w) => html`
        <span class=${`worker ${w.alive ? 'alive' : 'dead'}`} data-worker=${w.workerId} data-alive=${String(w.alive)}
              title=${`pid ${w.pid}, last heartbeat ${ago(w.lastSeen)}`}>
          <b>${w.workerId}</b> ${w.host} · ${w.lang} · ${w.instances} instance(s) · ${w.alive ? 'alive' : `DEAD (last seen ${ago(w.lastSeen)})`}
        </span>`)}
    </nav>`;
}

render(html`<${App} />`, document.getElementById('app')!);
