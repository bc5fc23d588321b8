import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { isAllowedPythonVariable } from '../../src/bridge/environment.js';
import { type PythonBridge, checkInterpreter, pythonEntry } from '../../src/bridge/python.js';
import { FrameworkError, OutOfMemoryError, PythonError } from '../../src/errors.js';
import { registerSecret } from '../../src/redact.js';
import { CALL_JS, CALL_JS_FROM_THREAD, CALL_JS_REPEATEDLY, DESCRIBE_ENVIRONMENT, FAIL, PING, PRINT_BOTH, openTestBridge } from '../helpers/bridge-fixtures.js';

/** The error a call rejects with; the test fails when it resolves. */
async function rejection(call: Promise<unknown>): Promise<PythonError & OutOfMemoryError & FrameworkError> {
  try {
    await call;
  } catch (err) {
    return err as PythonError & OutOfMemoryError & FrameworkError;
  }
  throw new Error('the call did not fail');
}

describe('python bridge (real interpreter)', () => {
  let bridge: PythonBridge;
  beforeAll(async () => {
    bridge = await openTestBridge();
  });
  afterAll(async () => {
    await bridge?.close();
  });

  it('calls an entry point and returns plain data', async () => {
    expect(await bridge.call(PING)).toBe('pong');
    const env = await bridge.call(DESCRIBE_ENVIRONMENT);
    expect(env.python).toMatch(/^3\.\d+/);
    expect(env.torch).toMatch(/^2\.14/);
  });

  it('turns a Python exception into a PythonError with type, message and traceback', async () => {
    const err = await rejection(bridge.call(FAIL, { kind: 'value' }));
    expect(err).toBeInstanceOf(PythonError);
    expect(err.pythonType).toBe('ValueError');
    expect(err.message).toBe('ValueError: bad value from python');
    expect(err.traceback).toContain('bridge_fixtures.py');
  });

  it('reports CUDA out-of-memory as OutOfMemoryError with advice', async () => {
    const err = await rejection(bridge.call(FAIL, { kind: 'oom' }));
    expect(err).toBeInstanceOf(OutOfMemoryError);
    expect(err.hint).toMatch(/BATCH_SIZE/);
  });

  it('lets Python call a JS function and see its answer', async () => {
    const seen: unknown[] = [];
    const answer = await bridge.call(CALL_JS, { payload: { loss: 0.5, bad: Number.NaN } }, (p: unknown) => {
      seen.push(p);
      return 'stop';
    });
    expect(answer).toBe('stop');
    expect(seen).toEqual([{ loss: 0.5, bad: null }]);
  });

  it('refuses JS calls from a Python thread instead of hanging', async () => {
    const result = await bridge.call(CALL_JS_FROM_THREAD, () => 'never');
    expect(result).toMatch(/OffMainThread: JavaScript callbacks may only be called from Python's main thread/);
  });

  it('surfaces a JS exception thrown inside a callback as a Python error naming it', async () => {
    const err = await rejection(
      bridge.call(CALL_JS, { payload: {} }, () => {
        throw new Error('handler exploded');
      }),
    );
    expect(err).toBeInstanceOf(PythonError);
    expect(err.pythonType).toBe('JavaScriptError');
    expect(err.message).toContain('handler exploded');
  });

  it('reports an import failure with the Python error', async () => {
    const err = await rejection(bridge.call(pythonEntry('vision_trainer.no_such_module', 'x', undefined, z.null())));
    expect(err).toBeInstanceOf(PythonError);
    expect(err.message).toMatch(/ModuleNotFoundError|No module named/);
  });
});

describe('python bridge lifecycle', () => {
  it('keeps callbacks working across bridges even when proxies of an earlier bridge are collected late', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const first = await openTestBridge();
    for (let i = 0; i < 50; i++) await first.call(CALL_JS, { payload: { i } }, (p: { i: number }) => p.i);
    await first.close();
    const second = await openTestBridge();
    try {
      // Like a trainer's emit: one long-lived function, called again and again while the first
      // bridge's proxies are garbage-collected (their FFIDs were reused by the new interpreter).
      const answers = await second.call(CALL_JS_REPEATEDLY, { times: 60 }, async (p: { i: number }) => {
        gc();
        await new Promise((r) => setTimeout(r, 5));
        return p.i * 2;
      });
      expect(answers).toEqual(Array.from({ length: 60 }, (_, i) => i * 2));
    } finally {
      await second.close();
    }
  });

  it('checks the interpreter path with a clear message', () => {
    let err: unknown;
    try {
      checkInterpreter('/nope/python');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FrameworkError);
    expect((err as FrameworkError).describe()).toMatch(/\/nope\/python[\s\S]*npm run setup/);
  });

  it('rejects pending calls when Python dies, and can open a new bridge afterwards', async () => {
    const first = await openTestBridge();
    const pending = rejection(first.call(CALL_JS, { payload: {} }, () => new Promise(() => {})));
    process.kill(first.pid!, 'SIGKILL');
    const err = await pending;
    expect(err).toBeInstanceOf(FrameworkError);
    expect(err.message).toMatch(/Python process exited/);
    await first.close();

    const second = await openTestBridge();
    expect(await second.call(PING)).toBe('pong');
    // Python can still call JS after the restart (pythonia forgets its callback handler otherwise).
    expect(await second.call(CALL_JS, { payload: { n: 41 } }, (p: { n: number }) => p.n + 1)).toBe(42);
    const pid = second.pid!;
    await second.close();
    expect(() => process.kill(pid, 0)).toThrow();
  });
});

describe('python bridge: what the child is given', () => {
  const planted: Record<string, string> = {
    CALLBACK_TOKEN: 'bridge-test-callback-token-1234',
    AWS_SECRET_ACCESS_KEY: 'bridge-test-storage-secret-5678',
    AWS_ACCESS_KEY_ID: 'AKIABRIDGETESTKEY',
    R2_SECRET_ACCESS_KEY: 'bridge-test-r2-secret-9012',
    OPENAI_API_KEY: 'sk-bridge-test-openai-3456',
    HF_TOKEN: 'hf_bridgetesttoken7890',
    MY_SERVICE_PASSWORD: 'bridge-test-password-0000',
    // Allow-listed by name, but it holds a registered secret's value.
    OMP_DISPLAY_ENV: 'bridge-test-callback-token-1234',
  };
  const saved = new Map<string, string | undefined>();
  beforeAll(() => {
    for (const [k, v] of Object.entries(planted)) {
      saved.set(k, process.env[k]);
      process.env[k] = v;
    }
    process.env.OMP_NUM_THREADS_FOR_TEST = 'x';
    registerSecret(planted.CALLBACK_TOKEN);
  });
  afterAll(() => {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    delete process.env.OMP_NUM_THREADS_FOR_TEST;
  });

  it('starts Python with an allow-listed environment: no credentials, the safe-load switch on', async () => {
    const bridge = await openTestBridge({ env: { YOLO_OFFLINE: 'true' }, output: () => {} });
    try {
      const environ = readFileSync(`/proc/${bridge.pid}/environ`, 'utf8');
      for (const [name, value] of Object.entries(planted)) {
        expect(environ, name).not.toContain(value);
        expect(environ).not.toContain(`${name}=`);
      }
      const vars = new Map(
        environ
          .split('\0')
          .filter(Boolean)
          .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
      );
      expect(vars.get('ULTRALYTICS_SAFE_LOAD')).toBe('1');
      expect(vars.get('YOLO_OFFLINE')).toBe('true');
      expect(vars.get('OMP_NUM_THREADS_FOR_TEST')).toBe('x');
      expect(vars.get('PATH')).toBe(process.env.PATH);
      // Nothing outside the allow-list, whatever Node's environment holds.
      for (const name of vars.keys())
        expect(isAllowedPythonVariable(name) || /^(PYTHON|NODE_CHANNEL_|ULTRALYTICS_SAFE_LOAD$|YOLO_)/.test(name), name).toBe(true);
    } finally {
      await bridge.close();
    }
  });

  it("relays Python's stdout and stderr in whole lines, redacted", async () => {
    let output = '';
    const bridge = await openTestBridge({
      output: (text) => {
        output += text;
      },
    });
    try {
      await bridge.call(PRINT_BOTH, { text: `token ${planted.CALLBACK_TOKEN} and https://x/y?X-Amz-Signature=abcdef123` });
    } finally {
      await bridge.close();
    }
    expect(output).toContain('stdout: token [REDACTED] and https://x/y?X-Amz-Signature=[REDACTED]\n');
    expect(output).toContain('stderr: token [REDACTED] and https://x/y?X-Amz-Signature=[REDACTED]\n');
    expect(output).not.toContain(planted.CALLBACK_TOKEN);
  });
});
