/**
 * The imports a training job makes while its dataset downloads (TrainingAdapter.pythonModules)
 * must cover what the framework then imports during its set-up, or that import lands after the
 * download, on the path to the first epoch. ultralytics' init_seeds sets torch's deterministic
 * mode on or off in every run, and torch.use_deterministic_algorithms imports torch's compiler
 * package the first time: seconds of CPU. Checked in a real interpreter with the pinned torch and
 * ultralytics, with a control run without the early imports, so the test sees the import it
 * guards against.
 */
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ultralyticsTraining } from '../../adapters/ultralytics/train.js';
import { defaultPythonBin } from '../../src/paths.js';

/** Imports `early`, then runs ultralytics' seeding both ways; prints the modules that imported. */
const PROBE = `
import importlib, json, sys
import torch, ultralytics.models.yolo
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
before = set(sys.modules)
from ultralytics.utils.torch_utils import init_seeds
init_seeds(1, deterministic=True)
init_seeds(1, deterministic=False)
print(json.dumps(sorted(m for m in set(sys.modules) - before if m.startswith(("torch._inductor", "torch._dynamo")))))
`;

function importedDuringSeeding(early: readonly string[]): string[] {
  const env = { ...process.env, YOLO_OFFLINE: 'true', YOLO_AUTOINSTALL: 'false', YOLO_CONFIG_DIR: join(tmpdir(), 'vt-early-imports-cfg') };
  const r = spawnSync(defaultPythonBin(), ['-c', PROBE, JSON.stringify(early)], { encoding: 'utf8', env });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as string[];
}

describe('a training job imports during its download what the framework would import on the way to the first epoch', () => {
  it('ultralytics: after the early imports, seeding imports nothing of torch compiler; without them it does', () => {
    expect(importedDuringSeeding([])).toContain('torch._inductor.config');
    expect(importedDuringSeeding(ultralyticsTraining.pythonModules)).toEqual([]);
  });
});
