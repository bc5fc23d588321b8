/**
 * An inference job's events as the backend's callbacks: progress every few images; the `done`
 * event becomes the completion of a test run (with its metrics) or of an inference job, which
 * the job context stores and sends (src/jobs/context.ts).
 */
import type { CallbackClient } from '../../callbacks/client.js';
import type { InferConfig } from '../../config/schema.js';
import type { InferenceEvent } from '../../events.js';
import type { Completion } from '../outcome.js';
import type { Subscriber } from '../run-stream.js';

export function inferenceReporter(client: CallbackClient): Subscriber<InferenceEvent> {
  return (event) => {
    if (event.type !== 'progress') return;
    client.inferenceProgress({
      processed_images: event.processed,
      total_images: event.total,
      progress_percent: Math.round(event.percent * 100) / 100,
      avg_inference_time_ms: event.avgInferenceTimeMs,
      ...(event.explained ? { explained_images: event.explained.images, images_to_explain: event.explained.of, xai_method: event.explained.method } : {}),
    });
  };
}

export function inferenceCompletion(config: InferConfig, event: Extract<InferenceEvent, { type: 'done' }>): Completion {
  const paths = { results_path: event.resultsUri, visualizations_path: event.visualizationsUri, xai_results_path: event.xaiUri };
  const testRun = config.inferenceType === 'test_run';
  if (event.status === 'failed') {
    const failed = { status: 'failed' as const, error_message: event.errorMessage ?? 'inference failed' };
    return testRun ? { kind: 'testRunDone', input: failed } : { kind: 'inferenceJobDone', input: failed };
  }
  if (!testRun) return { kind: 'inferenceJobDone', input: { status: 'succeeded', ...paths } };
  const m = event.metrics;
  return {
    kind: 'testRunDone',
    input: {
      status: 'succeeded',
      overall_metrics: m?.overall_metrics ?? {},
      per_class_metrics: m?.per_class_metrics ?? [],
      confusion_matrix: m?.confusion_matrix ?? null,
      // The dataset's class id of each row and column (null: a detection matrix's background).
      confusion_matrix_class_ids: m?.confusion_matrix_class_ids ?? null,
      pr_curves: m?.pr_curves ?? {},
      ...paths,
    },
  };
}
