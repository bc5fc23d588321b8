/**
 * The dev dashboard as a person sees it: `vision-trainer dev` started as a child process, the
 * page open in a real Chromium (playwright-core, Debian's browser), and a real tiny training job
 * (timm resnet18 at 32 px, 3 epochs) run through the CLI against the stack, then a test run of its
 * best checkpoint with Grad-CAM. The page must update live (no reload): the curves gain a point
 * per epoch, the confusion matrix and checkpoints appear, the test run's annotated image and
 * heat map load from the stack's S3 server, and the callback log shows a refused request with
 * the schema's reason. Screenshots go to DASHBOARD_SCREENSHOTS (default: a temporary folder).
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CallbackClient } from '../../src/callbacks/client.js';
import type { Snapshot } from '../../src/dev/dashboard/view.js';
import { createStorage } from '../../src/storage/index.js';
import type { Storage } from '../../src/storage/types.js';
import { launchChromium } from '../helpers/browser.js';
import { startCli, type CliRun } from '../helpers/cli.js';
import { uploadDataset } from '../helpers/datasets.js';
import { writeSyntheticDataset } from '../helpers/synthetic.js';

// Functions passed to page.evaluate run in the browser: these names are the page's globals.
// (This file is type-checked without the DOM's types, and the page's CSP forbids eval'd strings.)
declare const document: any;
declare const window: any;
declare const MutationObserver: any;

const scratch = mkdtempSync(join(tmpdir(), 'vt-dashboard-'));
const shots = process.env.DASHBOARD_SCREENSHOTS ?? join(scratch, 'screenshots');
mkdirSync(shots, { recursive: true });

const TRAIN_JOB = 'dash-train';
const TEST_RUN = 'dash-test-run';
const DATASET = 'dash-shapes';

let dev: CliRun;
let devOut = '';
let env: Record<string, string> = {};
let dashboardUrl = '';
let storage: Storage;
let browser: Browser;
let page: Page;
/** Script errors and console errors in the page (checked before the stack is stopped on purpose). */
const problems: string[] = [];

// One torch thread: on the shared 2-core machine two threads wait on each other (see the README's demo notes).
const jobEnv = (jobId: string, extra: Record<string, string>) => ({
  ...env,
  JOB_ID: jobId,
  TRACE_ID: `trace-${jobId}`,
  DEVICE: 'cpu',
  NUM_WORKERS: '0',
  BATCH_SIZE: '8',
  IMAGE_SIZE: '32',
  CALLBACK_MAX_ATTEMPTS: '3',
  OMP_NUM_THREADS: '1',
  ...extra,
});

async function state(): Promise<Snapshot> {
  return (await fetch(`${dashboardUrl}api/state`)).json() as Promise<Snapshot>;
}

beforeAll(async () => {
  dev = startCli(['dev'], {}, { timeoutMs: 1_500_000 });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`vision-trainer dev did not start: ${devOut}`)), 60_000);
    dev.child.stdout!.on('data', (d: Buffer) => {
      devOut += d.toString();
      if (devOut.includes('Ctrl-C stops the stack')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  env = Object.fromEntries([...devOut.matchAll(/export (\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
  dashboardUrl = /dashboard: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(devOut)![1]!;
  expect(dashboardUrl).toBe(`${env.BACKEND_BASE_URL}/`);
  storage = createStorage({
    type: 'minio',
    endpoint: env.S3_ENDPOINT!,
    accessKeyId: env.AWS_ACCESS_KEY_ID!,
    secretAccessKey: env.AWS_SECRET_ACCESS_KEY!,
    bucket: env.BUCKET_NAME!,
  });
  const data = join(scratch, 'dataset');
  writeSyntheticDataset(data, { taskType: 'image_classification', count: 24, width: 48, height: 40, seed: 5, classes: ['circle', 'square', 'triangle'] });
  await uploadDataset(storage, DATASET, data, 'zip');
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on('pageerror', (err) => problems.push(err.message));
  page.on('console', (m) => void (m.type() === 'error' && problems.push(m.text())));
});

afterAll(async () => {
  await browser?.close();
  if (dev && dev.child.exitCode === null) dev.child.kill('SIGKILL');
  rmSync(scratch, { recursive: true, force: true });
});

describe('the dev dashboard in Chromium during a real training run', () => {
  it('the curves gain a point as each epoch arrives, live, while the job runs', async () => {
    await page.goto(dashboardUrl);
    await page.getByText('No job has called back yet').waitFor();
    expect(await page.locator('#connection').textContent()).toBe('live');
    // Every change of the metrics chart's point count, as it happens in the page.
    await page.evaluate(() => {
      window.pointsSeen = [];
      new MutationObserver((records: any[]) => {
        for (const r of records) if (r.target.dataset.chart === 'metrics') window.pointsSeen.push(Number(r.target.dataset.points));
      }).observe(document.body, { subtree: true, attributes: true, attributeFilter: ['data-points'] });
    });

    const train = startCli(
      ['train'],
      jobEnv(TRAIN_JOB, { TASK_TYPE: 'image_classification', MODEL_NAME: 'resnet18', EPOCHS: '3', DATASET_ID: DATASET, CHECKPOINT_FREQUENCY: '1' }),
      { timeoutMs: 400_000 },
    );
    // The page follows the new job on its own.
    await page.locator(`.job-page[data-job="training:${TRAIN_JOB}"]`).waitFor({ timeout: 120_000 });
    const metrics = page.locator('[data-chart="metrics"]');
    const metricPoints = (): Promise<number> => page.evaluate(() => Number(document.querySelector('[data-chart="metrics"]')?.dataset.points ?? 0));
    await page.waitForFunction(() => Number(document.querySelector('[data-chart="metrics"]')?.dataset.points) >= 1, null, { timeout: 200_000 });
    const atFirstPoint = await page.getByTestId('stage').textContent();
    const result = await train.done;
    expect(result.code, result.stdout.slice(-3000) + result.stderr.slice(-3000)).toBe(0);
    await expect.poll(metricPoints, { timeout: 30_000 }).toBe(3);

    const seen: number[] = await page.evaluate(() => window.pointsSeen);
    const distinct = seen.filter((n, i) => n !== seen[i - 1]);
    expect(distinct).toEqual([0, 1, 2, 3]);
    expect(atFirstPoint).toMatch(/^training: epoch [12]\/3/);
    // The points are drawn: uPlot's canvas holds coloured pixels, and the legend names the series.
    const inked: { width: number; n: number } = await page.evaluate(() => {
      const c = document.querySelector('[data-chart="metrics"] canvas');
      const pixels = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) n++;
      return { width: c.width, n };
    });
    expect(inked.width).toBeGreaterThan(200);
    expect(inked.n).toBeGreaterThan(500);
    await expect.poll(() => metrics.locator('.u-legend').textContent()).toContain('accuracy');
    expect(Number(await page.locator('[data-chart="losses"]').getAttribute('data-points'))).toBe(3);
    await page.screenshot({ path: join(shots, 'training.png'), fullPage: true });
  });

  it("the latest validation's confusion matrix, per-class table and the checkpoints found in storage", async () => {
    const job = (await state()).jobs.find((j) => j.key === `training:${TRAIN_JOB}`)!;
    const validation = job.training!.latestValidation!;
    expect(job.status).toBe('succeeded');
    const matrix = page.getByTestId('confusion-matrix');
    await matrix.waitFor();
    expect(await matrix.locator('tbody tr').count()).toBe(3);
    const cells = (await matrix.locator('tbody td').allTextContents()).map(Number);
    expect(cells).toHaveLength(9);
    expect(cells.reduce((a, b) => a + b, 0)).toBe(validation.num_images_validated);
    expect(await matrix.locator('thead th').allTextContents()).toEqual(['true ↓ / predicted →', 'circle', 'square', 'triangle']);
    expect(await page.getByTestId('validation').textContent()).toContain(`Latest validation: epoch 3`);
    expect(await page.getByTestId('per-class').locator('tbody th').allTextContents()).toEqual(['circle', 'square', 'triangle']);

    const best = page.getByTestId('checkpoints').locator('tr', { hasText: `checkpoints/job-${TRAIN_JOB}/best.pt` });
    await expect.poll(() => best.textContent(), { timeout: 10_000 }).toContain('✓ found');
    expect(await best.textContent()).toContain('best');
    expect(await page.getByTestId('checkpoints').locator('tbody tr', { hasText: '✓ found' }).count()).toBeGreaterThanOrEqual(2);
  });

  it("a test run of the best checkpoint: its annotated image and Grad-CAM overlay load from the stack's S3", async () => {
    const run = await startCli(
      ['infer'],
      jobEnv(TEST_RUN, {
        INFERENCE_TYPE: 'test_run',
        TASK_TYPE: 'image_classification',
        CHECKPOINT_PATH: `s3://${env.BUCKET_NAME}/checkpoints/job-${TRAIN_JOB}/best.pt`,
        DATASET_ID: DATASET,
        MAX_VISUALIZATIONS: '2',
        ENABLE_XAI: 'true',
        XAI_METHOD: 'gradcam',
      }),
      { timeoutMs: 300_000 },
    ).done;
    expect(run.code, run.stdout.slice(-3000) + run.stderr.slice(-3000)).toBe(0);
    await page.locator(`.job-page[data-job="inference:${TEST_RUN}"]`).waitFor({ timeout: 30_000 });
    const gallery = page.getByTestId('gallery');
    await gallery.waitFor({ timeout: 30_000 });
    expect(await gallery.locator('figure').count()).toBe(2);
    for (const kind of ['visualization', 'heatmap']) {
      const loadedWidth = (): Promise<number> =>
        page.evaluate((k) => {
          const img = document.querySelector(`[data-testid="gallery"] img[data-kind="${k}"]`);
          return img?.complete ? img.naturalWidth : 0;
        }, kind);
      await expect.poll(loadedWidth, { timeout: 20_000 }).toBeGreaterThan(0);
    }
    expect(await page.getByTestId('results').textContent()).toContain('Results of the test run');
    await page.screenshot({ path: join(shots, 'test-run.png'), fullPage: true });
  });

  it('serves only artifacts a results.json named, and only to loopback host names', async () => {
    const status = (path: string, host?: string) =>
      new Promise<number>((resolve, reject) => {
        const url = new URL(path, dashboardUrl);
        const req = httpRequest({ host: url.hostname, port: url.port, path: url.pathname, headers: host ? { host } : {} }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end();
      });
    const image = await page.getByTestId('gallery').locator('img[data-kind="visualization"]').first().getAttribute('src');
    expect(await status(image!)).toBe(200);
    expect(await status(`/artifacts/datasets/${DATASET}.zip`)).toBe(404);
    expect(await status(`/artifacts/checkpoints/job-${TRAIN_JOB}/best.pt`)).toBe(404);
    expect(await status('/', 'attacker.example:80')).toBe(403);
  });

  it("the callback log shows a refused request with the schema's reason, and an export with its validation", async () => {
    const refused = await fetch(`${env.BACKEND_BASE_URL}/api/v1/jobs/${TRAIN_JOB}/heartbeat`, {
      method: 'POST',
      headers: { authorization: `Bearer ${env.CALLBACK_TOKEN}`, 'x-trace-id': 't', 'content-type': 'application/json' },
      body: JSON.stringify({ epoch: -1, progress: 10, metrics: {}, timestamp: new Date().toISOString() }),
    });
    expect(refused.status).toBe(422);
    await page.locator('#show-log').click();
    const row = page.getByTestId('callback-log').locator('tr[data-outcome="invalid"]');
    await row.waitFor();
    expect(await row.textContent()).toMatch(/heartbeat.*422.*schema error.*epoch:/);
    // The whole request behind the row, the token redacted.
    await row.getByRole('button', { name: 'request' }).click();
    // The request is fetched when the row opens: wait for it rather than read an empty block.
    const requestBlock = row.locator('pre.json');
    await expect.poll(() => requestBlock.textContent(), { timeout: 10_000 }).toMatch(/"outcome"/);
    const detail = JSON.parse((await requestBlock.textContent())!) as { outcome: string; body: unknown; headers: Record<string, string> };
    expect(detail).toMatchObject({ outcome: 'invalid', status: 422, body: { epoch: -1 } });
    expect(detail.headers.authorization).toBe('Bearer [REDACTED]');
    expect(JSON.stringify(detail)).not.toContain(env.CALLBACK_TOKEN!);

    // An export completion as an export job sends it; metadata.json is in storage, the model is not.
    await storage.putJson('export-jobs/dash-export/metadata.json', { format: 'onnx', class_names: ['circle', 'square', 'triangle'] });
    const client = new CallbackClient({ baseUrl: env.BACKEND_BASE_URL!, token: env.CALLBACK_TOKEN!, jobId: 'dash-export', traceId: 't' });
    client.exportProgress({ progress_percent: 60, stage: 'validating', message: 'Validating the exported model on 8 images...' });
    await client.exportDone({
      status: 'succeeded',
      export_path: `s3://${env.BUCKET_NAME}/export-jobs/dash-export/model.onnx`,
      metadata_path: `s3://${env.BUCKET_NAME}/export-jobs/dash-export/metadata.json`,
      model_info: { model_size_mb: 0.5, input_shape: ['batch', 3, 32, 32] },
      validation_metrics: { accuracy: 0.75, original_accuracy: 0.75, accuracy_drop: 0, passed: true },
    });
    await client.close();
    await page.locator('.job-item[data-job="export:dash-export"] button').click();
    await page.getByTestId('export-validation').waitFor();
    expect(await page.getByTestId('export-validation').textContent()).toBe('passed');
    const exportCard = page.locator('section', { hasText: 'Validation of the exported model' });
    await expect.poll(() => exportCard.textContent(), { timeout: 10_000 }).toContain('metadata.json');
    expect(await exportCard.textContent()).toMatch(/model\.onnx ✗ not found in storage/);
    expect(await exportCard.textContent()).toMatch(/metadata\.json ✓ \d+ B in storage/);
    await page.screenshot({ path: join(shots, 'export.png'), fullPage: true });
    expect(problems, 'errors in the page').toEqual([]);
  });

  it('SIGTERM stops the stack promptly, with the page still connected', async () => {
    const started = Date.now();
    dev.child.kill('SIGTERM');
    const result = await dev.done;
    const seconds = (Date.now() - started) / 1000;
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('SIGTERM: stopping the local stack');
    expect(result.stdout).toMatch(/stopped in \d+\.\d s\./);
    // About 1.5 s; at most SeaweedFS's 5 s stop grace (see s3server.ts) on a loaded machine.
    expect(seconds, result.stdout.slice(-500) + result.stderr.slice(-3000)).toBeLessThan(10);
    await page.locator('#connection[data-state="reconnecting"]').waitFor({ timeout: 10_000 });
  });
});
