/**
 * Where a model runs during an export job. ONNX models run in this process with
 * onnxruntime-node, through the Node deployment wrapper; the original checkpoint and the other
 * formats run in Python (python/vision_trainer/export_validation.py), fed the same float32
 * tensors through files. Every runner times the model call alone, not the file transfer.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ModelWrapper, Tensor } from '../../runtime/node/model_wrapper.js';
import type { PythonBridge } from '../bridge/python.js';
import type { Framework } from '../config/tasks.js';
import type { ExportFormat } from './formats.js';
import { timeRuns } from './latency.js';

const MODULE = 'vision_trainer.export_validation';

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

export type PythonModelSpec =
  | { kind: 'original'; framework: Framework; checkpoint: string; device: string }
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
    const opened = await bridge.call<{ device: string }>(MODULE, 'open_model', [handle, spec], {}, { long: true });
    return new PythonRunner(bridge, handle, scratchDir, engine, opened.device);
  }

  private async writeInput(input: Tensor): Promise<string> {
    const path = join(this.scratchDir, `${this.handle}-input.bin`);
    await writeFile(path, Buffer.from(input.data.buffer, input.data.byteOffset, input.data.byteLength));
    return path;
  }

  async run(input: Tensor): Promise<RunResult> {
    const inputFile = await this.writeInput(input);
    const prefix = join(this.scratchDir, `${this.handle}-out-${this.calls++ % 2}`);
    const r = await this.bridge.call<{ outputs: { path: string; shape: number[] }[]; seconds: number }>(MODULE, 'run_model', [this.handle, inputFile, input.dims, prefix], {}, { long: true });
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
    const seconds = await this.bridge.call<number[]>(MODULE, 'benchmark', [this.handle, inputFile, input.dims, warmup, runs], {}, { long: true });
    return seconds.map((s) => s * 1000);
  }

  /** Output tensors of the model, read by running it on a zero batch (formats without static shapes). */
  async io(shape: number[]): Promise<{ inputs: { name: string; shape: number[]; dtype: string }[]; outputs: { name: string; shape: number[]; dtype: string }[] }> {
    return this.bridge.call(MODULE, 'model_io', [this.handle, shape], {}, { long: true });
  }

  async close(): Promise<void> {
    if (this.bridge.isOpen) await this.bridge.call(MODULE, 'close_model', [this.handle]);
  }
}
