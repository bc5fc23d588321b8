/** The pieces of an inference job that need no Python: ground truth, prefetching, results.json. */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { DatasetImage } from '../../src/datasets/model.js';
import { DatasetError } from '../../src/errors.js';
import { groundTruthOf, mapClasses } from '../../src/jobs/infer/ground-truth.js';
import { datasetFolderImages, inBatches, prefetched } from '../../src/jobs/infer/inputs.js';
import { describePrecisionCheck, type LoopParts, LoopStats, predictAll, withAhead } from '../../src/jobs/infer/predict-loop.js';
import { StopController } from '../../src/jobs/stop.js';
import { Logger } from '../../src/log.js';
import { InferenceResultsSchema, type PrecisionCheck, RESULTS_SCHEMA_VERSION, type ImageResult } from '../../src/jobs/infer/results.js';
import { ResultsWriter, type ResultsSummary } from '../../src/jobs/infer/results-writer.js';
import { encodePng } from '../helpers/synthetic.js';

const CLASSES = [
  { id: 7, name: 'cat' },
  { id: 9, name: 'dog' },
];

function image(partial: Partial<DatasetImage>): DatasetImage {
  return { id: '1', fileName: 'a.png', path: '/x/a.png', width: 100, height: 80, objects: [], ...partial };
}

/** A model trained on the same dataset: its class ids are the dataset's. */
const model = (names: string[], ids?: number[]) => ({ class_names: names, class_ids: ids ?? names.map((n) => CLASSES.find((c) => c.name === n)?.id ?? 100) });

describe("ground truth in the model's classes", () => {
  it('maps dataset class ids to model indices by name, whatever the order', () => {
    const mapping = mapClasses({ classes: CLASSES }, model(['dog', 'bird', 'cat']));
    expect([...mapping.toModel]).toEqual([
      [7, 2],
      [9, 0],
    ]);
    expect(mapping.renumbered).toEqual([]);
  });

  it("states classes by the model's ids; a test dataset that numbers a class otherwise is noted", () => {
    const mapping = mapClasses({ classes: CLASSES }, model(['dog', 'cat'], [3, 7]));
    expect(mapping.renumbered).toEqual([{ name: 'dog', testId: 9, modelId: 3 }]);
    const truth = groundTruthOf(image({ label: 9 }), { taskType: 'image_classification' }, mapping);
    expect(truth).toEqual({ input: { class: 0 }, record: { class_id: 3, class_name: 'dog' } });
  });

  it('refuses a class the model never learned, naming it and the known classes', () => {
    const run = () => mapClasses({ classes: [...CLASSES, { id: 3, name: 'horse' }] }, model(['cat', 'dog']));
    expect(run).toThrow(DatasetError);
    expect(run).toThrow(/class the model was not trained on: "horse"/);
  });

  it('detection: xywh becomes xyxy; crowd regions are left out', () => {
    const mapping = mapClasses({ classes: CLASSES }, model(['cat', 'dog']));
    const truth = groundTruthOf(
      image({
        objects: [
          { classId: 9, bbox: [10, 20, 30, 40] },
          { classId: 7, bbox: [0, 0, 5, 5], iscrowd: true },
        ],
      }),
      { taskType: 'object_detection' },
      mapping,
    );
    expect(truth).toEqual({
      input: { boxes: [[10, 20, 40, 60]], classes: [1] },
      record: { objects: [{ bbox: [10, 20, 40, 60], class_id: 9, class_name: 'dog' }] },
    });
  });

  it('segmentation and pose carry polygons and keypoints; a pose object without keypoints has them absent', () => {
    const mapping = mapClasses({ classes: CLASSES }, model(['cat', 'dog']));
    const seg = groundTruthOf(
      image({ objects: [{ classId: 7, bbox: [0, 0, 10, 10], segmentation: [[0, 0, 10, 0, 10, 10]] }] }),
      { taskType: 'instance_segmentation' },
      mapping,
    );
    expect(seg?.input).toEqual({ boxes: [[0, 0, 10, 10]], classes: [0], segmentations: [[[0, 0, 10, 0, 10, 10]]] });
    const pose = groundTruthOf(
      image({
        objects: [
          {
            classId: 7,
            bbox: [0, 0, 10, 10],
            keypoints: [
              [1, 2, 2],
              [3, 4, 0],
            ],
          },
          { classId: 7, bbox: [5, 5, 10, 10] },
        ],
      }),
      { taskType: 'pose_estimation', keypointCount: 2 },
      mapping,
    );
    expect(pose?.input).toEqual({
      boxes: [
        [0, 0, 10, 10],
        [5, 5, 15, 15],
      ],
      classes: [0, 0],
      keypoints: [
        [
          [1, 2, 2],
          [3, 4, 0],
        ],
        [
          [0, 0, 0],
          [0, 0, 0],
        ],
      ],
    });
  });

  it('classification: the class, or null for an unlabelled image', () => {
    const mapping = mapClasses({ classes: CLASSES }, model(['cat', 'dog']));
    expect(groundTruthOf(image({ label: 9 }), { taskType: 'image_classification' }, mapping)).toEqual({
      input: { class: 1 },
      record: { class_id: 9, class_name: 'dog' },
    });
    expect(groundTruthOf(image({}), { taskType: 'image_classification' }, mapping)).toBeNull();
  });
});

describe('prefetching', () => {
  it('each batch comes with the next one (the last with none); leaving early ends the source', async () => {
    async function* three() {
      yield* [1, 2, 3];
    }
    const pairs: number[][] = [];
    for await (const pair of withAhead(three(), 1)) pairs.push(pair);
    expect(pairs).toEqual([[1, 2], [2, 3], [3]]);
    const triples: number[][] = [];
    for await (const triple of withAhead(three(), 2)) triples.push(triple);
    expect(triples).toEqual([[1, 2, 3], [2, 3], [3]]);
    let ended = false;
    async function* endless() {
      try {
        for (let i = 0; ; i++) yield i;
      } finally {
        ended = true;
      }
    }
    for await (const [n] of withAhead(endless(), 2)) if (n === 2) break;
    expect(ended).toBe(true);
  });

  it('yields in order, with at most `concurrency` fetches running and at most `window` ahead of the consumer', async () => {
    let running = 0;
    let peak = 0;
    const started: number[] = [];
    const consumed: number[] = [];
    let maxAhead = 0;
    const items = Array.from({ length: 40 }, (_, i) => i);
    const fetch = async (item: number) => {
      started.push(item);
      maxAhead = Math.max(maxAhead, started.length - consumed.length);
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, (item * 7) % 5)); // finish out of order
      running--;
      return item * 10;
    };
    for await (const value of prefetched(items, fetch, { concurrency: 3, window: 8 })) {
      consumed.push(value / 10);
      await new Promise((r) => setTimeout(r, 1));
    }
    expect(consumed).toEqual(items);
    expect(peak).toBe(3);
    expect(maxAhead).toBeLessThanOrEqual(8);
  });

  it('fails at the position of a failed fetch, without unhandled rejections from those fetched ahead', async () => {
    const got: number[] = [];
    const run = async () => {
      for await (const v of prefetched([0, 1, 2, 3, 4], async (i) => (i === 2 || i === 3 ? Promise.reject(new Error(`fetch ${i} failed`)) : i), {
        concurrency: 4,
        window: 4,
      }))
        got.push(v);
    };
    await expect(run()).rejects.toThrow('fetch 2 failed');
    expect(got).toEqual([0, 1]);
  });

  it('batches an async stream, the last batch shorter', async () => {
    async function* numbers() {
      for (let i = 0; i < 7; i++) yield i;
    }
    const batches: number[][] = [];
    for await (const b of inBatches(numbers(), 3)) batches.push(b);
    expect(batches).toEqual([[0, 1, 2], [3, 4, 5], [6]]);
  });

  it('a dataset-based inference job takes every image file under images/, sorted, and nothing else', async () => {
    const root = mkdtempSync(join(tmpdir(), 'vt-infer-ds-'));
    const { mkdirSync } = await import('node:fs');
    mkdirSync(join(root, 'images', 'b'), { recursive: true });
    const png = encodePng(2, 2, new Uint8Array(12));
    for (const f of ['z.png', 'a.JPG', 'b/c.png', 'notes.txt', '.DS_Store']) writeFileSync(join(root, 'images', f), png);
    const images = await datasetFolderImages(root);
    expect(images.map((i) => i.fileName)).toEqual(['a.JPG', 'b/c.png', 'z.png']);
    expect(images[1]!.path).toBe(join(root, 'images', 'b', 'c.png'));
  });
});

function result(index: number, extra: Partial<ImageResult> = {}): ImageResult {
  return {
    index,
    image_id: String(index),
    file_name: `${index}.png`,
    image_path: `s3://b/in/${index}.png`,
    width: 10,
    height: 10,
    error: null,
    predictions: { boxes: [{ bbox: [1, 2, 3, 4], class_id: 0, class_name: 'cat', confidence: 0.5 }] },
    ground_truth: null,
    metrics: null,
    inference_time_ms: 3,
    visualization_path: null,
    xai: null,
    ...extra,
  };
}

const SUMMARY: ResultsSummary = {
  schema_version: RESULTS_SCHEMA_VERSION,
  job_id: 'j',
  inference_type: 'inference_job',
  task_type: 'object_detection',
  checkpoint_path: 's3://b/checkpoints/job-1/best.pt',
  model: {
    framework: 'ultralytics',
    task: 'detect',
    class_names: ['cat'],
    class_ids: [0],
    class_ids_stored: true,
    model_name: 'yolo11n',
    architecture: 'DetectionModel',
    training_image_size: 640,
    keypoint_shape: null,
    xai_layers: [],
    prediction_confidence: 0.25,
    inference_backend: {
      name: 'onnx',
      runtime: 'onnxruntime 1.31.1',
      device: 'cpu',
      export_seconds: 1.2,
      xai_backend: null,
      requested: 'auto',
      reason: 'auto: the CPU and 5000 images (at least 1000)',
      cpu_threads: 2,
    },
  },
  settings: {
    batch_size: 2,
    image_size: 64,
    confidence_threshold: 0.25,
    iou_threshold: 0.45,
    device: 'cpu',
    inference_backend: 'auto',
    dataset_id: null,
    test_split: null,
    split_source: null,
    xai_method: null,
    llm_model: null,
    max_visualizations: 10,
  },
  generated_at: new Date().toISOString(),
  num_images: 3,
  failed_images: 1,
  timing: { avg_inference_time_ms: 3, images_per_second: 100, total_seconds: 1 },
  metrics: null,
  visualizations_path: null,
  xai_results_path: null,
};

describe('results.json', () => {
  it('keeps image order when later images complete first, and parses with the exported schema', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vt-results-'));
    const writer = new ResultsWriter(join(dir, 'spill.jsonl'));
    writer.add(new Promise((r) => setTimeout(() => r(result(0)), 30)));
    writer.add(result(1, { error: 'not a readable image: empty file', width: null, height: null, predictions: null, inference_time_ms: null }));
    writer.add(Promise.resolve(result(2)));
    await writer.finish(SUMMARY, join(dir, 'results.json'));
    await writer.close();
    const doc = InferenceResultsSchema.parse(JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')));
    expect(doc.results.map((r) => r.index)).toEqual([0, 1, 2]);
    expect(writer.written).toEqual({ images: 3, failed: 1 });
    expect(doc.job_id).toBe('j');
  });

  it('an empty job still writes a valid document', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vt-results-'));
    const writer = new ResultsWriter(join(dir, 'spill.jsonl'));
    await writer.finish({ ...SUMMARY, num_images: 0, failed_images: 0 }, join(dir, 'results.json'));
    expect(InferenceResultsSchema.parse(JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8'))).results).toEqual([]);
  });

  it('an image result that breaks the schema fails the job, naming the field', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vt-results-'));
    const writer = new ResultsWriter(join(dir, 'spill.jsonl'));
    writer.add(result(0, { predictions: { boxes: [{ bbox: [1, 2, 3, 4], class_id: 0, class_name: 'cat', confidence: 1.5 }] } }));
    await expect(writer.flush()).rejects.toThrow(/predictions.boxes.0.confidence/);
    await writer.close();
  });
});

describe('the prediction loop', () => {
  type Stages = { preprocessSeconds: number | null; forwardSeconds: number | null; cpuSeconds: number };
  type Answer = { images: Array<Record<string, unknown>>; inferenceSeconds: number; stages?: Stages; precisionCheck?: PrecisionCheck };
  /** A session whose batches finish when the test says; records what was asked and when. */
  function fakeSession() {
    const events: string[] = [];
    const answers: Array<(a: Answer) => void> = [];
    const session = {
      predictBatch(items: Array<{ key: string }>, prefetch?: string[]) {
        events.push(`ask ${items.map((i) => i.key).join(',')} prefetch ${prefetch?.length ?? 0}`);
        return new Promise<Answer>((resolve) => answers.push(resolve));
      },
    };
    // Python's stage timings, per image: 1 ms preprocessing, 2 ms forward, 3 ms CPU (a backend without them: forward null).
    const answer = (n: number, timed = true, precisionCheck?: PrecisionCheck) =>
      answers.shift()!({
        ...(precisionCheck ? { precisionCheck } : {}),
        images: Array.from({ length: n }, () => ({ width: 4, height: 4, predictions: { boxes: [] }, metrics: null, xai: null })),
        inferenceSeconds: 0.01,
        stages: { preprocessSeconds: 0.001 * n, forwardSeconds: timed ? 0.002 * n : null, cpuSeconds: 0.003 * n },
      });
    return { events, session, answer };
  }

  const check = (agreement: number): PrecisionCheck => ({
    against: 'pytorch float32',
    images: 2,
    compared: 'top-1 class',
    agreement,
    max_score_difference: 0.003,
  });

  async function run(stopAfterFirst: boolean, lastTimed = true, lines: string[] = []) {
    const dir = await mkdtemp(join(tmpdir(), 'vt-loop-'));
    const { events, session, answer } = fakeSession();
    const images = Array.from({ length: 5 }, (_, i) => ({ imageId: `${i}`, fileName: `${i}.jpg`, source: `${i}.jpg`, path: join(dir, `${i}.jpg`) }));
    const source = {
      total: 5,
      description: 'five',
      async *batches() {
        for (let i = 0; i < 5; i += 2) yield images.slice(i, i + 2).map((im, k) => ({ ...im, index: i + k, temporary: false }));
      },
    };
    const stop = new StopController();
    // The first image's result handed on asks for a stop (a signal while the batch is handled).
    const writer = {
      add: () => {
        events.push('result');
        if (stopAfterFirst) stop.request({ kind: 'signal', signal: 'SIGTERM' });
      },
    };
    const parts = {
      config: {
        taskType: 'object_detection',
        batchSize: 2,
        maxVisualizations: 0,
        saveVisualizations: false,
        enableXai: false,
        inferenceType: 'inference_job',
        jobId: 'j',
      },
      session,
      writer,
      uploads: {},
      explainer: undefined,
      scratchDir: dir,
      stop,
      logger: Logger.create({ sink: (line: string) => lines.push(line) }),
    } as unknown as LoopParts;
    const stats = new LoopStats();
    const loop = predictAll(source, parts, stats);
    const settle = () => new Promise((r) => setTimeout(r, 20));
    await settle();
    answer(2, true, check(0.5));
    await settle();
    if (!stopAfterFirst) {
      answer(2, true, check(1));
      await settle();
      answer(1, lastTimed);
      await loop;
    } else {
      answer(2);
      await expect(loop).rejects.toThrow();
    }
    await rm(dir, { recursive: true, force: true });
    return { events, stats };
  }

  it("hands Python the next batch before handling this one's answer, and handles the answers in order", async () => {
    const { events, stats } = await run(false);
    expect(events).toEqual(['ask 0,1 prefetch 2', 'ask 2,3 prefetch 1', 'result', 'result', 'ask 4 prefetch 0', 'result', 'result', 'result']);
    expect(stats.processed).toBe(5);
    expect(stats.predicted).toBe(5);
    // results.json's timing: Python's stages summed over the batches; Node's own CPU over the loop.
    expect(stats.preprocessSeconds).toBeCloseTo(0.005, 9);
    expect(stats.forwardSeconds).toBeCloseTo(0.01, 9);
    expect(stats.pythonCpuSeconds).toBeCloseTo(0.015, 9);
    expect(stats.nodeCpuSeconds).toBeGreaterThan(0);
    expect(stats.loopSeconds).toBeGreaterThan(0);
  });

  it("INFERENCE_PRECISION=bf16: the first batch's comparison with float32 is kept for results.json and logged once", async () => {
    const lines: string[] = [];
    const { stats } = await run(false, true, lines);
    expect(stats.precisionCheck).toEqual(check(0.5));
    expect(lines.filter((l) => l.includes('INFERENCE_PRECISION=bf16'))).toEqual([
      expect.stringContaining('against pytorch float32 on the first 2 image(s): top-1 class agree for 50.0%, largest confidence difference 0.0030'),
    ]);
    expect(describePrecisionCheck({ ...check(0), agreement: null, max_score_difference: null, error: 'RuntimeError: no' })).toMatch(
      /comparison with float32 on the first batch failed \(RuntimeError: no\); the predictions stand/,
    );
  });

  it('one batch without a stage timing makes the sum unknown (null), not a partial figure', async () => {
    const { stats } = await run(false, false);
    expect(stats.forwardSeconds).toBeNull();
    expect(stats.preprocessSeconds).toBeCloseTo(0.005, 9);
  });

  it('after a stop, nothing more is handed over and the batch in flight is waited for', async () => {
    const { events, stats } = await run(true);
    expect(events).toEqual(['ask 0,1 prefetch 2', 'ask 2,3 prefetch 1', 'result', 'result']);
    expect(stats.processed).toBe(2);
  });
});
