/**
 * The training layout written from the staged annotations while the images download, in a
 * worker thread when the module runs compiled (every job).
 *
 * Writing the layout is tens of thousands of synchronous file calls (label files, image links)
 * in slices (src/datasets/convert/files.ts). On the download's thread every slice held up the
 * event loop that feeds the download's sockets and file writes: with a local S3 server and
 * 20,000 images the download took 18.8-29.7 s beside the layout against 12.6-17.6 s alone, and
 * the layout itself 8-15 s. In a worker thread the same calls no longer stop the download.
 * Run from the TypeScript sources (the unit tests), there is no compiled worker file and the
 * layout is written on the calling thread, with the adapter the caller passed.
 */
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { Framework, TaskType } from '../../config/tasks.js';
import { nameNeedsFormat } from '../../datasets/convert/files.js';
import { loadDataset } from '../../datasets/load.js';
import { type SplitStrategy, resolveSplits } from '../../datasets/splits.js';
import type { FrameworkAdapter, PreparedDataset } from '../../frameworks/adapter.js';
import { adapterFor } from '../../frameworks/index.js';

/** What the layout needs: plain data, so that it crosses to a worker thread as it is. */
export interface LayoutRequest {
  framework: Framework;
  taskType: TaskType;
  splitStrategy: SplitStrategy | undefined;
  /** The annotations' text and the folder the images are arriving in. */
  text: string;
  root: string;
  dataDir: string;
}

export type LayoutReply =
  | { written: true; prepared: PreparedDataset; images: number }
  /** An image's name in the layout depends on its file's header: the layout waits for the download. */
  | { written: false };

/** The layout from the annotations' entries alone (the images are still arriving; the full load after the download checks them). */
export async function writeLayout(request: LayoutRequest, adapter: FrameworkAdapter = adapterFor(request.framework)): Promise<LayoutReply> {
  const dataset = await loadDataset(request.root, { taskType: request.taskType, annotationsText: request.text, verifyImages: false });
  if (dataset.images.some(nameNeedsFormat)) return { written: false };
  const splits = resolveSplits(dataset, request.splitStrategy);
  const prepared = await adapter.training.prepareDataset(dataset, splits, request.dataDir);
  return { written: true, prepared, images: dataset.images.length };
}

/** Marks this module's own worker (workerData of other workers is not ours to read). */
const WORKER_TAG = 'vision-trainer-layout';

const thisFile = fileURLToPath(import.meta.url);
/** This module compiled, which a worker thread can run; undefined when running from the TypeScript sources. */
const compiledModule = thisFile.endsWith('.js') ? thisFile : undefined;

/** The layout in progress: its reply, and a way to stop it (a failed job's close must not race its writes). */
export interface LayoutRun {
  reply: Promise<LayoutReply>;
  /** Where it ran, for the log. */
  thread: 'worker' | 'caller';
  /** Stops a worker mid-way; resolves once it no longer writes. */
  stop(): Promise<void>;
}

export function startLayout(request: LayoutRequest, adapter: FrameworkAdapter): LayoutRun {
  if (!compiledModule) {
    const reply = writeLayout(request, adapter);
    return { reply, thread: 'caller', stop: () => reply.then(ignore, ignore) };
  }
  const worker = new Worker(compiledModule, { workerData: { [WORKER_TAG]: request } });
  const reply = new Promise<LayoutReply>((resolve, reject) => {
    worker.once('message', (message: LayoutReply) => resolve(message));
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the layout worker exited (code ${code}) before it answered`)));
  });
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  return {
    reply,
    thread: 'worker',
    stop: async () => {
      await worker.terminate();
      await exited;
    },
  };
}

const ignore = () => undefined;

if (!isMainThread && parentPort && workerData?.[WORKER_TAG]) {
  const port = parentPort;
  // An error thrown here reaches the caller as the worker's 'error' event.
  port.postMessage(await writeLayout(workerData[WORKER_TAG] as LayoutRequest));
}
