/**
 * SIGTERM (Kubernetes eviction, `kubectl delete`, preemption) and SIGINT (Ctrl-C) ask the run to
 * stop after the current batch so the last checkpoint can be saved and uploaded. If the run has
 * not finished within the grace period, or a second signal arrives, Python is killed.
 */
import type { Logger } from '../log.js';
import type { StopController } from './stop.js';

/**
 * `stopping` says what the job does on the first signal. With a grace period of 0 the job has no
 * safe point to wait for: it is forced at once.
 */
export function installSignalHandlers(
  stop: StopController,
  graceSeconds: number,
  logger: Logger,
  stopping = 'stopping after the current batch and uploading the last checkpoint',
): () => void {
  let timer: NodeJS.Timeout | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stop.requested) {
      logger.warn(`${signal} again: stopping now`);
      stop.force();
      return;
    }
    if (graceSeconds <= 0) {
      logger.warn(`${signal} received: ${stopping}`);
      stop.request({ kind: 'signal', signal });
      stop.force();
      return;
    }
    logger.warn(`${signal} received: ${stopping} (forced in ${graceSeconds}s)`);
    stop.request({ kind: 'signal', signal });
    timer = setTimeout(() => {
      logger.error(`grace period of ${graceSeconds}s is over: stopping now`);
      stop.force();
    }, graceSeconds * 1000);
    timer.unref();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return () => {
    if (timer) clearTimeout(timer);
    process.removeListener('SIGTERM', onSignal);
    process.removeListener('SIGINT', onSignal);
  };
}
