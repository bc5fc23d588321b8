#!/usr/bin/env node
/**
 * `vision-trainer <train|infer|export|dev>`: the container entry point. Each job mode reads its
 * whole configuration from the environment, exactly as the platform launches it.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CallbackClient } from './callbacks/client.js';
import { configFromEnv } from './config/env.js';
import { helpText } from './config/help.js';
import { jobIdSchema, traceIdSchema, type Mode } from './config/variables.js';
import { ConfigError, ExitCode, VisionTrainerError, asVisionTrainerError } from './errors.js';
import { Logger, type LogLevel, setLogger } from './log.js';
import { redact } from './redact.js';
import { type JobDefinition, type JobOutcome, startJob } from './jobs/context.js';
import type { JobEvent } from './jobs/run-stream.js';

const USAGE = `vision-trainer: trains, evaluates and exports vision models (ultralytics, timm, transformers).

Usage:
  vision-trainer train     train a model (configuration from environment variables)
  vision-trainer infer     run a test run or an inference job
  vision-trainer export    export a checkpoint to a deployment format
  vision-trainer dev       start the local stack (S3 server + callback receiver) for development
  vision-trainer <mode> --help   every environment variable of a mode, its meaning and default
`;

function loggerFromEnv(env: NodeJS.ProcessEnv, fields: Record<string, string>): Logger {
  const level = (['debug', 'info', 'warn', 'error'] as const).find((l) => l === env.LOG_LEVEL) ?? 'info';
  const format = env.LOG_FORMAT === 'json' || env.LOG_FORMAT === 'text' ? env.LOG_FORMAT : 'auto';
  return Logger.create({ level: level as LogLevel, format, fields });
}

/** JOB_ID and TRACE_ID when each is valid on its own: a hostile value never reaches a log line or a callback. */
function identity(env: NodeJS.ProcessEnv): { jobId: string | undefined; traceId: string | undefined } {
  const jobId = jobIdSchema.safeParse(env.JOB_ID);
  const traceId = traceIdSchema.safeParse(env.TRACE_ID);
  return { jobId: jobId.success ? jobId.data : undefined, traceId: traceId.success ? traceId.data : undefined };
}

/**
 * A configuration error is reported to the backend too when enough of the configuration is
 * valid to reach it: the platform then shows the message instead of a silent dead pod.
 */
async function reportConfigError(mode: Mode, error: ConfigError, env: NodeJS.ProcessEnv, logger: Logger): Promise<void> {
  const bad = new Set(error.problems.map((p) => p.variable));
  const baseUrl = env.BACKEND_BASE_URL?.trim();
  const token = env.CALLBACK_TOKEN?.trim();
  const { jobId, traceId } = identity(env);
  if (!baseUrl || !token || !jobId || ['BACKEND_BASE_URL', 'CALLBACK_TOKEN', 'JOB_ID'].some((v) => bad.has(v))) return;
  const client = new CallbackClient({ baseUrl, token, jobId, traceId: traceId ?? jobId, logger, retry: { completion: { maxAttempts: 3 } } });
  const message = error.describe();
  try {
    if (mode === 'train') await client.trainingDone({ status: 'failed', error_message: message });
    else if (mode === 'export') await client.exportDone({ status: 'failed', error_message: message });
    else if (env.INFERENCE_TYPE === 'inference_job') await client.inferenceJobDone({ status: 'failed', error_message: message });
    else await client.testRunDone({ status: 'failed', error_message: message });
  } catch (err) {
    logger.error(`could not report the configuration error to the backend: ${asVisionTrainerError(err).message}`);
  } finally {
    await client.close();
  }
}

/** Runs the mode's job as the container does and returns the process exit code. */
async function runMode(mode: Mode, env: NodeJS.ProcessEnv): Promise<number> {
  // Each job loads only its own dependencies (export: onnxruntime; infer: openai).
  if (mode === 'train') return runFromEnv((await import('./jobs/train/job.js')).trainingJob, env);
  if (mode === 'infer') return runFromEnv((await import('./jobs/infer/job.js')).inferenceJob, env);
  return runFromEnv((await import('./jobs/export/job.js')).exportJob, env);
}

async function runFromEnv<M extends Mode, E extends JobEvent, O extends JobOutcome>(
  definition: JobDefinition<M, E, O>,
  env: NodeJS.ProcessEnv,
): Promise<number> {
  const config = configFromEnv(definition.mode, env);
  const logger = loggerFromEnv(env, { job_id: config.jobId, trace_id: config.traceId });
  setLogger(logger);
  const { outcome } = startJob(definition, config, { logger, signals: true });
  return (await outcome).exitCode;
}

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  // We run on Node 20 with a locked SDK version; the SDK's future-support notice is noise in job logs.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE);
    return command ? ExitCode.ok : ExitCode.config;
  }
  if (!['train', 'infer', 'export', 'dev'].includes(command)) {
    process.stderr.write(`Unknown command "${redact(command)}".\n\n${USAGE}`);
    return ExitCode.config;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    if (command === 'dev') {
      const { devHelp } = await import('./dev/stack.js');
      process.stdout.write(`${devHelp()}\n`);
    } else process.stdout.write(`${helpText(command as Mode)}\n`);
    return ExitCode.ok;
  }
  if (command === 'dev') {
    const { runDevStack } = await import('./dev/stack.js');
    return runDevStack(rest);
  }
  const mode = command as Mode;
  const { jobId, traceId } = identity(env);
  const logger = loggerFromEnv(env, jobId ? { job_id: jobId, ...(traceId ? { trace_id: traceId } : {}) } : {});
  try {
    return await runMode(mode, env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.describe()}\n`);
      await reportConfigError(mode, err, env, logger);
      return err.exitCode;
    }
    const e = err instanceof VisionTrainerError ? err : asVisionTrainerError(err);
    logger.error(e.describe());
    return e.exitCode;
  }
}

function invokedDirectly(): boolean {
  try {
    // npm's bin is a symlink to this file.
    return !!process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (invokedDirectly()) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`${redact(String((err as Error)?.stack ?? err))}\n`);
      process.exitCode = ExitCode.internal;
    },
  );
}
