/**
 * An export job's events as the backend's callbacks: progress per stage; the `done` event
 * becomes the completion, which the job context stores and sends (src/jobs/context.ts).
 */
import type { CallbackClient } from '../../callbacks/client.js';
import type { ExportEvent } from '../../events.js';
import type { Completion } from '../outcome.js';
import type { Subscriber } from '../run-stream.js';

export function exportReporter(client: CallbackClient): Subscriber<ExportEvent> {
  return (event) => {
    if (event.type === 'progress') client.exportProgress({ progress_percent: event.percent, stage: event.stage, message: event.message });
  };
}

export function exportCompletion(event: Extract<ExportEvent, { type: 'done' }>): Completion {
  if (event.status === 'failed') {
    return { kind: 'exportDone', input: { status: 'failed', error_message: event.errorMessage ?? 'export failed', validation_metrics: event.validation } };
  }
  return {
    kind: 'exportDone',
    input: {
      status: 'succeeded',
      export_path: event.exportUri,
      metadata_path: event.metadataUri,
      package_path: event.packageUri,
      model_info: { ...event.modelInfo },
      validation_metrics: event.validation,
    },
  };
}
