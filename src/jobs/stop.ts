/**
 * Why and when a run should stop. Training asks at every batch; downloads check between steps.
 * The first reason wins. A forced stop (second signal, or the grace period running out) kills
 * Python outright instead of waiting for the current batch.
 */
import { CancelledError, TimeLimitError, VisionTrainerError, asVisionTrainerError } from '../errors.js';

export type StopReason =
  | { kind: 'signal'; signal: string }
  | { kind: 'time_limit'; limitSeconds: number }
  | { kind: 'requested'; message: string }
  | { kind: 'handler_error'; error: unknown };

export class StopController {
  private current: StopReason | undefined;
  private readonly requestListeners: Array<(reason: StopReason) => void> = [];
  private readonly forceListeners: Array<() => void> = [];
  private forced = false;
  private readonly requestedController = new AbortController();
  private readonly forcedController = new AbortController();
  /** When the stop was asked for (ms since the epoch). */
  requestedAt: number | undefined;

  /**
   * Aborted when a stop is asked for, with the run's error as its reason: downloads and waits
   * that serve work not yet begun (a dataset, weights, a checkpoint to resume) end at once.
   */
  get stopSignal(): AbortSignal {
    return this.requestedController.signal;
  }

  /**
   * Aborted when the stop is forced (second signal, grace period over): what saves work
   * (checkpoint uploads) is abandoned too. The local copy stays in the kept work folder.
   */
  get forceSignal(): AbortSignal {
    return this.forcedController.signal;
  }

  get reason(): StopReason | undefined {
    return this.current;
  }

  get requested(): boolean {
    return this.current !== undefined;
  }

  get isForced(): boolean {
    return this.forced;
  }

  request(reason: StopReason): void {
    if (this.current) return;
    this.current = reason;
    this.requestedAt = Date.now();
    for (const fn of this.requestListeners) fn(reason);
    this.requestedController.abort(this.toError());
  }

  /** Stop now: kill whatever is running. */
  force(): void {
    if (this.forced) return;
    this.forced = true;
    for (const fn of this.forceListeners) fn();
    this.forcedController.abort(this.toError(' (forced)'));
  }

  onRequest(fn: (reason: StopReason) => void): void {
    this.requestListeners.push(fn);
  }

  onForce(fn: () => void): () => void {
    this.forceListeners.push(fn);
    return () => {
      const i = this.forceListeners.indexOf(fn);
      if (i >= 0) this.forceListeners.splice(i, 1);
    };
  }

  /** The error a stopped run ends with. */
  toError(detail = ''): VisionTrainerError {
    const r = this.current;
    if (!r) return new VisionTrainerError('Run stopped without a reason');
    switch (r.kind) {
      case 'signal':
        return new CancelledError(r.signal, detail);
      case 'time_limit':
        return new TimeLimitError(r.limitSeconds, detail);
      case 'requested':
        return new CancelledError('request', `: ${r.message}${detail}`);
      case 'handler_error': {
        const e = asVisionTrainerError(r.error);
        return new VisionTrainerError(`A run-event handler failed, so training was stopped: ${e.message}${detail}`, { exitCode: e.exitCode, cause: r.error });
      }
    }
  }

  throwIfRequested(detail = ''): void {
    if (this.current) throw this.toError(detail);
  }
}
