/** Export jobs for TypeScript scripts, over the same job the container runs. */
import type { ExportConfig } from '../../config/schema.js';
import type { ExportEvent } from '../../events.js';
import { type JobOptions, runJobReportingProgress } from '../context.js';
import { type ExportProgress, type ExportResult, exportJob } from './job.js';

export type { ExportProgress, ExportResult, ExportStage, ModelInfo } from './job.js';

export interface ExportOptions extends JobOptions<ExportEvent> {
  /** Each stage as it starts (the figures of the backend's progress callback). */
  onProgress?: (progress: ExportProgress) => void;
}

/**
 * Runs one export job; resolves with how it ended (it does not reject). Sends the backend's
 * callbacks when `config.backend` is set, unless `callbacks: false`. Aborting `signal` stops
 * the job at once (Python is killed).
 */
export function runExportJob(config: ExportConfig, options: ExportOptions = {}): Promise<ExportResult> {
  return runJobReportingProgress(exportJob, config, options);
}
