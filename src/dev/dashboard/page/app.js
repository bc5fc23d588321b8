// @ts-check
/**
 * The dev dashboard: one EventSource on /api/events (a snapshot, then every job update and log
 * line as it happens), a job list, and the selected job's page. Charts and images stay in
 * place across updates; other parts are rebuilt only when their data changed.
 *
 * @typedef {import('../view.js').JobView} JobView
 * @typedef {import('../view.js').LogEntry} LogEntry
 * @typedef {import('../view.js').Snapshot} Snapshot
 * @typedef {import('../view.js').StackInfo} StackInfo
 * @typedef {import('./charts.js').LineTable} LineTable
 */
import { LineChart, PALETTE, prCurveTable } from './charts.js';
import { clock, duration, fmt, h, section } from './dom.js';
import * as panels from './panels.js';

const MAX_LOG = 5000;

const state = {
  /** @type {StackInfo | null} */
  stack: null,
  /** @type {Map<string, JobView>} */
  jobs: new Map(),
  /** @type {LogEntry[]} */
  log: [],
  /** A job key, 'log' for every callback, or null before the first job. */
  /** @type {string | null} */
  selected: null,
  /** Until the user picks a job, the page follows the newest one. */
  follow: true,
};

const el = {
  jobs: /** @type {HTMLUListElement} */ (document.getElementById('jobs')),
  noJobs: /** @type {HTMLElement} */ (document.getElementById('no-jobs')),
  main: /** @type {HTMLElement} */ (document.getElementById('main')),
  stack: /** @type {HTMLElement} */ (document.getElementById('stack')),
  connection: /** @type {HTMLElement} */ (document.getElementById('connection')),
  showLog: /** @type {HTMLButtonElement} */ (document.getElementById('show-log')),
};

// ---------------------------------------------------------------------------------------
// Live data

function connect() {
  const source = new EventSource('/api/events');
  source.addEventListener('open', () => setConnection('live', 'live'));
  source.addEventListener('error', () => setConnection('reconnecting', 'connection lost, reconnecting…'));
  source.addEventListener('snapshot', (event) => {
    /** @type {Snapshot} */
    const snapshot = JSON.parse(/** @type {MessageEvent} */ (event).data);
    state.stack = snapshot.stack;
    state.jobs = new Map(snapshot.jobs.map((j) => [j.key, j]));
    state.log = snapshot.log;
    scheduleRender();
  });
  source.addEventListener('job', (event) => {
    /** @type {JobView} */
    const job = JSON.parse(/** @type {MessageEvent} */ (event).data);
    state.jobs.set(job.key, job);
    scheduleRender();
  });
  source.addEventListener('log', (event) => {
    /** @type {LogEntry[]} */
    const entries = JSON.parse(/** @type {MessageEvent} */ (event).data);
    state.log.push(...entries);
    if (state.log.length > MAX_LOG) state.log.splice(0, state.log.length - MAX_LOG);
    scheduleRender();
  });
}

/** @param {string} name @param {string} text */
function setConnection(name, text) {
  el.connection.dataset.state = name;
  el.connection.textContent = text;
}

/** @param {number} seq */
async function loadRequest(seq) {
  const res = await fetch(`/api/requests/${seq}`);
  return res.ok ? res.json() : { error: `HTTP ${res.status}: ${await res.text()}` };
}

// ---------------------------------------------------------------------------------------
// Selection (kept in the URL: #job=<key> or #log)

function readHash() {
  const hash = decodeURIComponent(location.hash.slice(1));
  if (hash === 'log') {
    state.selected = 'log';
    state.follow = false;
  } else if (hash.startsWith('job=')) {
    state.selected = hash.slice(4);
    state.follow = false;
  }
}

/** @param {string} key */
function select(key) {
  state.follow = false;
  location.hash = key === 'log' ? 'log' : `job=${encodeURIComponent(key)}`;
}

window.addEventListener('hashchange', () => {
  readHash();
  scheduleRender();
});
el.showLog.addEventListener('click', () => select('log'));

/** The job to show when following: the newest running one, else the newest. */
function newestJob() {
  const jobs = [...state.jobs.values()];
  const running = jobs.filter((j) => j.status === 'running');
  const pool = running.length ? running : jobs;
  return pool.reduce((/** @type {JobView | null} */ best, j) => (!best || j.firstSeen > best.firstSeen ? j : best), null);
}

// ---------------------------------------------------------------------------------------
// Rendering

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    render();
  });
}

function render() {
  if (state.stack) {
    el.stack.replaceChildren(
      h('span', {}, 'S3 ', h('code', {}, state.stack.s3Endpoint), ' bucket ', h('code', {}, state.stack.bucket)),
      h('span', {}, 'receiver ', h('code', {}, state.stack.receiverUrl)),
    );
  }
  if (state.follow) state.selected = newestJob()?.key ?? null;
  renderJobList();
  renderMain();
}

function renderJobList() {
  const jobs = [...state.jobs.values()].sort((a, b) => b.firstSeen.localeCompare(a.firstSeen));
  el.noJobs.hidden = jobs.length > 0;
  el.jobs.replaceChildren(
    ...jobs.map((job) =>
      h(
        'li',
        { class: `job-item${job.key === state.selected ? ' selected' : ''}`, 'data-job': job.key },
        h(
          'button',
          { type: 'button', onclick: () => select(job.key) },
          h('div', { class: 'job-line' }, h('span', { class: 'job-id', title: job.id }, job.id), panels.statusBadge(job.status)),
          h('div', { class: 'muted small' }, job.label),
          panels.progressBar(job.progress),
          h('div', { class: 'small job-stage' }, job.stage),
        ),
      ),
    ),
  );
  el.showLog.classList.toggle('selected', state.selected === 'log');
}

/** The selected job's page, kept between renders so charts and images are not rebuilt. */
/** @type {JobPage | LogPage | null} */
let page = null;

function renderMain() {
  const key = state.selected;
  if (key === 'log') {
    if (!(page instanceof LogPage)) {
      page = new LogPage();
      el.main.replaceChildren(page.root);
    }
    page.update();
    return;
  }
  const job = key ? state.jobs.get(key) : undefined;
  if (!job) {
    page = null;
    el.main.replaceChildren(h('section', { class: 'card' }, h('p', { class: 'muted' }, key ? `No job ${key} here (yet).` : 'Waiting for the first job…')));
    return;
  }
  if (!(page instanceof JobPage) || page.key !== job.key) {
    page = new JobPage(job);
    el.main.replaceChildren(page.root);
  }
  page.update(job);
}

/**
 * A container rebuilt only when its data's signature changes.
 */
class Slot {
  constructor() {
    this.element = h('div', { class: 'slot' });
    this.signature = '';
  }

  /**
   * @param {string} signature
   * @param {() => Node | null} build
   */
  set(signature, build) {
    if (signature === this.signature) return;
    this.signature = signature;
    const node = build();
    this.element.replaceChildren(...(node ? [node] : []));
  }
}

class JobPage {
  /** @param {JobView} job */
  constructor(job) {
    this.key = job.key;
    this.summary = new Slot();
    this.epochs = new Slot();
    this.validation = new Slot();
    this.checkpoints = new Slot();
    this.results = new Slot();
    this.exportSlot = new Slot();
    this.events = new Slot();
    this.log = new Slot();
    /** @type {Element[]} */
    const parts = [this.summary.element];
    if (job.family === 'training') {
      this.lossChart = new LineChart({ title: 'Losses', xLabel: 'epoch', testId: 'losses' });
      this.metricChart = new LineChart({ title: 'Validation metrics', xLabel: 'epoch', testId: 'metrics' });
      this.lrChart = new LineChart({ title: 'Learning rate', xLabel: 'epoch', testId: 'learning-rate', height: 160 });
      this.prChart = new LineChart({ title: 'Precision-recall (latest validation)', xLabel: 'recall', yLabel: 'precision', testId: 'pr-curves' });
      parts.push(
        section('Curves', [h('div', { class: 'charts' }, this.lossChart.element, this.metricChart.element, this.lrChart.element), this.epochs.element], {
          'data-testid': 'curves',
        }),
        this.validation.element,
        h('section', { class: 'card' }, h('h3', {}, 'Checkpoints'), this.checkpoints.element),
      );
    }
    if (job.family === 'inference') {
      this.prChart = new LineChart({ title: 'Precision-recall', xLabel: 'recall', yLabel: 'precision', testId: 'pr-curves' });
      parts.push(this.results.element);
    }
    if (job.family === 'export') parts.push(this.exportSlot.element);
    parts.push(this.events.element, h('section', { class: 'card' }, h('h3', {}, 'Callback log'), this.log.element));
    this.root = h('div', { class: 'job-page', 'data-job': job.key }, parts);
  }

  /** @param {JobView} job */
  update(job) {
    this.summary.set(
      JSON.stringify([job.status, job.stage, job.progress, job.etaAt, job.lastSeen, job.errorMessage, job.requestCounts, job.training?.bestValue]),
      () => panels.summary(job),
    );
    const t = job.training;
    if (t) {
      this.updateCurves(t);
      this.epochs.set(JSON.stringify(t.epochs), () => panels.epochTable(t));
      this.validation.set(JSON.stringify(t.latestValidation?.timestamp ?? null), () => this.validationSection(t));
      this.checkpoints.set(JSON.stringify(t.checkpoints), () => panels.checkpointTable(t.checkpoints));
    }
    if (job.inference) {
      const i = job.inference;
      this.results.set(JSON.stringify([i.done?.timestamp, i.results, i.processed]), () => this.resultsSection(job));
    }
    if (job.export) {
      const e = job.export;
      this.exportSlot.set(JSON.stringify([e.stages.length, e.done, e.stored, e.metadata, e.metadataError]), () => panels.exportPanel(e));
    }
    this.events.set(String(job.milestones.length), () => panels.milestones(job));
    const entries = state.log.filter((e) => e.jobKey === job.key);
    this.log.set(String(entries.at(-1)?.seq ?? 0), () => panels.logTable(entries.slice(-300), loadRequest, false));
  }

  /** @param {NonNullable<JobView['training']>} t */
  updateCurves(t) {
    const names = Object.keys(t.epochs.values);
    const isLoss = (/** @type {string} */ n) => /loss/i.test(n);
    const isLr = (/** @type {string} */ n) => /^(learning_rate|lr)$/i.test(n);
    const color = colorsFor([...names, ...Object.keys(t.batches.values)]);
    // Training losses first, each followed by its validation twin (val_*).
    const lossNames = names
      .filter(isLoss)
      .sort((a, b) => a.replace(/^val_/, '').localeCompare(b.replace(/^val_/, '')) || Number(/^val_/.test(a)) - Number(/^val_/.test(b)));
    /** @type {LineTable[]} */
    const losses = [
      {
        x: t.epochs.x,
        series: lossNames.map((n) => ({ label: n, values: t.epochs.values[n] ?? [], color: color(n), ...(/^val/i.test(n) ? { dash: [6, 4] } : {}) })),
      },
      {
        x: t.batches.x,
        series: Object.keys(t.batches.values).map((n) => ({
          label: `${n} (batches)`,
          values: t.batches.values[n] ?? [],
          points: false,
          width: 1,
          color: `${color(n)}80`,
        })),
      },
    ];
    this.lossChart?.update(losses);
    this.metricChart?.update([
      {
        x: t.epochs.x,
        series: names
          .filter((n) => !isLoss(n) && !isLr(n))
          .map((n) => ({ label: n, values: t.epochs.values[n] ?? [], color: color(n), width: n === t.primaryMetricName ? 3 : 2 })),
      },
    ]);
    this.lrChart?.update([{ x: t.epochs.x, series: names.filter(isLr).map((n) => ({ label: n, values: t.epochs.values[n] ?? [], color: color(n) })) }]);
  }

  /** @param {NonNullable<JobView['training']>} t */
  validationSection(t) {
    const v = t.latestValidation;
    if (!v) return section('Latest validation', [h('p', { class: 'muted' }, 'No validation yet.')]);
    const labels = classLabels(v.per_class_metrics);
    const visuals = [];
    if (v.confusion_matrix) visuals.push(panels.confusionMatrix(v.confusion_matrix, labels, `Confusion matrix, epoch ${v.epoch}`));
    if (v.pr_curves && Object.keys(v.pr_curves).length && this.prChart) {
      this.prChart.update([prCurveTable(v.pr_curves)]);
      visuals.push(this.prChart.element);
    }
    return section(
      `Latest validation: epoch ${v.epoch}`,
      [
        h(
          'p',
          {},
          h('strong', {}, `${v.primary_metric_name} ${fmt(v.primary_metric_value)}`),
          h(
            'span',
            { class: 'muted' },
            ` on ${v.num_images_validated} images${v.validation_time_seconds !== null ? ` in ${duration(v.validation_time_seconds)}` : ''}, ${clock(v.timestamp)}`,
          ),
        ),
        panels.metricChips(v.metrics),
        visuals.length ? h('div', { class: 'visuals' }, visuals) : null,
        panels.perClassTable(v.per_class_metrics ?? undefined),
      ],
      { 'data-testid': 'validation' },
    );
  }

  /** @param {JobView} job */
  resultsSection(job) {
    const i = /** @type {NonNullable<JobView['inference']>} */ (job.inference);
    const d = i.done;
    const parts = [];
    if (d && Object.keys(d.overall_metrics).length) parts.push(panels.metricChips(d.overall_metrics));
    const paths = /** @type {Array<[string, string | null]>} */ ([
      ['results', i.resultsPath],
      ['visualisations', i.visualizationsPath],
      ['heat maps', i.xaiResultsPath],
    ]).filter(([, p]) => p);
    if (paths.length)
      parts.push(
        h(
          'ul',
          { class: 'paths' },
          paths.map(([k, p]) => h('li', {}, h('span', { class: 'muted' }, `${k} `), h('code', { class: 'uri' }, p))),
        ),
      );
    const visuals = [];
    if (d?.confusion_matrix)
      visuals.push(panels.confusionMatrix(d.confusion_matrix, i.results?.confusionMatrixLabels ?? classLabels(d.per_class_metrics), 'Confusion matrix'));
    if (d && Object.keys(d.pr_curves).length && this.prChart) {
      this.prChart.update([prCurveTable(d.pr_curves)]);
      visuals.push(this.prChart.element);
    }
    if (visuals.length) parts.push(h('div', { class: 'visuals' }, visuals));
    const perClass = panels.perClassTable(i.perClassMetrics);
    if (perClass) parts.push(perClass);
    if (i.results) {
      parts.push(
        h('h4', {}, `Images (${i.results.images.length} drawn of ${i.results.numImages}${i.results.failedImages ? `, ${i.results.failedImages} failed` : ''})`),
        panels.resultImages(i.results),
      );
    } else if (d || job.status !== 'running') {
      parts.push(h('p', { class: 'muted' }, i.resultsPath ? 'Reading results.json from storage…' : 'No results.json was reported.'));
    }
    return section(job.label === 'inference' ? 'Results' : `Results of the ${job.label}`, parts, { 'data-testid': 'results' });
  }
}

class LogPage {
  constructor() {
    this.slot = new Slot();
    this.root = section('Every callback the receiver answered', [
      h('p', { class: 'muted' }, 'Newest first. Refused requests keep the reasons the receiver gave; "request" shows the whole request (the token redacted).'),
      this.slot.element,
    ]);
  }

  update() {
    this.slot.set(String(state.log.at(-1)?.seq ?? 0), () => panels.logTable(state.log.slice(-1000), loadRequest, true));
  }
}

/** @param {Array<{ class_id: number, class_name: string }> | null | undefined} rows */
function classLabels(rows) {
  /** @type {string[]} */
  const labels = [];
  for (const r of rows ?? []) labels[r.class_id] = r.class_name;
  return labels;
}

/** A stable colour per metric name, the same on every chart. */
/** @param {string[]} names */
function colorsFor(names) {
  const base = [...new Set(names.map((n) => n.replace(/^val_/, '')))].sort();
  return (/** @type {string} */ name) => PALETTE[Math.max(0, base.indexOf(name.replace(/^val_/, ''))) % PALETTE.length] ?? PALETTE[0];
}

// The time left counts down between callbacks.
setInterval(() => {
  const job = state.selected ? state.jobs.get(state.selected) : undefined;
  if (!job) return;
  for (const node of el.main.querySelectorAll('[data-eta]')) node.textContent = job.status === 'running' ? duration(panels.etaNow(job)) : '—';
}, 1000);

readHash();
connect();
render();
