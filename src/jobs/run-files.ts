/**
 * Files a job leaves beside its log: the event log (`metrics.jsonl`, every event of the run as
 * one JSON line, for replaying or charting a run without the backend) and folders such as the
 * framework's plots or TensorBoard's event files (JobContext.uploadAtEnd).
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { JobEvent } from './run-stream.js';

export class EventLog {
  private readonly stream: WriteStream;
  private closed = false;

  constructor(readonly path: string) {
    this.stream = createWriteStream(path, { flags: 'a', encoding: 'utf8' });
    // A full disk must not take the job down through an unhandled 'error' event; the upload says what is missing.
    this.stream.on('error', () => {});
  }

  write(event: JobEvent): void {
    // `done` is written by close(), before the completion is sent and the file uploaded.
    if (this.closed || event.type === 'done') return;
    this.stream.write(`${JSON.stringify({ time: new Date().toISOString(), ...event })}\n`);
  }

  /** Writes the last event and flushes the file. */
  async close(last: JobEvent): Promise<void> {
    if (this.closed) return;
    this.stream.write(`${JSON.stringify({ time: new Date().toISOString(), ...last })}\n`);
    this.closed = true;
    await new Promise<void>((resolve) => this.stream.end(resolve));
  }
}

/** A file itself (relative ''), or every file under a folder; nothing when the path is missing. */
export async function filesUnder(path: string): Promise<Array<{ path: string; relative: string }>> {
  const info = await stat(path).catch(() => undefined);
  if (!info) return [];
  if (info.isFile()) return [{ path, relative: '' }];
  const entries = await readdir(path, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .sort()
    .map((file) => ({ path: file, relative: relative(path, file).split('\\').join('/') }));
}
