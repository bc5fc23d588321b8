/**
 * Identifiers come from outside (the backend's environment): none may change where a callback
 * goes, step out of a storage key, or break a header or a log line.
 */
import { describe, expect, it } from 'vitest';
import { CALLBACK_KINDS, callbackPath, ENDPOINTS, JOB_ID_PLACEHOLDER, matchCallbackPath } from '../../src/callbacks/schemas.js';
import { CallbackClient } from '../../src/callbacks/client.js';
import { configFromEnv } from '../../src/config/env.js';
import { ConfigError } from '../../src/errors.js';

const env = {
  JOB_ID: 'job-1',
  TRACE_ID: 'trace-1',
  BACKEND_BASE_URL: 'http://127.0.0.1:9',
  CALLBACK_TOKEN: 'tok-very-secret-123',
  TASK_TYPE: 'object_detection',
  MODEL_NAME: 'yolo11n',
  DATASET_ID: 'ds-1',
  EPOCHS: '3',
  STORAGE_TYPE: 'local',
};

const HOSTILE_IDS = [
  '.',
  '..',
  '../done',
  'a/../../done',
  '/',
  'a/b',
  '%2e%2e',
  '.%2e',
  'a%2fb',
  'a\\..\\b',
  '..\\',
  'a?b=c',
  'a#frag',
  'a\r\nX-Injected: 1',
  'a\u0000b',
  'a\tb',
  'a b',
  'ü',
  '.hidden',
  'trailing.',
  'a..b',
  '-',
  '_x',
  'a'.repeat(201),
];

function problemsFor(overrides: Record<string, string>, mode: 'train' | 'infer' | 'export' = 'train'): string[] {
  try {
    configFromEnv(mode, { ...env, ...overrides });
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.map((p) => `${p.variable}: ${p.message}`);
    throw e;
  }
  return [];
}

describe('identifier variables', () => {
  it('accept the ids the platform uses (uuids, slugs, dotted names)', () => {
    for (const id of ['550e8400-e29b-41d4-a716-446655440000', 'j1', 'job-1', 'ds_2024.v2', 'A', '0']) {
      expect(problemsFor({ JOB_ID: id, DATASET_ID: id, SNAPSHOT_ID: id })).toEqual([]);
    }
  });

  it.each(['JOB_ID', 'DATASET_ID', 'SNAPSHOT_ID'])('refuse hostile %s values at config time with a clear message', (name) => {
    for (const id of HOSTILE_IDS) {
      const problems = problemsFor({ [name]: id });
      // Surrounding whitespace is trimmed like every variable; what remains must still be refused.
      expect(problems.join('\n'), JSON.stringify(id)).toMatch(
        new RegExp(`^${name}: must (be letters, digits, "_", "-" and single "\\." between them|be at most)`, 'm'),
      );
    }
  });

  it('refuse a hostile VALIDATION_DATASET_ID in export jobs', () => {
    const exportEnv = { CHECKPOINT_PATH: 's3://b/checkpoints/job-1/best.pt', EXPORT_FORMAT: 'onnx', ENABLE_VALIDATION: 'true' };
    expect(problemsFor({ ...exportEnv, VALIDATION_DATASET_ID: '../x' }, 'export').join('\n')).toMatch(/^VALIDATION_DATASET_ID: must be letters/m);
    expect(problemsFor({ ...exportEnv, VALIDATION_DATASET_ID: 'val-1' }, 'export')).toEqual([]);
  });

  it('refuse a TRACE_ID with control characters or longer than 256 characters', () => {
    expect(problemsFor({ TRACE_ID: 'abc\r\nX-Evil: 1' }).join('\n')).toMatch(/^TRACE_ID: must be printable ASCII without control characters/m);
    expect(problemsFor({ TRACE_ID: 'a\u0000b' }).join('\n')).toMatch(/^TRACE_ID: must be printable ASCII/m);
    expect(problemsFor({ TRACE_ID: 'x'.repeat(100_000) }).join('\n')).toMatch(/^TRACE_ID: must be at most 256 characters/m);
    expect(problemsFor({ TRACE_ID: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' })).toEqual([]);
    expect(problemsFor({ TRACE_ID: 'span a; b=c' })).toEqual([]);
  });

  it('limit JOB_ID to 128 characters', () => {
    expect(problemsFor({ JOB_ID: 'a'.repeat(128) })).toEqual([]);
    expect(problemsFor({ JOB_ID: 'a'.repeat(129) }).join('\n')).toMatch(/^JOB_ID: must be at most 128 characters/m);
  });

  it('keep the refused value short in the message', () => {
    const e = (() => {
      try {
        configFromEnv('train', { ...env, TRACE_ID: 'x'.repeat(100_000) });
      } catch (err) {
        return err as ConfigError;
      }
      throw new Error('expected a ConfigError');
    })();
    expect(e.message.length).toBeLessThan(2000);
  });
});

describe('callback routes', () => {
  const BASE = 'https://api.example.com/prefix';
  let seed = 7;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed / 2 ** 32;
  };
  const ALPHABET = [
    '.',
    '..',
    '/',
    '\\',
    '%',
    '%2e',
    '%2f',
    '?',
    '#',
    ';',
    ':',
    '@',
    ' ',
    '\t',
    '\n',
    '\u0000',
    'a',
    'Z',
    '9',
    '-',
    '_',
    '~',
    'é',
    '\u202e',
    '&',
    '=',
  ];
  const generated = Array.from({ length: 800 }, () =>
    Array.from({ length: 1 + Math.floor(rand() * 6) }, () => ALPHABET[Math.floor(rand() * ALPHABET.length)]).join(''),
  );

  it.each(CALLBACK_KINDS)('no job id changes where the %s callback goes', (kind) => {
    const [before, after] = ENDPOINTS[kind].path.split(JOB_ID_PLACEHOLDER) as [string, string];
    let refused = 0;
    for (const jobId of [...HOSTILE_IDS, ...generated]) {
      let path: string;
      try {
        path = callbackPath(kind, jobId);
      } catch {
        refused += 1;
        expect(['', '.', '..']).toContain(jobId);
        continue;
      }
      // As the HTTP client sees it: the WHATWG URL parser, which resolves dot segments.
      const url = new URL(`${BASE}${path}`);
      expect(url.origin).toBe('https://api.example.com');
      expect(url.search).toBe('');
      expect(url.hash).toBe('');
      expect(url.pathname.startsWith(`/prefix${before}`), `${JSON.stringify(jobId)} -> ${url.pathname}`).toBe(true);
      expect(url.pathname.endsWith(after)).toBe(true);
      const segment = url.pathname.slice(`/prefix${before}`.length, url.pathname.length - after.length);
      expect(segment).not.toContain('/');
      expect(decodeURIComponent(segment)).toBe(jobId);
      expect(matchCallbackPath(url.pathname.slice('/prefix'.length))).toEqual({ kind, jobId });
    }
    expect(refused).toBeGreaterThan(0);
  });

  it('a hand-built client refuses a dot-segment job id or a trace id with CR/LF', () => {
    const options = { baseUrl: 'http://127.0.0.1:9', token: 'tok-123456', traceId: 't', jobId: 'j' };
    expect(() => new CallbackClient({ ...options, jobId: '..' })).toThrow(/would change the route/);
    expect(() => new CallbackClient({ ...options, traceId: 'a\r\nb' })).toThrow(/printable ASCII/);
  });
});
