/** Export jobs for TypeScript scripts, over the same job the container runs. */
import type { ExportConfig, ExportConfigInput } from '../../config/schema.js';
import type { ExportEvent } from '../../events.js';
import { type JobOptions, type JobRun, startRun } from '../context.js';
import { type ExportResult, exportJob } from './job.js';

export type { ExportProgress, ExportResult, ExportStage, ModelInfo } from './job.js';

/** The same options as training's; `stop()` or `signal` stops an export at once (Python is killed). */
export type ExportOptions = JobOptions<ExportEvent>;
export type ExportRun = JobRun<ExportConfig, ExportEvent, ExportResult>;

/**
 * Exports a checkpoint: `for await` the `progress` events (each stage as it starts), then
 * `await run.result`. Sends the backend's callbacks when `config.backend` is set, unless
 * `callbacks: false`.
 */
export function exportModel(config: ExportConfigInput | ExportConfig, options: ExportOptions = {}): ExportRun {
  return startRun(exportJob, config, options);
}
