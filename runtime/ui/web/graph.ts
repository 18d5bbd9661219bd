/**
 * The topology graph: computations as boxes (with their instances, worker and
 * host), streams as edges from producer to consumer labelled with the stream,
 * its grouping and its rate, fusion groups as boxes around their members.
 *
 * Laid out by elkjs (ELK's layered algorithm) rather than dagre: ELK lays out
 * nested nodes (a fusion group holding its members) with edges crossing their
 * border, and places edge labels itself; dagre's compound graphs do neither
 * well. The layout runs only when the structure changes (names, streams,
 * groups, instance counts), not on every status; rates and states are redrawn
 * in place. Everything is rendered as preact text nodes and attributes, so
 * names from the topology are escaped by construction.
 */
import ELK from 'elkjs/lib/elk.bundled.js';
import type { ElkExtendedEdge, ElkNode } from 'elkjs/lib/elk-api.js';
import { html } from 'htm/preact';
import type { ComputationView, InstanceStatus, StatusView, WorkerStatus } from './api.js';
import { backpressureShare, pressureLevel, rate } from './format.js';

const NODE_WIDTH = 250;
const NODE_HEAD = 52;
const CHIP_HEIGHT = 20;
const STREAM_WIDTH = 130;
const STREAM_HEIGHT = 30;
const LABEL_HEIGHT = 30;

/** One stream from a producer to a consumer; an end outside the topology (no producer, or no reader) is a stream node. */
export interface GraphEdge {
  id: string;
  stream: string;
  grouping: string | undefined;
  from: string;
  to: string;
  /** The producing computation, when there is one. */
  producer: string | undefined;
}

interface Structure {
  key: string;
  graph: ElkNode;
  edges: GraphEdge[];
}

export interface Point { x: number; y: number }

export interface Layout {
  key: string;
  width: number;
  height: number;
  nodes: Map<string, { x: number; y: number; width: number; height: number }>;
  edges: Map<string, { points: Point[]; label: Point | undefined }>;
  edgeList: GraphEdge[];
}

const nodeId = (name: string): string => `c:${name}`;
const streamId = (stream: string, side: 'in' | 'out'): string => `s:${side}:${stream}`;
const groupId = (group: string): string => `g:${group}`;

function edgesOf(s: StatusView): GraphEdge[] {
  const producers = new Map<string, string[]>();
  const consumers = new Map<string, { name: string; grouping: string }[]>();
  for (const c of s.computations) {
    for (const o of c.ostreams) producers.set(o, [...(producers.get(o) ?? []), c.name]);
    for (const i of c.istreams) consumers.set(i.stream, [...(consumers.get(i.stream) ?? []), { name: c.name, grouping: i.grouping }]);
  }
  const edges: GraphEdge[] = [];
  const streams = [...new Set([...producers.keys(), ...consumers.keys()])].sort();
  for (const stream of streams) {
    const ps = producers.get(stream) ?? [];
    const cs = consumers.get(stream) ?? [];
    for (const p of ps.length ? ps : [undefined]) {
      for (const c of cs.length ? cs : [undefined]) {
        const from = p !== undefined ? nodeId(p) : streamId(stream, 'in');
        const to = c !== undefined ? nodeId(c.name) : streamId(stream, 'out');
        edges.push({ id: `e:${from}->${to}:${stream}`, stream, grouping: c?.grouping, from, to, producer: p });
      }
    }
  }
  return edges;
}

function labelWidth(e: GraphEdge): number {
  return Math.max(60, 7 * `${e.stream} · ${e.grouping ?? 'no reader'}`.length + 10);
}

function structureOf(s: StatusView): Structure {
  const edges = edgesOf(s);
  const groups = new Map<string, ElkNode>();
  const root: ElkNode = {
    id: 'root',
    layoutOptions: {
      'elk.algorithm': 'layered',
      'elk.direction': 'DOWN', // a pipeline reads top to bottom, leaving the width to the panel beside it
      'elk.hierarchyHandling': 'INCLUDE_CHILDREN',
      'elk.edgeRouting': 'ORTHOGONAL',
      'elk.edgeLabels.placement': 'CENTER',
      'elk.spacing.nodeNode': '36',
      'elk.spacing.edgeLabel': '4',
      'elk.layered.spacing.nodeNodeBetweenLayers': '40',
      'elk.layered.spacing.edgeNodeBetweenLayers': '24',
      'elk.padding': '[top=16,left=16,bottom=16,right=16]',
      // Absolute coordinates for everything, nested or not.
      'elk.json.edgeCoords': 'ROOT',
      'elk.json.shapeCoords': 'ROOT',
    },
    children: [],
    edges: [],
  };
  for (const c of s.computations) {
    const node: ElkNode = { id: nodeId(c.name), width: NODE_WIDTH, height: NODE_HEAD + CHIP_HEIGHT * Math.max(1, c.instances.length) + 6 };
    if (c.group) {
      let g = groups.get(c.group);
      if (!g) {
        g = { id: groupId(c.group), children: [], layoutOptions: { 'elk.padding': '[top=30,left=14,bottom=14,right=14]' } };
        groups.set(c.group, g);
        root.children!.push(g);
      }
      g.children!.push(node);
    } else {
      root.children!.push(node);
    }
  }
  const streamNodes = new Set<string>();
  for (const e of edges) {
    for (const end of [e.from, e.to]) {
      if (end.startsWith('s:') && !streamNodes.has(end)) {
        streamNodes.add(end);
        root.children!.push({ id: end, width: STREAM_WIDTH, height: STREAM_HEIGHT });
      }
    }
    const edge: ElkExtendedEdge = { id: e.id, sources: [e.from], targets: [e.to], labels: [{ id: `${e.id}:label`, text: e.stream, width: labelWidth(e), height: LABEL_HEIGHT }] };
    root.edges!.push(edge);
  }
  const key = JSON.stringify([
    s.computations.map((c) => [c.name, c.istreams, c.ostreams, c.group ?? null, c.instances.length]),
  ]);
  return { key, graph: root, edges };
}

const elk = new ELK();

/** The key of the structure of `s`: a new layout is needed when it changes. */
export function structureKey(s: StatusView): string {
  return structureOf(s).key;
}

export async function layOut(s: StatusView): Promise<Layout> {
  const { key, graph, edges } = structureOf(s);
  const done = await elk.layout(graph);
  const nodes = new Map<string, { x: number; y: number; width: number; height: number }>();
  const walk = (n: ElkNode): void => {
    for (const child of n.children ?? []) {
      nodes.set(child.id, { x: child.x ?? 0, y: child.y ?? 0, width: child.width ?? 0, height: child.height ?? 0 });
      walk(child);
    }
  };
  walk(done);
  const laid = new Map<string, { points: Point[]; label: Point | undefined }>();
  const collect = (n: ElkNode): void => {
    for (const e of (n.edges ?? []) as ElkExtendedEdge[]) {
      const points: Point[] = [];
      for (const sec of e.sections ?? []) points.push(sec.startPoint, ...(sec.bendPoints ?? []), sec.endPoint);
      const l = e.labels?.[0];
      laid.set(e.id, { points, label: l && l.x !== undefined && l.y !== undefined ? { x: l.x, y: l.y } : undefined });
    }
    for (const c of n.children ?? []) collect(c);
  };
  collect(done);
  return { key, width: done.width ?? 0, height: done.height ?? 0, nodes, edges: laid, edgeList: edges };
}

/** Output rate of `producer` on `stream`: the per-stream rate when reported, else all of the producer's output. */
export function edgeRate(c: ComputationView | undefined, stream: string): number {
  if (!c) return 0;
  return c.streamsOutPerSec?.[stream] ?? c.outPerSec;
}

/** The largest share of a second any of the producer's instances spent held back by its output. */
export function edgeBackpressure(c: ComputationView | undefined): number {
  if (!c) return 0;
  return Math.max(0, ...c.instances.map((i) => backpressureShare(i.metrics.backpressuredMs)));
}

function instanceState(i: InstanceStatus, workers: Map<string, WorkerStatus>): string {
  return workers.get(i.workerId)?.alive === false ? 'worker-dead' : i.state;
}

function pathOf(points: Point[]): string {
  return points.map((p, k) => `${k ? 'L' : 'M'}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(' ');
}

export function Graph(props: { status: StatusView; layout: Layout; selected: string | undefined; onSelect: (name: string) => void }) {
  const { status, layout, selected, onSelect } = props;
  const byName = new Map(status.computations.map((c) => [c.name, c]));
  const workers = new Map(status.workers.map((w) => [w.workerId, w]));
  const groups = [...layout.nodes.entries()].filter(([id]) => id.startsWith('g:'));
  const streams = [...layout.nodes.entries()].filter(([id]) => id.startsWith('s:'));
  return html`
    <svg class="graph" width=${layout.width} height=${layout.height} viewBox=${`0 0 ${layout.width} ${layout.height}`} role="img" aria-label="topology graph">
      <defs>
        <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
          <path d="M0,0 L10,5 L0,10 z" class="arrowhead" />
        </marker>
      </defs>
      ${groups.map(([id, g]) => html`
        <g class="fusion-group" data-group=${id.slice(2)}>
          <rect x=${g.x} y=${g.y} width=${g.width} height=${g.height} rx="10" />
          <text x=${g.x + 12} y=${g.y + 19}>fused: ${id.slice(2)}</text>
        </g>`)}
      ${layout.edgeList.map((e) => {
        const laid = layout.edges.get(e.id);
        if (!laid || laid.points.length < 2) return null;
        const producer = e.producer !== undefined ? byName.get(e.producer) : undefined;
        const perSec = edgeRate(producer, e.stream);
        const bp = edgeBackpressure(producer);
        const level = pressureLevel(bp);
        const w = labelWidth(e);
        return html`
          <g class=${`edge pressure-${level}`} data-edge=${e.stream} data-from=${e.from} data-to=${e.to} data-rate=${perSec} data-backpressure=${bp.toFixed(3)}>
            <title>${e.stream}: ${rate(perSec)}${bp > 0 ? `, producer held back ${Math.round(bp * 100)}% of the last second` : ''}</title>
            <path d=${pathOf(laid.points)} marker-end="url(#arrow)" />
            ${laid.label && html`
              <g class="edge-label" transform=${`translate(${laid.label.x},${laid.label.y})`}>
                <rect width=${w} height=${LABEL_HEIGHT} rx="4" />
                <text x="6" y="12" class="stream-name">${e.stream} · ${e.grouping ?? 'no reader'}</text>
                <text x="6" y="25" class="edge-rate">${e.producer === undefined ? 'external' : rate(perSec)}${bp >= 0.05 ? ` · held ${Math.round(bp * 100)}%` : ''}</text>
              </g>`}
          </g>`;
      })}
      ${streams.map(([id, n]) => html`
        <g class="stream-end" data-stream=${id.slice(id.indexOf(':', 2) + 1)}>
          <rect x=${n.x} y=${n.y} width=${n.width} height=${n.height} rx=${n.height / 2} />
          <text x=${n.x + n.width / 2} y=${n.y + n.height / 2 + 4} text-anchor="middle">${id.slice(id.indexOf(':', 2) + 1)}</text>
        </g>`)}
      ${status.computations.map((c) => {
        const n = layout.nodes.get(nodeId(c.name));
        if (!n) return null;
        const troubled = c.errors > 0 || c.deadLetters > 0 || c.coolDown !== undefined;
        return html`
          <g class=${`computation${selected === c.name ? ' selected' : ''}${troubled ? ' troubled' : ''}`} data-computation=${c.name}
             transform=${`translate(${n.x},${n.y})`} onClick=${() => onSelect(c.name)} tabindex="0"
             onKeyDown=${(ev: KeyboardEvent) => { if (ev.key === 'Enter') onSelect(c.name); }}>
            <rect class="box" width=${n.width} height=${n.height} rx="8" />
            <text x="10" y="19" class="name">${c.name}</text>
            <text x=${n.width - 10} y="19" text-anchor="end" class="version">v${c.version} · ${c.lang}</text>
            <text x="10" y="38" class="rates" data-in=${c.inPerSec} data-out=${c.outPerSec}>in ${rate(c.inPerSec)}  out ${rate(c.outPerSec)}${c.errors ? `  errors ${c.errors}` : ''}${c.deadLetters ? `  dlq ${c.deadLetters}` : ''}</text>
            ${c.instances.map((i, k) => {
              const w = workers.get(i.workerId);
              const state = instanceState(i, workers);
              return html`
                <g class=${`instance state-${state}`} data-instance=${i.instanceId} data-worker=${i.workerId} data-state=${state}
                   transform=${`translate(8,${NODE_HEAD + k * CHIP_HEIGHT})`}>
                  <rect width=${n.width - 16} height=${CHIP_HEIGHT - 3} rx="3" />
                  <text x="6" y="12">#${i.index} ${i.workerId}${w ? ` @ ${w.host}` : ''}</text>
                  <text x=${n.width - 22} y="12" text-anchor="end">${state === 'worker-dead' ? 'worker dead' : state}</text>
                </g>`;
            })}
          </g>`;
      })}
    </svg>`;
}
