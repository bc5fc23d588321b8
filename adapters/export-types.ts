/**
 * What a framework offers export jobs (src/jobs/export.ts). The job owns everything that is the
 * same for every framework: downloads, ONNX graph passes and quantization, validation,
 * metadata, packaging, uploads. An ExportAdapter owns what is not: reading a checkpoint, the
 * framework's pre/post-processing conventions, and writing a format.
 */
import type { PythonBridge } from '../src/bridge/python.js';
import type { Framework, TaskType } from '../src/config/tasks.js';
import type { ExportFormat, QuantizationRule } from '../src/export/formats.js';
import type { PostprocessingSpec, PreprocessingSpec } from '../src/export/metadata.js';

/** A checkpoint as the export sees it. */
export interface ModelDescription {
  framework: Framework;
  taskType: TaskType;
  /** e.g. yolo11n-seg, resnet18, ViTForImageClassification. */
  architecture: string;
  classNames: string[];
  /** The size the model was trained at, [height, width]: the default export size. */
  trainedSize: [number, number];
  /** Pose models: [keypoints, values per keypoint]. */
  keypointShape: [number, number] | null;
  versions: Record<string, string>;
  /** The framework's pre- and post-processing for this model, as metadata.json states them. */
  processing(options: ProcessingOptions): { preprocessing: PreprocessingSpec; postprocessing: PostprocessingSpec };
}

export interface ProcessingOptions {
  inputSize: [number, number];
  includePreprocessing: boolean;
  includePostprocessing: boolean;
  /** Set for LiteRT exports, whose boxes come as fractions of the input size. */
  format: ExportFormat;
}

export interface ExportRequest {
  /** The checkpoint on local disk. */
  checkpointPath: string;
  format: ExportFormat;
  outDir: string;
  inputSize: [number, number];
  batchSize: number;
  device: string;
  /** OPTIMIZATION_LEVEL 0-3. */
  optimizationLevel: number;
  /** A quantization the format's own converter applies (never ONNX's: the job does those). */
  quantization: QuantizationRule | null;
}

export interface ExportedArtifact {
  /** The exported file, or folder (OpenVINO IR, CoreML package). */
  path: string;
  directory: boolean;
  /** What the exporter did beyond the plain conversion, for metadata.optimization.passes. */
  notes: string[];
}

export interface ExportAdapter {
  /** Environment the Python interpreter needs (offline switches, config folders). */
  pythonEnv(workDir: string): Record<string, string>;
  /** Fails, saying what is missing and what to do, when this machine cannot write the format. */
  checkFormat(bridge: PythonBridge, format: ExportFormat, device: string): Promise<void>;
  describe(bridge: PythonBridge, checkpointPath: string): Promise<ModelDescription>;
  export(bridge: PythonBridge, request: ExportRequest): Promise<ExportedArtifact>;
}
