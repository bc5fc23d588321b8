/** `vision-trainer infer`: test runs and inference jobs (TRAINER_DESIGN "Inference Execution"). */
import { CallbackClient } from '../callbacks/client.js';
import type { InferConfig } from '../config/schema.js';
import { ExitCode } from '../errors.js';
import type { Logger } from '../log.js';

/** Runs one inference job as the container does and returns the process exit code. */
export async function runInferCommand(config: InferConfig, logger: Logger): Promise<number> {
  const message = 'vision-trainer infer: the configuration is valid, but inference jobs are not implemented in this version yet';
  logger.error(message);
  if (config.backend) {
    const client = new CallbackClient({ baseUrl: config.backend.baseUrl, token: config.backend.token, jobId: config.jobId, traceId: config.traceId, logger, retry: { completion: { maxAttempts: config.callbackMaxAttempts } } });
    try {
      if (config.inferenceType === 'inference_job') await client.inferenceJobDone({ status: 'failed', error_message: message });
      else await client.testRunDone({ status: 'failed', error_message: message });
    } finally {
      await client.close();
    }
  }
  return ExitCode.framework;
}
