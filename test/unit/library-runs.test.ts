/**
 * The run handle `train`, `infer` and `exportModel` return (startRun), over a stand-in job that
 * emits progress until it is told to stop: a bad config throws the typed ConfigError, `break`
 * detaches the iterator and the run goes on, an aborted `signal` and `stop()` end the run as
 * SIGTERM does. The real jobs behind the same handle are exercised by the integration tests.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, VisionTrainerError } from '../../src/errors.js';
import type { ExportEvent } from '../../src/events.js';
import { type JobDefinition, type JobOutcome, startRun } from '../../src/jobs/context.js';
import { exportCompletion } from '../../src/jobs/export/reporter.js';

interface FakeOutcome extends JobOutcome {
  steps: number;
}

/** Emits `progress` every few ms for `steps` steps, checking for a stop between them. */
function fakeJob(steps: number): JobDefinition<'export', ExportEvent, FakeOutcome> & { reached: () => number } {
  let reached = 0;
  return {
    mode: 'export',
    graceSeconds: () => 1,
    stopping: 'stopping',
    reporter: () => () => undefined,
    logKey: (config) => `export-jobs/${config.jobId}/job.log`,
    outcomeKey: (config) => `export-jobs/${config.jobId}/outcome.json`,
    completion: (_config, done) => exportCompletion(done as Extract<ExportEvent, { type: 'done' }>),
    restored: (_ctx, stored) => ({ status: stored.final ? 'succeeded' : 'failed', exitCode: stored.exit_code, steps: 0 }),
    reached: () => reached,
    async run(ctx) {
      for (let i = 1; i <= steps; i++) {
        ctx.stop.throwIfRequested();
        await new Promise((r) => setTimeout(r, 5));
        reached = i;
        await ctx.events.emit({ type: 'progress', stage: 'converting', percent: (100 * i) / steps, message: `step ${i}` });
      }
      return { status: 'succeeded', exitCode: 0, steps: reached };
    },
    failed: (_ctx, error) => ({ status: 'failed', exitCode: error.exitCode, error, steps: reached }),
    done: (_ctx, o) => ({
      type: 'done',
      status: o.status,
      exportUri: null,
      metadataUri: null,
      packageUri: null,
      modelInfo: null,
      validation: null,
      errorMessage: o.error?.message ?? null,
      exitCode: o.exitCode,
    }),
  };
}

function config() {
  const root = mkdtempSync(join(tmpdir(), 'vt-lib-'));
  return {
    jobId: 'lib-1',
    taskType: 'image_classification',
    exportFormat: 'onnx',
    modelName: 'resnet18',
    checkpointPath: 's3://bucket/checkpoints/x.pt',
    workDir: join(root, 'work'),
    storage: { type: 'local' as const, root: join(root, 'storage') },
  };
}

describe('the library run handle', () => {
  it('a bad configuration throws ConfigError naming every field at once, before anything starts', () => {
    const job = fakeJob(3);
    let error: unknown;
    try {
      startRun(job, { ...config(), jobId: '../x', exportFormat: 'gif' }, { logger: false });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect(error).toBeInstanceOf(VisionTrainerError);
    expect((error as ConfigError).exitCode).toBe(2);
    expect((error as ConfigError).problems.map((p) => p.variable).sort()).toEqual(['exportFormat', 'jobId']);
    expect(job.reached()).toBe(0);
  });

  it('break leaves the loop and detaches the iterator; the run goes on to its end', async () => {
    const job = fakeJob(6);
    const run = startRun(job, config(), { logger: false });
    const seen: string[] = [];
    for await (const event of run) {
      seen.push(event.type);
      break;
    }
    expect(seen).toEqual(['progress']);
    const result = await run.result;
    expect(result).toMatchObject({ status: 'succeeded', exitCode: 0, steps: 6 });
  });

  it('an aborted signal stops the run at its next safe point: failed, exit 143, a typed error', async () => {
    const job = fakeJob(1000);
    const controller = new AbortController();
    const run = startRun(job, config(), { logger: false, signal: controller.signal });
    const events: ExportEvent[] = [];
    for await (const event of run) {
      events.push(event);
      if (events.length === 2) controller.abort('user cancelled');
    }
    const result = await run.result;
    expect(result.status).toBe('failed');
    expect(result.exitCode).toBe(143);
    expect(result.error).toBeInstanceOf(VisionTrainerError);
    expect(result.error?.message).toContain('user cancelled');
    expect(result.steps).toBeLessThan(1000);
    expect(events.at(-1)).toMatchObject({ type: 'done', status: 'failed', exitCode: 143 });
  });

  it('stop() does the same', async () => {
    const run = startRun(fakeJob(1000), config(), { logger: false });
    run.subscribe((e) => (e.type === 'progress' && e.percent >= 0.3 ? run.stop('enough') : undefined));
    const result = await run.result;
    expect(result).toMatchObject({ status: 'failed', exitCode: 143 });
    expect(result.error?.message).toContain('enough');
  });
});
