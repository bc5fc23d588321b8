/**
 * The job's log file goes to storage while the job runs, not only at its end: every
 * LOG_UPLOAD_INTERVAL_SECONDS, whenever the job asks (training: after every epoch) and last at
 * completion. A job killed outright (SIGKILL, the OOM killer, a lost node) therefore leaves its
 * log up to the last interval in storage.
 *
 * Each upload sends the whole file (logs are small next to what a job moves; an object cannot
 * be appended to). Uploads never overlap: one asked for while another runs follows it. A
 * periodic upload that fails is not retried at length: the next interval tries again, so a
 * storage outage costs log lines, never the job's time.
 */
import { readFile } from 'node:fs/promises';
import { asVisionTrainerError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Storage } from '../storage/types.js';

export class LogUploader {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private failing = false;
  private stopped = false;

  constructor(
    private readonly file: string,
    private readonly key: string,
    private readonly storage: Storage,
    private readonly logger: Logger,
  ) {}

  /** Uploads every intervalMs until finish(). */
  start(intervalMs: number): void {
    this.timer = setInterval(() => void this.upload(), intervalMs);
    this.timer.unref();
  }

  /** An upload now (or right after the one under way). */
  upload(storage: Storage = this.storage): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.send(storage);
        } while (this.again && !this.stopped);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  /**
   * Stops the periodic uploads and uploads the file once more through `storage` (the job's
   * retrying storage). Says whether that last upload succeeded.
   */
  async finish(storage: Storage): Promise<boolean> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
    try {
      await storage.putBytes(this.key, await readFile(this.file), { contentType: 'text/plain; charset=utf-8' });
      return true;
    } catch (err) {
      this.logger.warn(`The job log could not be uploaded to ${this.storage.uri(this.key)}: ${asVisionTrainerError(err).message}`);
      return false;
    }
  }

  private async send(storage: Storage): Promise<void> {
    try {
      await storage.putBytes(this.key, await readFile(this.file), { contentType: 'text/plain; charset=utf-8' });
      if (this.failing) this.logger.info('Log uploads work again');
      this.failing = false;
    } catch (err) {
      // One line when uploads start failing, not one per interval.
      if (!this.failing) this.logger.warn(`Log upload failed (the next one is tried in the next interval): ${asVisionTrainerError(err).message}`);
      this.failing = true;
    }
  }
}
