/**
 * Building blocks for configuration schemas. Each field schema accepts both what an
 * environment variable holds (a string) and the native value a TypeScript caller passes,
 * so the env parser and `train(config)` go through the very same zod schema.
 */
import { z } from 'zod';

const TRUE_WORDS = new Set(['true', '1', 'yes', 'on']);
const FALSE_WORDS = new Set(['false', '0', 'no', 'off']);

export function int(opts: { min?: number; max?: number } = {}) {
  let inner = z.number({ error: 'must be a whole number' }).int({ error: 'must be a whole number' });
  if (opts.min !== undefined) inner = inner.min(opts.min, `must be at least ${opts.min}`);
  if (opts.max !== undefined) inner = inner.max(opts.max, `must be at most ${opts.max}`);
  return z.preprocess((v) => (typeof v === 'string' && /^\s*[-+]?\d+\s*$/.test(v) ? Number(v) : v), inner);
}

export function num(opts: { min?: number; max?: number; gt?: number } = {}) {
  let inner = z.number({ error: 'must be a number' }).refine(Number.isFinite, 'must be a finite number');
  if (opts.min !== undefined) inner = inner.refine((v) => v >= opts.min!, `must be at least ${opts.min}`);
  if (opts.gt !== undefined) inner = inner.refine((v) => v > opts.gt!, `must be greater than ${opts.gt}`);
  if (opts.max !== undefined) inner = inner.refine((v) => v <= opts.max!, `must be at most ${opts.max}`);
  return z.preprocess((v) => (typeof v === 'string' && v.trim() !== '' && !Number.isNaN(Number(v)) ? Number(v) : v), inner);
}

/** A boolean for one of bool()'s spellings (`true`, `1`, `yes`, `on` and their opposites), else the text unchanged. */
function booleanWord(v: string): boolean | string {
  const w = v.trim().toLowerCase();
  return TRUE_WORDS.has(w) ? true : FALSE_WORDS.has(w) ? false : v;
}

export function bool() {
  return z.preprocess((v) => (typeof v === 'string' ? booleanWord(v) : v), z.boolean({ error: 'must be true or false' }));
}

/** `auto`, or a boolean in bool()'s spellings. */
export function autoOrBool() {
  return z.preprocess(
    (v) => (typeof v !== 'string' ? v : v.trim().toLowerCase() === 'auto' ? 'auto' : booleanWord(v)),
    z.union([z.literal('auto'), z.boolean()], { error: 'must be auto, true or false' }),
  );
}

export function str(opts: { min?: number; pattern?: RegExp; patternMessage?: string } = {}) {
  let inner = z
    .string({ error: 'must be text' })
    .trim()
    .min(opts.min ?? 1, 'must not be empty');
  if (opts.pattern) inner = inner.regex(opts.pattern, opts.patternMessage ?? `must match ${opts.pattern}`);
  return inner;
}

/**
 * An identifier that becomes a callback path segment and part of storage keys (JOB_ID,
 * DATASET_ID, SNAPSHOT_ID): starts with a letter or digit, then letters, digits, "_", "-" and
 * single dots between them. So it is never "." or "..", holds no "/", "%", whitespace or
 * control character, and cannot step out of its segment in a URL or a local folder.
 */
export const IDENTIFIER = /^[A-Za-z0-9](?:[A-Za-z0-9_-]|\.(?=[A-Za-z0-9_-]))*$/;

export function identifier(maxLength: number, use: string) {
  return z
    .string({ error: 'must be text' })
    .trim()
    .min(1, 'must not be empty')
    .max(maxLength, `must be at most ${maxLength} characters`)
    .regex(
      IDENTIFIER,
      `must be letters, digits, "_", "-" and single "." between them, starting with a letter or digit (no "/", "..", spaces or control characters: ${use})`,
    );
}

/** Printable ASCII (space allowed inside), so it is a valid HTTP header value and one log field. */
const PRINTABLE = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/;

export function printable(maxLength: number, use: string) {
  return z
    .string({ error: 'must be text' })
    .trim()
    .min(1, 'must not be empty')
    .max(maxLength, `must be at most ${maxLength} characters (${use})`)
    .regex(PRINTABLE, `must be printable ASCII without control characters such as CR or LF (${use})`);
}

export function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  return z.preprocess((v) => (typeof v === 'string' ? v.trim() : v), z.enum(values, { error: () => `must be one of: ${values.join(', ')}` }));
}

export function httpUrl() {
  return z
    .string({ error: 'must be a URL' })
    .trim()
    .refine((v) => {
      try {
        const u = new URL(v);
        return u.protocol === 'http:' || u.protocol === 'https:';
      } catch {
        return false;
      }
    }, 'must be an http(s) URL, e.g. https://api.example.com');
}

/**
 * A comma-separated list of hosts (names, IP literals, CIDR ranges); a TypeScript caller may
 * pass an array. Used by ALLOWED_PRIVATE_HOSTS.
 */
export function hostList() {
  const entry = z
    .string()
    .trim()
    .min(1)
    .refine((v) => /^[A-Za-z0-9.-]+$/.test(v) || /^[0-9A-Fa-f:.]+(\/\d{1,3})?$/.test(v) || /^[0-9.]+\/\d{1,2}$/.test(v), {
      error: (issue) => `${JSON.stringify(issue.input)} is not a host name, IP address or CIDR range`,
    });
  return z.preprocess(
    (v) =>
      typeof v === 'string'
        ? v
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean)
        : v,
    z.array(entry, { error: 'must be a comma-separated list of host names, IP addresses or CIDR ranges' }),
  );
}

/** A JSON value in an env var (or the parsed value from TypeScript), validated by `inner`. */
export function json<T extends z.ZodType>(inner: T, example: string) {
  return z.preprocess((v, ctx) => {
    if (typeof v !== 'string') return v;
    try {
      return JSON.parse(v);
    } catch (e) {
      ctx.issues.push({
        code: 'custom',
        message: `is not valid JSON (${(e as Error).message}); expected e.g. ${example}`,
        input: v,
      });
      return z.NEVER;
    }
  }, inner);
}

/** Blank env vars mean "unset": `FOO=` in a manifest must not count as a value. */
export function blankToUndefined(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === '' ? undefined : v;
}
