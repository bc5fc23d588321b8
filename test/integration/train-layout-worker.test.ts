/**
 * The early training layout in its worker thread, through the compiled module every job runs
 * (dist/src/jobs/train/layout.js; run from the TypeScript sources the layout stays on the
 * calling thread): the layout a worker writes is the one the calling thread writes, a header-
 * dependent name is answered without writing, and stop() ends a worker mid-way with nothing
 * written afterwards.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import type * as Layout from '../../src/jobs/train/layout.js';
import { PROJECT_ROOT } from '../../src/paths.js';
import { writeSyntheticDataset } from '../helpers/synthetic.js';

const compiled = (): Promise<typeof Layout> => import(pathToFileURL(join(PROJECT_ROOT, 'dist/src/jobs/train/layout.js')).href);
const source = (): Promise<typeof Layout> => import('../../src/jobs/train/layout.js');

function request(count: number, rename?: (name: string) => string): Layout.LayoutRequest & { outDir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'vt-layout-worker-'));
  const ds = writeSyntheticDataset(join(dir, 'dataset'), { taskType: 'object_detection', count, seed: 7 });
  const annotations = ds.annotations as { images: Array<{ file_name: string }> };
  if (rename) for (const image of annotations.images) image.file_name = rename(image.file_name);
  return {
    framework: 'ultralytics',
    taskType: 'object_detection',
    splitStrategy: undefined,
    text: JSON.stringify(annotations),
    root: ds.root,
    dataDir: join(dir, 'data'),
    outDir: join(dir, 'data'),
  };
}

const tree = (dir: string): string[] => (existsSync(dir) ? (readdirSync(dir, { recursive: true }) as string[]).sort() : []);

describe('the early training layout in a worker thread', () => {
  it('the compiled module writes it in a worker; the same layout as on the calling thread', async () => {
    const [{ startLayout }, { ultralyticsAdapter }] = await Promise.all([compiled(), import('../../adapters/ultralytics/index.js')]);
    const inWorker = request(40);
    const run = startLayout(inWorker, ultralyticsAdapter);
    expect(run.thread).toBe('worker');
    const reply = await run.reply;
    expect(reply.written).toBe(true);
    if (!reply.written) return;
    expect(reply.images).toBe(40);
    expect(reply.prepared.counts.train! + reply.prepared.counts.val!).toBe(40);

    const onCaller = { ...inWorker, dataDir: join(inWorker.dataDir, '..', 'data-caller') };
    const here = await (await source()).startLayout(onCaller, ultralyticsAdapter);
    expect(here.thread).toBe('caller');
    const hereReply = await here.reply;
    expect(tree(inWorker.dataDir)).toEqual(tree(onCaller.dataDir));
    if (!hereReply.written) throw new Error('the calling thread wrote no layout');
    expect(reply.prepared.classNames).toEqual(hereReply.prepared.classNames);
    expect(reply.prepared.counts).toEqual(hereReply.prepared.counts);
    // Every link points at an image the download will have put in place.
    const list = readFileSync(join(inWorker.dataDir, 'train.txt'), 'utf8').trim().split('\n');
    for (const link of list) expect(existsSync(link), link).toBe(true);
  });

  it('an image named without an extension: the worker answers without writing a layout', async () => {
    const { startLayout } = await compiled();
    const { ultralyticsAdapter } = await import('../../adapters/ultralytics/index.js');
    const req = request(6, (name) => name.replace(/\.png$/, ''));
    const reply = await startLayout(req, ultralyticsAdapter).reply;
    expect(reply).toEqual({ written: false });
    expect(tree(req.dataDir)).toEqual([]);
  });

  it('stop() ends the worker mid-way: nothing is written afterwards, and the reply says it did not finish', async () => {
    const { startLayout } = await compiled();
    const { ultralyticsAdapter } = await import('../../adapters/ultralytics/index.js');
    const req = request(2000);
    const run = startLayout(req, ultralyticsAdapter);
    const reply = run.reply.catch((e: unknown) => e);
    // Stopped once it has begun writing (its folders are made first).
    while (!existsSync(join(req.dataDir, 'labels'))) await new Promise((r) => setTimeout(r, 2));
    await run.stop();
    const after = tree(req.dataDir);
    await new Promise((r) => setTimeout(r, 300));
    expect(tree(req.dataDir)).toEqual(after);
    expect(await reply).toBeInstanceOf(Error);
  });
});
