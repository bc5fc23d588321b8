/**
 * Test-run metrics on constructed cases with known answers, through the real bridge into
 * python/vision_trainer/common/infer_metrics.py (ultralytics' validators and metric classes, and
 * scikit-learn for classification).
 *
 * ultralytics' AP is the area under the precision envelope sampled at 101 recall points
 * (0, 0.01, ..., 1) by the trapezoid rule, with the curve closed at precision 0 at recall 1.
 * So even a perfect class scores 1 - 0.01 / 2 = 0.995 (the last interval falls from 1 to 0).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PythonBridge } from '../../src/bridge/python.js';
import { EVALUATE, openTestBridge } from '../helpers/bridge-fixtures.js';

type Box = [number, number, number, number];
interface DetImage {
  key?: string;
  width: number;
  height: number;
  ground_truth: { boxes: Box[]; classes: number[]; segmentations?: number[][][]; keypoints?: number[][][] };
  predictions: { boxes: Box[]; confidences: number[]; classes: number[]; segmentations?: number[][][]; keypoints?: number[][][] };
}
interface Summary {
  overall_metrics: Record<string, number | null>;
  per_class_metrics: Array<Record<string, number | string | null>>;
  confusion_matrix: number[][];
  confusion_matrix_labels: string[];
  pr_curves: Record<string, { precision: number[]; recall: number[] }>;
}
interface DetEvaluation {
  matched: Array<{ prediction: number; ground_truth: number; class_id: number; iou: number }>;
  wrong_class: Array<{ prediction: number; ground_truth: number; predicted_class_id: number; true_class_id: number; iou: number }>;
  missed: Array<{ ground_truth: number; class_id: number }>;
  false_positives: Array<{ prediction: number; class_id: number; confidence: number }>;
}

const PERFECT_AP = 1 - 0.01 / 2;
const AB = { 0: 'a', 1: 'b' };

let bridge: PythonBridge;

beforeAll(async () => {
  bridge = await openTestBridge({
    env: { YOLO_OFFLINE: 'true', YOLO_AUTOINSTALL: 'false', YOLO_CONFIG_DIR: mkdtempSync(join(tmpdir(), 'vt-metrics-yolo-')) },
  });
});
afterAll(async () => {
  await bridge?.close();
});

async function evaluate<E = DetEvaluation>(
  task: string,
  names: Record<number, string>,
  images: unknown[],
  options: Record<string, unknown> = {},
): Promise<{ summary: Summary; images: E[] }> {
  return bridge.call(EVALUATE, { task, names: Object.fromEntries(Object.entries(names)), images, options });
}

const perClass = (s: Summary, name: string) => s.per_class_metrics.find((r) => r.class_name === name)!;

describe('detection metrics (ultralytics DetMetrics / ConfusionMatrix)', () => {
  it('perfect predictions: precision and recall 1, AP 0.995 at every IoU, everything matched', async () => {
    const images: DetImage[] = [
      {
        width: 100,
        height: 100,
        ground_truth: {
          boxes: [
            [10, 10, 40, 40],
            [50, 50, 90, 90],
          ],
          classes: [0, 1],
        },
        predictions: {
          boxes: [
            [10, 10, 40, 40],
            [50, 50, 90, 90],
          ],
          confidences: [0.9, 0.8],
          classes: [0, 1],
        },
      },
      {
        width: 100,
        height: 100,
        ground_truth: { boxes: [[5, 5, 25, 25]], classes: [0] },
        predictions: { boxes: [[5, 5, 25, 25]], confidences: [0.7], classes: [0] },
      },
    ];
    const { summary, images: per } = await evaluate('detect', AB, images);
    expect(summary.overall_metrics.precision).toBeCloseTo(1, 6);
    expect(summary.overall_metrics.recall).toBeCloseTo(1, 6);
    expect(summary.overall_metrics.mAP50).toBeCloseTo(PERFECT_AP, 6);
    expect(summary.overall_metrics['mAP50-95']).toBeCloseTo(PERFECT_AP, 6);
    expect(perClass(summary, 'a')).toMatchObject({ support: 2 });
    expect(perClass(summary, 'b')).toMatchObject({ support: 1 });
    expect(summary.confusion_matrix).toEqual([
      [2, 0, 0],
      [0, 1, 0],
      [0, 0, 0],
    ]);
    expect(summary.confusion_matrix_labels).toEqual(['a', 'b', 'background']);
    expect(per[0]).toEqual({
      matched: [
        { prediction: 0, ground_truth: 0, class_id: 0, iou: 1 },
        { prediction: 1, ground_truth: 1, class_id: 1, iou: 1 },
      ],
      wrong_class: [],
      missed: [],
      false_positives: [],
      precision: 1,
      recall: 1,
      mean_iou: 1,
    });
    for (const curve of Object.values(summary.pr_curves)) {
      expect(curve.precision.length).toBeLessThanOrEqual(101);
      expect(curve.recall).toHaveLength(curve.precision.length);
    }
  });

  it('one missed object: recall halves, its class scores AP 0, the image lists it as missed', async () => {
    const images: DetImage[] = [
      {
        width: 100,
        height: 100,
        ground_truth: {
          boxes: [
            [10, 10, 40, 40],
            [50, 50, 90, 90],
          ],
          classes: [0, 1],
        },
        predictions: { boxes: [[10, 10, 40, 40]], confidences: [0.9], classes: [0] },
      },
    ];
    const { summary, images: per } = await evaluate('detect', AB, images);
    expect(perClass(summary, 'a').ap50).toBeCloseTo(PERFECT_AP, 6);
    expect(perClass(summary, 'b').ap50).toBe(0);
    expect(perClass(summary, 'b').recall).toBe(0);
    expect(summary.overall_metrics.mAP50).toBeCloseTo(PERFECT_AP / 2, 6);
    expect(summary.overall_metrics.recall).toBeCloseTo(0.5, 6);
    expect(per[0]!.missed).toEqual([{ ground_truth: 1, class_id: 1 }]);
    expect(per[0]!.matched).toHaveLength(1);
    // Row b (true), column background: the miss.
    expect(summary.confusion_matrix[1]).toEqual([0, 0, 1]);
  });

  it('one wrong class: no AP for either class, the image lists the confusion, the matrix counts true a as b', async () => {
    const images: DetImage[] = [
      {
        width: 100,
        height: 100,
        ground_truth: { boxes: [[10, 10, 40, 40]], classes: [0] },
        predictions: { boxes: [[10, 10, 40, 40]], confidences: [0.9], classes: [1] },
      },
    ];
    const { summary, images: per } = await evaluate('detect', AB, images);
    expect(summary.overall_metrics.mAP50).toBe(0);
    expect(summary.overall_metrics['mAP50-95']).toBe(0);
    expect(per[0]).toEqual({
      matched: [],
      wrong_class: [{ prediction: 0, ground_truth: 0, predicted_class_id: 1, true_class_id: 0, iou: 1 }],
      missed: [],
      false_positives: [],
      precision: 0,
      recall: 0,
      mean_iou: null,
    });
    expect(summary.confusion_matrix).toEqual([
      [0, 1, 0],
      [0, 0, 0],
      [0, 0, 0],
    ]);
  });

  it('a crafted ranking whose AP is worked out by hand: 0.83', async () => {
    // Three objects; four detections by falling confidence: hit, false alarm, hit, hit.
    // (recall, precision) after each: (1/3, 1), (1/3, 1/2), (2/3, 2/3), (1, 3/4).
    // Precision envelope: 1 up to recall 1/3, then 3/4 up to recall 1, closed at 0 on recall 1.
    // Sampled at r = 0, 0.01, ..., 1: 1 for r <= 0.33 (34 points), 0.75 for 0.34..0.99, 0 at 1.
    // Trapezoids of width 0.01: 33 of height 1, one from 1 to 0.75, 65 of 0.75, one from 0.75 to 0.
    const byHand = 0.01 * (33 * 1 + (1 + 0.75) / 2 + 65 * 0.75 + (0.75 + 0) / 2);
    expect(byHand).toBeCloseTo(0.83, 10);
    const images: DetImage[] = [
      {
        width: 200,
        height: 100,
        ground_truth: {
          boxes: [
            [0, 0, 20, 20],
            [50, 0, 70, 20],
            [100, 0, 120, 20],
          ],
          classes: [0, 0, 0],
        },
        predictions: {
          boxes: [
            [0, 0, 20, 20],
            [150, 50, 170, 70],
            [50, 0, 70, 20],
            [100, 0, 120, 20],
          ],
          confidences: [0.9, 0.8, 0.7, 0.6],
          classes: [0, 0, 0, 0],
        },
      },
    ];
    const { summary, images: per } = await evaluate('detect', { 0: 'a' }, images);
    expect(summary.overall_metrics.mAP50).toBeCloseTo(byHand, 6);
    expect(summary.overall_metrics['mAP50-95']).toBeCloseTo(byHand, 6); // exact boxes: a hit at every IoU
    expect(per[0]!.false_positives).toEqual([{ prediction: 1, class_id: 0, confidence: expect.closeTo(0.8, 6) }]);
  });

  it('mAP50-95 averages the ten IoU thresholds: a box with IoU 0.72 counts at 0.50-0.70 only', async () => {
    // IoU of [0,0,100,72] with [0,0,100,100] is 7200 / 10000 = 0.72: a hit at 0.50, 0.55, 0.60, 0.65, 0.70.
    const images: DetImage[] = [
      {
        width: 100,
        height: 100,
        ground_truth: { boxes: [[0, 0, 100, 100]], classes: [0] },
        predictions: { boxes: [[0, 0, 100, 72]], confidences: [0.9], classes: [0] },
      },
    ];
    const { summary, images: per } = await evaluate('detect', { 0: 'a' }, images);
    expect(summary.overall_metrics.mAP50).toBeCloseTo(PERFECT_AP, 6);
    expect(summary.overall_metrics['mAP50-95']).toBeCloseTo((5 * PERFECT_AP) / 10, 6);
    expect(per[0]!.matched[0]!.iou).toBeCloseTo(0.72, 5);
  });

  it('the per-image lists add up to the confusion matrix, below-threshold detections count for mAP only', async () => {
    const images: DetImage[] = [
      // a found, b taken for a, a missed, a false alarm, a detection below the threshold
      {
        key: 'x',
        width: 100,
        height: 100,
        ground_truth: {
          boxes: [
            [0, 0, 20, 20],
            [30, 30, 50, 50],
            [60, 60, 80, 80],
          ],
          classes: [0, 1, 0],
        },
        predictions: {
          boxes: [
            [0, 0, 20, 21],
            [30, 30, 50, 50],
            [80, 0, 99, 10],
            [60, 60, 80, 80],
          ],
          confidences: [0.9, 0.8, 0.6, 0.1],
          classes: [0, 0, 1, 0],
        },
      },
      // a background image with one false alarm
      {
        key: 'y',
        width: 100,
        height: 100,
        ground_truth: { boxes: [], classes: [] },
        predictions: { boxes: [[10, 10, 30, 30]], confidences: [0.95], classes: [1] },
      },
    ];
    const { summary, images: per } = await evaluate('detect', AB, images, { conf_threshold: 0.25 });
    const expected = [
      [0, 0, 0],
      [0, 0, 0],
      [0, 0, 0],
    ];
    const background = 2;
    for (const image of per) {
      for (const m of image.matched) expected[m.class_id]![m.class_id]!++;
      for (const w of image.wrong_class) expected[w.true_class_id]![w.predicted_class_id]!++;
      for (const m of image.missed) expected[m.class_id]![background]!++;
      for (const f of image.false_positives) expected[background]![f.class_id]!++;
    }
    expect(summary.confusion_matrix).toEqual(expected);
    expect(per[0]).toMatchObject({
      matched: [{ class_id: 0 }],
      wrong_class: [{ true_class_id: 1, predicted_class_id: 0 }],
      missed: [{ ground_truth: 2 }],
      false_positives: [{ class_id: 1 }],
    });
    // The 0.1 detection of the missed object is below the threshold for the lists, not for AP:
    // class a has 2 objects, hits ranked 1st and 3rd (after the wrong-class a at 0.8).
    expect(perClass(summary, 'a').ap50).toBeGreaterThan(0.5);
  });
});

describe('segmentation and pose metrics (mask IoU, keypoint OKS)', () => {
  const square = [10, 10, 50, 10, 50, 50, 10, 50];
  it('masks: a perfect outline scores like a perfect box; a wrong outline in the right box scores mask AP 0', async () => {
    const gt = { boxes: [[10, 10, 50, 50] as Box], classes: [0], segmentations: [[square]] };
    const good = await evaluate('segment', { 0: 'a' }, [
      { width: 64, height: 64, ground_truth: gt, predictions: { boxes: [[10, 10, 50, 50]], confidences: [0.9], classes: [0], segmentations: [[square]] } },
    ]);
    expect(good.summary.overall_metrics.mAP50).toBeCloseTo(PERFECT_AP, 6); // the mask metric is the primary one
    expect(good.summary.overall_metrics.box_mAP50).toBeCloseTo(PERFECT_AP, 6);
    const strip = [10, 10, 50, 10, 50, 14, 10, 14]; // 4 px of the 40 px square: mask IoU 0.1
    const bad = await evaluate('segment', { 0: 'a' }, [
      { width: 64, height: 64, ground_truth: gt, predictions: { boxes: [[10, 10, 50, 50]], confidences: [0.9], classes: [0], segmentations: [[strip]] } },
    ]);
    expect(bad.summary.overall_metrics.mAP50).toBe(0);
    expect(bad.summary.overall_metrics.box_mAP50).toBeCloseTo(PERFECT_AP, 6);
  });

  it('keypoints: exact points score AP 0.995; points 30 px off score 0 while the box still counts', async () => {
    const keypoints = [
      [
        [20, 20, 2],
        [30, 30, 2],
        [40, 40, 2],
      ],
    ];
    const gt = { boxes: [[10, 10, 50, 50] as Box], classes: [0], keypoints };
    // One 64 px image holding the ground truth above and one predicted person with these points.
    const posed = (points: number[][]) =>
      evaluate(
        'pose',
        { 0: 'person' },
        [
          {
            width: 64,
            height: 64,
            ground_truth: gt,
            predictions: { boxes: [[10, 10, 50, 50]], confidences: [0.9], classes: [0], keypoints: [points.map(([x, y]) => [x!, y!, 0.9])] },
          },
        ],
        { kpt_shape: [3, 3] },
      );
    const exact = await posed([
      [20, 20],
      [30, 30],
      [40, 40],
    ]);
    expect(exact.summary.overall_metrics.mAP50).toBeCloseTo(PERFECT_AP, 6);
    const off = await posed([
      [50, 50],
      [60, 60],
      [5, 5],
    ]);
    expect(off.summary.overall_metrics.mAP50).toBe(0);
    expect(off.summary.overall_metrics.box_mAP50).toBeCloseTo(PERFECT_AP, 6);
  });
});

describe('classification metrics (scikit-learn)', () => {
  it('accuracy, top-5, per-class precision/recall/F1/support and the confusion matrix, worked out by hand', async () => {
    const names = { 0: 'a', 1: 'b', 2: 'c', 3: 'd', 4: 'e', 5: 'f' };
    const rest = (first: number[]) => [...first, ...[0, 1, 2, 3, 4, 5].filter((c) => !first.includes(c))];
    const images = [
      { true_class: 0, ranked_classes: rest([0]) }, // right
      { true_class: 0, ranked_classes: rest([1, 0]) }, // a taken for b, in the top 5
      { true_class: 1, ranked_classes: rest([1]) }, // right
      { true_class: 2, ranked_classes: [1, 3, 4, 5, 0, 2] }, // c taken for b, c ranked 6th: a top-5 miss
    ];
    const { summary, images: per } = await evaluate<{ correct: boolean; top5_correct: boolean }>('classify', names, images);
    expect(summary.overall_metrics.accuracy).toBe(0.5);
    expect(summary.overall_metrics.top5_accuracy).toBe(0.75);
    expect(per.map((p) => [p.correct, p.top5_correct])).toEqual([
      [true, true],
      [false, true],
      [true, true],
      [false, false],
    ]);
    // a: predicted once (right), 2 true -> P 1, R 1/2, F1 2/3. b: predicted 3 times, 1 right -> P 1/3, R 1, F1 1/2.
    // c: never predicted -> P undefined (null), R 0. d-f: no support, never predicted.
    expect(perClass(summary, 'a')).toMatchObject({ precision: 1, recall: 0.5, support: 2 });
    expect(perClass(summary, 'a').f1).toBeCloseTo(2 / 3, 10);
    expect(perClass(summary, 'b').precision).toBeCloseTo(1 / 3, 10);
    expect(perClass(summary, 'b')).toMatchObject({ recall: 1, f1: 0.5, support: 1 });
    expect(perClass(summary, 'c')).toMatchObject({ precision: null, recall: 0, support: 1 });
    expect(perClass(summary, 'd')).toMatchObject({ precision: null, recall: null, support: 0 });
    // Macro averages over the classes in the test set, skipping undefined values: recall (1/2 + 1 + 0) / 3.
    expect(summary.overall_metrics.recall).toBeCloseTo(0.5, 10);
    expect(summary.overall_metrics.precision).toBeCloseTo((1 + 1 / 3) / 2, 10);
    // Rows are true classes.
    expect(summary.confusion_matrix.slice(0, 3).map((row) => row.slice(0, 3))).toEqual([
      [1, 1, 0],
      [0, 1, 0],
      [0, 1, 0],
    ]);
  });
});
