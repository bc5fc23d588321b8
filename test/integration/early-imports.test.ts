/**
 * The imports a training job makes while its dataset downloads (TrainingAdapter.pythonModules)
 * must cover what the framework then imports during its set-up, or that import lands after the
 * download, on the path to the first epoch. ultralytics' init_seeds sets torch's deterministic
 * mode on or off in every run, and torch.use_deterministic_algorithms imports torch's compiler
 * package the first time: seconds of CPU. Checked in a real interpreter with the pinned torch and
 * ultralytics, with a control run without the early imports, so the test sees the import it
 * guards against. The same for a classifier's first validation, whose metrics import scikit-learn
 * (1.2 s measured after the first epoch of a timm job).
 */
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { huggingfaceTraining } from '../../adapters/huggingface/train.js';
import { timmTraining } from '../../adapters/timm/train.js';
import { ultralyticsTraining } from '../../adapters/ultralytics/train.js';
import { defaultPythonBin, PYTHON_DIR } from '../../src/paths.js';

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

/** Imports the trainer's module (as the preflight's model check does) and `early`, then computes a validation's metrics; prints the modules that imported. */
const METRICS_PROBE = `
import importlib, json, sys
import torch
importlib.import_module(sys.argv[2])
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
before = set(sys.modules)
from vision_trainer.common.classification_metrics import classification_metrics
classification_metrics(torch.randn(8, 3), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]), ["a", "b", "c"])
sys.__stdout__.write(json.dumps(sorted(m for m in set(sys.modules) - before if m.startswith("sklearn"))) + "\\n")  # vision_trainer sends print() to stderr
`;

function importedByMetrics(trainer: string, early: readonly string[]): string[] {
  const env = { ...process.env, HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1' };
  const r = spawnSync(defaultPythonBin(), ['-c', METRICS_PROBE, JSON.stringify(early), trainer], { encoding: 'utf8', env, cwd: PYTHON_DIR });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as string[];
}

describe('a training job imports during its download what the framework would import on the way to the first epoch', () => {
  it('ultralytics: after the early imports, seeding imports nothing of torch compiler; without them it does', () => {
    expect(importedDuringSeeding([])).toContain('torch._inductor.config');
    expect(importedDuringSeeding(ultralyticsTraining.pythonModules('object_detection'))).toEqual([]);
  });

  it("timm and transformers classifiers: after the early imports, the first validation's metrics import nothing of scikit-learn; without them they do", () => {
    expect(importedByMetrics('vision_trainer.timm.train', [])).toContain('sklearn.metrics');
    expect(importedByMetrics('vision_trainer.timm.train', timmTraining.pythonModules('image_classification'))).toEqual([]);
    expect(importedByMetrics('vision_trainer.huggingface.train', huggingfaceTraining.pythonModules('image_classification'))).toEqual([]);
    expect(huggingfaceTraining.pythonModules('semantic_segmentation')).not.toContain('sklearn.metrics');
  });
});
