/**
 * The generated text files of a deployment package: README.md, Dockerfile, the Python
 * requirements and the Node package.json. Their content depends on the format, the task and
 * what was measured, so they are written per export rather than copied.
 */
import type { ExportFormat, RuntimeLanguage } from './formats.js';
import type { PackageMetadata } from './metadata.js';

/** What each format needs in Python beyond numpy and OpenCV. */
const PYTHON_REQUIREMENTS: Record<ExportFormat, string[]> = {
  onnx: ['onnxruntime>=1.18'],
  torchscript: ['torch>=2.1'],
  openvino: ['openvino>=2024.0'],
  tflite: ['ai-edge-litert>=1.2'],
  tensorrt: ['tensorrt>=8.5', 'torch>=2.1'],
  coreml: ['coremltools>=9.0', 'pillow>=10'],
};

export function pythonRequirements(format: ExportFormat): string {
  return [...PYTHON_REQUIREMENTS[format], 'numpy>=1.23', 'opencv-python-headless>=4.8', ''].join('\n');
}

export function nodePackageJson(onnxruntimeNodeVersion: string, modelName: string): string {
  return `${JSON.stringify(
    {
      name: `${modelName.toLowerCase().replace(/[^a-z0-9-]+/g, '-')}-runtime`,
      private: true,
      type: 'module',
      description: 'Node.js runtime for the exported model (onnxruntime-node)',
      main: 'model_wrapper.js',
      types: 'model_wrapper.d.ts',
      scripts: { example: 'node example.mjs' },
      dependencies: { 'onnxruntime-node': onnxruntimeNodeVersion },
      optionalDependencies: { sharp: '^0.34.0' },
    },
    null,
    2,
  )}\n`;
}

export function dockerfile(format: ExportFormat, metadata: PackageMetadata): string {
  const model = metadata.model.file;
  const copyModel = metadata.model.directory ? `COPY ${model}/ ./${model}/` : `COPY ${model} .`;
  return `# Serves the exported model with its Python wrapper: predictions for every image in /input,
# one JSON line per image on stdout.
#   docker build -t my-model .
#   docker run --rm -v "$(pwd)/test_images:/input" my-model
FROM python:3.11-slim

WORKDIR /app
COPY runtimes/python/requirements.txt runtimes/python/
RUN pip install --no-cache-dir -r runtimes/python/requirements.txt

${copyModel}
COPY metadata.json .
COPY runtimes/python/ runtimes/python/

# ${format}: ${metadata.runtime.engines.join(', ')}
ENTRYPOINT ["python", "runtimes/python/example.py"]
CMD ["/input"]
`;
}

const WRAPPER_SECTIONS: Record<RuntimeLanguage, (m: PackageMetadata) => string> = {
  python: () => `### Python

\`\`\`bash
cd runtimes/python
pip install -r requirements.txt
python example.py                 # runs on ../../samples/
python example.py photo.jpg more_images/
\`\`\`

\`\`\`python
from model_wrapper import ModelWrapper
model = ModelWrapper()            # finds metadata.json and the model in the package root
predictions = model.predict("photo.jpg")
\`\`\`
`,
  node: () => `### Node.js / TypeScript (onnxruntime-node)

\`\`\`bash
cd runtimes/node
npm install                       # onnxruntime-node; add sharp to read JPEG/WebP files
node example.mjs                  # runs on ../../samples/
\`\`\`

\`\`\`ts
import { ModelWrapper } from './model_wrapper.js';
const model = await ModelWrapper.create(undefined, '../../metadata.json');
const predictions = await model.predict('photo.png');
\`\`\`

\`model_wrapper.ts\` is the source; \`model_wrapper.js\` and \`.d.ts\` are compiled from it.
PNG files are decoded without dependencies; other formats need \`sharp\`, or pass decoded RGB pixels.
`,
  cpp: (m) => `### C++ (OpenCV DNN)

Needs OpenCV 4.6 or newer with the dnn module (Debian/Ubuntu: \`apt-get install libopencv-dev cmake g++\`).

\`\`\`bash
cd runtimes/cpp
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build
./build/example ../../model.onnx ../../metadata.json ../../samples/*.png
\`\`\`

OpenCV's DNN module runs float32 graphs; quantized ONNX models need ONNX Runtime (Python or Node wrappers).${
    m.optimization.level === 0
      ? '\nThis model was exported with OPTIMIZATION_LEVEL=0 (the graph as the exporter wrote it): OpenCV 4.6 cannot broadcast some of its constants; export with level 1 or more for OpenCV.'
      : ''
  }
`,
  swift: () => `### Swift (CoreML)

\`runtimes/swift\` is a Swift package (\`ModelWrapper\`) for iOS/macOS. It was not built or run where this
package was made (that needs Xcode on macOS): compile the model with Xcode or \`coremlc\`, then
\`try ModelWrapper(modelURL:metadataURL:)\` and \`predict(cgImage)\`.
`,
  kotlin: () => `### Kotlin (TensorFlow Lite on Android)

\`runtimes/kotlin\` holds \`ModelWrapper.kt\` for Android (TensorFlow Lite interpreter). It was not built or
run where this package was made (that needs the Android SDK): add it to an app module with the
dependencies in \`build.gradle\` and put the model and metadata.json in the app's assets.
`,
};

/** Why a runtime the format usually ships is not in this package. */
function absentSection(m: PackageMetadata): string {
  if (!m.runtime.absent_wrappers.length) return '';
  return `
### Runtimes not in this package

${m.runtime.absent_wrappers.map((a) => `- **${a.wrapper}**: ${a.reason}`).join('\n')}
`;
}

function validationSection(m: PackageMetadata): string {
  const v = m.validation;
  if (!v) return 'Validation was not run for this export (ENABLE_VALIDATION=false).\n';
  const f = (x: number | null) => (x === null ? 'n/a' : x.toFixed(4));
  return `Validated on ${v.num_samples} images (${v.split} split of dataset \`${v.dataset_id}\`), the exported model
(${v.exported_runtime}) against the original checkpoint on the same input tensors:

| | ${v.metric} | latency p50 / p95 |
|---|---|---|
| original | ${f(v.original_accuracy)} | ${v.latency_ms.original.p50} / ${v.latency_ms.original.p95} ms |
| exported | ${f(v.accuracy)} | ${v.latency_ms.exported.p50} / ${v.latency_ms.exported.p95} ms |

Drop: ${f(v.accuracy_drop)} (allowed: ${v.threshold}); largest output difference: ${v.max_abs_output_diff?.toExponential(2) ?? 'n/a'}.
`;
}

export function readme(metadata: PackageMetadata, options: { hasSamples: boolean }): string {
  const m = metadata;
  const p = m.performance;
  const wrappers = m.runtime.wrappers as RuntimeLanguage[];
  const inputs = m.model.inputs.map((t) => `\`${t.name}\` [${t.shape.join(', ')}] ${t.dtype}`).join(', ');
  const outputs = m.model.outputs.map((t) => `\`${t.name}\` [${t.shape.join(', ')}] ${t.dtype}`).join(', ');
  return `# ${m.model_name}: ${m.task_type.replace(/_/g, ' ')} (${m.export_format.toUpperCase()})

## Model

- **Format**: ${m.export_format}, file \`${m.model.file}\`${m.model.directory ? ' (a folder)' : ''}, ${m.model.size_mb} MB
- **Task**: ${m.task_type}; ${m.model.num_classes} classes (class id: name): ${m.model.class_names.map((n, i) => `${m.model.class_ids[i] ?? i}: ${n}`).join(', ')}.
  Every prediction's \`class_id\` is the dataset's class id (\`model.class_ids\` in metadata.json), not the output index.
- **Architecture**: ${m.model.architecture} (${m.model.framework})
- **Input**: ${inputs}
- **Output**: ${outputs}
- **Quantization**: ${m.optimization.quantization_details ? `${m.optimization.quantization_details.type} ${m.optimization.quantization_details.dtype}: ${m.optimization.quantization_details.method}` : 'none'}
${p ? `- **Latency**: ${p.inference_speed_ms} ms median, ${p.p95_ms} ms p95 per batch of ${p.batch_size} (${p.engine}, ${p.device}, ${p.cpu_threads} CPU threads, ${p.runs} runs)\n` : ''}${m.structural_validation ? `- **Validation**: structural only (${m.structural_validation.checks.join('; ')}). ${m.structural_validation.reason}.\n` : ''}
## Contents

- \`${m.model.file}\`: the model
- \`metadata.json\`: pre-processing, post-processing, classes, tensors, validation and latency figures
- \`runtimes/\`: wrappers that load the model, pre-process an image, run the model and post-process its
  outputs into predictions: ${wrappers.join(', ')}
${options.hasSamples ? '- `samples/`: validation images and `expected_predictions.json`, what the wrappers should print for them\n' : ''}- \`Dockerfile\`: a container running the Python wrapper on every image in \`/input\`

## Pre- and post-processing

${describePre(m)}
${m.postprocessing.included ? `Post-processing (done by the wrappers): ${describePost(m)}` : 'The wrappers return raw outputs (exported with INCLUDE_POSTPROCESSING=false).'}
Raw outputs: ${m.postprocessing.output_layout}.

## Quick start

${wrappers.map((w) => WRAPPER_SECTIONS[w](m)).join('\n')}${absentSection(m)}
### Container

\`\`\`bash
docker build -t my-model .
docker run --rm -v "$(pwd)/test_images:/input" my-model
\`\`\`

## Validation

${validationSection(m)}`;
}

function describePre(m: PackageMetadata): string {
  const pre = m.preprocessing;
  if (!pre.included)
    return 'The wrappers expect preprocessed tensors (exported with INCLUDE_PREPROCESSING=false); metadata.json still describes the expected input.';
  if (!pre.embedded) return `Pre-processing (done by the wrappers): ${describeResize(m)}, ${pre.channel_order}, ${pre.layout} float32.`;
  const [h, w] = pre.resize.size;
  return `Pre-processing: the model normalises and transposes in its graph (INCLUDE_PREPROCESSING=true); it takes ${pre.channel_order} pixels, ${pre.data_type} ${pre.layout} [batch, ${h}, ${w}, 3]. Resizing stays outside the model: callers without a wrapper resize each image to ${w}x${h} as the wrappers do (${describeResize(m, false)}) and feed the pixels as they are.`;
}

function describeResize(m: PackageMetadata, normalisation = true): string {
  const r = m.preprocessing.resize;
  const size = `${r.size[0]}x${r.size[1]}`;
  const norm = m.preprocessing.normalize;
  const normText =
    norm.method === 'divide'
      ? `pixels (x - ${norm.mean.join('/')}) / ${norm.std.join('/')}`
      : `pixels / 255, then (x - [${norm.mean.join(', ')}]) / [${norm.std.join(', ')}]`;
  const then = normalisation ? `, ${normText}` : '';
  if (r.method === 'letterbox') return `letterbox to ${size} (aspect kept, padded with ${r.fill_value}, ${r.interpolation})${then}`;
  if (r.method === 'resize_shorter_center_crop') return `shorter side resized to ${size} / ${r.crop_pct} (${r.interpolation}), centre crop ${size}${then}`;
  return `resize to ${size} (${r.interpolation})${then}`;
}

function describePost(m: PackageMetadata): string {
  const p = m.postprocessing;
  if (p.nms) {
    const extra =
      m.task_type === 'instance_segmentation'
        ? `, a mask per box (threshold ${p.mask_threshold})`
        : m.task_type === 'pose_estimation'
          ? ', keypoints per box'
          : '';
    if (p.embedded)
      return `class-aware NMS at IoU ${p.nms.iou_threshold} runs in the model (INCLUDE_POSTPROCESSING=true; it keeps scores above ${p.nms.min_confidence}, at most ${p.nms.max_detections}, with the dataset's class ids); the wrappers keep the rows above confidence ${p.nms.confidence_threshold} and map them to [x1, y1, x2, y2] image pixels${extra}.`;
    return `boxes above confidence ${p.nms.confidence_threshold}, class-aware NMS at IoU ${p.nms.iou_threshold}, at most ${p.nms.max_detections}, as [x1, y1, x2, y2] image pixels${extra}.`;
  }
  if (m.task_type === 'semantic_segmentation')
    return 'the class map: argmax of the per-pixel logits, at the image size (nearest neighbour); one prediction per class present, with its mask and its share of the image as `confidence`.';
  return `${p.softmax?.apply ? 'softmax, ' : ''}top-${p.top_k} classes with confidences.`;
}
