/**
 * package.zip: the model, metadata.json, README.md, a Dockerfile, the runtime wrappers that run
 * this format (runtime/ in this repository, the Node wrapper compiled from its TypeScript), and
 * sample images with the predictions the validation step made for them.
 */
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../paths.js';
import { listFilesRecursive } from '../../storage/files.js';
import { createZip } from '../../storage/zip.js';
import { dockerfile, nodePackageJson, pythonRequirements, readme } from './docs.js';
import { FORMATS, type ExportFormat, type RuntimeLanguage } from './formats.js';
import type { PackageMetadata } from './metadata.js';
import { METRIC_THRESHOLDS, type SamplePrediction } from './validate.js';

export const RUNTIME_SOURCES = join(PROJECT_ROOT, 'runtime');
const NODE_COMPILED = join(PROJECT_ROOT, 'dist', 'runtime', 'node');

/** Files copied as they are, per wrapper (relative to runtime/<language>/). */
const WRAPPER_FILES: Record<RuntimeLanguage, string[]> = {
  python: ['model_wrapper.py', 'example.py'],
  node: ['model_wrapper.ts', 'example.mjs'],
  cpp: ['model_wrapper.h', 'model_wrapper.cpp', 'example.cpp', 'CMakeLists.txt'],
  swift: ['Package.swift', 'Sources/ModelWrapper/ModelWrapper.swift', 'Sources/Example/main.swift'],
  kotlin: ['ModelWrapper.kt', 'Example.kt', 'build.gradle'],
};

export interface PackageInput {
  /** An empty staging folder; the zip is written from it. */
  dir: string;
  zipPath: string;
  format: ExportFormat;
  metadata: PackageMetadata;
  /** The exported file or folder. */
  modelPath: string;
  samples: SamplePrediction[];
}

async function onnxruntimeNodeVersion(): Promise<string> {
  const pkg = JSON.parse(await readFile(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
  return pkg.dependencies?.['onnxruntime-node'] ?? 'latest';
}

/** tsc's output without the source-map comment (the map is not shipped). */
async function compiledWithoutSourceMap(file: string): Promise<string> {
  return (await readFile(file, 'utf8')).replace(/\n\/\/# sourceMappingURL=.*\n?$/, '\n');
}

async function writeWrapper(language: RuntimeLanguage, target: string, input: PackageInput): Promise<void> {
  await mkdir(target, { recursive: true });
  for (const file of WRAPPER_FILES[language]) {
    await mkdir(join(target, file, '..'), { recursive: true });
    await cp(join(RUNTIME_SOURCES, language, file), join(target, file));
  }
  if (language === 'python') await writeFile(join(target, 'requirements.txt'), pythonRequirements(input.format));
  if (language === 'node') {
    for (const file of ['model_wrapper.js', 'model_wrapper.d.ts']) {
      const compiled = join(NODE_COMPILED, file);
      await writeFile(
        join(target, file),
        await compiledWithoutSourceMap(compiled).catch(() => {
          throw new Error(`${compiled} is missing: build the project (npm run build) before exporting`);
        }),
      );
    }
    await writeFile(join(target, 'package.json'), nodePackageJson(await onnxruntimeNodeVersion(), input.metadata.model_name));
  }
}

/**
 * What the wrappers print for the sample images: at the metadata's default thresholds, and at
 * the validation step's (the predictions it scored), each with the example options giving them.
 */
function expectedPredictions(input: PackageInput) {
  const nms = input.metadata.postprocessing.nms;
  const v = METRIC_THRESHOLDS;
  return {
    thresholds: {
      default: nms
        ? { confidence: nms.confidence_threshold, iou: nms.iou_threshold, max_detections: nms.max_detections }
        : { top_k: input.metadata.postprocessing.top_k },
      validation: nms
        ? {
            confidence: v.confidence,
            iou: v.iou,
            max_detections: v.maxDetections,
            example_options: `--confidence ${v.confidence} --iou ${v.iou} --max-detections ${v.maxDetections}`,
          }
        : { top_k: input.metadata.postprocessing.top_k },
    },
    images: input.samples.map((s) => ({ image: s.name, predictions: s.predictions, validation_predictions: s.validationPredictions })),
  };
}

/** Builds the package folder and zips it; returns the zip's member names. */
export async function buildPackage(input: PackageInput): Promise<string[]> {
  const { dir, metadata } = input;
  const info = FORMATS[input.format];
  await mkdir(dir, { recursive: true });
  await cp(input.modelPath, join(dir, info.packageName), { recursive: true });
  await writeFile(join(dir, 'metadata.json'), `${JSON.stringify(metadata, null, 2)}\n`);
  const wrappers = metadata.runtime.wrappers as RuntimeLanguage[];
  for (const language of wrappers) await writeWrapper(language, join(dir, 'runtimes', language), input);
  if (input.samples.length) {
    await mkdir(join(dir, 'samples'), { recursive: true });
    for (const s of input.samples) await cp(s.path, join(dir, 'samples', s.name));
    await writeFile(join(dir, 'samples', 'expected_predictions.json'), `${JSON.stringify(expectedPredictions(input), null, 1)}\n`);
  }
  await writeFile(join(dir, 'README.md'), readme(metadata, { hasSamples: input.samples.length > 0 }));
  if (wrappers.includes('python')) await writeFile(join(dir, 'Dockerfile'), dockerfile(input.format, metadata));
  await createZip(dir, input.zipPath);
  return listFilesRecursive(dir);
}
