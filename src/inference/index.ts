/** Test runs and inference jobs: the job, the results.json schema, and the parts others reuse. */
export { runInferenceJob, PROGRESS_EVERY, type InferenceJobContext, type InferenceOutcome, type InferenceProgress } from './run.js';
export * from './results.js';
export { Explainer, LlmAnswerSchema, type ExplainerOptions, type ExplanationContext } from './llm.js';
export { layerPathProblems, LAYER_PATH } from './layers.js';
export { jobPrefix, resultsKey, visualizationsPrefix, xaiPrefix } from './artifacts.js';
