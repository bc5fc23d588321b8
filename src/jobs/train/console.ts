/** The run as log lines: one line per epoch, validation and checkpoint; a progress bar per batch on a terminal. */
import type { JsonValue, Metrics, RunEvent, RunSubscriber } from '../../events.js';
import type { Logger } from '../../log.js';

const fmt = (m: Metrics, keys?: string[]) =>
  Object.entries(m)
    .filter(([k, v]) => v !== null && (!keys || keys.includes(k)))
    .map(([k, v]) => `${k}=${Number(v).toPrecision(4)}`)
    .join(' ');

/** The runtime part of the resolved settings in a few words: threads, workers, AMP. */
function runtimeSummary(settings: Record<string, JsonValue>): string {
  const r = settings.runtime;
  if (!r || typeof r !== 'object' || Array.isArray(r)) return String(settings.framework ?? '');
  return `${settings.framework ?? ''} on ${r.device}, ${r.torch_threads} torch thread(s), ${r.train_workers} data-loader worker(s), AMP ${r.amp || 'off'}`;
}

export function consoleReporter(logger: Logger): RunSubscriber {
  return (event: RunEvent) => {
    switch (event.type) {
      case 'milestone':
        logger.info(event.message, { event: event.name });
        return;
      case 'start':
        logger.info(`training ${event.epochs} epochs (${event.batchesPerEpoch} batches each) on ${event.device}`);
        if (event.settings) logger.info(`resolved settings: ${runtimeSummary(event.settings)}`, { event: 'training_settings', settings: event.settings });
        return;
      case 'batch':
        logger.progress(
          `epoch ${event.epoch}/${event.epochs}`,
          event.batch,
          event.batches,
          `${fmt(event.losses)}${event.etaSeconds === null ? '' : ` eta ${Math.round(event.etaSeconds)}s`}`,
        );
        return;
      case 'epoch':
        logger.info(
          `epoch ${event.epoch}/${event.epochs} (${event.progress.toFixed(0)}%) ${fmt(event.losses)} ${fmt(event.metrics)}${event.isBest ? ' [best]' : ''}`,
          { event: 'epoch', epoch: event.epoch },
        );
        return;
      case 'validation':
        logger.info(`validation epoch ${event.epoch}: ${event.primaryMetricName}=${event.primaryMetricValue ?? 'n/a'} on ${event.numImagesValidated} images`, {
          event: 'validation',
          epoch: event.epoch,
        });
        return;
      case 'checkpoint':
        logger.info(`checkpoint (${event.reason}) epoch ${event.epoch}: ${event.uri}`, { event: 'checkpoint' });
        return;
      case 'done':
        if (event.status === 'succeeded') {
          logger.info(
            `training succeeded: best epoch ${event.bestEpoch}, ${event.primaryMetricName}=${event.bestMetricValue ?? 'n/a'}, best checkpoint ${event.checkpointUri}`,
            { event: 'done' },
          );
        } else {
          logger.error(`training failed: ${event.errorMessage}`, { event: 'done' });
        }
        return;
      default:
        return;
    }
  };
}
