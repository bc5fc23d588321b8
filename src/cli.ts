#!/usr/bin/env node
/**
 * `vision-trainer <command>`: the container entry point and the local tool. Each job command
 * (train, infer, export) reads its whole configuration from the environment, exactly as the
 * platform launches it; `--env-file FILE` and `NAME=value` arguments add to that environment.
 *
 * Arguments are parsed by commander: strict (an unknown option or command is an error, with the
 * nearest one suggested), sub-commands with their own help, `--version`, negatable options. Its
 * errors exit with code 2, like every other configuration error.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { CallbackClient } from './callbacks/client.js';
import { applyCommandLine, closestVariable, variableNames } from './config/command-line.js';
import { configFromEnv } from './config/env.js';
import { MODE_SUMMARY, variablesHelp } from './config/help.js';
import { jobIdSchema, type Mode, traceIdSchema } from './config/variables.js';
import { ConfigError, ExitCode, VisionTrainerError, asVisionTrainerError } from './errors.js';
import { RESUMABLE_EXITS } from './jobs/outcome.js';
import { type JobDefinition, type JobOutcome, startJob } from './jobs/context.js';
import type { JobEvent } from './jobs/run-stream.js';
import { Logger, type LogLevel, setLogger } from './log.js';
import { PROJECT_ROOT } from './paths.js';
import { redact } from './redact.js';
import { devHelp } from './dev/help.js';

/** Where the CLI writes its own messages (usage, errors, help); jobs log through the Logger. */
export interface CliOutput {
  out(text: string): void;
  err(text: string): void;
}
const PROCESS_OUTPUT: CliOutput = { out: (t) => void process.stdout.write(t), err: (t) => void process.stderr.write(t) };

const JOB_MODES = ['train', 'infer', 'export'] as const;

export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

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
  // The other nodes of a multi-node training have node 0's configuration: node 0 reports it once.
  const nodeRank = Number(env.NODE_RANK ?? env.PET_NODE_RANK ?? env.RANK ?? 0);
  if (mode === 'train' && Number.isInteger(nodeRank) && nodeRank > 0) return;
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

interface JobCommandOptions {
  envFile?: string[];
  callbacks: boolean;
}

/** Runs a job command as the container does and returns the process exit code. */
async function runJobCommand(mode: Mode, assignments: string[], options: JobCommandOptions, env: NodeJS.ProcessEnv, output: CliOutput): Promise<number> {
  let logger = loggerFromEnv(env, {});
  try {
    for (const warning of applyCommandLine(env, mode, { envFiles: options.envFile, assignments })) output.err(`warning: ${warning}\n`);
    // Local runs have no platform to hand out trace ids; one is made up so logs still carry one.
    if (!options.callbacks && !env.TRACE_ID?.trim()) env.TRACE_ID = `local-${randomUUID()}`;
    const { jobId, traceId } = identity(env);
    logger = loggerFromEnv(env, jobId ? { job_id: jobId, ...(traceId ? { trace_id: traceId } : {}) } : {});
    // Each job loads only its own dependencies (export: onnxruntime; infer: openai).
    if (mode === 'train') return await runFromEnv((await import('./jobs/train/job.js')).trainingJob, env, options.callbacks);
    if (mode === 'infer') return await runFromEnv((await import('./jobs/infer/job.js')).inferenceJob, env, options.callbacks);
    return await runFromEnv((await import('./jobs/export/job.js')).exportJob, env, options.callbacks);
  } catch (err) {
    if (err instanceof ConfigError) {
      output.err(`${err.describe()}\n`);
      if (options.callbacks) await reportConfigError(mode, err, env, logger);
      return err.exitCode;
    }
    const e = err instanceof VisionTrainerError ? err : asVisionTrainerError(err);
    logger.error(e.describe());
    return e.exitCode;
  }
}

async function runFromEnv<M extends Mode, E extends JobEvent, O extends JobOutcome>(
  definition: JobDefinition<M, E, O>,
  env: NodeJS.ProcessEnv,
  callbacks: boolean,
): Promise<number> {
  const config = configFromEnv(definition.mode, env, { requireBackend: callbacks });
  const logger = loggerFromEnv(env, { job_id: config.jobId, trace_id: config.traceId });
  setLogger(logger);
  if (!callbacks) logger.info("--no-callbacks: no HTTP callbacks are sent; progress is in these log lines and the job's result is the exit code");
  const { outcome } = startJob(definition, config, { logger, signals: true, callbacks });
  const code = (await outcome).exitCode;
  // RETRY_EXIT_CODE_BASE=128: the Training Operator's restartPolicy ExitCode restarts a pod for 128-255 only.
  return RESUMABLE_EXITS.has(code) && code < 128 ? code + config.retryExitCodeBase : code;
}

/** Runs scripts/setup-python.sh of this package: the venv jobs use (nothing else is installed). */
function runSetup(groups: string | undefined, env: NodeJS.ProcessEnv, output: CliOutput): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn('bash', [join(PROJECT_ROOT, 'scripts', 'setup-python.sh')], {
      cwd: PROJECT_ROOT,
      env: { ...env, VISION_TRAINER_GROUPS: groups ?? env.VISION_TRAINER_GROUPS ?? 'none' },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    child.on('error', (err) => {
      output.err(`vision-trainer setup: cannot run bash: ${err.message}\n`);
      resolve(ExitCode.internal);
    });
    child.on('exit', async (code) => {
      if (code !== 0) return resolve(code ?? ExitCode.internal);
      const { defaultPythonBin } = await import('./paths.js');
      output.out(`Python environment ready: ${defaultPythonBin(env)}\nCheck it with \`vision-trainer doctor\`.\n`);
      resolve(ExitCode.ok);
    });
  });
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0 || n > 65535) throw new InvalidArgumentError('must be a port number (1-65535)');
  return n;
}

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

/**
 * commander names an unknown option (`--epochs`) and a near option; a flag that spells a
 * variable of the command gets the way to set it instead.
 */
function withVariableHint(mode: Mode | 'doctor', message: string): string {
  const flag = /unknown option '(-[^']*)'/.exec(message)?.[1];
  if (!flag) return message;
  const meant = closestVariable(flag.split('=')[0]!, variableNames(mode));
  if (!meant) return message;
  return `${message.trimEnd()}\nConfiguration is read from environment variables: set ${meant} (e.g. \`vision-trainer ${mode} ${meant}=...\`, an --env-file, or the environment).\n`;
}

function buildProgram(env: NodeJS.ProcessEnv, output: CliOutput, setExitCode: (code: number) => void): Command {
  const program = new Command('vision-trainer')
    .description('Trains, evaluates and exports vision models (ultralytics, timm, transformers).')
    .version(packageVersion(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .configureOutput({ writeOut: output.out, writeErr: output.err })
    .showSuggestionAfterError(true)
    .exitOverride();

  for (const mode of JOB_MODES) {
    program
      .command(mode)
      .summary(MODE_SUMMARY[mode])
      .description(
        `${MODE_SUMMARY[mode]}\nConfiguration: the environment, then --env-file files for what it does not set, then NAME=value arguments over both.`,
      )
      .argument('[NAME=value...]', `set a variable of ${mode} (names as listed below)`)
      .option('--env-file <file>', 'read variables from a dotenv file (repeatable; a later file wins; the environment wins over files)', collect)
      .option('--no-callbacks', 'run without a backend: BACKEND_BASE_URL and CALLBACK_TOKEN are not needed and no callbacks are sent')
      .addHelpText('after', `\n${variablesHelp(mode)}`)
      .configureOutput({ writeOut: output.out, writeErr: output.err, outputError: (text, write) => write(withVariableHint(mode, text)) })
      .action(async (assignments: string[], options: JobCommandOptions) => setExitCode(await runJobCommand(mode, assignments, options, env, output)));
  }

  program
    .command('doctor')
    .summary('Check this machine can run jobs: the venv, framework versions, devices, storage and backend.')
    .description(
      'Checks, without running a job: the Python environment (venv or PYTHON_BIN, the pinned versions, that each framework imports), ' +
        'torch and its devices (and DEVICE, when set), the storage settings (the bucket answers and accepts the credentials), the ' +
        'backend (BACKEND_BASE_URL answers) and WORK_DIR (writable, free space). Secrets are never printed.\n\n' +
        'Exit code 0 when every check passed, 2 when one failed.',
    )
    .argument('[NAME=value...]', 'set a variable (any variable of train, infer or export)')
    .option('--env-file <file>', 'read variables from a dotenv file (repeatable)', collect)
    .option('--json', 'print the report as JSON')
    .configureOutput({ writeOut: output.out, writeErr: output.err, outputError: (text, write) => write(withVariableHint('doctor', text)) })
    .action(async (assignments: string[], options: { envFile?: string[]; json?: boolean }) => {
      try {
        for (const warning of applyCommandLine(env, 'doctor', { envFiles: options.envFile, assignments })) output.err(`warning: ${warning}\n`);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        output.err(`${err.describe()}\n`);
        return setExitCode(err.exitCode);
      }
      const { runDoctor } = await import('./doctor.js');
      setExitCode(await runDoctor(env, { json: options.json === true, write: output.out }));
    });

  program
    .command('setup')
    .summary('Build the Python venv jobs run in (torch, ultralytics, timm, transformers: minutes the first time).')
    .description(
      "Builds the Python venv from this package's python/requirements.txt (exact pins) in ~/.cache/vision-trainer/venv-<hash> " +
        '($VISION_TRAINER_CACHE moves it); an existing one for the same requirements is reused. Needs Python 3.10-3.13 with venv ' +
        '(PYTHON=/path/to/python3.11 picks one). With PYTHON_BIN set nothing is built: jobs use that interpreter.',
    )
    .addOption(
      new Option(
        '--with <groups>',
        'also install optional Python groups, comma-separated (dev: the local S3 server for `vision-trainer dev`, sample data, test tools)',
      ),
    )
    .action(async (options: { with?: string }) => setExitCode(await runSetup(options.with, env, output)));

  program
    .command('dev')
    .summary('Start the local stack (S3 server, callback receiver, live dashboard) for development.')
    .description(devHelp())
    .option('--s3-port <port>', 'port of the S3 server (default: a free one)', port)
    .option('--receiver-port <port>', 'port of the callback receiver and dashboard (default: a free one)', port)
    .action(async (options: { s3Port?: number; receiverPort?: number }) => {
      const { runDevStack } = await import('./dev/stack.js');
      setExitCode(await runDevStack(options));
    });
  return program;
}

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env, output: CliOutput = PROCESS_OUTPUT): Promise<number> {
  // We run on Node 20 with a locked SDK version; the SDK's future-support notice is noise in job logs.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  let exitCode: number = ExitCode.ok;
  const program = buildProgram(env, output, (code) => {
    exitCode = code;
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    // Help and --version end with code 0; every usage error (unknown option or command, a bad
    // option value, no command) is a configuration error.
    if (err instanceof CommanderError) return err.exitCode === 0 ? ExitCode.ok : ExitCode.config;
    throw err;
  }
  return exitCode;
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
  // Exit as soon as the command is done: everything a job must finish (uploads, outcome,
  // callbacks) is awaited inside main, and a handle left behind must not hold the pod. One
  // did: pythonia keeps a 100 s timer for a call whose interpreter was shut down mid-import
  // (a dataset error during the early framework import), which kept the process alive 100 s.
  // Standard output and error are synchronous for files, pipes and terminals on Linux.
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`${redact(String((err as Error)?.stack ?? err))}\n`);
      process.exit(ExitCode.internal);
    },
  );
}
