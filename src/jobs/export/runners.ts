/**
 * Where a model runs during an export job. ONNX models run in this process with
 * onnxruntime-node, through the Node deployment wrapper; the original checkpoint and the other
 * formats run in Python (python/vision_trainer/common/export_validation.py), fed the same float32
 * tensors through files. Every runner times the model call alone, not the file transfer.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { ModelWrapper, Tensor } from '../../../runtime/node/model_wrapper.js';
import { type PythonBridge, pythonEntry } from '../../bridge/python.js';
import type { EmbeddedSteps, ExportAdapter } from '../../frameworks/adapter.js';
import {
  BenchmarkParamsSchema,
  HandleParamsSchema,
  type ModelIo,
  ModelIoParamsSchema,
  ModelIoSchema,
  NothingSchema,
  OpenedModelSchema,
  OpenExportedParamsSchema,
  RunModelAnswerSchema,
  RunModelParamsSchema,
} from '../../frameworks/protocol.js';
import type { ExportFormat } from './formats.js';
import { timeRuns } from './latency.js';

const MODULE = 'vision_trainer.common.export_validation';
const OPEN_EXPORTED = pythonEntry(MODULE, 'open_exported', OpenExportedParamsSchema, OpenedModelSchema, { long: true });
const RUN = pythonEntry(MODULE, 'run_model', RunModelParamsSchema, RunModelAnswerSchema, { long: true });
const BENCHMARK = pythonEntry(MODULE, 'benchmark', BenchmarkParamsSchema, z.array(z.number()), { long: true });
const MODEL_IO = pythonEntry(MODULE, 'model_io', ModelIoParamsSchema, ModelIoSchema, { long: true });
const CLOSE = pythonEntry(MODULE, 'close_model', HandleParamsSchema, NothingSchema);

export interface RunResult {
  outputs: Tensor[];
  milliseconds: number;
}

export interface ModelRunner {
  /** e.g. "onnxruntime-node 1.30.0", "python onnxruntime", "pytorch (original checkpoint)". */
  readonly engine: string;
  /** Where it computes: "cpu", "cuda", "cuda:0". */
  readonly device: string;
  run(input: Tensor): Promise<RunResult>;
  /** Milliseconds per run. */
  benchmark(input: Tensor, warmup: number, runs: number): Promise<number[]>;
  close(): Promise<void>;
}

/** A batch of `batch` copies of a one-image tensor (models exported with a fixed batch > 1). */
export function tileBatch(input: Tensor, batch: number): Tensor {
  if (batch <= 1 || input.dims[0] === batch) return input;
  const data = new Float32Array(input.data.length * batch);
  for (let i = 0; i < batch; i++) data.set(input.data, i * input.data.length);
  return { data, dims: [batch, ...input.dims.slice(1)] };
}

export class NodeOnnxRunner implements ModelRunner {
  /** The Node wrapper runs onnxruntime's CPU provider (the GPU providers are not installed). */
  readonly device = 'cpu';

  constructor(
    private readonly wrapper: ModelWrapper,
    readonly engine: string,
  ) {}

  async run(input: Tensor): Promise<RunResult> {
    const started = performance.now();
    const outputs = await this.wrapper.infer(input);
    return { outputs, milliseconds: performance.now() - started };
  }

  benchmark(input: Tensor, warmup: number, runs: number): Promise<number[]> {
    return timeRuns(() => this.wrapper.infer(input), warmup, runs);
  }

  async close(): Promise<void> {
    await this.wrapper.close();
  }
}

/** What a Python runner runs: the checkpoint (through its framework's exporter), or an exported model. */
export type PythonModelSpec =
  | { kind: 'original'; exporter: ExportAdapter; checkpoint: string; device: string; embedded: EmbeddedSteps }
  | { kind: 'exported'; format: ExportFormat; path: string };

export class PythonRunner implements ModelRunner {
  private calls = 0;

  private constructor(
    private readonly bridge: PythonBridge,
    private readonly handle: string,
    private readonly scratchDir: string,
    readonly engine: string,
    readonly device: string,
  ) {}

  static async open(bridge: PythonBridge, handle: string, spec: PythonModelSpec, scratchDir: string, engine: string): Promise<PythonRunner> {
    const device =
      spec.kind === 'original'
        ? await spec.exporter.openOriginal(bridge, handle, spec.checkpoint, spec.device, spec.embedded)
        : (await bridge.call(OPEN_EXPORTED, { handle, format: spec.format, path: spec.path })).device;
    return new PythonRunner(bridge, handle, scratchDir, engine, device);
  }

  private async writeInput(input: Tensor): Promise<string> {
    const path = join(this.scratchDir, `${this.handle}-input.bin`);
    await writeFile(path, Buffer.from(input.data.buffer, input.data.byteOffset, input.data.byteLength));
    return path;
  }

  async run(input: Tensor): Promise<RunResult> {
    const inputFile = await this.writeInput(input);
    const prefix = join(this.scratchDir, `${this.handle}-out-${this.calls++ % 2}`);
    const r = await this.bridge.call(RUN, { handle: this.handle, input_file: inputFile, shape: input.dims, output_prefix: prefix });
    const outputs = await Promise.all(
      r.outputs.map(async (o) => {
        const bytes = await readFile(o.path);
        return { data: new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4), dims: o.shape };
      }),
    );
    return { outputs, milliseconds: r.seconds * 1000 };
  }

  async benchmark(input: Tensor, warmup: number, runs: number): Promise<number[]> {
    const inputFile = await this.writeInput(input);
    const seconds = await this.bridge.call(BENCHMARK, { handle: this.handle, input_file: inputFile, shape: input.dims, warmup, runs });
    return seconds.map((s) => s * 1000);
  }

  /** Output tensors of the model, read by running it on a zero batch (formats without static shapes). */
  io(shape: number[]): Promise<ModelIo> {
    return this.bridge.call(MODEL_IO, { handle: this.handle, shape });
  }

  async close(): Promise<void> {
    if (this.bridge.isOpen) await this.bridge.call(CLOSE, { handle: this.handle });
  }
}
