/**
 * Runs the exported model on images and prints the predictions as JSON lines.
 *
 *   npm install                       # onnxruntime-node (and optionally sharp for JPEG/WebP)
 *   node example.mjs                  # the package's samples/ folder
 *   node example.mjs photo.png images/
 *   node example.mjs --confidence 0.5 photo.png
 *   node example.mjs --confidence 0.001 --iou 0.7 --max-detections 100   # the validation step's settings
 *
 * Each line: {"image": "<path>", "predictions": [...]} (masks as COCO RLE).
 */
import { readdirSync, statSync } from 'node:fs';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadImage, ModelWrapper, predictionsToJson } from './model_wrapper.js';

const PACKAGE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const IMAGE_SUFFIXES = new Set(['.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff']);

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    model: { type: 'string' },
    metadata: { type: 'string', default: join(PACKAGE_DIR, 'metadata.json') },
    confidence: { type: 'string' },
    iou: { type: 'string' },
    'max-detections': { type: 'string' },
    'top-k': { type: 'string' },
    threads: { type: 'string' },
  },
});

function imageFiles(paths) {
  return paths.flatMap((p) =>
    statSync(p).isDirectory()
      ? readdirSync(p)
          .filter((f) => IMAGE_SUFFIXES.has(extname(f).toLowerCase()))
          .sort()
          .map((f) => join(p, f))
      : [p],
  );
}

const wrapper = await ModelWrapper.create(values.model, values.metadata, values.threads ? { threads: Number(values.threads) } : {});
if (wrapper.metadata.preprocessing.included === false) {
  console.error(
    `this package was exported with INCLUDE_PREPROCESSING=false: call predict(tensor) from your code with a preprocessed float32 Tensor of dims [${wrapper.metadata.model.inputs?.[0]?.shape}]`,
  );
  process.exit(2);
}
const options = {
  ...(values.confidence ? { confidence: Number(values.confidence) } : {}),
  ...(values.iou ? { iou: Number(values.iou) } : {}),
  ...(values['max-detections'] ? { maxDetections: Number(values['max-detections']) } : {}),
  ...(values['top-k'] ? { topK: Number(values['top-k']) } : {}),
};
const files = imageFiles(positionals.length ? positionals : [join(PACKAGE_DIR, 'samples')]);
if (files.length === 0) {
  console.error('no images given (and no samples/ folder in the package)');
  process.exit(2);
}
for (const file of files) {
  const started = performance.now();
  const image = await loadImage(file);
  const predictions = await wrapper.predict(image, options);
  const elapsed = performance.now() - started;
  if (wrapper.metadata.postprocessing.included === false) {
    // INCLUDE_POSTPROCESSING=false: the raw outputs
    console.log(JSON.stringify({ image: file, outputs: predictions.map((t) => ({ shape: t.dims, first_values: Array.from(t.data.subarray(0, 8)) })) }));
  } else {
    console.log(
      JSON.stringify({ image: file, predictions: predictionsToJson(predictions, image.width, image.height), elapsed_ms: Math.round(elapsed * 100) / 100 }),
    );
  }
}
await wrapper.close();
