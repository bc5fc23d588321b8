/**
 * The one typed wrapper around pythonia. Everything that talks to Python goes through here:
 *  - pythonia spawns its interpreter when first imported and reads PYTHON_BIN/REQ_TIMEOUT then:
 *    it is imported lazily, after the environment is set and the interpreter checked;
 *  - calls time out after 100 s: only the framework's long calls get `$timeout: Infinity`;
 *  - a Python crash leaves pending promises unsettled: every call races the child's exit;
 *  - Python exceptions lose their type and message on the way: our entry points return a JSON
 *    envelope instead (python/vision_trainer/support.py) which becomes a typed PythonError;
 *  - NaN/Infinity crash Node's IPC parser: the Python side converts them to null;
 *  - Node never exits while the bridge is open: `close()` ends it, also on errors and signals.
 *  - pythonia spawns Python with Node's whole environment and inherited stdout/stderr: the
 *    child gets an explicit allow-listed environment instead (environment.ts: no secrets), and
 *    its output is piped through the same redaction as our own log lines.
 *
 * A call names a `PythonEntry`: the module and function, the zod schema of its parameters and
 * the one of its answer (src/frameworks/protocol.ts). Parameters are checked before they leave,
 * the answer is parsed before anyone reads it; nothing is cast.
 */
import { spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { z } from 'zod';
import { ConfigError, ExitCode, FrameworkError, NodeLostError, OutOfMemoryError, PythonError, VisionTrainerError } from '../errors.js';
import { log, type Logger } from '../log.js';
import { PYTHON_DIR } from '../paths.js';
import { redact } from '../redact.js';
import { pythonEnvironment } from './environment.js';
import type { Readable } from 'node:stream';

/** A JS function Python may call with a plain value; its answer goes back to Python. */
export type JsCallback = (payload: never) => unknown;

/** A Python function decorated with `@entry`, with the schemas of what goes in and comes out. */
export interface PythonEntry<P, A> {
  readonly module: string;
  readonly fn: string;
  /** undefined: the function takes no parameters. */
  readonly params: z.ZodType<P> | undefined;
  readonly answer: z.ZodType<A>;
  /** Framework train/predict/export calls may run for hours: no bridge timeout for them. */
  readonly long: boolean;
}

/** Declares an entry point; `params` undefined for a function without parameters. */
export function pythonEntry<PS extends z.ZodType | undefined, AS extends z.ZodType>(
  module: string,
  fn: string,
  params: PS,
  answer: AS,
  options: { long?: boolean } = {},
): PythonEntry<PS extends z.ZodType ? z.input<PS> : undefined, z.output<AS>> {
  return { module, fn, params, answer, long: options.long ?? false } as PythonEntry<PS extends z.ZodType ? z.input<PS> : undefined, z.output<AS>>;
}

/** The parameters (when the entry takes any), then JS functions Python may call. */
type CallArgs<P> = [P] extends [undefined] ? JsCallback[] : [params: P, ...callbacks: JsCallback[]];

/** A value checked against its schema, or a FrameworkError saying what does not fit. */
export function parseFromPython<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issues = parsed.error.issues.slice(0, 5).map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new FrameworkError(`${what} is not what this version understands: ${issues.join('; ')}`);
  }
  return parsed.data;
}

/**
 * A JS function for Python to call (a trainer's `emit`): its payload is parsed with `schema`
 * first. A payload that does not fit throws, which Python sees as a JavaScriptError.
 */
export function pythonCallback<T, R>(schema: z.ZodType<T>, what: string, fn: (payload: T) => R): (payload: unknown) => R {
  return (payload) => fn(parseFromPython(schema, payload, what));
}

interface PythoniaModule {
  python: ((name: string) => Promise<PyProxy>) & { exit(): void; setFastMode(on: boolean): void };
  com: { proc: ChildProcess | null };
}
// pythonia is CommonJS and typed `any`; this is the only place that knows its shape.
// biome-ignore lint/suspicious/noExplicitAny: pythonia's proxies are untyped; answers are parsed with zod before use
type PyProxy = any;

export interface BridgeOptions {
  pythonBin: string;
  /** The adapter's variables for the interpreter (offline switches, cache folders); never secrets. */
  env?: Record<string, string>;
  /** Folders Python imports from besides python/ (tests add their own entry points). */
  pythonPath?: string[];
  logger?: Logger;
  /** Where Python's stdout/stderr go, redacted, in whole lines. Default: our stderr. */
  output?: (text: string) => void;
}

interface Envelope {
  ok?: unknown;
  /** exit_code: a failure that stands for another node's (PeerFailedError), with that node's exit code. */
  __error__?: { type: string; module: string; message: string; traceback: string; out_of_memory: boolean; exit_code?: number };
}

const KILL_GRACE_MS = 5_000;

const PING = pythonEntry('vision_trainer.support', 'ping', undefined, z.literal('pong'));

let active: PythonBridge | undefined;
let pythoniaLoads = 0;

/**
 * A fresh copy of pythonia for every bridge. Its module state is per Python process: the FFID
 * numbers it hands out restart with each new child, but proxies of an earlier child are still
 * collected later, and its FinalizationRegistry then frees (JS side) and asks Python to free
 * entries that now belong to the new child: a callback of the second run in a process failed
 * intermittently with "JavaScriptError: Access to '' failed". Loading the module anew gives each
 * child its own registry, tables and IPC channel; the old copy has no process left to talk to.
 */
function loadPythonia(pythonBin: string, env: Record<string, string>): PythoniaModule {
  const require = createRequire(import.meta.url);
  const packageDir = dirname(require.resolve('pythonia/package.json'));
  if (pythoniaLoads++ > 0) {
    for (const key of Object.keys(require.cache)) if (key.startsWith(packageDir)) delete require.cache[key];
  }
  // pythonia spawns its interpreter when the module is evaluated (index.js builds the channel),
  // with `cp.spawn(process.env.PYTHON_BIN, args, { stdio: [inherit x3, 'ipc'] })` and no way to
  // pass an environment. Its spawn call is given ours for the length of that synchronous load:
  // the explicit environment, and piped output (the IPC channel, fd 3, is what it talks over).
  const childProcess = require('node:child_process') as typeof import('node:child_process');
  const original = childProcess.spawn;
  let spawns = 0;
  childProcess.spawn = ((_command: string, args: readonly string[], options: SpawnOptions) => {
    spawns += 1;
    return original(pythonBin, args, { ...options, env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  }) as typeof childProcess.spawn;
  let pythonia: PythoniaModule;
  try {
    pythonia = require('pythonia') as PythoniaModule;
  } finally {
    childProcess.spawn = original;
  }
  if (spawns !== 1)
    throw new FrameworkError(`pythonia spawned ${spawns} processes while loading (expected exactly one); its version does not match this bridge`);
  return pythonia;
}

/**
 * Passes a child's output on in whole lines (a progress bar's "\r" ends one too), each
 * redacted: a secret split across two reads would slip past a per-chunk redaction.
 */
function relayOutput(stream: Readable | null, write: (text: string) => void): void {
  if (!stream) return;
  const MAX_PENDING = 64 * 1024;
  let pending = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    pending += chunk;
    const cut = Math.max(pending.lastIndexOf('\n'), pending.lastIndexOf('\r'));
    if (cut >= 0) {
      write(redact(pending.slice(0, cut + 1)));
      pending = pending.slice(cut + 1);
    }
    if (pending.length > MAX_PENDING) {
      write(redact(pending));
      pending = '';
    }
  });
  stream.on('end', () => {
    if (pending) write(redact(pending));
    pending = '';
  });
}

/** Checks the interpreter before pythonia spawns it: a wrong PYTHON_BIN crashes Node otherwise. */
export function checkInterpreter(pythonBin: string, env: Record<string, string> = pythonEnvironment(process.env, { pythonPath: [] })): string {
  const advice = 'Run `npm run setup` to build the venv, or set PYTHON_BIN to a Python with python/requirements.txt installed.';
  try {
    if (!statSync(pythonBin).isFile()) throw new Error('not a file');
    accessSync(pythonBin, constants.X_OK);
  } catch {
    throw new FrameworkError(`Python interpreter not found or not executable: ${pythonBin}`, { hint: advice });
  }
  const probe = spawnSync(pythonBin, ['-c', 'import sys; print("%d.%d.%d" % sys.version_info[:3])'], { encoding: 'utf8', timeout: 30_000, env });
  if (probe.status !== 0) {
    throw new FrameworkError(`Python interpreter ${pythonBin} does not run: ${(probe.stderr || probe.error?.message || '').trim()}`, { hint: advice });
  }
  return probe.stdout.trim();
}

export class PythonBridge {
  private closed = false;
  private readonly exited: Promise<{ code: number | null; signal: string | null }>;
  private readonly modules = new Map<string, Promise<PyProxy>>();

  private constructor(
    private readonly pythonia: PythoniaModule,
    private readonly proc: ChildProcess,
    private readonly logger: Logger,
    readonly pythonVersion: string,
  ) {
    this.exited = new Promise((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) resolve({ code: proc.exitCode, signal: proc.signalCode });
      else proc.once('exit', (code, signal) => resolve({ code, signal }));
    });
  }

  /**
   * Starts the Python child. One bridge at a time per Node process (pythonia is a singleton);
   * after `close()` a new one may be opened, so a script can run several jobs in sequence.
   */
  static async open(options: BridgeOptions): Promise<PythonBridge> {
    if (active && !active.closed) throw new FrameworkError('A Python bridge is already open in this process; close it first.');
    const logger = options.logger ?? log();
    const env = pythonEnvironment(process.env, { pythonPath: [PYTHON_DIR, ...(options.pythonPath ?? [])], extra: options.env });
    const version = checkInterpreter(options.pythonBin, env);

    const pythonia = loadPythonia(options.pythonBin, env);
    const started = pythonia.python('vision_trainer.support');
    const proc = pythonia.com.proc;
    if (!proc) throw new FrameworkError('pythonia did not start a Python process');
    const output = options.output ?? ((text: string) => process.stderr.write(text));
    relayOutput(proc.stdout, output);
    relayOutput(proc.stderr, output);
    const bridge = new PythonBridge(pythonia, proc, logger, version);
    active = bridge;
    // Node must not keep running a Python child after it exits for any reason.
    const killOnExit = () => proc.exitCode === null && proc.kill('SIGKILL');
    process.once('exit', killOnExit);
    void bridge.exited.then(() => process.removeListener('exit', killOnExit));

    bridge.modules.set('vision_trainer.support', bridge.raceExit(started, 'starting Python'));
    await bridge.modules.get('vision_trainer.support');
    pythonia.python.setFastMode(true);
    // setFastMode sends a call whose promise pythonia drops: closing before Python answered it
    // crashes Node with an unhandled rejection. Calls are answered in order, so a ping settles it.
    await bridge.call(PING);
    logger.debug('python bridge open', { python: version, pid: proc.pid });
    return bridge;
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  get isOpen(): boolean {
    return !this.closed && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /**
   * Calls `entry` with its parameters (checked against the entry's schema) and any JS functions
   * Python may call back. Returns the answer parsed with the entry's answer schema, or throws
   * PythonError (OutOfMemoryError for CUDA OOM) with the Python type and traceback.
   */
  async call<P, A>(entry: PythonEntry<P, A>, ...args: CallArgs<P>): Promise<A> {
    const name = `${entry.module}.${entry.fn}`;
    if (!this.isOpen) throw new FrameworkError(`Python bridge is closed; cannot call ${name}`);
    const pyArgs: unknown[] = entry.params ? [parseParams(entry.params, args[0], name), ...args.slice(1)] : args;
    const mod = await this.module(entry.module);
    let raw: unknown;
    try {
      raw = await this.raceExit(mod[`${entry.fn}$`](...pyArgs, entry.long ? { $timeout: Infinity } : {}), name);
    } catch (err) {
      throw toTypedError(err, name);
    }
    if (typeof raw !== 'string') throw new FrameworkError(`${name} is not a bridge entry point (it returned ${typeof raw}, not a JSON envelope)`);
    const envelope = JSON.parse(raw) as Envelope;
    if (envelope.__error__) throw pythonError(envelope.__error__);
    return parseFromPython(entry.answer, envelope.ok ?? null, `The answer of ${name}`);
  }

  /**
   * Imports `modules` in Python, in order, ahead of the calls that need them (a job starts
   * torch and the framework while its dataset downloads). A later call of an entry in one of
   * them waits for the import under way; an import that failed is forgotten, so the call
   * that needs the module imports it again and reports the error itself.
   */
  async preload(modules: readonly string[]): Promise<void> {
    for (const name of modules) await this.module(name);
  }

  /** Closes the child: SIGTERM, then SIGKILL after a grace period. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.pythonia.python.exit();
      const timer = setTimeout(() => this.proc.kill('SIGKILL'), KILL_GRACE_MS);
      await this.exited;
      clearTimeout(timer);
    } else {
      // pythonia must forget the dead child so a later bridge starts a new one.
      this.pythonia.python.exit();
    }
    if (active === this) active = undefined;
  }

  /** Resolves when the Python process exits, with how it ended. */
  whenExited(): Promise<{ code: number | null; signal: string | null }> {
    return this.exited;
  }

  private module(name: string): Promise<PyProxy> {
    let mod = this.modules.get(name);
    if (!mod) {
      mod = this.raceExit(this.pythonia.python(name), `importing ${name}`).catch((err: unknown) => {
        this.modules.delete(name);
        throw toTypedError(err, `import ${name}`);
      });
      this.modules.set(name, mod);
    }
    return mod;
  }

  private raceExit<T>(promise: Promise<T>, what: string): Promise<T> {
    return Promise.race([
      promise,
      this.exited.then(({ code, signal }) => {
        throw new FrameworkError(
          `The Python process exited during ${what} (${signal ? `signal ${signal}` : `exit code ${code}`})` +
            (signal === 'SIGKILL' ? ': it may have been killed for using too much memory; try a smaller BATCH_SIZE or IMAGE_SIZE' : ''),
        );
      }),
    ]);
  }
}

/** Parameters are ours: one that does not fit its schema is a bug on this side. */
function parseParams<P>(schema: z.ZodType<P>, value: unknown, name: string): P {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.slice(0, 5).map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
  throw new VisionTrainerError(`Parameters for ${name} do not fit its schema: ${issues.join('; ')}`);
}

function pythonError(e: NonNullable<Envelope['__error__']>): VisionTrainerError {
  if (e.out_of_memory) {
    return new OutOfMemoryError(
      `Out of GPU memory: ${e.type}: ${e.message.split('\n')[0]}`,
      'Reduce BATCH_SIZE (e.g. halve it) or IMAGE_SIZE and run the job again.',
    );
  }
  if (e.type === 'UnsafeArtifactError' && e.module === 'vision_trainer.safe_load') {
    return new PythonError(e.type, e.message, e.traceback, {
      exitCode: ExitCode.unsafeArtifact,
      hint: 'Nothing in the file was run. Point CHECKPOINT_PATH, RESUME_CHECKPOINT_PATH or PRETRAINED_WEIGHT_URL at a file this platform wrote, an official ultralytics release, or safetensors weights.',
    });
  }
  if (e.module === 'vision_trainer.common.distributed' && e.type === 'NodeLostError') return new NodeLostError(e.message);
  if (e.module === 'vision_trainer.common.distributed' && e.type === 'PeerFailedError') {
    return new VisionTrainerError(e.message, { exitCode: e.exit_code ?? ExitCode.nodeLost });
  }
  if (e.module === 'vision_trainer.common.distributed' && e.type === 'DistributedSetupError') {
    return new ConfigError([{ variable: 'NPROC_PER_NODE', message: e.message }], 'train');
  }
  return new PythonError(e.type, e.message, e.traceback);
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI colour codes start with ESC
const ANSI = /\u001b\[[0-9;]*m/g;

/** pythonia's own errors (import failures, attribute lookups) carry the Python error only in `.stack`. */
function toTypedError(err: unknown, what: string): VisionTrainerError {
  if (err instanceof VisionTrainerError) return err;
  const stack = err instanceof Error ? (err.stack ?? '').replace(ANSI, '') : String(err);
  if (err instanceof Error && /Python didn't respond in time/.test(err.message)) {
    return new FrameworkError(`Python did not answer ${what} in time (bridge timeout)`, { cause: err });
  }
  // The last "Type: message" line after the bridge marker is the Python exception.
  const lines = stack
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const marker = lines.findIndex((l) => l.startsWith('🌉') || l.startsWith('*** JS ***'));
  const pyLine = marker >= 0 ? lines[marker]!.replace(/^(🌉|\*\*\* JS \*\*\*)\s*/, '') : (lines.find((l) => /^[A-Z]\w*(Error|Exception):/.test(l)) ?? '');
  const m = /^([A-Za-z_][\w.]*):\s*(.*)$/.exec(pyLine);
  if (m) return new PythonError(m[1]!, m[2]!, stack);
  return new FrameworkError(`Python call ${what} failed: ${err instanceof Error ? err.message || stack.split('\n')[0] : String(err)}`, { cause: err });
}
