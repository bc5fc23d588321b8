// @ts-check
/**
 * Line charts on uPlot (https://github.com/leeoniya/uPlot): a ~50 kB canvas chart library, fast
 * with thousands of points (per-batch losses) and updated in place with setData, so a live
 * curve gains points without the chart being rebuilt. A chart is rebuilt only when the set of
 * series changes (a new metric appears).
 */
import uPlot from 'uplot';
import { h } from './dom.js';

export const PALETTE = ['#1f6feb', '#d1242f', '#1a7f37', '#9a6700', '#8250df', '#bf3989', '#0a7ea4', '#6e7781', '#fb8500', '#2da44e', '#cf222e', '#0550ae'];

/**
 * @typedef {{ label: string, values: Array<number | null>, points?: boolean, width?: number, dash?: number[], color?: string }} LineSeries
 * @typedef {{ x: number[], series: LineSeries[] }} LineTable
 */

export class LineChart {
  /**
   * @param {{ title: string, xLabel: string, yLabel?: string, log?: boolean, height?: number, testId?: string }} options
   */
  constructor(options) {
    this.options = options;
    this.plotArea = h('div', { class: 'chart-plot' });
    this.empty = h('p', { class: 'muted chart-empty' }, 'no points yet');
    this.element = h(
      'figure',
      { class: 'chart', 'data-chart': options.testId ?? options.title, 'data-points': 0 },
      h('figcaption', {}, options.title),
      this.plotArea,
      this.empty,
    );
    /** @type {uPlot | null} */
    this.plot = null;
    this.signature = '';
    this.resizeObserver = new ResizeObserver(() => this.fit());
    this.resizeObserver.observe(this.element);
  }

  /**
   * Shows one or more tables, each with its own x values (they are merged onto one x axis).
   * @param {LineTable[]} tables
   */
  update(tables) {
    const present = tables.filter((t) => t.x.length > 0 && t.series.length > 0);
    const series = present.flatMap((t) => t.series);
    const points = present.length ? Math.max(...present.filter((t) => t.series.some((s) => s.points !== false)).map((t) => t.x.length), 0) : 0;
    this.element.dataset.points = String(points);
    this.empty.hidden = present.length > 0;
    if (present.length === 0) {
      this.destroy();
      return;
    }
    /** @type {uPlot.AlignedData} */
    const data =
      present.length === 1
        ? [present[0].x, ...present[0].series.map((s) => s.values)]
        : uPlot.join(present.map((t) => /** @type {uPlot.AlignedData} */ ([t.x, ...t.series.map((s) => s.values)])));
    const signature = series.map((s) => s.label).join('\u0000');
    if (this.plot && signature === this.signature) {
      this.plot.setData(data);
      return;
    }
    this.destroy();
    this.signature = signature;
    this.plot = new uPlot(this.config(series), data, this.plotArea);
    this.fit();
  }

  /** @param {LineSeries[]} series */
  config(series) {
    const { xLabel, yLabel, log } = this.options;
    /** @type {uPlot.Options} */
    const opts = {
      width: this.width(),
      height: this.options.height ?? 220,
      scales: { x: { time: false }, y: log ? { distr: 3 } : {} },
      axes: [
        { label: xLabel, labelSize: 18, size: 36 },
        { label: yLabel ?? '', labelSize: yLabel ? 18 : 0, size: 60, values: (_u, splits) => splits.map(tick) },
      ],
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      series: [
        { label: xLabel },
        ...series.map((s, i) => ({
          label: s.label,
          stroke: s.color ?? PALETTE[i % PALETTE.length],
          width: s.width ?? 2,
          dash: s.dash,
          spanGaps: true,
          points: { show: s.points !== false, size: 6 },
          /** @param {uPlot} _u @param {number | null} v */
          value: (_u, v) => (v === null || v === undefined ? '—' : String(Number(v.toPrecision(4)))),
        })),
      ],
    };
    return opts;
  }

  width() {
    return Math.max(240, Math.floor(this.element.clientWidth || 480) - 4);
  }

  fit() {
    if (this.plot) this.plot.setSize({ width: this.width(), height: this.options.height ?? 220 });
  }

  destroy() {
    this.plot?.destroy();
    this.plot = null;
    this.signature = '';
  }
}

/**
 * An axis tick: three significant digits, so 0.0012 and 0.001 stay apart.
 * @param {number | null} v
 */
function tick(v) {
  if (v === null || v === undefined) return '';
  if (v === 0) return '0';
  const abs = Math.abs(v);
  return abs < 1e-3 || abs >= 1e5 ? v.toExponential(1) : String(Number(v.toPrecision(3)));
}

/**
 * Precision-recall curves as reported (one polyline per class, points in any order) on one
 * recall grid, as the interpolated precision envelope: the best precision at recall ≥ r.
 * @param {Record<string, { precision: Array<number | null>, recall: Array<number | null> }>} curves
 * @returns {LineTable}
 */
export function prCurveTable(curves) {
  const grid = Array.from({ length: 101 }, (_, i) => i / 100);
  const series = Object.entries(curves).map(([name, curve]) => {
    /** @type {Array<[number, number]>} */
    const pts = [];
    curve.recall.forEach((r, i) => {
      const p = curve.precision[i];
      if (r !== null && p !== null && p !== undefined) pts.push([r, p]);
    });
    pts.sort((a, b) => a[0] - b[0]);
    const values = grid.map((r) => {
      let best = null;
      for (const [rr, p] of pts) if (rr >= r - 1e-9 && (best === null || p > best)) best = p;
      return best;
    });
    return { label: name, values, points: false };
  });
  return { x: grid, series };
}
