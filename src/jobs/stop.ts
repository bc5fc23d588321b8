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
    for (const fn of this.requestListeners) fn(reason);
  }

  /** Stop now: kill whatever is running. */
  force(): void {
    if (this.forced) return;
    this.forced = true;
    for (const fn of this.forceListeners) fn();
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
