/**
 * Test runs and inference jobs for TypeScript scripts, over the same job the container runs;
 * the results.json schema, and the parts others reuse.
 */
import type { InferConfig, InferConfigInput } from '../../config/schema.js';
import type { InferenceEvent } from '../../events.js';
import { type JobOptions, type JobRun, startRun } from '../context.js';
import { type InferenceOutcome, inferenceJob } from './job.js';

export type { InferenceOutcome } from './job.js';
export { PROGRESS_EVERY, type InferenceProgress } from './predict-loop.js';
export * from './results.js';
export { Explainer, LlmAnswerSchema, type ExplainerOptions, type ExplanationContext } from './llm.js';
export { layerPathProblems, LAYER_PATH } from './layers.js';
export { jobPrefix, resultsKey, visualizationsPrefix, xaiPrefix } from './artifacts.js';

/** The same options as training's; `stop()` or `signal` stops inference after the current batch. */
export type InferOptions = JobOptions<InferenceEvent>;
export type InferenceRun = JobRun<InferConfig, InferenceEvent, InferenceOutcome>;

/**
 * Runs a test run or an inference job: `for await` its `progress` events (every PROGRESS_EVERY
 * images, the figures of the backend's progress callback), then `await run.result`. Sends the
 * backend's callbacks when `config.backend` is set, unless `callbacks: false`.
 */
export function infer(config: InferConfigInput | InferConfig, options: InferOptions = {}): InferenceRun {
  return startRun(inferenceJob, config, options);
}
