/**
 * The framework registry, and the one place that decides which framework a job drives. This is
 * the only module of src/ that imports adapters/: a fourth framework is one folder in adapters/,
 * one in python/vision_trainer/ and one line in ADAPTERS.
 */
import { huggingfaceAdapter } from '../../adapters/huggingface/index.js';
import { timmAdapter } from '../../adapters/timm/index.js';
import { ultralyticsAdapter } from '../../adapters/ultralytics/index.js';
import type { PythonBridge } from '../bridge/python.js';
import { FRAMEWORKS, type Framework, inferFramework } from '../config/tasks.js';
import { ConfigError } from '../errors.js';
import type { Mode } from '../config/variables.js';
import type { FrameworkAdapter } from './adapter.js';

const ADAPTERS: Record<Framework, FrameworkAdapter> = {
  ultralytics: ultralyticsAdapter,
  timm: timmAdapter,
  huggingface: huggingfaceAdapter,
};

/**
 * The order in which adapters are asked whether they wrote a checkpoint: the readers of our own
 * checkpoint format (plain tensors, read safely) before ultralytics'.
 */
const RECOGNITION_ORDER: readonly Framework[] = ['timm', 'huggingface', 'ultralytics'];

export function adapterFor(framework: Framework): FrameworkAdapter {
  return ADAPTERS[framework];
}

/** FRAMEWORK when set, else the framework MODEL_NAME belongs to; undefined when neither is set. */
export function configuredFramework(config: { framework?: Framework | undefined; modelName?: string | undefined }): Framework | undefined {
  return config.framework ?? (config.modelName ? inferFramework(config.modelName) : undefined);
}

/**
 * Python's environment for a job: its framework's, or every framework's while the framework is
 * not known yet (an inference job that reads it from the checkpoint).
 */
export function pythonEnvFor(framework: Framework | undefined, workDir: string): Record<string, string> {
  const adapters = framework ? [ADAPTERS[framework]] : FRAMEWORKS.map((f) => ADAPTERS[f]);
  return Object.assign({}, ...adapters.map((a) => a.pythonEnv(workDir)));
}

/**
 * The framework of a job that works on a checkpoint (inference, export): the configured one, or
 * else the one whose adapter recognises the file. A ConfigError when none does.
 */
export async function chooseFramework(
  config: { framework?: Framework | undefined; modelName?: string | undefined; checkpointPath: string },
  mode: Mode,
  bridge: PythonBridge,
  checkpointPath: string,
): Promise<Framework> {
  const configured = configuredFramework(config);
  if (configured) return configured;
  for (const framework of RECOGNITION_ORDER) {
    if (await ADAPTERS[framework].inference.recognizes(bridge, checkpointPath)) return framework;
  }
  throw new ConfigError(
    [
      {
        variable: 'FRAMEWORK',
        message: `is not set, and the checkpoint ${config.checkpointPath} does not show which framework wrote it; set FRAMEWORK to ${FRAMEWORKS.join(', ')}`,
      },
    ],
    mode,
  );
}

export type * from './adapter.js';
