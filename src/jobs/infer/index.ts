/**
 * Test runs and inference jobs for TypeScript scripts, over the same job the container runs;
 * the results.json schema, and the parts others reuse.
 */
import type { InferConfig } from '../../config/schema.js';
import type { InferenceEvent } from '../../events.js';
import { type JobOptions, runJobReportingProgress } from '../context.js';
import { type InferenceOutcome, inferenceJob } from './job.js';
import type { InferenceProgress } from './predict-loop.js';

export type { InferenceOutcome } from './job.js';
export { PROGRESS_EVERY, type InferenceProgress } from './predict-loop.js';
export * from './results.js';
export { Explainer, LlmAnswerSchema, type ExplainerOptions, type ExplanationContext } from './llm.js';
export { layerPathProblems, LAYER_PATH } from './layers.js';
export { jobPrefix, resultsKey, visualizationsPrefix, xaiPrefix } from './artifacts.js';

export interface InferenceOptions extends JobOptions<InferenceEvent> {
  /** Progress every PROGRESS_EVERY images (the same figures the backend's progress callback gets). */
  onProgress?: (progress: InferenceProgress) => void;
}

/**
 * Runs one test run or inference job; resolves with how it ended (it does not reject). Sends
 * the backend's callbacks when `config.backend` is set, unless `callbacks: false`.
 */
export function runInferenceJob(config: InferConfig, options: InferenceOptions = {}): Promise<InferenceOutcome> {
  return runJobReportingProgress(inferenceJob, config, options);
}
