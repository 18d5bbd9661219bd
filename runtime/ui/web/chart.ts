/** A computation's records in and out per second over the last minutes, drawn with uPlot. */
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { html } from 'htm/preact';
import { useEffect, useRef } from 'preact/hooks';

/** Samples kept per computation: three minutes of one status a second. */
export const RATE_SAMPLES = 180;

export interface RateSeries {
  /** Seconds since the epoch (uPlot's time scale). */
  t: number[];
  in: number[];
  out: number[];
}

/** Appends one sample, dropping the oldest past RATE_SAMPLES. */
export function pushSample(series: RateSeries, atMs: number, inPerSec: number, outPerSec: number): void {
  series.t.push(atMs / 1000);
  series.in.push(inPerSec);
  series.out.push(outPerSec);
  if (series.t.length > RATE_SAMPLES) for (const a of [series.t, series.in, series.out]) a.shift();
}

export function RateChart(props: { series: RateSeries; width: number }) {
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    if (!host.current) return;
    plot.current = new uPlot({
      width: props.width,
      height: 150,
      legend: { live: false },
      scales: { y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [{ stroke: '#8b949e', grid: { stroke: '#30363d' } }, { stroke: '#8b949e', grid: { stroke: '#30363d' }, size: 56 }],
      series: [
        {},
        { label: 'in/s', stroke: '#58a6ff', width: 2 },
        { label: 'out/s', stroke: '#3fb950', width: 2 },
      ],
    }, [props.series.t, props.series.in, props.series.out], host.current);
    return () => {
      plot.current?.destroy();
      plot.current = null;
    };
  }, [props.width]);
  useEffect(() => {
    plot.current?.setData([props.series.t.slice(), props.series.in.slice(), props.series.out.slice()]);
  });
  return html`<div class="rate-chart" ref=${host} data-samples=${props.series.t.length}></div>`;
}
