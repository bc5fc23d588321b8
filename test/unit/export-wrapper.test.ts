/**
 * The Node deployment wrapper's own arithmetic (runtime/node/model_wrapper.ts), without a model:
 * PNG decoding, letterbox and crop geometry, NMS, detection decoding, masks, RLE, top-k. The
 * integration tests run it on real exported models against the Python and C++ wrappers.
 */
import { deflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  classMap,
  ModelWrapper,
  decodePng,
  maskToRle,
  nms,
  preprocess,
  resizeImage,
  selectDetections,
  type PreprocessingSpec,
  type Tensor,
  type WrapperMetadata,
} from '../../runtime/node/model_wrapper.js';
import { encodePng, pngChunk } from '../helpers/synthetic.js';

/** A PNG with every row written with a different filter (0-4), so decoding must undo each. */
function filteredPng(width: number, height: number, depth: number, colour: number, rows: Buffer[], palette?: Buffer): Buffer {
  const channels = ({ 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 } as Record<number, number>)[colour]!;
  const bpp = Math.max(1, (channels * depth) >> 3);
  const out: Buffer[] = [];
  let prev: Buffer = Buffer.alloc(rows[0]!.length);
  rows.forEach((row, y) => {
    const filter = y % 5;
    const f = Buffer.alloc(row.length);
    for (let i = 0; i < row.length; i++) {
      const a = i >= bpp ? row[i - bpp]! : 0;
      const b = prev[i]!;
      const c = i >= bpp ? prev[i - bpp]! : 0;
      const p = a + b - c;
      const paeth = Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c) ? a : Math.abs(p - b) <= Math.abs(p - c) ? b : c;
      const pred = [0, a, b, (a + b) >> 1, paeth][filter]!;
      f[i] = (row[i]! - pred) & 0xff;
    }
    out.push(Buffer.from([filter]), f);
    prev = row;
  });
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = depth;
  header[9] = colour;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', header),
    ...(palette ? [pngChunk('PLTE', palette)] : []),
    pngChunk('IDAT', deflateSync(Buffer.concat(out))),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

const LETTERBOX: PreprocessingSpec = {
  resize: { method: 'letterbox', size: [32, 32], fill_value: 114, interpolation: 'bilinear' },
  normalize: { method: 'divide', mean: [0, 0, 0], std: [255, 255, 255] },
  channel_order: 'RGB',
  layout: 'NCHW',
};

describe('PNG decoding', () => {
  it('reads 8-bit RGB and grey images exactly', () => {
    const rgb = Uint8Array.from({ length: 5 * 3 * 3 }, (_, i) => (i * 37) % 256);
    expect(decodePng(encodePng(5, 3, rgb, 3))).toEqual({ data: rgb, width: 5, height: 3 });
    const grey = Uint8Array.from({ length: 4 * 2 }, (_, i) => i * 30);
    const decoded = decodePng(encodePng(4, 2, grey, 1));
    expect(Array.from(decoded.data)).toEqual(Array.from(grey).flatMap((g) => [g, g, g]));
  });

  it('undoes every row filter; reads RGBA (alpha dropped), 16-bit (high byte) and palette images', () => {
    const w = 6;
    const h = 5;
    const rgba = Array.from({ length: h }, (_, y) => Buffer.from(Array.from({ length: w * 4 }, (_, i) => (y * 50 + i * 11) % 256)));
    const a = decodePng(filteredPng(w, h, 8, 6, rgba));
    expect(a.data[(2 * w + 3) * 3 + 1]).toBe(rgba[2]![3 * 4 + 1]);
    expect(Array.from(a.data.subarray(0, 3))).toEqual([rgba[0]![0], rgba[0]![1], rgba[0]![2]]);

    const sixteen = Array.from({ length: h }, (_, y) => Buffer.from(Array.from({ length: w * 6 }, (_, i) => (y * 7 + i * 13) % 256)));
    const b = decodePng(filteredPng(w, h, 16, 2, sixteen));
    expect(b.data[(4 * w + 5) * 3 + 2]).toBe(sixteen[4]![5 * 6 + 4]);

    const palette = Buffer.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9]);
    const indices = Array.from({ length: h }, (_, y) => Buffer.from([((y & 3) << 6) | (1 << 4) | (2 << 2) | 3, 0x1b])); // 2-bit: 6 pixels in 2 bytes
    const c = decodePng(filteredPng(w, h, 2, 3, indices, palette));
    expect(Array.from(c.data.subarray(0, 3))).toEqual([255, 0, 0]);
    expect(Array.from(c.data.subarray(3, 6))).toEqual([0, 255, 0]);
    expect(Array.from(c.data.subarray(1 * w * 3, 1 * w * 3 + 3))).toEqual([0, 255, 0]);
  });

  it('refuses interlaced files with what to do', () => {
    const png = encodePng(2, 2, new Uint8Array(12), 3);
    png[8 + 8 + 12] = 1; // IHDR interlace byte (the CRC is not checked by the reader)
    expect(() => decodePng(png)).toThrow(/interlaced PNG: decode it with sharp/);
  });
});

describe('pre-processing', () => {
  it('letterboxes a wide image: scale by the long side, centred, grey padding, 0..1 values', () => {
    const image = { data: new Uint8Array(64 * 32 * 3).fill(255), width: 64, height: 32 };
    const { tensor, transform } = preprocess(image, LETTERBOX);
    expect(tensor.dims).toEqual([1, 3, 32, 32]);
    expect(transform).toEqual({ scaleX: 0.5, scaleY: 0.5, padLeft: 0, padTop: 8, width: 64, height: 32 });
    expect(tensor.data[0]).toBeCloseTo(114 / 255, 6); // top padding row
    expect(tensor.data[16 * 32 + 16]).toBe(1); // image content
    expect(tensor.data[31 * 32]).toBeCloseTo(114 / 255, 6); // bottom padding row
  });

  it('centre-crops after resizing the shorter side, and standardises', () => {
    const image = { data: new Uint8Array(40 * 20 * 3).fill(128), width: 40, height: 20 };
    const spec: PreprocessingSpec = {
      resize: { method: 'resize_shorter_center_crop', size: [16, 16], crop_pct: 1, interpolation: 'bilinear' },
      normalize: { method: 'standardize', mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] },
      channel_order: 'RGB',
      layout: 'NCHW',
    };
    const { tensor, transform } = preprocess(image, spec);
    expect(transform.scaleX).toBeCloseTo(16 / 20);
    expect(transform.padLeft).toBe(-8); // the 32-wide resize loses 8 columns on each side
    expect(tensor.data[0]).toBeCloseTo((128 / 255 - 0.5) / 0.25, 5);
  });

  it('feeds the resized pixels themselves, NHWC, to a model that normalises in its graph (embedded preprocessing)', () => {
    const image = { data: new Uint8Array(64 * 32 * 3).fill(255), width: 64, height: 32 };
    const { tensor } = preprocess(image, { ...LETTERBOX, layout: 'NHWC', data_type: 'uint8', embedded: true });
    expect(tensor.dims).toEqual([1, 32, 32, 3]);
    expect(Array.from(tensor.data.subarray(0, 3))).toEqual([114, 114, 114]); // top padding row, not divided
    expect(Array.from(tensor.data.subarray((16 * 32 + 16) * 3, (16 * 32 + 16) * 3 + 3))).toEqual([255, 255, 255]);
  });

  it('keeps pixel values when the size does not change, and interpolates between neighbours', () => {
    const image = { data: Uint8Array.from([0, 0, 0, 200, 200, 200]), width: 2, height: 1 };
    expect(resizeImage(image, 2, 1)).toBe(image);
    const up = resizeImage(image, 4, 1);
    expect(Array.from(up.data.filter((_, i) => i % 3 === 0))).toEqual([0, 50, 150, 200]);
  });
});

describe('post-processing', () => {
  it('NMS keeps the best box of an overlapping pair and ties in input order', () => {
    const boxes = Float32Array.from([0, 0, 10, 10, 1, 1, 11, 11, 20, 20, 30, 30, 0, 0, 10, 10]);
    expect(nms(boxes, Float32Array.from([0.5, 0.9, 0.8, 0.9]), 0.5)).toEqual([1, 2]);
    expect(nms(boxes, Float32Array.from([0.9, 0.9, 0.8, 0.9]), 0.5)).toEqual([0, 2]);
  });

  it('decodes [1, 4 + classes, anchors] into class-aware, thresholded boxes', () => {
    // 3 anchors, 2 classes: two overlapping boxes of different classes both survive.
    const anchors = 3;
    const rows = [
      [10, 11, 50], // cx
      [10, 11, 50], // cy
      [8, 8, 4], // w
      [8, 8, 4], // h
      [0.9, 0.1, 0.2], // class 0
      [0.1, 0.8, 0.1], // class 1
    ];
    const pred: Tensor = { data: Float32Array.from(rows.flat()), dims: [1, rows.length, anchors] };
    const det = selectDetections(pred, 2, 0.25, 0.45, 300);
    expect(Array.from(det.scores)).toEqual([Math.fround(0.9), Math.fround(0.8)]);
    expect(Array.from(det.classes)).toEqual([0, 1]);
    expect(Array.from(det.boxes.subarray(0, 4))).toEqual([6, 6, 14, 14]);
  });

  it('maps boxes and keypoints back through the letterbox and cuts masks to their box', () => {
    const metadata: WrapperMetadata = {
      export_format: 'onnx',
      task_type: 'instance_segmentation',
      model: { file: 'model.onnx', class_names: ['a'] },
      preprocessing: LETTERBOX,
      postprocessing: { nms: { iou_threshold: 0.45, confidence_threshold: 0.25, max_detections: 10 }, mask_threshold: 0.5 },
    };
    const wrapper = new ModelWrapper(metadata);
    // One anchor: box centred at (16, 16) of size 8 in the 32x32 input; one mask coefficient.
    const output0: Tensor = { data: Float32Array.from([16, 16, 8, 8, 0.9, 1]), dims: [1, 6, 1] };
    const protos: Tensor = { data: new Float32Array(8 * 8).fill(5), dims: [1, 1, 8, 8] };
    const transform = { scaleX: 0.5, scaleY: 0.5, padLeft: 0, padTop: 8, width: 64, height: 32 };
    const [p] = wrapper.postprocess([output0, protos], transform);
    expect(p!.bbox).toEqual([24, 8, 40, 24]);
    const mask = p!.mask!;
    const inside = (x: number, y: number) => mask[y * 64 + x];
    expect(inside(30, 15)).toBe(1);
    expect(inside(23, 15)).toBe(0); // left of the box
    expect(inside(30, 24)).toBe(0); // below the box
    expect(mask.reduce((a, b) => a + b, 0)).toBe(16 * 16);
  });

  it('with NMS in the model, only filters its rows (score above the threshold, at most max_detections) and maps dataset class ids back', () => {
    const metadata: WrapperMetadata = {
      export_format: 'onnx',
      task_type: 'object_detection',
      model: { file: 'model.onnx', class_names: ['a', 'b'], class_ids: [7, 3] },
      preprocessing: LETTERBOX,
      postprocessing: { nms: { iou_threshold: 0.45, confidence_threshold: 0.25, max_detections: 10 }, embedded: true },
    };
    const wrapper = new ModelWrapper(metadata);
    // Rows: x1, y1, x2, y2, score, dataset class id; two overlapping boxes stay (the model's NMS kept them), the zero row goes.
    const rows = [
      [0, 8, 16, 24, 0.9, 3],
      [1, 9, 17, 25, 0.6, 7],
      [4, 10, 8, 12, 0.1, 7],
      [0, 0, 0, 0, 0, 0],
    ];
    const output0: Tensor = { data: Float32Array.from(rows.flat()), dims: [1, rows.length, 6] };
    const transform = { scaleX: 0.5, scaleY: 0.5, padLeft: 0, padTop: 8, width: 64, height: 32 };
    const predictions = wrapper.postprocess([output0], transform);
    expect(predictions.map((p) => [p.class_id, p.class_name, p.confidence])).toEqual([
      [3, 'b', Math.fround(0.9)],
      [7, 'a', Math.fround(0.6)],
    ]);
    expect(predictions[0]!.bbox).toEqual([0, 0, 32, 32]);
    expect(wrapper.postprocess([output0], transform, { confidence: 0.05, maxDetections: 1 })).toHaveLength(1);
  });

  it('turns logits into softmax top-k', () => {
    const wrapper = new ModelWrapper({
      export_format: 'onnx',
      task_type: 'image_classification',
      model: { file: 'model.onnx', class_names: ['a', 'b', 'c'] },
      preprocessing: LETTERBOX,
      postprocessing: { softmax: { apply: true, temperature: 1 }, top_k: 2 },
    });
    const top = wrapper.postprocess([{ data: Float32Array.from([1, 3, 2]), dims: [1, 3] }], {
      scaleX: 1,
      scaleY: 1,
      padLeft: 0,
      padTop: 0,
      width: 1,
      height: 1,
    });
    expect(top.map((p) => p.class_name)).toEqual(['b', 'c']);
    const e = [Math.E, Math.E ** 3, Math.E ** 2];
    expect(top[0]!.confidence).toBeCloseTo(e[1]! / (e[0]! + e[1]! + e[2]!), 6);
  });

  it('encodes masks as COCO RLE: column-major runs starting with zeros', () => {
    // 2 rows x 3 columns: [[0, 1, 1], [0, 1, 0]] -> column-major 0,0,1,1,1,0
    expect(maskToRle(Uint8Array.from([0, 1, 1, 0, 1, 0]), 3, 2)).toEqual({ size: [2, 3], counts: [2, 3, 1] });
    expect(maskToRle(Uint8Array.from([1, 1]), 1, 2)).toEqual({ size: [2, 1], counts: [0, 2] });
  });
});

describe('semantic segmentation post-processing', () => {
  it('takes the argmax per input pixel (the first of equal scores) and samples it at each image pixel centre', () => {
    // 2 classes on a 2x2 input: class 1 wins top-left and bottom-right, a tie (class 0) top-right.
    const logits = { data: Float32Array.from([0, 5, 1, 0, /* class 1: */ 1, 5, 0, 2]), dims: [1, 2, 2, 2] };
    // A 4x2 image squashed to 2x2: scaleX 0.5, scaleY 1.
    const map = classMap(logits, { scaleX: 0.5, scaleY: 1, padLeft: 0, padTop: 0, width: 4, height: 2 });
    expect([...map]).toEqual([1, 1, 0, 0, 0, 0, 1, 1]);
  });
});
