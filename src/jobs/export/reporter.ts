/** An export job's events as the backend's callbacks: progress per stage, then the completion. */
import type { CallbackClient } from '../../callbacks/client.js';
import type { ExportEvent } from '../../events.js';
import type { Subscriber } from '../run-stream.js';

export function exportReporter(client: CallbackClient): Subscriber<ExportEvent> {
  return (event) => {
    if (event.type === 'progress') {
      client.exportProgress({ progress_percent: event.percent, stage: event.stage, message: event.message });
      return;
    }
    if (event.status === 'failed') {
      return client.exportDone({ status: 'failed', error_message: event.errorMessage ?? 'export failed', validation_metrics: event.validation });
    }
    return client.exportDone({
      status: 'succeeded',
      export_path: event.exportUri,
      metadata_path: event.metadataUri,
      package_path: event.packageUri,
      model_info: { ...event.modelInfo },
      validation_metrics: event.validation,
    });
  };
}
