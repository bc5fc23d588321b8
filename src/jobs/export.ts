/** `vision-trainer export`: model export, validation and packaging (TRAINER_DESIGN "Export Execution"). */
import { CallbackClient } from '../callbacks/client.js';
import type { ExportConfig } from '../config/schema.js';
import { ExitCode } from '../errors.js';
import type { Logger } from '../log.js';

/** Runs one export job as the container does and returns the process exit code. */
export async function runExportCommand(config: ExportConfig, logger: Logger): Promise<number> {
  const message = 'vision-trainer export: the configuration is valid, but export jobs are not implemented in this version yet';
  logger.error(message);
  if (config.backend) {
    const client = new CallbackClient({ baseUrl: config.backend.baseUrl, token: config.backend.token, jobId: config.jobId, traceId: config.traceId, logger, retry: { completion: { maxAttempts: config.callbackMaxAttempts } } });
    try {
      await client.exportDone({ status: 'failed', error_message: message });
    } finally {
      await client.close();
    }
  }
  return ExitCode.framework;
}
