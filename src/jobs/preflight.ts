/**
 * The stage every job runs first, before it uses anything it downloads: is there a Python with
 * our requirements (PYTHON_BIN, else the venv `vision-trainer setup` builds), does torch import
 * and can it use DEVICE, and, for training, is MODEL_NAME a model the framework can build. A
 * problem found here costs seconds, not a dataset download and conversion, and is a configuration
 * error (exit 2) naming the variable to change. Training begins its dataset download once Python
 * is up (`whileChecking`), beside the seconds of imports, and abandons it when a check fails.
 * The bridge it opens is the job's: later stages reuse it.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { type PythonBridge, pythonEntry } from '../bridge/python.js';
import type { Mode } from '../config/variables.js';
import { type ConfigProblem, ConfigError } from '../errors.js';
import { EnvironmentParamsSchema, type EnvironmentReport, EnvironmentReportSchema, type ModelCheck } from '../frameworks/protocol.js';
import { defaultVenvDir, pinnedRequirements, venvIsComplete } from '../paths.js';
import type { JobContext } from './context.js';
import type { JobEvent } from './run-stream.js';

export const ENVIRONMENT_REPORT = pythonEntry('vision_trainer.environment', 'report', EnvironmentParamsSchema, EnvironmentReportSchema, { long: true });

const SETUP = 'run `npx vision-trainer setup` (in a clone of the repository: `npm run setup`)';

/** Where the interpreter would come from, and why it cannot (undefined when it can). */
export function interpreterProblem(pythonBin: string | undefined, env: NodeJS.ProcessEnv = process.env): ConfigProblem | undefined {
  if (pythonBin) {
    try {
      if (!statSync(pythonBin).isFile()) throw new Error('not a file');
      accessSync(pythonBin, constants.X_OK);
      return undefined;
    } catch {
      return {
        variable: 'PYTHON_BIN',
        value: pythonBin,
        message: `is not an executable file; point it at a Python with python/requirements.txt installed, or unset it and ${SETUP}`,
      };
    }
  }
  if (venvIsComplete(env)) return undefined;
  return {
    variable: 'PYTHON_BIN',
    message: `is not set and the Python venv of this version is not built (${defaultVenvDir(env)}): ${SETUP}, or set PYTHON_BIN`,
  };
}

/** Installed versions that differ from python/requirements.txt's pins, as `name installed (pinned x)`. */
export function versionDrift(report: EnvironmentReport, pins: Record<string, string> = pinnedRequirements()): string[] {
  const drift: string[] = [];
  for (const [name, pinned] of Object.entries(pins)) {
    const installed = report.packages[name];
    // torch's local version label (+cpu, +cu128) is the build, not another release.
    if (installed === undefined) continue;
    if (installed === null) drift.push(`${name} missing (pinned ${pinned})`);
    else if (installed.split('+')[0] !== pinned) drift.push(`${name} ${installed} (pinned ${pinned})`);
  }
  return drift;
}

export function describeTorch(report: EnvironmentReport): string {
  const t = report.torch;
  if (!t) return `torch does not import (${report.torch_error})`;
  const gpus = t.gpus.length ? `${t.gpus.length} GPU(s): ${t.gpus.map((g) => `${g.index} ${g.name} ${g.memory_gb} GB`).join(', ')}` : 'no GPU';
  return `torch ${t.version} (${t.cuda_build ? `CUDA ${t.cuda_build}` : 'CPU-only'} build, ${gpus}${t.mps_available ? ', MPS' : ''})`;
}

export async function preflight<M extends Mode, E extends JobEvent>(
  ctx: JobContext<M, E>,
  options: {
    pythonEnv: Record<string, string>;
    checkModel?: (bridge: PythonBridge) => Promise<ModelCheck>;
    /** Called once Python is up, before torch is imported: work that may run while the checks do. */
    whileChecking?: () => void;
  },
): Promise<PythonBridge> {
  const { config, logger } = ctx;
  logger.stage('Preflight');
  const missing = interpreterProblem(config.pythonBin);
  if (missing) throw new ConfigError([missing], ctx.mode);
  const bridge = await ctx.startPython(options.pythonEnv);
  options.whileChecking?.();
  const pins = pinnedRequirements();
  const report = await bridge.call(ENVIRONMENT_REPORT, { packages: Object.keys(pins), imports: [], device: config.device });
  const problems: ConfigProblem[] = [];
  if (!report.torch) problems.push({ variable: 'PYTHON_BIN', value: report.executable, message: `cannot import torch (${report.torch_error}); ${SETUP}` });
  else if (report.device_problem) problems.push({ variable: 'DEVICE', value: config.device, message: report.device_problem.replace(/^DEVICE=\S+ /, '') });
  if (problems.length > 0) throw new ConfigError(problems, ctx.mode);
  logger.info(`Python ${report.python} (${report.executable}), ${describeTorch(report)}`);
  const drift = versionDrift(report, pins);
  if (drift.length > 0)
    logger.warn(`The Python environment differs from python/requirements.txt: ${drift.join(', ')}; results may differ from the tested versions`);
  if (options.checkModel) {
    const check = await options.checkModel(bridge);
    if (check.problem) throw new ConfigError([{ variable: check.variable, value: shownValue(config, check.variable), message: check.problem }], ctx.mode);
    logger.info(`Model: ${check.description}`);
  }
  return bridge;
}

function shownValue(config: object, variable: string): string | undefined {
  const c = config as { modelName?: string; hfConfigOverrides?: unknown };
  if (variable === 'MODEL_NAME') return c.modelName;
  if (variable === 'HF_CONFIG_OVERRIDES' && c.hfConfigOverrides !== undefined) return JSON.stringify(c.hfConfigOverrides);
  return undefined;
}
