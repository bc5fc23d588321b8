/**
 * `vision-trainer infer`: test runs and inference jobs (TRAINER_DESIGN "Inference Execution").
 * The job itself is src/inference/run.ts; this module adds what the container contract wants
 * around it: progress and completion callbacks, signal handling, the exit code.
 */
import { CallbackClient } from '../callbacks/client.js';
import type { InferConfig } from '../config/schema.js';
import { asVisionTrainerError } from '../errors.js';
import { runInferenceJob, type InferenceOutcome } from '../inference/run.js';
import type { Logger } from '../log.js';
import { installSignalHandlers } from './signals.js';
import { StopController } from './stop.js';

/**
 * After SIGTERM the current batch finishes and the job reports `failed`; Python is killed if
 * that takes longer than this (a batch is seconds; there is no checkpoint to save).
 */
const STOP_GRACE_SECONDS = 30;

/** Runs one inference job as the container does and returns the process exit code. */
export async function runInferCommand(config: InferConfig, logger: Logger): Promise<number> {
  const client = config.backend
    ? new CallbackClient({ baseUrl: config.backend.baseUrl, token: config.backend.token, jobId: config.jobId, traceId: config.traceId, logger, retry: { completion: { maxAttempts: config.callbackMaxAttempts } } })
    : undefined;
  const stop = new StopController();
  const uninstall = installSignalHandlers(stop, STOP_GRACE_SECONDS, logger);
  try {
    const outcome = await runInferenceJob(config, {
      logger,
      stop,
      onProgress: (p) =>
        client?.inferenceProgress({ processed_images: p.processed, total_images: p.total, progress_percent: Math.round(p.percent * 100) / 100, avg_inference_time_ms: p.avgInferenceTimeMs }),
    });
    if (!client) return outcome.exitCode;
    try {
      await reportCompletion(client, config, outcome);
    } catch (err) {
      const e = asVisionTrainerError(err);
      logger.error(`completion could not be delivered: ${e.message}`);
      // The work may have succeeded, but the backend does not know: the process must fail.
      return outcome.status === 'succeeded' ? e.exitCode : outcome.exitCode;
    }
    return outcome.exitCode;
  } finally {
    uninstall();
    await client?.close();
  }
}

async function reportCompletion(client: CallbackClient, config: InferConfig, outcome: InferenceOutcome): Promise<void> {
  const paths = { results_path: outcome.resultsUri, visualizations_path: outcome.visualizationsUri, xai_results_path: outcome.xaiUri };
  if (outcome.status === 'failed') {
    const error_message = outcome.error?.describe() ?? 'inference failed';
    if (config.inferenceType === 'test_run') await client.testRunDone({ status: 'failed', error_message });
    else await client.inferenceJobDone({ status: 'failed', error_message });
    return;
  }
  if (config.inferenceType === 'inference_job') {
    await client.inferenceJobDone({ status: 'succeeded', ...paths });
    return;
  }
  const m = outcome.metrics;
  await client.testRunDone({
    status: 'succeeded',
    overall_metrics: m?.overall_metrics ?? {},
    per_class_metrics: m?.per_class_metrics ?? [],
    confusion_matrix: m?.confusion_matrix ?? null,
    pr_curves: m?.pr_curves ?? {},
    ...paths,
  });
}
