/**
 * Work a job begins while its preflight still imports torch and checks the configuration:
 * downloads, whose waits on storage share the seconds of a single CPU that the imports take.
 * The preflight still decides first. When it fails, `cancel` aborts the work through its signal
 * and waits until nothing writes into the work folder, so a bad DEVICE or MODEL_NAME costs the
 * seconds of the preflight, not a download. Work that fails meanwhile is reported when `result`
 * is awaited, after the preflight had its say, never as an unhandled rejection before then.
 */
export class BesidePreflight<T> {
  private readonly abort = new AbortController();
  private running: Promise<T> | undefined;

  constructor(private readonly work: (signal: AbortSignal) => Promise<T>) {}

  /** Starts the work (once); a call after `cancel` starts nothing. */
  start(): void {
    if (this.running) return;
    this.running = this.abort.signal.aborted ? Promise.reject(this.abort.signal.reason) : this.work(this.abort.signal);
    // Observed by `result` or `cancel`; a rejection must not go unhandled before then.
    this.running.catch(() => {});
  }

  /** The work's outcome (it starts now if it had not). */
  result(): Promise<T> {
    this.start();
    return this.running as Promise<T>;
  }

  /** Abandons the work for good (work not yet started never starts) and resolves once it has settled. */
  async cancel(reason: string): Promise<void> {
    this.abort.abort(new Error(reason));
    await this.running?.catch(() => {});
  }
}
