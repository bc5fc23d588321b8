/**
 * Reads a job's configuration from the environment (the container contract) or from a
 * TypeScript object, and reports every problem at once in one readable ConfigError.
 */
import type { z } from 'zod';
import { ConfigError, type ConfigProblem } from '../errors.js';
import { redact, registerSecret } from '../redact.js';
import { blankToUndefined } from './fields.js';
import { type ConfigFor, SCHEMAS, type StorageConfig, StorageSectionSchema } from './schema.js';
import { type Mode, type Variable, variablesFor } from './variables.js';

const MAX_VALUE_CHARS = 120;

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const [head, leaf] = path.split('.') as [string, string | undefined];
  if (leaf === undefined) target[head] = value;
  else {
    const group = (target[head] ?? {}) as Record<string, unknown>;
    group[leaf] = value;
    target[head] = group;
  }
}

function shown(variable: Variable | undefined, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (variable?.secret) return '[REDACTED]';
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  const clean = redact(text ?? String(value));
  return clean.length > MAX_VALUE_CHARS ? `${clean.slice(0, MAX_VALUE_CHARS)}…` : clean;
}

/** Finds the variable an issue path belongs to: the longest variable path that prefixes it. */
function variableFor(vars: Variable[], issuePath: PropertyKey[]): { variable: Variable | undefined; rest: string } {
  const dotted = issuePath.map(String);
  let best: Variable | undefined;
  let bestLen = 0;
  for (const v of vars) {
    const parts = v.path.split('.');
    if (parts.length > bestLen && parts.every((p, i) => dotted[i] === p)) {
      best = v;
      bestLen = parts.length;
    }
  }
  const rest = dotted
    .slice(bestLen)
    .map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`))
    .join('')
    .replace(/^\./, '');
  return { variable: best, rest };
}

function problemsFrom(
  error: z.ZodError,
  vars: Variable[],
  nameOf: (v: Variable | undefined, path: string) => string,
  valueFor: (v: Variable | undefined) => unknown,
): ConfigProblem[] {
  const seen = new Set<string>();
  const problems: ConfigProblem[] = [];
  for (const issue of error.issues) {
    const { variable, rest } = variableFor(vars, issue.path);
    const name = nameOf(variable, issue.path.map(String).join('.'));
    const message = rest ? `${rest}: ${issue.message}` : issue.message;
    const key = `${name}|${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const isMissing = issue.code === 'invalid_type' && !rest && valueFor(variable) === undefined;
    problems.push({ variable: name, value: shown(variable, valueFor(variable)), message: isMissing ? `is required: ${variable?.help ?? message}` : message });
  }
  return problems;
}

/**
 * Parses the environment of a `vision-trainer <mode>` run. Throws ConfigError listing every
 * problem. The container contract always reports to a backend; `requireBackend: false` is the
 * CLI's `--no-callbacks` (local runs).
 */
export function configFromEnv<M extends Mode>(mode: M, env: NodeJS.ProcessEnv = process.env, options: { requireBackend?: boolean } = {}): ConfigFor<M> {
  const vars = variablesFor(mode);
  const problems: ConfigProblem[] = [];
  for (const required of options.requireBackend === false ? [] : ['BACKEND_BASE_URL', 'CALLBACK_TOKEN']) {
    if (!blankToUndefined(env[required])) {
      problems.push({ variable: required, message: `is required: ${vars.find((v) => v.env[0] === required)?.help ?? ''}` });
    }
  }
  return parseEnv(SCHEMAS[mode] as z.ZodType<unknown>, vars, env, mode, problems) as ConfigFor<M>;
}

/** The storage variables alone (`vision-trainer doctor`), checked as a job checks them. */
export function storageFromEnv(env: NodeJS.ProcessEnv = process.env): StorageConfig {
  return parseEnv(
    StorageSectionSchema,
    variablesFor('train').filter((v) => v.path.startsWith('storage.')),
    env,
    undefined,
    [],
  );
}

/** Reads `vars` from the environment and parses them with `schema`; every problem at once. */
function parseEnv<T>(schema: z.ZodType<T>, vars: Variable[], env: NodeJS.ProcessEnv, mode: Mode | undefined, problems: ConfigProblem[]): T {
  const raw: Record<string, unknown> = {};
  const setName = new Map<Variable, string>();
  for (const v of vars) {
    if (v.secret) for (const name of v.env) registerSecret(env[name]);
  }
  for (const v of vars) {
    const set = v.env.map((name) => [name, blankToUndefined(env[name])] as const).filter(([, value]) => value !== undefined);
    if (set.length === 0) continue;
    const [name, value] = set[0]!;
    const conflicting = set.find(([, other]) => other !== value);
    if (conflicting) {
      problems.push({
        variable: `${name} / ${conflicting[0]}`,
        message: `both spellings are set to different values; set only one (they mean the same: ${v.help})`,
      });
    }
    setName.set(v, name);
    setPath(raw, v.path, value);
  }
  const result = schema.safeParse(raw);
  if (!result.success) {
    problems.push(
      ...problemsFrom(
        result.error,
        vars,
        (v, path) => (v ? (setName.get(v) ?? v.env.join(' or ')) : path),
        (v) => (v ? v.env.map((n) => blankToUndefined(env[n])).find((x) => x !== undefined) : undefined),
      ),
    );
  }
  if (problems.length > 0 || !result.success) throw new ConfigError(dedupeByVariable(problems), mode);
  return result.data;
}

/** Validates a config object from TypeScript (field names instead of variable names in errors). */
export function parseConfig<M extends Mode>(mode: M, input: unknown): ConfigFor<M> {
  const vars = variablesFor(mode);
  if (input && typeof input === 'object') {
    const o = input as Record<string, Record<string, unknown> | undefined>;
    registerSecret(o.backend?.token as string | undefined);
    registerSecret(o.storage?.secretAccessKey as string | undefined);
    registerSecret(o.storage?.accessKeyId as string | undefined);
    registerSecret((o as Record<string, unknown>).pretrainedWeightUrl as string | undefined);
    registerSecret((o as Record<string, unknown>).textEncoderWeightUrl as string | undefined);
    registerSecret(o.openai?.apiKey as string | undefined);
    registerSecret(o.mlflow?.token as string | undefined);
    registerSecret(o.mlflow?.password as string | undefined);
  }
  const result = SCHEMAS[mode].safeParse(input);
  if (result.success) return result.data as ConfigFor<M>;
  const get = (v: Variable | undefined): unknown => {
    if (!v || !input || typeof input !== 'object') return undefined;
    return v.path.split('.').reduce<unknown>((acc, k) => (acc && typeof acc === 'object' ? (acc as Record<string, unknown>)[k] : undefined), input);
  };
  throw new ConfigError(
    problemsFrom(result.error, vars, (v, path) => v?.path ?? path, get),
    mode,
  );
}

function dedupeByVariable(problems: ConfigProblem[]): ConfigProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = `${p.variable}|${p.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
