// @ts-check
/**
 * The parts of a job's page. Each is a function from (part of) a JobView to DOM nodes; app.js
 * decides when to rebuild which, and keeps charts and images alive across updates.
 *
 * @typedef {import('../view.js').JobView} JobView
 * @typedef {import('../view.js').LogEntry} LogEntry
 * @typedef {import('../view.js').CheckpointView} CheckpointView
 * @typedef {import('../view.js').InferenceResultsView} InferenceResultsView
 * @typedef {NonNullable<JobView['training']>} TrainingView
 * @typedef {NonNullable<JobView['export']>} ExportView
 * @typedef {NonNullable<TrainingView['latestValidation']>} Validation
 * @typedef {Validation['per_class_metrics']} PerClassRows
 */
import { clock, duration, fmt, h, keyValues, section, size } from './dom.js';

/** @param {JobView['status']} status */
export function statusBadge(status) {
  return h('span', { class: `badge status-${status}` }, status);
}

/**
 * Seconds left now, counting down from the last estimate.
 * @param {JobView} job
 */
export function etaNow(job) {
  if (job.etaSeconds === null || job.etaAt === null) return null;
  return Math.max(0, job.etaSeconds - (Date.now() - Date.parse(job.etaAt)) / 1000);
}

/** @param {number | null} percent */
export function progressBar(percent) {
  const bar = h('div', {
    class: 'progress',
    role: 'progressbar',
    'aria-valuemin': 0,
    'aria-valuemax': 100,
    'aria-valuenow': percent === null ? null : Math.round(percent),
  });
  const fill = h('div', { class: 'progress-fill' });
  fill.style.width = `${percent === null ? 0 : Math.min(100, Math.max(0, percent))}%`;
  bar.append(fill);
  return bar;
}

/** @param {JobView} job */
export function summary(job) {
  const t = job.training;
  const rows = /** @type {Array<[string, any]>} */ ([
    ['stage', h('span', { 'data-testid': 'stage' }, job.stage)],
    ['progress', h('span', {}, job.progress === null ? '—' : `${fmt(Math.round(job.progress * 10) / 10)} %`)],
    ['time left', h('span', { 'data-eta': '' }, job.status === 'running' ? duration(etaNow(job)) : '—')],
    ['first callback', clock(job.firstSeen)],
    ['last callback', clock(job.lastSeen)],
  ]);
  if (t) {
    if (t.taskType) rows.push(['task', t.taskType]);
    rows.push([
      'epoch',
      `${t.epoch}${t.totalEpochs ? ` / ${t.totalEpochs}` : ''}${t.batch !== null ? ` (batch ${t.batch}${t.totalBatches ? `/${t.totalBatches}` : ''})` : ''}`,
    ]);
    if (t.primaryMetricName) rows.push([`best ${t.primaryMetricName}`, t.bestValue === null ? '—' : `${fmt(t.bestValue)} (epoch ${t.bestEpoch})`]);
  }
  if (job.inference?.total) rows.push(['images', `${job.inference.processed} / ${job.inference.total}`]);
  if (job.inference?.avgInferenceTimeMs) rows.push(['time per image', `${fmt(job.inference.avgInferenceTimeMs)} ms`]);
  const counts = Object.entries(job.requestCounts)
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
  rows.push(['callbacks', counts || '—']);
  return h(
    'section',
    { class: 'card summary' },
    h('div', { class: 'summary-head' }, h('h2', {}, job.id), h('span', { class: 'muted' }, job.label), statusBadge(job.status)),
    progressBar(job.progress),
    job.errorMessage ? h('pre', { class: 'error-text' }, job.errorMessage) : null,
    keyValues(rows),
  );
}

/**
 * The numbers behind the curves, newest epoch first.
 * @param {TrainingView} t
 */
export function epochTable(t) {
  const names = Object.keys(t.epochs.values);
  if (t.epochs.x.length === 0) return null;
  const rows = t.epochs.x.map((epoch, i) =>
    h(
      'tr',
      {},
      h('td', {}, epoch),
      names.map((n) => h('td', {}, fmt(t.epochs.values[n]?.[i]))),
    ),
  );
  rows.reverse();
  return h(
    'details',
    { class: 'epochs' },
    h('summary', {}, `Per-epoch values (${t.epochs.x.length} epoch${t.epochs.x.length === 1 ? '' : 's'})`),
    h(
      'div',
      { class: 'scroll' },
      h(
        'table',
        { class: 'grid', 'data-testid': 'epoch-table' },
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            h('th', {}, 'epoch'),
            names.map((n) => h('th', {}, n)),
          ),
        ),
        h('tbody', {}, rows),
      ),
    ),
  );
}

/**
 * A confusion matrix as a heat map: rows are true classes, columns predicted; the shade is the
 * share of the row, so a good model shows a dark diagonal.
 * @param {number[][]} matrix
 * @param {string[]} labels
 * @param {string} caption
 */
export function confusionMatrix(matrix, labels, caption) {
  const name = (/** @type {number} */ i) => labels[i] ?? String(i);
  const head = h(
    'tr',
    {},
    h('th', { class: 'corner' }, h('span', {}, 'true ↓ / predicted →')),
    matrix[0]?.map((_, j) => h('th', { scope: 'col', title: name(j) }, name(j))),
  );
  const rows = matrix.map((row, i) => {
    const total = row.reduce((a, b) => a + b, 0);
    return h(
      'tr',
      {},
      h('th', { scope: 'row', title: name(i) }, name(i)),
      row.map((v, j) => {
        const share = total > 0 ? v / total : 0;
        const cell = h(
          'td',
          { class: i === j ? 'diag' : '', title: `true ${name(i)}, predicted ${name(j)}: ${fmt(v)} (${Math.round(share * 100)}% of the row)` },
          fmt(v),
        );
        cell.style.setProperty('--share', share.toFixed(3));
        if (share > 0.55) cell.classList.add('dark');
        return cell;
      }),
    );
  });
  return h(
    'figure',
    { class: 'confusion' },
    h('figcaption', {}, caption),
    h('div', { class: 'scroll' }, h('table', { class: 'confusion-matrix', 'data-testid': 'confusion-matrix' }, h('thead', {}, head), h('tbody', {}, rows))),
  );
}

/** @param {PerClassRows | undefined} rows */
export function perClassTable(rows) {
  if (!rows || rows.length === 0) return null;
  const preferred = ['precision', 'recall', 'f1', 'ap', 'ap50', 'support'];
  const extra = new Set();
  for (const r of rows) for (const k of Object.keys(r)) if (!['class_id', 'class_name', ...preferred].includes(k)) extra.add(k);
  const columns = [...preferred.filter((k) => rows.some((r) => r[k] !== undefined)), ...[...extra].filter((k) => rows.some((r) => typeof r[k] === 'number'))];
  return h(
    'div',
    { class: 'scroll' },
    h(
      'table',
      { class: 'grid', 'data-testid': 'per-class' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          h('th', {}, 'class'),
          columns.map((c) => h('th', {}, c)),
        ),
      ),
      h(
        'tbody',
        {},
        rows.map((r) =>
          h(
            'tr',
            {},
            h('th', { scope: 'row' }, `${r.class_name}`),
            columns.map((c) => h('td', {}, typeof r[c] === 'number' ? fmt(/** @type {number} */ (r[c])) : r[c] === null ? '—' : String(r[c] ?? ''))),
          ),
        ),
      ),
    ),
  );
}

/** @param {Record<string, number | null>} metrics */
export function metricChips(metrics) {
  return h(
    'ul',
    { class: 'chips' },
    Object.entries(metrics).map(([k, v]) => h('li', {}, h('span', { class: 'muted' }, k), ' ', h('strong', {}, fmt(v)))),
  );
}

/** @param {CheckpointView[]} checkpoints */
export function checkpointTable(checkpoints) {
  if (checkpoints.length === 0) return h('p', { class: 'muted' }, 'No checkpoint reported yet.');
  return h(
    'div',
    { class: 'scroll' },
    h(
      'table',
      { class: 'grid', 'data-testid': 'checkpoints' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ['storage URI', 'epoch', 'why', 'size', 'in storage', 'metrics'].map((c) => h('th', {}, c)),
        ),
      ),
      h(
        'tbody',
        {},
        checkpoints.map((c) =>
          h(
            'tr',
            {},
            h('td', {}, h('code', { class: 'uri' }, c.uri), c.isBest ? h('span', { class: 'badge best' }, 'best') : null),
            h('td', {}, c.epoch ?? '—'),
            h('td', {}, c.reason ?? '—'),
            h('td', {}, size(c.sizeBytes)),
            h(
              'td',
              { class: c.inStorage ? 'ok' : 'bad', title: c.inStorage ? "found in the dev stack's bucket" : "not found in the dev stack's bucket (yet)" },
              c.inStorage ? '✓ found' : '✗ not found',
            ),
            h(
              'td',
              { class: 'small' },
              Object.entries(c.metrics)
                .map(([k, v]) => `${k}=${fmt(v)}`)
                .join(' '),
            ),
          ),
        ),
      ),
    ),
  );
}

/**
 * A test run's or inference job's pictures: the annotated image beside its heat map.
 * @param {InferenceResultsView} results
 */
export function resultImages(results) {
  if (results.error) return h('p', { class: 'error-text' }, results.error);
  if (results.images.length === 0) return h('p', { class: 'muted' }, 'No image was drawn (SAVE_VISUALIZATIONS=false or MAX_VISUALIZATIONS=0).');
  return h(
    'div',
    { class: 'gallery', 'data-testid': 'gallery' },
    results.images.map((img) =>
      h(
        'figure',
        { class: `result ${img.correct === true ? 'correct' : img.correct === false ? 'wrong' : ''}` },
        h(
          'div',
          { class: 'pictures' },
          img.visualizationUrl
            ? h('img', { src: img.visualizationUrl, alt: `predictions on ${img.fileName}`, loading: 'lazy', 'data-kind': 'visualization' })
            : null,
          img.heatmapUrl
            ? h('img', { src: img.heatmapUrl, alt: `${img.xaiMethod ?? 'heat map'} on ${img.fileName}`, loading: 'lazy', 'data-kind': 'heatmap' })
            : null,
        ),
        h(
          'figcaption',
          {},
          h('div', { class: 'file' }, img.fileName),
          h('div', {}, h('span', { class: 'muted' }, 'predicted '), img.prediction),
          img.groundTruth !== null
            ? h('div', {}, h('span', { class: 'muted' }, 'truth '), img.groundTruth, img.correct === null ? '' : img.correct ? ' ✓' : ' ✗')
            : null,
          img.heatmapUrl
            ? h('div', { class: 'muted' }, `right: ${img.xaiMethod}`)
            : img.xaiError
              ? h('div', { class: 'error-text' }, `${img.xaiMethod}: ${img.xaiError}`)
              : null,
          img.error ? h('div', { class: 'error-text' }, img.error) : null,
        ),
      ),
    ),
  );
}

/** @param {ExportView} e */
export function exportPanel(e) {
  const parts = [];
  if (e.stages.length) {
    parts.push(
      h('h4', {}, 'Stages'),
      h(
        'ol',
        { class: 'stages' },
        e.stages.map((s) => h('li', {}, h('strong', {}, s.stage), ` ${fmt(s.percent)} % `, h('span', { class: 'muted' }, s.message))),
      ),
    );
  }
  const d = e.done;
  if (d) {
    /** @param {string | null} uri */
    const stored = (uri) => {
      if (!uri) return '—';
      const found = Object.hasOwn(e.stored, uri) ? e.stored[uri] : undefined;
      const note =
        found === undefined
          ? null
          : found === null
            ? h('span', { class: 'bad small' }, ' ✗ not found in storage')
            : h('span', { class: 'ok small' }, ` ✓ ${size(found)} in storage`);
      return [h('code', { class: 'uri' }, uri), note];
    };
    parts.push(
      h('h4', {}, 'Result'),
      keyValues([
        ['status', statusBadge(d.status)],
        ['model', stored(d.export_path)],
        ['package', stored(d.package_path)],
        ['metadata', stored(d.metadata_path)],
      ]),
    );
    const info = Object.entries(d.model_info);
    if (info.length) parts.push(h('h4', {}, 'Model'), keyValues(info.map(([k, v]) => [k, typeof v === 'number' ? fmt(v) : JSON.stringify(v)])));
    if (d.validation_metrics) {
      const v = d.validation_metrics;
      parts.push(
        h(
          'h4',
          {},
          'Validation of the exported model ',
          v.passed === undefined
            ? null
            : h(
                'span',
                { class: `badge ${v.passed ? 'status-succeeded' : 'status-failed'}`, 'data-testid': 'export-validation' },
                v.passed ? 'passed' : 'failed',
              ),
        ),
        keyValues(
          Object.entries(v)
            .filter(([k]) => k !== 'passed')
            .map(([k, val]) => [k, typeof val === 'number' ? fmt(val) : JSON.stringify(val)]),
        ),
      );
    }
  }
  if (e.metadataError) parts.push(h('p', { class: 'error-text' }, e.metadataError));
  else if (e.metadata !== null && e.metadata !== undefined)
    parts.push(h('details', {}, h('summary', {}, 'metadata.json'), h('pre', { class: 'json' }, JSON.stringify(e.metadata, null, 2))));
  return section('Export', parts);
}

/** @param {JobView} job */
export function milestones(job) {
  if (job.milestones.length === 0) return null;
  return section('Events', [
    h(
      'ol',
      { class: 'milestones' },
      job.milestones.map((m) => h('li', {}, h('span', { class: 'muted' }, clock(m.at)), ' ', h('strong', {}, m.type), ' ', m.message)),
    ),
  ]);
}

/**
 * Which requests the user opened, by seq: the log re-renders whenever a callback arrives, and an
 * opened request must stay open (and not be fetched again) across that.
 * @type {Map<number, { shown: boolean, text: string }>}
 */
const openRequests = new Map();

/**
 * The callback log: one row per request, its HTTP answer and whether its body passed the
 * schema; a row opens to the whole request.
 * @param {LogEntry[]} entries
 * @param {(seq: number) => Promise<unknown>} loadRequest
 * @param {boolean} showJob
 */
export function logTable(entries, loadRequest, showJob) {
  const rows = entries
    .slice()
    .reverse()
    .map((e) => {
      const ok = e.outcome === 'accepted' || e.outcome === 'duplicate';
      const open = openRequests.get(e.seq);
      const detail = h('pre', { class: 'json', hidden: !open?.shown });
      if (open?.text) detail.textContent = open.text;
      const row = h(
        'tr',
        { class: ok ? '' : 'refused', 'data-outcome': e.outcome },
        h('td', { class: 'small' }, clock(e.at)),
        showJob ? h('td', {}, e.jobId ?? '—') : null,
        h('td', {}, e.kind ?? `${e.method} ${e.path}`),
        h('td', {}, h('span', { class: `badge http-${String(e.status)[0]}` }, e.status)),
        h(
          'td',
          {},
          h(
            'span',
            { class: `badge ${e.valid ? 'valid' : 'invalid'}`, title: e.valid ? 'the body passed its schema' : e.errors.join('\n') },
            e.valid ? 'valid' : e.outcome === 'invalid' ? 'schema error' : e.outcome.replace(/_/g, ' '),
          ),
        ),
        h(
          'td',
          { class: 'summary-cell' },
          h('div', {}, e.summary),
          !ok && e.errors.length
            ? h(
                'ul',
                { class: 'errors' },
                e.errors.map((x) => h('li', {}, x)),
              )
            : null,
          h(
            'button',
            {
              type: 'button',
              class: 'link-button small',
              onclick: async () => {
                const opened = openRequests.get(e.seq) ?? { shown: false, text: '' };
                openRequests.set(e.seq, opened);
                opened.shown = !opened.shown;
                if (opened.shown && !opened.text) opened.text = JSON.stringify(await loadRequest(e.seq), null, 2);
                detail.textContent = opened.text;
                detail.hidden = !opened.shown;
              },
            },
            'request',
          ),
          detail,
        ),
      );
      return row;
    });
  return h(
    'div',
    { class: 'scroll log' },
    h(
      'table',
      { class: 'grid', 'data-testid': 'callback-log' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          h('th', {}, 'time'),
          showJob ? h('th', {}, 'job') : null,
          h('th', {}, 'callback'),
          h('th', {}, 'HTTP'),
          h('th', {}, 'schema'),
          h('th', {}, 'what it said'),
        ),
      ),
      h('tbody', {}, rows),
    ),
  );
}
