/**
 * Checkpoint uploads that never hold training up: the file is snapshotted at once (the trainer
 * rewrites last.pt every epoch, and a half-written file must never be uploaded), the upload runs
 * in the background through the job's retrying storage, and the job waits for all of them before
 * it reports `done`.
 *
 * A snapshot is deleted only once storage confirmed its upload. One whose upload finally failed
 * (the retry budget ran out, or a forced stop abandoned it) stays where it is: the caller keeps
 * the work folder and says where the file is.
 */
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { asVisionTrainerError, type VisionTrainerError } from '../../errors.js';
import type { Storage } from '../../storage/types.js';

export interface UploadCallbacks {
  /** Storage confirmed the object: its URI. */
  uploaded(uri: string): void;
  /** Every retry failed; the local copy at `localPath` is all there is. */
  failed(error: VisionTrainerError, localPath: string): void;
}

export class BackgroundUploads {
  private readonly pending = new Set<Promise<void>>();
  private failures = 0;
  private counter = 0;

  constructor(
    private readonly storage: Storage,
    private readonly snapshotDir: string,
  ) {}

  /**
   * Copies `localPath` now and uploads the copy in the background; resolves once the copy is
   * taken (a local copy, milliseconds for a YOLO checkpoint). The upload counts as pending from
   * this call on, before the copy is made, so a `drain()` that follows waits for it even when
   * the caller did not wait for the copy.
   */
  enqueue(localPath: string, key: string, on: UploadCallbacks): Promise<void> {
    const snapshot = join(this.snapshotDir, `${++this.counter}-${basename(localPath)}`);
    let copied: (error?: unknown) => void = () => {};
    const taken = new Promise<void>((resolve, reject) => {
      copied = (error) => (error === undefined ? resolve() : reject(error));
    });
    const task = (async () => {
      try {
        await mkdir(this.snapshotDir, { recursive: true });
        await copyFile(localPath, snapshot);
      } catch (err) {
        copied(err);
        return;
      }
      copied();
      try {
        const uri = await this.storage.uploadFile(snapshot, key);
        await rm(snapshot, { force: true });
        on.uploaded(uri);
      } catch (err) {
        this.failures++;
        on.failed(asVisionTrainerError(err), snapshot);
      }
    })();
    this.pending.add(task);
    void task.finally(() => this.pending.delete(task));
    return taken;
  }

  /** Resolves when every queued upload has finished (successfully or not). */
  async drain(): Promise<{ failed: number }> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
    return { failed: this.failures };
  }
}
