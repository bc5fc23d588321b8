/**
 * Checkpoint uploads that never hold training up: the file is snapshotted at once (the trainer
 * rewrites last.pt every epoch, and a half-written file must never be uploaded), the upload runs
 * in the background, and the job waits for all of them before it reports `done`.
 */
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Logger } from '../../log.js';
import type { Storage } from '../../storage/types.js';

export class BackgroundUploads {
  private readonly pending = new Set<Promise<void>>();
  private readonly failures: Error[] = [];
  private counter = 0;

  constructor(
    private readonly storage: Storage,
    private readonly snapshotDir: string,
    private readonly logger: Logger,
  ) {}

  /**
   * Copies `localPath` now (awaited: it is a local copy, milliseconds for a YOLO checkpoint) and
   * uploads the copy in the background. `onUploaded` runs with the URI once it is stored.
   */
  async enqueue(localPath: string, key: string, onUploaded: (uri: string) => void): Promise<void> {
    await mkdir(this.snapshotDir, { recursive: true });
    const snapshot = join(this.snapshotDir, `${++this.counter}-${basename(localPath)}`);
    await copyFile(localPath, snapshot);
    const task = this.storage
      .uploadFile(snapshot, key)
      .then(onUploaded)
      .catch((err: unknown) => {
        // The design: a failed intermediate upload is logged, training goes on; the final one must succeed.
        const e = err instanceof Error ? err : new Error(String(err));
        this.failures.push(e);
        this.logger.warn(`checkpoint upload failed; training continues: ${e.message}`, { key });
      })
      .finally(() => rm(snapshot, { force: true }));
    this.pending.add(task);
    void task.finally(() => this.pending.delete(task));
  }

  /** Resolves when every queued upload has finished (successfully or not). */
  async drain(): Promise<{ failed: number }> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
    return { failed: this.failures.length };
  }
}
