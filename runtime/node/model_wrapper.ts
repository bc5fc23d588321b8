/**
 * Runs an exported ONNX vision model with onnxruntime-node and the pre- and post-processing its
 * metadata.json describes:
 *
 *   object_detection       letterbox -> model -> confidence filter + class-aware NMS -> boxes
 *   instance_segmentation  as detection, plus a mask per box from the prototype masks
 *   pose_estimation        as detection, plus keypoints [x, y, confidence] per box
 *   image_classification   resize/crop + normalise -> model -> softmax (for logits) -> top-k
 *   zero_shot_classification  as classification (the class prompts are baked into the model)
 *   semantic_segmentation  resize + normalise -> model -> argmax over classes per pixel -> the class
 *                          map at the image's size (nearest neighbour); one mask per class present
 *
 * The arithmetic (rounding, padding, NMS order) is the Python and C++ wrappers', so the three give
 * the same predictions. Boxes are [x1, y1, x2, y2] in pixels of the original image.
 *
 *   const model = await ModelWrapper.create('model.onnx', 'metadata.json');
 *   const predictions = await model.predict('photo.png');
 *
 * PNG files are decoded here; other formats (JPEG, WebP, ...) through `sharp` when it is installed,
 * or pass decoded pixels: `model.predict({ data, width, height })` (RGB, 3 bytes per pixel).
 * Only onnxruntime-node is required.
 */
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { inflateSync } from 'node:zlib';
import * as ort from 'onnxruntime-node';

// ---------------------------------------------------------------------------------------------
// What the wrapper reads from metadata.json
// ---------------------------------------------------------------------------------------------

export type Interpolation = 'bilinear' | 'bicubic' | 'nearest';

export interface PreprocessingSpec {
  resize:
    | { method: 'letterbox'; size: [number, number]; fill_value: number; interpolation?: Interpolation }
    | { method: 'resize_shorter_center_crop'; size: [number, number]; crop_pct: number; interpolation?: Interpolation }
    | { method: 'resize'; size: [number, number]; interpolation?: Interpolation };
  /** "divide": (pixel - mean) / std in 0..255 units; "standardize": pixel / 255, then (x - mean) / std. */
  normalize: { method: 'divide' | 'standardize'; mean: number[]; std: number[] };
  channel_order: 'RGB' | 'BGR';
  layout: 'NCHW' | 'NHWC';
  /** "uint8" with `embedded`: the model normalises itself and takes the resized image's pixels (absent in older packages: float32). */
  data_type?: 'float32' | 'uint8';
  embedded?: boolean;
}

export interface PostprocessingSpec {
  nms?: { iou_threshold: number; confidence_threshold: number; max_detections: number };
  mask_threshold?: number;
  softmax?: { apply: boolean; temperature: number };
  top_k?: number;
  /** "normalized": boxes and keypoints come as fractions of the input size (LiteRT exports). */
  box_units?: 'pixels' | 'normalized';
  /** The model ran it: a detector's outputs are its NMS's kept rows (absent in older packages: false). */
  embedded?: boolean;
}

export interface WrapperMetadata {
  export_format: string;
  task_type: string;
  /** class_ids: the dataset's class id of each output (absent in packages made before they were recorded: the index is the id). */
  model: {
    file: string;
    class_names: string[];
    class_ids?: number[];
    keypoints?: { shape: [number, number] } | null;
    inputs?: { shape: (number | string)[] }[];
  };
  preprocessing: PreprocessingSpec & { included?: boolean };
  postprocessing: PostprocessingSpec & { included?: boolean };
}

// ---------------------------------------------------------------------------------------------
// Images and tensors
// ---------------------------------------------------------------------------------------------

/** Decoded pixels, RGB, 3 bytes per pixel, rows top to bottom. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/** A float32 tensor in row-major order. */
export interface Tensor {
  data: Float32Array;
  dims: number[];
}

/** How input-tensor pixels map back to the original image: x = (x_in - padLeft) / scaleX. */
export interface Transform {
  scaleX: number;
  scaleY: number;
  padLeft: number;
  padTop: number;
  width: number;
  height: number;
}

export interface Prediction {
  /** The dataset's class id (metadata model.class_ids), not the model's output index. */
  class_id: number;
  class_name: string;
  confidence: number;
  /** [x1, y1, x2, y2] in image pixels (detection tasks). */
  bbox?: [number, number, number, number];
  /** Instance segmentation: row-major, 1 inside the object, width x height of the image. */
  mask?: Uint8Array;
  /** Pose: [x, y, confidence] per keypoint (confidence absent for 2-value keypoints). */
  keypoints?: number[][];
}

export interface PostprocessOptions {
  confidence?: number;
  iou?: number;
  maxDetections?: number;
  topK?: number;
}

/** ultralytics' class offset for class-aware NMS: boxes of different classes never overlap. */
const MAX_WH = 7680;
/** At most this many candidates enter NMS (ultralytics' max_nms). */
const MAX_NMS = 30000;

export const roundHalfUp = (v: number): number => Math.floor(v + 0.5);

const at = (a: ArrayLike<number>, i: number): number => a[i] as number;

// ---------------------------------------------------------------------------------------------
// PNG decoding (the formats cv2.imread reads: 1-16 bit grey, palette, RGB, with or without alpha)
// ---------------------------------------------------------------------------------------------

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export function decodePng(file: Buffer): RgbImage {
  if (!file.subarray(0, 8).equals(PNG_SIGNATURE)) throw new Error('not a PNG file');
  let pos = 8;
  let width = 0;
  let height = 0;
  let depth = 0;
  let colour = 0;
  let interlace = 0;
  let palette: Buffer | undefined;
  const idat: Buffer[] = [];
  while (pos + 8 <= file.length) {
    const length = file.readUInt32BE(pos);
    const type = file.toString('ascii', pos + 4, pos + 8);
    const body = file.subarray(pos + 8, pos + 8 + length);
    if (type === 'IHDR') {
      width = body.readUInt32BE(0);
      height = body.readUInt32BE(4);
      depth = body[8] as number;
      colour = body[9] as number;
      interlace = body[12] as number;
    } else if (type === 'PLTE') palette = body;
    else if (type === 'IDAT') idat.push(body);
    else if (type === 'IEND') break;
    pos += 12 + length;
  }
  if (interlace !== 0) throw new Error('interlaced PNG: decode it with sharp (npm install sharp) or pass RGB pixels');
  const channels = ({ 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 } as Record<number, number>)[colour];
  if (!channels || !width || !height) throw new Error(`unsupported PNG (colour type ${colour})`);
  const bitsPerPixel = channels * depth;
  const stride = Math.ceil((width * bitsPerPixel) / 8);
  const bpp = Math.max(1, bitsPerPixel >> 3);
  const raw = inflateSync(Buffer.concat(idat));
  const lines = Buffer.alloc(stride * height);
  let prev = Buffer.alloc(stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)] as number;
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const line = lines.subarray(y * stride, (y + 1) * stride);
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? (line[i - bpp] as number) : 0;
      const b = prev[i] as number;
      const c = i >= bpp ? (prev[i - bpp] as number) : 0;
      let v = src[i] as number;
      if (filter === 1) v += a;
      else if (filter === 2) v += b;
      else if (filter === 3) v += (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      line[i] = v & 0xff;
    }
    prev = line;
  }
  const out = new Uint8Array(width * height * 3);
  const sample = (line: Buffer, index: number): number => {
    if (depth === 8) return line[index] as number;
    if (depth === 16) return line[index * 2] as number; // the high byte, as OpenCV's 8-bit read
    const perByte = 8 / depth;
    const shift = 8 - depth * ((index % perByte) + 1);
    return ((line[Math.floor(index / perByte)] as number) >> shift) & ((1 << depth) - 1);
  };
  const scale = colour === 3 ? 1 : depth < 8 ? 255 / ((1 << depth) - 1) : 1;
  for (let y = 0; y < height; y++) {
    const line = lines.subarray(y * stride, (y + 1) * stride);
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      if (colour === 3) {
        const p = sample(line, x) * 3;
        out[o] = palette?.[p] ?? 0;
        out[o + 1] = palette?.[p + 1] ?? 0;
        out[o + 2] = palette?.[p + 2] ?? 0;
      } else if (colour === 0 || colour === 4) {
        const g = Math.round(sample(line, x * channels) * scale);
        out[o] = g;
        out[o + 1] = g;
        out[o + 2] = g;
      } else {
        out[o] = sample(line, x * channels);
        out[o + 1] = sample(line, x * channels + 1);
        out[o + 2] = sample(line, x * channels + 2);
      }
    }
  }
  return { data: out, width, height };
}

/** Reads an image file: PNG here, anything else through sharp when it is installed. */
export async function loadImage(path: string): Promise<RgbImage> {
  const file = await readFile(path);
  if (file.subarray(0, 8).equals(PNG_SIGNATURE)) return decodePng(file);
  let sharp:
    | ((input: Buffer) => {
        removeAlpha(): {
          toColourspace(s: string): { raw(): { toBuffer(o: { resolveWithObject: true }): Promise<{ data: Buffer; info: { width: number; height: number } }> } };
        };
      })
    | undefined;
  try {
    const name = 'sharp';
    sharp = ((await import(name)) as { default: typeof sharp }).default;
  } catch {
    throw new Error(`${path} is not a PNG; install sharp (npm install sharp) to read other image formats, or pass RGB pixels`);
  }
  const { data, info } = await sharp!(file).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}

// ---------------------------------------------------------------------------------------------
// Resizing with OpenCV's conventions (pixel centres aligned, edge pixels replicated)
// ---------------------------------------------------------------------------------------------

/**
 * Source positions and weights of one axis, as cv::resize computes them. For bilinear, OpenCV
 * moves a horizontal tap that falls off the edge onto the edge pixel with weight 1, but keeps
 * the vertical weights and repeats the edge row instead (different rounding, same value).
 */
function axisTaps(src: number, dst: number, interpolation: Interpolation, axis: 'x' | 'y'): { index: Int32Array; weight: Float64Array; taps: number } {
  const scale = src / dst;
  const taps = interpolation === 'bicubic' ? 4 : interpolation === 'bilinear' ? 2 : 1;
  const index = new Int32Array(dst * taps);
  const weight = new Float64Array(dst * taps);
  const clamp = (i: number) => Math.min(src - 1, Math.max(0, i));
  for (let d = 0; d < dst; d++) {
    if (interpolation === 'nearest') {
      index[d] = clamp(Math.floor(d * scale));
      weight[d] = 1;
      continue;
    }
    // OpenCV computes the source coordinate in single precision.
    const f = Math.fround((d + 0.5) * scale - 0.5);
    const s = Math.floor(f);
    const t = f - s;
    if (interpolation === 'bilinear') {
      const edge = axis === 'x' && (s < 0 || s >= src - 1);
      const lo = axis === 'x' && s < 0 ? 0 : s;
      const frac = edge ? 0 : t;
      index[d * 2] = clamp(lo);
      index[d * 2 + 1] = clamp(lo + 1);
      weight[d * 2] = 1 - frac;
      weight[d * 2 + 1] = frac;
    } else {
      const A = -0.75;
      const w0 = ((A * (t + 1) - 5 * A) * (t + 1) + 8 * A) * (t + 1) - 4 * A;
      const w1 = ((A + 2) * t - (A + 3)) * t * t + 1;
      const w2 = ((A + 2) * (1 - t) - (A + 3)) * (1 - t) * (1 - t) + 1;
      const w3 = 1 - w0 - w1 - w2;
      [w0, w1, w2, w3].forEach((w, k) => {
        index[d * 4 + k] = clamp(s - 1 + k);
        weight[d * 4 + k] = w;
      });
    }
  }
  return { index, weight, taps };
}

/** Resizes 8-bit interleaved pixels (OpenCV's fixed-point rounding for bilinear). */
export function resizeImage(image: RgbImage, width: number, height: number, interpolation: Interpolation = 'bilinear'): RgbImage {
  if (width === image.width && height === image.height) return image;
  const cn = 3;
  const xs = axisTaps(image.width, width, interpolation, 'x');
  const ys = axisTaps(image.height, height, interpolation, 'y');
  const out = new Uint8Array(width * height * cn);
  const src = image.data;
  if (interpolation === 'bilinear') {
    // cv::resize INTER_LINEAR on 8-bit: 11-bit integer weights per axis, rounded at the end.
    const xw = Int32Array.from(xs.weight, (w) => Math.round(w * 2048));
    const yw = Int32Array.from(ys.weight, (w) => Math.round(w * 2048));
    const row = new Int32Array(width * cn * 2);
    for (let y = 0; y < height; y++) {
      for (let k = 0; k < 2; k++) {
        const sy = at(ys.index, y * 2 + k);
        for (let x = 0; x < width; x++) {
          const a = at(xs.index, x * 2) * cn;
          const b = at(xs.index, x * 2 + 1) * cn;
          const wa = at(xw, x * 2);
          const wb = at(xw, x * 2 + 1);
          const base = sy * image.width * cn;
          for (let c = 0; c < cn; c++) row[(k * width + x) * cn + c] = at(src, base + a + c) * wa + at(src, base + b + c) * wb;
        }
      }
      const w0 = at(yw, y * 2);
      const w1 = at(yw, y * 2 + 1);
      for (let i = 0; i < width * cn; i++) {
        // OpenCV's vectorised vertical pass: 16-bit products, two rounding shifts.
        const v = (((w0 * (at(row, i) >> 4)) >> 16) + ((w1 * (at(row, width * cn + i) >> 4)) >> 16) + 2) >> 2;
        out[y * width * cn + i] = v < 0 ? 0 : Math.min(v, 255);
      }
    }
    return { data: out, width, height };
  }
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < cn; c++) {
        let v = 0;
        for (let j = 0; j < ys.taps; j++) {
          const sy = at(ys.index, y * ys.taps + j);
          let acc = 0;
          for (let i = 0; i < xs.taps; i++) acc += at(src, (sy * image.width + at(xs.index, x * xs.taps + i)) * cn + c) * at(xs.weight, x * xs.taps + i);
          v += acc * at(ys.weight, y * ys.taps + j);
        }
        const r = Math.round(v);
        out[(y * width + x) * cn + c] = r < 0 ? 0 : Math.min(r, 255);
      }
    }
  }
  return { data: out, width, height };
}

/** Bilinear resize of a single-channel float map (mask logits), as cv::resize on CV_32F. */
export function resizeFloat(src: Float32Array, srcW: number, srcH: number, dstW: number, dstH: number): Float32Array {
  const xs = axisTaps(srcW, dstW, 'bilinear', 'x');
  const ys = axisTaps(srcH, dstH, 'bilinear', 'y');
  const out = new Float32Array(dstW * dstH);
  const rows = [new Float32Array(dstW), new Float32Array(dstW)] as const;
  for (let y = 0; y < dstH; y++) {
    for (let k = 0; k < 2; k++) {
      const base = at(ys.index, y * 2 + k) * srcW;
      const r = rows[k as 0 | 1];
      for (let x = 0; x < dstW; x++) {
        r[x] = Math.fround(
          at(src, base + at(xs.index, x * 2)) * Math.fround(at(xs.weight, x * 2)) +
            at(src, base + at(xs.index, x * 2 + 1)) * Math.fround(at(xs.weight, x * 2 + 1)),
        );
      }
    }
    const w0 = Math.fround(at(ys.weight, y * 2));
    const w1 = Math.fround(at(ys.weight, y * 2 + 1));
    for (let x = 0; x < dstW; x++) out[y * dstW + x] = at(rows[0], x) * w0 + at(rows[1], x) * w1;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Pre-processing
// ---------------------------------------------------------------------------------------------

export function preprocess(image: RgbImage, spec: PreprocessingSpec): { tensor: Tensor; transform: Transform } {
  const { resize } = spec;
  const [outH, outW] = resize.size;
  const w0 = image.width;
  const h0 = image.height;
  const interpolation = resize.interpolation ?? 'bilinear';
  // The resized image is placed on a canvas of the input size at (left, top); for a centre crop
  // the offsets are negative.
  let placed: RgbImage;
  let left: number;
  let top: number;
  let fill = 0;
  let transform: Transform;
  if (resize.method === 'letterbox') {
    const r = Math.min(outH / h0, outW / w0);
    const newW = roundHalfUp(w0 * r);
    const newH = roundHalfUp(h0 * r);
    placed = resizeImage(image, newW, newH, interpolation);
    left = roundHalfUp((outW - newW) / 2 - 0.1);
    top = roundHalfUp((outH - newH) / 2 - 0.1);
    fill = resize.fill_value;
    transform = { scaleX: newW / w0, scaleY: newH / h0, padLeft: left, padTop: top, width: w0, height: h0 };
  } else if (resize.method === 'resize_shorter_center_crop') {
    const r = Math.max(outH / resize.crop_pct / h0, outW / resize.crop_pct / w0);
    const newW = Math.max(outW, roundHalfUp(w0 * r));
    const newH = Math.max(outH, roundHalfUp(h0 * r));
    placed = resizeImage(image, newW, newH, interpolation);
    left = -roundHalfUp((newW - outW) / 2);
    top = -roundHalfUp((newH - outH) / 2);
    transform = { scaleX: newW / w0, scaleY: newH / h0, padLeft: left, padTop: top, width: w0, height: h0 };
  } else {
    placed = resizeImage(image, outW, outH, interpolation);
    left = 0;
    top = 0;
    transform = { scaleX: outW / w0, scaleY: outH / h0, padLeft: 0, padTop: 0, width: w0, height: h0 };
  }

  const { mean, std, method } = spec.normalize;
  const pre = method === 'standardize' ? 255 : 1;
  // The model normalises in its graph: it is fed the pixels (as float32 values here; infer() makes them uint8).
  const raw = spec.embedded === true;
  const plane = outH * outW;
  const data = new Float32Array(3 * plane);
  const order = spec.channel_order === 'BGR' ? [2, 1, 0] : [0, 1, 2];
  const nchw = spec.layout !== 'NHWC';
  for (let y = 0; y < outH; y++) {
    const sy = y - top;
    for (let x = 0; x < outW; x++) {
      const sx = x - left;
      const inside = sx >= 0 && sy >= 0 && sx < placed.width && sy < placed.height;
      for (let c = 0; c < 3; c++) {
        const ch = order[c] as number;
        const pixel = inside ? at(placed.data, (sy * placed.width + sx) * 3 + ch) : fill;
        // float32 steps, as numpy computes them in the Python wrapper.
        const scaled = pre === 1 ? pixel : Math.fround(pixel / pre);
        const v = raw ? pixel : Math.fround(Math.fround(scaled - at(mean, c)) / at(std, c));
        data[nchw ? c * plane + y * outW + x : (y * outW + x) * 3 + c] = v;
      }
    }
  }
  return { tensor: { data, dims: nchw ? [1, 3, outH, outW] : [1, outH, outW, 3] }, transform };
}

// ---------------------------------------------------------------------------------------------
// Post-processing
// ---------------------------------------------------------------------------------------------

/** Greedy NMS over xyxy boxes (flat, 4 per box), best score first; ties keep input order. */
export function nms(boxes: Float32Array, scores: Float32Array, iouThreshold: number): number[] {
  const n = scores.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => at(scores, b) - at(scores, a));
  const suppressed = new Uint8Array(n);
  const keep: number[] = [];
  const area = (i: number) => (at(boxes, i * 4 + 2) - at(boxes, i * 4)) * (at(boxes, i * 4 + 3) - at(boxes, i * 4 + 1));
  for (const i of order) {
    if (suppressed[i]) continue;
    keep.push(i);
    const ai = area(i);
    for (let j = 0; j < n; j++) {
      if (suppressed[j] || j === i) continue;
      const w = Math.min(at(boxes, i * 4 + 2), at(boxes, j * 4 + 2)) - Math.max(at(boxes, i * 4), at(boxes, j * 4));
      const h = Math.min(at(boxes, i * 4 + 3), at(boxes, j * 4 + 3)) - Math.max(at(boxes, i * 4 + 1), at(boxes, j * 4 + 1));
      const inter = Math.max(0, w) * Math.max(0, h);
      const union = ai + area(j) - inter;
      if (union > 0 && inter / union > iouThreshold) suppressed[j] = 1;
    }
  }
  return keep;
}

interface Detections {
  boxes: Float32Array; // xyxy in input pixels
  scores: Float32Array;
  classes: Int32Array;
  /** Per detection, the rows after the class scores (mask coefficients, keypoints). */
  extra: Float32Array[];
}

/** pred [1, 4 + nc + extra, anchors] (boxes as centre x, y, w, h) -> kept detections, best first. */
export function selectDetections(pred: Tensor, numClasses: number, conf: number, iou: number, maxDet: number, boxScale: [number, number] = [1, 1]): Detections {
  const rows = pred.dims[1] as number;
  const anchors = pred.dims[2] as number;
  const d = pred.data;
  let candidates: { i: number; score: number; cls: number }[] = [];
  for (let a = 0; a < anchors; a++) {
    let best = -Infinity;
    let cls = 0;
    for (let c = 0; c < numClasses; c++) {
      const s = at(d, (4 + c) * anchors + a);
      if (s > best) {
        best = s;
        cls = c;
      }
    }
    if (best > conf) candidates.push({ i: a, score: best, cls });
  }
  if (candidates.length > MAX_NMS) candidates = [...candidates].sort((x, y) => y.score - x.score).slice(0, MAX_NMS);
  const n = candidates.length;
  const boxes = new Float32Array(n * 4);
  const shifted = new Float32Array(n * 4);
  const scores = new Float32Array(n);
  candidates.forEach((c, k) => {
    const cx = at(d, c.i) * boxScale[0];
    const cy = at(d, anchors + c.i) * boxScale[1];
    const w = at(d, 2 * anchors + c.i) * boxScale[0];
    const h = at(d, 3 * anchors + c.i) * boxScale[1];
    boxes.set([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], k * 4);
    // float32 at each step, as numpy does in the Python wrapper.
    const offset = c.cls * MAX_WH;
    for (let j = 0; j < 4; j++) shifted[k * 4 + j] = Math.fround(at(boxes, k * 4 + j) + offset);
    scores[k] = c.score;
  });
  const keep = nms(shifted, scores, iou).slice(0, maxDet);
  const extraRows = rows - 4 - numClasses;
  return {
    boxes: Float32Array.from(keep.flatMap((k) => Array.from(boxes.subarray(k * 4, k * 4 + 4)))),
    scores: Float32Array.from(keep.map((k) => at(scores, k))),
    classes: Int32Array.from(keep.map((k) => (candidates[k] as { cls: number }).cls)),
    extra: keep.map((k) => {
      const a = (candidates[k] as { i: number }).i;
      const e = new Float32Array(extraRows);
      for (let r = 0; r < extraRows; r++) e[r] = at(d, (4 + numClasses + r) * anchors + a);
      return e;
    }),
  };
}

/**
 * The rows of a model with NMS built in, [1, max_detections, 6 + extra] (x1, y1, x2, y2, score,
 * dataset class id, extra; best first, zero rows after the last) -> kept detections, their class
 * ids turned back into output indices.
 */
export function embeddedDetections(pred: Tensor, classIds: readonly number[], conf: number, maxDet: number): Detections {
  const count = pred.dims[1] as number;
  const width = pred.dims[2] as number;
  const d = pred.data;
  const index = new Map(classIds.map((id, i) => [id, i]));
  const kept: number[] = [];
  for (let r = 0; r < count && kept.length < maxDet; r++) if (at(d, r * width + 4) > conf) kept.push(r);
  return {
    boxes: Float32Array.from(kept.flatMap((r) => Array.from(d.subarray(r * width, r * width + 4)))),
    scores: Float32Array.from(kept.map((r) => at(d, r * width + 4))),
    classes: Int32Array.from(kept.map((r) => index.get(Math.round(at(d, r * width + 5))) ?? -1)),
    extra: kept.map((r) => d.slice(r * width + 6, (r + 1) * width)),
  };
}

const toImage = (t: Transform, x: number, y: number): [number, number] => [
  Math.min(t.width, Math.max(0, (x - t.padLeft) / t.scaleX)),
  Math.min(t.height, Math.max(0, (y - t.padTop) / t.scaleY)),
];

/** Instance masks at the image size: prototypes combined, padding cut, resized, thresholded, cropped to the box. */
export function masksFor(
  coefficients: Float32Array[],
  protos: Tensor,
  boxes: number[][],
  t: Transform,
  inputSize: [number, number],
  threshold: number,
): Uint8Array[] {
  const [, nm, mh, mw] = protos.dims as [number, number, number, number];
  const [inH, inW] = inputSize;
  const sx = mw / inW;
  const sy = mh / inH;
  const c0 = Math.max(0, roundHalfUp(t.padLeft * sx - 0.1));
  const r0 = Math.max(0, roundHalfUp(t.padTop * sy - 0.1));
  const c1 = Math.min(mw, roundHalfUp((t.padLeft + t.width * t.scaleX) * sx + 0.1));
  const r1 = Math.min(mh, roundHalfUp((t.padTop + t.height * t.scaleY) * sy + 0.1));
  const cw = c1 - c0;
  const ch = r1 - r0;
  const logitThreshold = Math.log(threshold / (1 - threshold));
  const plane = mh * mw;
  return coefficients.map((coef, k) => {
    const crop = new Float32Array(cw * ch);
    for (let y = 0; y < ch; y++) {
      for (let x = 0; x < cw; x++) {
        const p = (r0 + y) * mw + c0 + x;
        let v = 0;
        for (let m = 0; m < nm; m++) v = Math.fround(v + Math.fround(at(coef, m) * at(protos.data, m * plane + p)));
        crop[y * cw + x] = v;
      }
    }
    const full = resizeFloat(crop, cw, ch, t.width, t.height);
    const [x1, y1, x2, y2] = boxes[k] as [number, number, number, number];
    const mask = new Uint8Array(t.width * t.height);
    for (let y = 0; y < t.height; y++) {
      if (y < y1 || y >= y2) continue;
      for (let x = 0; x < t.width; x++) {
        if (x >= x1 && x < x2 && at(full, y * t.width + x) > logitThreshold) mask[y * t.width + x] = 1;
      }
    }
    return mask;
  });
}

export function softmax(values: Float32Array, temperature = 1): Float32Array {
  let max = -Infinity;
  for (const v of values) max = Math.max(max, v / temperature);
  const e = Array.from(values, (v) => Math.exp(v / temperature - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return Float32Array.from(e, (v) => v / sum);
}

/** COCO's uncompressed RLE of a row-major mask (runs in column-major order, zeros first). */
export function maskToRle(mask: Uint8Array, width: number, height: number): { size: [number, number]; counts: number[] } {
  const counts: number[] = [];
  let current = 0;
  let run = 0;
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) {
      const v = mask[y * width + x] ? 1 : 0;
      if (v !== current) {
        counts.push(run);
        run = 0;
        current = v;
      }
      run++;
    }
  }
  counts.push(run);
  return { size: [height, width], counts };
}

/**
 * Semantic segmentation: the class index of every pixel of the original image (row-major,
 * width x height of `transform`), from logits [batch, classes, H, W] at the input size: argmax over
 * classes (the first of equal scores), sampled at the input pixel each image pixel's centre falls in.
 */
export function classMap(logits: Tensor, transform: Transform): Uint8Array {
  const [, classes, inH, inW] = logits.dims as [number, number, number, number];
  const plane = inH * inW;
  const best = new Uint8Array(plane);
  for (let p = 0; p < plane; p++) {
    let top = 0;
    let score = at(logits.data, p);
    for (let c = 1; c < classes; c++) {
      const v = at(logits.data, c * plane + p);
      if (v > score) {
        score = v;
        top = c;
      }
    }
    best[p] = top;
  }
  const { width, height } = transform;
  const map = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    const v = Math.min(inH - 1, Math.max(0, Math.floor((y + 0.5) * transform.scaleY + transform.padTop)));
    for (let x = 0; x < width; x++) {
      const u = Math.min(inW - 1, Math.max(0, Math.floor((x + 0.5) * transform.scaleX + transform.padLeft)));
      map[y * width + x] = best[v * inW + u] as number;
    }
  }
  return map;
}

/** Predictions as JSON-ready objects (masks as COCO RLE). */
export function predictionsToJson(predictions: Prediction[], width: number, height: number): Record<string, unknown>[] {
  return predictions.map(({ mask, ...rest }) => {
    // Key order as the Python wrapper writes them.
    const { bbox, class_id, class_name, confidence, keypoints } = rest;
    return {
      ...(bbox ? { bbox } : {}),
      class_id,
      class_name,
      confidence,
      ...(mask ? { mask: maskToRle(mask, width, height) } : {}),
      ...(keypoints ? { keypoints } : {}),
    };
  });
}

// ---------------------------------------------------------------------------------------------
// The wrapper
// ---------------------------------------------------------------------------------------------

export interface WrapperOptions {
  /** Threads for the CPU runtime (default: onnxruntime's choice, the physical cores). */
  threads?: number;
}

/** An onnxruntime session with every graph optimisation on, on the CPU provider. */
export function createSession(modelPath: string, options: WrapperOptions = {}): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(modelPath, {
    graphOptimizationLevel: 'all',
    executionProviders: ['cpu'],
    ...(options.threads ? { intraOpNumThreads: options.threads, interOpNumThreads: 1 } : {}),
  });
}

export class ModelWrapper {
  readonly classNames: string[];
  /** The class id of each model output. */
  readonly classIds: number[];
  readonly inputSize: [number, number];

  /** Without a session the wrapper pre- and post-processes only (outputs computed elsewhere). */
  constructor(
    readonly metadata: WrapperMetadata,
    readonly session?: ort.InferenceSession,
  ) {
    this.classNames = metadata.model.class_names;
    this.classIds = metadata.model.class_ids ?? this.classNames.map((_, i) => i);
    this.inputSize = metadata.preprocessing.resize.size;
  }

  /** Loads metadata.json (default: beside the model) and the model (default: the file metadata.json names). */
  static async create(modelPath?: string, metadataPath?: string, options: WrapperOptions = {}): Promise<ModelWrapper> {
    const metaFile = resolve(metadataPath ?? join(dirname(modelPath ?? '.'), 'metadata.json'));
    const metadata = JSON.parse(await readFile(metaFile, 'utf8')) as WrapperMetadata;
    return ModelWrapper.load(modelPath ?? join(dirname(metaFile), metadata.model.file), metadata, options);
  }

  /** Loads the model for metadata already in memory. */
  static async load(modelPath: string, metadata: WrapperMetadata, options: WrapperOptions = {}): Promise<ModelWrapper> {
    if (metadata.export_format !== 'onnx') throw new Error(`the Node wrapper runs ONNX models; this package holds ${metadata.export_format}`);
    return new ModelWrapper(metadata, await createSession(modelPath, options));
  }

  preprocess(image: RgbImage): { tensor: Tensor; transform: Transform } {
    return preprocess(image, this.metadata.preprocessing);
  }

  /** Runs the model on a preprocessed batch; outputs in the model's output order, as float32. */
  async infer(tensor: Tensor): Promise<Tensor[]> {
    if (!this.session) throw new Error('this ModelWrapper has no model session (created for pre/post-processing only)');
    // A model exported with a fixed batch > 1 gets copies of a single image.
    const fixed = this.metadata.model.inputs?.[0]?.shape[0];
    if (typeof fixed === 'number' && fixed > 1 && tensor.dims[0] === 1) {
      const data = new Float32Array(tensor.data.length * fixed);
      for (let i = 0; i < fixed; i++) data.set(tensor.data, i * tensor.data.length);
      tensor = { data, dims: [fixed, ...tensor.dims.slice(1)] };
    }
    const input =
      this.metadata.preprocessing.data_type === 'uint8'
        ? new ort.Tensor('uint8', Uint8Array.from(tensor.data), tensor.dims)
        : new ort.Tensor('float32', tensor.data, tensor.dims);
    const results = await this.session.run({ [this.session.inputNames[0] as string]: input });
    return this.session.outputNames.map((name) => {
      const t = results[name] as ort.Tensor;
      const data = t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as ArrayLike<number>);
      return { data, dims: [...t.dims] };
    });
  }

  postprocess(outputs: Tensor[], transform: Transform, options: PostprocessOptions = {}): Prediction[] {
    const post = this.metadata.postprocessing;
    const task = this.metadata.task_type;
    const first = outputs[0];
    if (!first) throw new Error('the model gave no outputs');
    if (task === 'semantic_segmentation') {
      const map = classMap(first, transform);
      return this.masksOf(map, transform.width, transform.height);
    }
    if (task === 'image_classification' || task === 'zero_shot_classification') {
      const soft = post.softmax ?? { apply: true, temperature: 1 };
      const logits = first.data.subarray(0, first.data.length / (first.dims[0] ?? 1)); // the first image of the batch
      const probs = soft.apply ? softmax(logits, soft.temperature) : logits;
      const k = Math.min(options.topK ?? post.top_k ?? 5, probs.length);
      const order = Array.from({ length: probs.length }, (_, i) => i).sort((a, b) => at(probs, b) - at(probs, a));
      return order.slice(0, k).map((i) => ({ class_id: this.classIds[i] ?? i, class_name: this.classNames[i] ?? String(i), confidence: at(probs, i) }));
    }
    const spec = post.nms!;
    const [inH, inW] = this.inputSize;
    const boxScale: [number, number] = post.box_units === 'normalized' ? [inW, inH] : [1, 1];
    const confidence = options.confidence ?? spec.confidence_threshold;
    const maxDetections = options.maxDetections ?? spec.max_detections;
    // A model with NMS built in (INCLUDE_POSTPROCESSING) gives the kept detections: they are only filtered.
    const det = post.embedded
      ? embeddedDetections(first, this.classIds, confidence, maxDetections)
      : selectDetections(first, this.classNames.length, confidence, options.iou ?? spec.iou_threshold, maxDetections, boxScale);
    const boxes: number[][] = [];
    const predictions: Prediction[] = [];
    for (let k = 0; k < det.scores.length; k++) {
      const [x1, y1] = toImage(transform, at(det.boxes, k * 4), at(det.boxes, k * 4 + 1));
      const [x2, y2] = toImage(transform, at(det.boxes, k * 4 + 2), at(det.boxes, k * 4 + 3));
      boxes.push([x1, y1, x2, y2]);
      const cls = at(det.classes, k);
      predictions.push({
        bbox: [x1, y1, x2, y2],
        class_id: this.classIds[cls] ?? cls,
        class_name: this.classNames[cls] ?? String(cls),
        confidence: at(det.scores, k),
      });
    }
    if (task === 'instance_segmentation' && predictions.length) {
      const protos = outputs[1];
      if (!protos) throw new Error('a segmentation model must give prototype masks as its second output');
      const nm = protos.dims[1] as number;
      const masks = masksFor(
        det.extra.map((e) => e.subarray(0, nm)),
        protos,
        boxes,
        transform,
        this.inputSize,
        post.mask_threshold ?? 0.5,
      );
      predictions.forEach((p, k) => {
        p.mask = masks[k];
      });
    }
    if (task === 'pose_estimation' && predictions.length) {
      const [count, dims] = this.metadata.model.keypoints!.shape;
      predictions.forEach((p, k) => {
        const e = det.extra[k] as Float32Array;
        p.keypoints = Array.from({ length: count }, (_, j) => {
          const [x, y] = toImage(transform, at(e, j * dims) * boxScale[0], at(e, j * dims + 1) * boxScale[1]);
          return dims === 3 ? [x, y, at(e, j * dims + 2)] : [x, y];
        });
      });
    }
    return predictions;
  }

  /** Semantic segmentation: one prediction per class of the map, its mask and its share of the image (`confidence`), in output order. */
  masksOf(map: Uint8Array, width: number, height: number): Prediction[] {
    const counts = new Array<number>(this.classNames.length).fill(0);
    for (const v of map) counts[v] = (counts[v] ?? 0) + 1;
    const out: Prediction[] = [];
    counts.forEach((count, c) => {
      if (!count) return;
      const mask = new Uint8Array(map.length);
      for (let k = 0; k < map.length; k++) if (map[k] === c) mask[k] = 1;
      out.push({ class_id: this.classIds[c] ?? c, class_name: this.classNames[c] ?? String(c), confidence: count / (width * height), mask });
    });
    return out;
  }

  /**
   * Final predictions for one image: a file path or decoded RGB pixels. A package exported with
   * INCLUDE_PREPROCESSING=false takes a preprocessed Tensor instead; with
   * INCLUDE_POSTPROCESSING=false the raw output tensors are returned.
   */
  async predict(image: string | RgbImage | Tensor, options: PostprocessOptions = {}): Promise<Prediction[] | Tensor[]> {
    let input: { tensor: Tensor; transform: Transform };
    if (this.metadata.preprocessing.included === false) {
      if (typeof image === 'string' || !('dims' in image))
        throw new Error('this package was exported without preprocessing (INCLUDE_PREPROCESSING=false): pass a preprocessed Tensor');
      const [h, w] = this.inputSize;
      input = { tensor: image, transform: { scaleX: 1, scaleY: 1, padLeft: 0, padTop: 0, width: w, height: h } };
    } else {
      if (typeof image !== 'string' && 'dims' in image) throw new Error('predict() takes an image (path or RGB pixels); use infer() for tensors');
      input = this.preprocess(typeof image === 'string' ? await loadImage(image) : image);
    }
    const outputs = await this.infer(input.tensor);
    return this.metadata.postprocessing.included === false ? outputs : this.postprocess(outputs, input.transform, options);
  }

  async close(): Promise<void> {
    await this.session?.release();
  }
}
