/**
 * The TypeScript end of python/vision_trainer/ultralytics/train.py's FileRelay: when the trainer
 * runs in processes the bridge cannot reach (ultralytics DDP workers, DEVICE=0,1), it appends its
 * events as JSON lines to a file. This tails that file while the bridge call is pending (Node's
 * event loop is free then) and answers "stop" by creating the stop file.
 */
import { type FileHandle, open, writeFile } from 'node:fs/promises';
import type { TrainerAnswer } from '../../src/frameworks/protocol.js';

const POLL_MS = 250;

export interface EventTail {
  /** Reads what is left, then stops polling. */
  finish(): Promise<void>;
}

export function tailEvents(eventsPath: string, stopPath: string, onLine: (raw: unknown) => TrainerAnswer): EventTail {
  let offset = 0;
  let partial = '';
  let reading: Promise<void> = Promise.resolve();
  let failure: unknown;

  const readNew = async () => {
    let handle: FileHandle;
    try {
      handle = await open(eventsPath, 'r');
    } catch {
      return; // not written yet
    }
    try {
      const { size } = await handle.stat();
      if (size <= offset) return;
      const buffer = Buffer.alloc(size - offset);
      await handle.read(buffer, 0, buffer.length, offset);
      offset = size;
      const lines = (partial + buffer.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        if (!line.trim()) continue;
        if (onLine(JSON.parse(line)) === 'stop') await writeFile(stopPath, 'stop\n');
      }
    } finally {
      await handle.close();
    }
  };

  const timer = setInterval(() => {
    reading = reading.then(readNew).catch((err: unknown) => {
      failure ??= err;
    });
  }, POLL_MS);

  return {
    async finish() {
      clearInterval(timer);
      await reading;
      await readNew();
      if (failure) throw failure;
    },
  };
}
