/**
 * The test-only Python entry points of test/python/bridge_fixtures.py, typed like production
 * ones, and a bridge that can import them.
 */
import { join } from 'node:path';
import { z } from 'zod';
import { type BridgeOptions, PythonBridge, pythonEntry } from '../../src/bridge/python.js';
import { EnvironmentSchema } from '../../src/frameworks/protocol.js';
import { PROJECT_ROOT, defaultPythonBin } from '../../src/paths.js';

export const TEST_PYTHON_DIR = join(PROJECT_ROOT, 'test/python');

const MODULE = 'bridge_fixtures';
export const PING = pythonEntry('vision_trainer.support', 'ping', undefined, z.literal('pong'));
export const DESCRIBE_ENVIRONMENT = pythonEntry('vision_trainer.support', 'describe_environment', undefined, EnvironmentSchema);
export const FAIL = pythonEntry(MODULE, 'fail', z.object({ kind: z.string() }), z.null());
export const CALL_JS = pythonEntry(MODULE, 'call_js', z.object({ payload: z.record(z.string(), z.unknown()) }), z.unknown());
export const CALL_JS_REPEATEDLY = pythonEntry(MODULE, 'call_js_repeatedly', z.object({ times: z.number().int() }), z.array(z.number()));
export const PRINT_BOTH = pythonEntry(MODULE, 'print_both', z.object({ text: z.string() }), z.null());
export const CALL_JS_FROM_THREAD = pythonEntry(MODULE, 'call_js_from_thread', undefined, z.string());
export const EVALUATE = pythonEntry(
  MODULE,
  'evaluate',
  z.object({ task: z.string(), names: z.record(z.string(), z.string()), images: z.array(z.unknown()), options: z.record(z.string(), z.unknown()) }),
  // The tests assert these shapes field by field (test/integration/infer-metrics.test.ts).
  z.object({ summary: z.any(), images: z.array(z.any()) }),
);

/** A bridge to the venv's interpreter that also imports test/python. */
export function openTestBridge(options: Partial<BridgeOptions> = {}): Promise<PythonBridge> {
  return PythonBridge.open({ pythonBin: defaultPythonBin(), ...options, pythonPath: [TEST_PYTHON_DIR, ...(options.pythonPath ?? [])] });
}
