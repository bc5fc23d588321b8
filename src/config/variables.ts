/**
 * The environment contract of all three job modes, in one table. Each variable names the
 * config field it fills (a dotted path), its schema (which accepts the env string and the
 * native value alike), whether it is a secret, and its help text. The zod schemas, the env
 * parser, the error messages and `--help` are all derived from this table.
 */
import { z } from 'zod';
import { SplitStrategySchema } from '../datasets/splits.js';
import { autoOrBool, bool, hostList, httpUrl, identifier, int, json, num, oneOf, printable, str } from './fields.js';
import { FRAMEWORKS, TASK_TYPES } from './tasks.js';

export type Mode = 'train' | 'infer' | 'export';

export interface Variable {
  /** Canonical name first; later names are accepted spellings of the same setting. */
  env: readonly string[];
  /** Field in the parsed config, e.g. `storage.endpoint`. */
  path: string;
  schema: z.ZodType;
  modes: readonly Mode[];
  help: string;
  /** Shown in --help; the schema holds the real default. */
  defaultText?: string;
  required?: boolean;
  secret?: boolean;
  group: string;
}

const ALL: readonly Mode[] = ['train', 'infer', 'export'];
export const XAI_METHODS = ['gradcam', 'gradcam++', 'eigencam', 'scorecam', 'layercam', 'lime', 'shap', 'attention'] as const;
/** Methods for classifiers only: perturbations of the class score (XAI_SAMPLES model evaluations per image) and attention rollout. */
export const PERTURBATION_XAI_METHODS: readonly string[] = ['lime', 'shap', 'attention'];
/** What runs an inference job's model (src/jobs/infer; python/vision_trainer/common/graph_runtime.py). */
export const INFERENCE_BACKENDS = ['pytorch', 'onnx', 'openvino'] as const;
/** INFERENCE_BACKEND's values: a backend, or auto (python/vision_trainer/common/graph_runtime.py's resolve_backend). */
export const INFERENCE_BACKEND_CHOICES = ['auto', ...INFERENCE_BACKENDS] as const;
/** INFERENCE_PRECISION's values: what the model's forward pass computes in. */
export const INFERENCE_PRECISIONS = ['fp32', 'bf16'] as const;
export const EXPORT_FORMATS = ['onnx', 'torchscript', 'openvino', 'coreml', 'tflite', 'tensorrt'] as const;

const imagePaths = json(
  z.array(z.string().min(1), { error: 'must be a JSON list of s3:// paths' }).min(1, 'must list at least one image'),
  '["s3://bucket/in/img1.jpg"]',
);
const layerList = json(z.array(z.string().min(1), { error: 'must be a JSON list of layer paths' }).min(1, 'must name at least one layer'), '["model.24"]');
const inputSize = z.preprocess(
  (v) => {
    if (typeof v === 'string' && /^\s*\d+\s*$/.test(v)) return [Number(v), Number(v)];
    if (typeof v === 'string') {
      try {
        return JSON.parse(v);
      } catch {
        return v;
      }
    }
    if (typeof v === 'number') return [v, v];
    return v;
  },
  z.tuple([z.number().int().min(16).max(8192), z.number().int().min(16).max(8192)], {
    error: 'must be [height, width] (JSON) or one number, each between 16 and 8192',
  }),
);

/** NPROC_PER_NODE: a count, or Kubeflow's and torchrun's words for "one per GPU". */
const processCount = z.preprocess(
  (v) => (typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? Number(v) : typeof v === 'string' ? v.trim() : v),
  z.union([z.number().int().min(1).max(1024), z.enum(['auto', 'gpu'])], {
    error: 'must be a number of processes (1-1024), auto (one per GPU of DEVICE, else per visible GPU) or gpu (one per visible GPU)',
  }),
);
/** NNODES: a fixed count. Kubeflow's elastic "min:max" is refused by name: the job's ranks are fixed. */
const nodeCount = z.preprocess(
  (v) => (typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? Number(v) : typeof v === 'string' ? v.trim() : v),
  z
    .number({
      error:
        'must be a whole number of nodes; elastic ranges such as 1:4 are not supported (ranks, the reporting node 0 and the global batch are fixed for a job)',
    })
    .int()
    .min(1, 'must be at least 1')
    .max(4096, 'must be at most 4096'),
);

/** Exported for the CLI, which must judge JOB_ID and TRACE_ID before the whole configuration parses. */
export const jobIdSchema = identifier(128, 'it is a callback path segment and part of storage keys');
export const traceIdSchema = printable(256, 'it is sent as the X-Trace-ID header and written on every log line');
const jobId = jobIdSchema;
const datasetId = identifier(200, 'it is part of the key datasets/{DATASET_ID}.zip');

// biome-ignore format: one row per variable reads as a table; the rows are data, not code
export const VARIABLES: readonly Variable[] = [
  // Job identity and backend
  { group: 'Job', env: ['JOB_ID'], path: 'jobId', schema: jobId, modes: ALL, required: true, help: 'Job identifier; used in callback paths and storage keys. Letters, digits, "_", "-" and single "." between them; at most 128 characters.' },
  { group: 'Job', env: ['TRACE_ID'], path: 'traceId', schema: traceIdSchema, modes: ALL, required: true, help: 'Distributed-tracing id, sent as X-Trace-ID on every callback and in every log line. Printable ASCII, at most 256 characters.' },
  { group: 'Job', env: ['BACKEND_BASE_URL'], path: 'backend.baseUrl', schema: httpUrl().optional(), modes: ALL, required: true, help: 'Backend that receives the HTTP callbacks.' },
  { group: 'Job', env: ['CALLBACK_MAX_ATTEMPTS'], path: 'callbackMaxAttempts', schema: int({ min: 1, max: 100 }).default(8), modes: ALL, defaultText: '8 (about two minutes with backoff)', help: 'Attempts to deliver the completion callback before the job exits with code 6.' },
  { group: 'Job', env: ['CALLBACK_TOKEN'], path: 'backend.token', schema: str().optional(), modes: ALL, required: true, secret: true, help: 'Bearer token for the callbacks.' },
  { group: 'Job', env: ['RESUME'], path: 'resume', schema: oneOf(['auto', 'never'] as const).default('auto'), modes: ALL, defaultText: 'auto', help: 'auto: an attempt of a JOB_ID whose final outcome is already in storage (its outcome.json) re-delivers that outcome and exits without working again; a training job whose JOB_ID has checkpoints of an earlier attempt continues from the latest one (unless RESUME_CHECKPOINT_PATH is set). never: the job starts from scratch and overwrites what an earlier attempt stored.' },

  // Training
  { group: 'Training', env: ['TASK_TYPE'], path: 'taskType', schema: oneOf(TASK_TYPES), modes: ALL, required: true, help: `Task: ${TASK_TYPES.join(', ')}.` },
  { group: 'Training', env: ['MODEL_NAME'], path: 'modelName', schema: str(), modes: ['train', 'export'], required: true, help: 'Model, e.g. yolo11n, yolo11n-seg, yolo_world_v2_s (with TEXT_ENCODER_WEIGHT_URL), resnet18, vit-base-patch16-224, clip-vit-base-patch32 (export: the model name metadata.json and the package carry; the checkpoint decides what is built).' },
  { group: 'Training', env: ['FRAMEWORK'], path: 'framework', schema: oneOf(FRAMEWORKS).optional(), modes: ALL, help: 'ultralytics, timm or huggingface; inferred from MODEL_NAME (training) or the checkpoint when unset.' },
  { group: 'Training', env: ['DATASET_ID'], path: 'datasetId', schema: datasetId, modes: ['train'], required: true, help: 'Dataset: datasets/{DATASET_ID}.zip or the prefix datasets/{DATASET_ID}/. Letters, digits, "_", "-" and single "." between them; at most 200 characters.' },
  { group: 'Training', env: ['DATASET_ID'], path: 'datasetId', schema: datasetId.optional(), modes: ['infer'], help: 'Labelled dataset of a test run, or the images of a dataset-based inference job.' },
  { group: 'Training', env: ['SNAPSHOT_ID'], path: 'snapshotId', schema: identifier(200, 'it is part of the key datasets/{DATASET_ID}/snapshots/{SNAPSHOT_ID}.json').optional(), modes: ['train', 'infer'], help: 'Annotations snapshot datasets/{DATASET_ID}/snapshots/{SNAPSHOT_ID}.json; wins over annotations.json. Letters, digits, "_", "-" and single "." between them; at most 200 characters.' },
  { group: 'Training', env: ['EPOCHS'], path: 'epochs', schema: int({ min: 1, max: 100000 }), modes: ['train'], required: true, help: 'Number of training epochs (at least 1).' },
  { group: 'Training', env: ['BATCH_SIZE'], path: 'batchSize', schema: int({ min: 1, max: 65536 }).default(16), modes: ['train', 'infer'], defaultText: '16', help: 'Batch size.' },
  { group: 'Training', env: ['BATCH_SIZE'], path: 'batchSize', schema: int({ min: 1, max: 65536 }).default(1), modes: ['export'], defaultText: '1', help: 'Batch size for validation and the exported input shape.' },
  { group: 'Training', env: ['LEARNING_RATE'], path: 'learningRate', schema: num({ gt: 0, max: 1 }).optional(), modes: ['train'], defaultText: "the framework's default", help: 'Initial learning rate (ultralytics lr0), above 0 and at most 1.' },
  { group: 'Training', env: ['IMAGE_SIZE'], path: 'imageSize', schema: int({ min: 16, max: 8192 }).default(640), modes: ['train', 'infer'], defaultText: '640', help: 'Training/inference image size in pixels.' },
  { group: 'Training', env: ['SPLIT_STRATEGY'], path: 'splitStrategy', schema: json(SplitStrategySchema, '{"method":"auto","ratio":[0.8,0.2],"seed":42}').optional(), modes: ['train', 'infer'], defaultText: "the dataset's split_config, else auto 0.8/0.2 seed 42", help: 'Train/val split: {"method":"auto","ratio":[0.8,0.2],"seed":42} (Python\'s random.seed + random.shuffle on the images in file order, train = int(len * ratio[0]); optional third part = test; seed an integer, |seed| < 2^53), {"method":"custom","custom_splits":{...}} or {"method":"use_dataset"}.' },
  { group: 'Training', env: ['PRETRAINED_WEIGHT_URL'], path: 'pretrainedWeightUrl', schema: httpUrl().optional(), modes: ['train'], secret: true, help: 'Presigned http(s) URL of pretrained weights; without it the model is built from scratch.' },
  { group: 'Training', env: ['TEXT_ENCODER_WEIGHT_URL'], path: 'textEncoderWeightUrl', schema: httpUrl().optional(), modes: ['train'], secret: true, help: 'YOLO-World (MODEL_NAME=yolo_world_v2_*), required there: presigned http(s) URL of a zip of a transformers CLIP save_pretrained folder (config.json, model.safetensors, tokenizer files; e.g. openai/clip-vit-base-patch32) whose text encoder embeds the class names. Downloaded like PRETRAINED_WEIGHT_URL; safetensors only.' },
  { group: 'Training', env: ['CHECKPOINT_FREQUENCY'], path: 'checkpointFrequency', schema: int({ min: 1 }).default(5), modes: ['train'], defaultText: '5', help: 'Upload checkpoints/job-{JOB_ID}/epoch-{N}.pt every N epochs.' },
  { group: 'Training', env: ['MAX_TRAINING_TIME_SECONDS'], path: 'maxTrainingTimeSeconds', schema: int({ min: 1 }).default(86400), modes: ['train'], defaultText: '86400', help: 'Stop after this many seconds: the last checkpoint is uploaded and the job fails with a time-limit message.' },
  { group: 'Training', env: ['RESUME_CHECKPOINT_PATH'], path: 'resumeCheckpointPath', schema: str({ pattern: /^(s3|file):\/\//, patternMessage: 'must be an s3:// (or file:// for local storage) path of one of our checkpoints' }).optional(), modes: ['train'], help: 'Continue a preempted job from this checkpoint (same model and classes).' },
  { group: 'Training', env: ['HF_CONFIG_OVERRIDES'], path: 'hfConfigOverrides', schema: json(z.record(z.string(), z.unknown(), { error: 'must be a JSON object of configuration fields' }), '{"hidden_size":192,"num_hidden_layers":6}').optional(), modes: ['train'], help: 'FRAMEWORK=huggingface without PRETRAINED_WEIGHT_URL: a JSON object deep-merged into the configuration the model is built from (CLIP: nested text_config/vision_config); a "model_type" key builds any other AutoModelForImageClassification architecture. E.g. a tiny ViT for tests.' },

  { group: 'Training', env: ['TRAINER_ARGS'], path: 'trainerArgs', schema: json(z.record(z.string(), z.json(), { error: 'must be a JSON object of framework settings' }), '{"patience":10,"mosaic":0.5}').optional(), modes: ['train'], help: "Framework-native training settings as a JSON object: ultralytics train arguments (patience, mosaic, optimizer, ...), transformers TrainingArguments fields (weight_decay, lr_scheduler_type, ...), or the timm loop's options (named as timm's train.py names them; listed in the README). Unknown keys, keys that duplicate a variable here (epochs, batch size, image size, learning rate, device, workers, seed) and keys that would break the job's contract (output folders, checkpoint saving, tracking) are configuration errors, checked before any download. The resolved values are logged and sent with the training_started event." },
  { group: 'Training', env: ['SEED'], path: 'seed', schema: int({ min: 0, max: 2 ** 32 - 1 }).optional(), modes: ['train'], defaultText: "the framework's fixed seed (ultralytics 0, timm and transformers 42)", help: 'Random seed of the training run, with deterministic algorithms switched on where the framework allows (see the README for what stays non-deterministic on each framework and device). 0 to 4294967295.' },

  { group: 'Training', env: ['STOP_GRACE_SECONDS'], path: 'stopGraceSeconds', schema: int({ min: 1, max: 86400 }).default(120), modes: ['train'], defaultText: '120', help: 'After SIGTERM/SIGINT, how long the current batch, the last checkpoint and its upload may take before Python is killed (keep it below the pod\'s terminationGracePeriodSeconds).' },

  // Tracking
  { group: 'Tracking', env: ['MLFLOW_TRACKING_URI'], path: 'mlflow.trackingUri', schema: httpUrl().optional(), modes: ['train'], help: "MLflow tracking server (http or https). Each training job becomes one MLflow run: parameters, per-epoch metrics, validation artefacts (confusion matrix, PR curves, per-class table) and the best checkpoint, the same for every framework, sent from the job over MLflow's REST API. Artefacts go through the server's artifact proxy (mlflow server --serve-artifacts). A tracking failure is logged and never fails training." },
  { group: 'Tracking', env: ['MLFLOW_EXPERIMENT_NAME'], path: 'mlflow.experimentName', schema: str().default('vision-trainer'), modes: ['train'], defaultText: 'vision-trainer', help: 'MLflow experiment the runs are logged under (created when missing).' },
  { group: 'Tracking', env: ['MLFLOW_RUN_NAME'], path: 'mlflow.runName', schema: str().optional(), modes: ['train'], defaultText: 'JOB_ID', help: 'Name of the MLflow run.' },
  { group: 'Tracking', env: ['MLFLOW_TRACKING_TOKEN'], path: 'mlflow.token', schema: str().optional(), modes: ['train'], secret: true, help: 'Bearer token for the MLflow server.' },
  { group: 'Tracking', env: ['MLFLOW_TRACKING_USERNAME'], path: 'mlflow.username', schema: str().optional(), modes: ['train'], help: 'Basic-auth user for the MLflow server (with MLFLOW_TRACKING_PASSWORD).' },
  { group: 'Tracking', env: ['MLFLOW_TRACKING_PASSWORD'], path: 'mlflow.password', schema: str().optional(), modes: ['train'], secret: true, help: 'Basic-auth password for the MLflow server.' },
  { group: 'Tracking', env: ['ENABLE_TENSORBOARD'], path: 'tensorboard', schema: bool().default(false), modes: ['train'], defaultText: 'false', help: 'Write TensorBoard event files (losses per batch; losses, metrics and learning rate per epoch; the same for every framework) and upload them under logs/job-{JOB_ID}/tensorboard/.' },

  // Several processes and machines (src/jobs/distributed.ts). The PET_ spellings are what Kubeflow's Training Operator and Trainer set for torchrun.
  { group: 'Distributed', env: ['NPROC_PER_NODE', 'PET_NPROC_PER_NODE'], path: 'distributed.nprocPerNode', schema: processCount.optional(), modes: ['train'], defaultText: 'the number of GPUs DEVICE lists, else 1', help: 'Training processes on this node, one per GPU (PyTorch DDP started by torch\'s elastic launcher): a number, auto (one per GPU DEVICE lists, else per visible GPU; one on a node without GPUs) or gpu. With DEVICE=cpu, that many CPU processes (gloo).' },
  { group: 'Distributed', env: ['NNODES', 'PET_NNODES'], path: 'distributed.nnodes', schema: nodeCount.optional(), modes: ['train'], defaultText: '1 (or WORLD_SIZE / NPROC_PER_NODE)', help: 'Nodes (machines or pods) of a multi-node training, each running `vision-trainer train` with the same configuration. A fixed number.' },
  { group: 'Distributed', env: ['NODE_RANK', 'PET_NODE_RANK'], path: 'distributed.nodeRank', schema: int({ min: 0, max: 4095 }).optional(), modes: ['train'], defaultText: 'RANK, else 0', help: 'This node\'s index, 0 to NNODES-1. Node 0 alone reports: callbacks, checkpoint and log uploads, the outcome; the other nodes download the dataset, train and send nothing.' },
  { group: 'Distributed', env: ['MASTER_ADDR', 'PET_MASTER_ADDR'], path: 'distributed.masterAddr', schema: str({ pattern: /^[A-Za-z0-9.:[\]-]+$/, patternMessage: 'must be a host name or IP address' }).optional(), modes: ['train'], defaultText: '127.0.0.1 on one node; required with NNODES > 1', help: 'Host name or address of node 0, where the nodes meet (torch\'s static rendezvous).' },
  { group: 'Distributed', env: ['MASTER_PORT', 'PET_MASTER_PORT'], path: 'distributed.masterPort', schema: int({ min: 1, max: 65535 }).optional(), modes: ['train'], defaultText: 'a free port on one node; required with NNODES > 1', help: 'TCP port of the rendezvous on node 0 (node 0 listens on it; the other nodes connect).' },
  { group: 'Distributed', env: ['WORLD_SIZE'], path: 'distributed.worldSize', schema: int({ min: 1, max: 1_000_000 }).optional(), modes: ['train'], help: 'Set by the Training Operator (PyTorchJob): every process of the job. Checked against NNODES x NPROC_PER_NODE; gives NNODES when only it is set.' },
  { group: 'Distributed', env: ['RANK'], path: 'distributed.rank', schema: int({ min: 0, max: 1_000_000 }).optional(), modes: ['train'], help: 'Set by the Training Operator (PyTorchJob): this pod\'s index, used as NODE_RANK when that is not set.' },
  { group: 'Distributed', env: ['LOCAL_RANK'], path: 'distributed.localRank', schema: int({ min: 0 }).optional(), modes: ['train'], help: 'Set by torchrun for its workers. vision-trainer starts its workers itself: set, it refuses to start (run `vision-trainer train` in each pod, not under torchrun).' },
  { group: 'Distributed', env: ['RENDEZVOUS_TIMEOUT_SECONDS'], path: 'distributed.rendezvousTimeoutSeconds', schema: int({ min: 10, max: 86400 }).default(900), modes: ['train'], defaultText: '900', help: 'How long the nodes wait for each other before training (each downloads and prepares the dataset first); a node missing then fails the job (exit 11).' },
  { group: 'Distributed', env: ['JOIN_TIMEOUT_SECONDS'], path: 'distributed.joinTimeoutSeconds', schema: int({ min: 5, max: 86400 }).default(300), modes: ['train'], defaultText: '300 (at most RENDEZVOUS_TIMEOUT_SECONDS)', help: 'How long node 0 waits for each other node to check in (its job started and reached node 0\'s rendezvous store, before its dataset download), and how long the other nodes wait for node 0\'s store; a node missing then fails the job (exit 11). A node that checked in and then goes silent for NODE_TIMEOUT_SECONDS before training (killed during its download) fails it then.' },
  { group: 'Distributed', env: ['NODE_TIMEOUT_SECONDS'], path: 'distributed.nodeTimeoutSeconds', schema: int({ min: 5, max: 3600 }).default(60), modes: ['train'], defaultText: '60', help: 'A node whose heartbeat stops for this long (from its check-in, before its download, to the end of training) is lost: the job fails naming it (exit 11) instead of waiting for the rendezvous or the collective\'s own timeout.' },

  // Inference
  { group: 'Inference', env: ['INFERENCE_TYPE'], path: 'inferenceType', schema: oneOf(['test_run', 'inference_job'] as const), modes: ['infer'], required: true, help: 'test_run (labelled dataset, metrics) or inference_job (predictions only).' },
  { group: 'Inference', env: ['CHECKPOINT_PATH'], path: 'checkpointPath', schema: str({ pattern: /^(s3|file):\/\//, patternMessage: 'must be an s3:// path (or file:// for local storage), e.g. s3://bucket/checkpoints/job-1/best.pt' }), modes: ['infer', 'export'], required: true, help: 'Checkpoint to load.' },
  { group: 'Inference', env: ['PROMPT_CHECKPOINT_PATH'], path: 'promptCheckpointPath', schema: str({ pattern: /^(s3|file):\/\//, patternMessage: 'must be an s3:// path (or file:// for local storage), e.g. s3://bucket/checkpoints/job-7/best.pt' }).optional(), modes: ['infer'], help: 'SAM 2 inference jobs (CHECKPOINT_PATH = SAM 2 or 2.1 weights, sam2_t|s|b|l or sam2.1_t|s|b|l, TASK_TYPE=instance_segmentation): an ultralytics detection checkpoint; each of its boxes above CONFIDENCE_THRESHOLD prompts one mask, with the detection\'s class and confidence. Test runs prompt SAM 2 with the ground-truth boxes instead.' },
  { group: 'Inference', env: ['TEST_SPLIT'], path: 'testSplit', schema: oneOf(['train', 'val', 'test'] as const).default('val'), modes: ['infer'], defaultText: 'val', help: 'Split of DATASET_ID evaluated by a test run (resolved exactly as in training).' },
  { group: 'Inference', env: ['IMAGE_PATHS'], path: 'imagePaths', schema: imagePaths.optional(), modes: ['infer'], help: 'Inference jobs: JSON list of s3:// image paths (or use DATASET_ID).' },
  { group: 'Inference', env: ['CONFIDENCE_THRESHOLD'], path: 'confidenceThreshold', schema: num({ min: 0, max: 1 }).default(0.25), modes: ['infer'], defaultText: '0.25', help: 'Minimum confidence of a reported detection.' },
  { group: 'Inference', env: ['IOU_THRESHOLD'], path: 'iouThreshold', schema: num({ min: 0, max: 1 }).default(0.45), modes: ['infer'], defaultText: '0.45', help: 'IoU threshold for NMS.' },
  { group: 'Inference', env: ['SAVE_VISUALIZATIONS'], path: 'saveVisualizations', schema: bool().default(true), modes: ['infer'], defaultText: 'true', help: 'Upload annotated images under visualizations/.' },
  { group: 'Inference', env: ['MAX_VISUALIZATIONS'], path: 'maxVisualizations', schema: int({ min: 0 }).default(200), modes: ['infer'], defaultText: '200', help: 'At most this many images are drawn (visualizations/), explained by heatmaps (xai/) and by the LLM: all of them when they fit, else an evenly spread sample, the same on every run.' },
  { group: 'Inference', env: ['INFERENCE_BACKEND'], path: 'inferenceBackend', schema: oneOf(INFERENCE_BACKEND_CHOICES).default('auto'), modes: ['infer'], defaultText: 'auto', help: "What runs the model: pytorch (the framework itself, any DEVICE), or onnx / openvino: the checkpoint exported once into the job's work folder and run by ONNX Runtime or OpenVINO on the CPU (1.1-1.8x PyTorch's images/s on CPU; bench:infer, docs/performance.md). auto: onnx on the CPU for a job of at least 1,000 images (where the export pays for itself), except semantic segmentation; pytorch on a GPU and for smaller jobs. Pre- and post-processing stay the framework's, so predictions and metrics match PyTorch's; Grad-CAM heatmaps still come from the PyTorch model. results.json's model.inference_backend says what ran." },
  { group: 'Inference', env: ['INFERENCE_MODEL_PATH'], path: 'inferenceModelPath', schema: str({ pattern: /^(s3|file):\/\/.+\.(onnx|openvino)$/, patternMessage: "must be an s3:// (or file://) path of an export job's ONNX or OpenVINO model, e.g. s3://bucket/export-jobs/job-9/model.onnx or .../model.openvino" }).optional(), modes: ['infer'], help: "An export job's model (EXPORT_FORMAT=onnx: export-jobs/{JOB_ID}/model.onnx, or EXPORT_FORMAT=openvino: model.openvino, with its metadata.json beside it) for INFERENCE_BACKEND=onnx or openvino (auto: onnx, or openvino for an OpenVINO model) to run instead of exporting CHECKPOINT_PATH again. It must come from that checkpoint: the job checks metadata.json (task, framework, classes, input size) and compares the graph's scores with the checkpoint's on the same input, and refuses a mismatch (exit code 2). timm, transformers and ultralytics models; an ultralytics graph with NMS built in (the export default) must have this job's IOU_THRESHOLD, or be exported with INCLUDE_POSTPROCESSING=false. ONNX and OpenVINO IR files are parsed, nothing in them runs as code; model.openvino (the IR folder, zipped) is extracted with the dataset zips' checks. results.json's model.inference_backend.model_path names it." },
  { group: 'Inference', env: ['INFERENCE_PRECISION'], path: 'inferencePrecision', schema: oneOf(INFERENCE_PRECISIONS).default('fp32'), modes: ['infer'], defaultText: 'fp32', help: "What the forward pass computes in. fp32: float32 on every backend, so predictions and metrics match PyTorch's. bf16: bfloat16 on OpenVINO (INFERENCE_BACKEND=openvino, or auto, whose graph is then OpenVINO's), on a CPU with native bfloat16 (AVX512-BF16 or AMX), where its forward pass is about twice as fast as in float32 and whole jobs 1.2-1.5x (bench:infer), with class probabilities and box scores that differ from PyTorch's in the third digit, so a prediction near a tie or a threshold can change. Where the CPU has no bfloat16, or auto keeps PyTorch, the job computes in float32 and says so. The first batch is predicted again in float32 and compared (model.inference_backend.precision_check: agreement, largest confidence difference); results.json's model.inference_backend.precision says what ran and precision_reason why." },
  { group: 'Inference', env: ['DECODE_THREADS'], path: 'decodeThreads', schema: int({ min: 1, max: 256 }).optional(), modes: ['infer'], defaultText: "the CPU budget's threads (CPU_THREADS)", help: "Threads that decode and prepare each batch's images (PIL/OpenCV and NumPy release the GIL, so they work side by side). The forward pass leaves these CPUs idle while a batch decodes on one thread: on 2 CPUs decoding 16 images on 2 threads took 0.6-0.7 s where one took 0.9-1.1 s per 640 images. 1: one after another, as a plain Python loop does. So that torch's idle threads do not spin against them between batches, an inference job also sets GOMP_SPINCOUNT=10000 (libgomp's default is 300000) unless the environment sets GOMP_SPINCOUNT or OMP_WAIT_POLICY. results.json's model.inference_backend says what ran (decode_threads, omp_spin_count)." },
  { group: 'Inference', env: ['PREFETCH_NEXT_BATCH'], path: 'prefetchNextBatch', schema: autoOrBool().default('auto'), modes: ['infer'], defaultText: 'auto', help: "true: decode the next batch's images in a background thread while this batch runs through the model; false: decode each batch when its turn comes, as a plain loop does. auto: prefetch when the model's runtime leaves a CPU of the job's budget free for the decoding (a GPU, or fewer compute threads than CPUs), not when it computes on all of them: on 2 CPUs (bench:infer, 640 images, four or five quiet runs) the prefetch's median was 1.02x for ultralytics, which predicts on 1 thread, 0.95x for timm (0.90-1.16x) and 0.94x for transformers, both on 2. results.json's model.inference_backend.prefetch says whether it ran and prefetch_reason why." },
  { group: 'Inference', env: ['RETAIN_FREED_MEMORY'], path: 'retainFreedMemory', schema: bool().default(true), modes: ['infer'], defaultText: 'true', help: "Python's allocator keeps memory a batch freed for the next one (GLIBC_TUNABLES: no mmap below 256 MiB, trim above 512 MiB of free heap) instead of giving it back to the system and taking fresh zeroed pages for every tensor: a small ViT's loop page-faulted 56,000 times a second with glibc's defaults and none with these. Peak memory is unchanged (what is kept was in use at the peak). A GLIBC_TUNABLES in the job's environment that sets glibc.malloc tunables is kept as it is. results.json's model.inference_backend.malloc_tunables says what ran." },
  { group: 'Inference', env: ['ENABLE_XAI'], path: 'enableXai', schema: bool().default(false), modes: ['infer'], defaultText: 'false', help: 'Compute Grad-CAM style heatmaps, uploaded under xai/.' },
  { group: 'Inference', env: ['XAI_METHOD'], path: 'xaiMethod', schema: oneOf(XAI_METHODS).default('gradcam'), modes: ['infer'], defaultText: 'gradcam', help: `XAI method: ${XAI_METHODS.join(', ')}. The CAM methods (grad-cam) work for every task but semantic segmentation; lime and shap (captum's LIME and Kernel SHAP over superpixels) explain classifiers only; attention (attention rollout) explains transformers ViT, DINO and CLIP classifiers.` },
  { group: 'Inference', env: ['XAI_SAMPLES'], path: 'xaiSamples', schema: int({ min: 10, max: 100000 }).default(200), modes: ['infer'], defaultText: '200', help: 'XAI_METHOD=lime|shap: model evaluations per explained image (perturbed copies of it). The cost of an explanation grows with it; only images in the MAX_VISUALIZATIONS sample are explained.' },
  { group: 'Inference', env: ['XAI_TARGET_LAYERS'], path: 'xaiTargetLayers', schema: layerList.optional(), modes: ['infer'], defaultText: 'per architecture', help: 'JSON list of layer paths, e.g. ["model.9"] or ["layer4"]; resolved by attribute/index lookup, never evaluated.' },
  { group: 'Inference', env: ['ENABLE_LLM_EXPLANATION'], path: 'enableLlmExplanation', schema: bool().default(false), modes: ['infer'], defaultText: 'false', help: 'Ask an OpenAI-compatible model for a natural-language explanation of each image in the MAX_VISUALIZATIONS sample; when it fails, the job goes on and the explanation says why.' },
  { group: 'Inference', env: ['OPENAI_API_KEY'], path: 'openai.apiKey', schema: str().optional(), modes: ['infer'], secret: true, help: 'API key for LLM explanations.' },
  { group: 'Inference', env: ['OPENAI_BASE_URL'], path: 'openai.baseUrl', schema: httpUrl().optional(), modes: ['infer'], defaultText: "the SDK's default", help: 'Any OpenAI-compatible server.' },
  { group: 'Inference', env: ['OPENAI_MODEL'], path: 'openai.model', schema: str().default('gpt-4o-mini'), modes: ['infer'], defaultText: 'gpt-4o-mini', help: 'Model for LLM explanations.' },

  // Export
  { group: 'Export', env: ['EXPORT_FORMAT'], path: 'exportFormat', schema: oneOf(EXPORT_FORMATS), modes: ['export'], required: true, help: `Format: ${EXPORT_FORMATS.join(', ')}.` },
  { group: 'Export', env: ['INPUT_SIZE'], path: 'inputSize', schema: inputSize.optional(), modes: ['export'], defaultText: "the checkpoint's training size", help: 'Model input size as [height, width] or one number.' },
  { group: 'Export', env: ['OPTIMIZATION_LEVEL'], path: 'optimizationLevel', schema: int({ min: 0, max: 3 }).default(1), modes: ['export'], defaultText: '1', help: '0 as exported; 1 portable fixes (broadcast constants, checked graph); 2 also onnxslim and ONNX Runtime basic optimizations (TorchScript: frozen); 3 also ONNX Runtime extended/layout optimizations for this CPU (ONNX Runtime only: no C++ wrapper; TorchScript: channels-last layout).' },
  { group: 'Export', env: ['INCLUDE_PREPROCESSING'], path: 'includePreprocessing', schema: bool().default(true), modes: ['export'], defaultText: 'true', help: 'Ship preprocessing (letterbox/resize, normalisation) in the package; ONNX (and timm/transformers OpenVINO) graphs then normalise themselves and take uint8 NHWC pixels (resizing stays in the wrappers).' },
  { group: 'Export', env: ['INCLUDE_POSTPROCESSING'], path: 'includePostprocessing', schema: bool().default(true), modes: ['export'], defaultText: 'true', help: 'Ship postprocessing (NMS, masks, keypoints, softmax top-k) in the package; softmax (timm/transformers classifiers) and NMS (ultralytics detectors, ONNX) are built into the model.' },
  { group: 'Export', env: ['QUANTIZATION_TYPE'], path: 'quantizationType', schema: oneOf(['none', 'dynamic', 'static'] as const).default('none'), modes: ['export'], defaultText: 'none', help: 'none, dynamic, or static (static calibrates on VALIDATION_DATASET_ID).' },
  { group: 'Export', env: ['QUANTIZATION_DTYPE'], path: 'quantizationDtype', schema: oneOf(['int8', 'int16', 'float16'] as const).default('int8'), modes: ['export'], defaultText: 'int8', help: 'int8, int16 or float16.' },
  { group: 'Export', env: ['ENABLE_VALIDATION'], path: 'enableValidation', schema: bool().default(false), modes: ['export'], defaultText: 'false', help: 'Compare the exported model with the original on VALIDATION_DATASET_ID.' },
  { group: 'Export', env: ['VALIDATION_DATASET_ID'], path: 'validationDatasetId', schema: datasetId.optional(), modes: ['export'], help: 'Dataset for validation and static-quantization calibration.' },
  { group: 'Export', env: ['ACCURACY_DROP_MAX'], path: 'accuracyDropMax', schema: num({ min: 0, max: 1 }).default(0.02), modes: ['export'], defaultText: '0.02', help: 'Fail when the primary metric drops by more than this.' },

  // Storage (both spellings of the design)
  { group: 'Storage', env: ['STORAGE_TYPE'], path: 'storage.type', schema: oneOf(['s3', 'r2', 'minio', 'local'] as const).default('s3'), modes: ALL, defaultText: 's3', help: 's3, r2, minio (S3-compatible) or local (a folder with the same keys).' },
  { group: 'Storage', env: ['S3_ENDPOINT', 'R2_ENDPOINT'], path: 'storage.endpoint', schema: httpUrl().optional(), modes: ALL, defaultText: 'AWS S3', help: 'S3-compatible endpoint URL.' },
  { group: 'Storage', env: ['AWS_ACCESS_KEY_ID', 'R2_ACCESS_KEY_ID'], path: 'storage.accessKeyId', schema: str().optional(), modes: ALL, secret: true, help: "Access key id. Required for r2 and minio; for s3 without keys, the AWS SDK's default credential chain is used (IRSA web identity, EKS Pod Identity / container credentials, AWS_PROFILE, instance role)." },
  { group: 'Storage', env: ['AWS_SECRET_ACCESS_KEY', 'R2_SECRET_ACCESS_KEY'], path: 'storage.secretAccessKey', schema: str().optional(), modes: ALL, secret: true, help: 'Secret access key; set together with the access key id.' },
  { group: 'Storage', env: ['AWS_SESSION_TOKEN'], path: 'storage.sessionToken', schema: str().optional(), modes: ALL, secret: true, help: 'Session token of temporary keys (AWS STS), signed into every request with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.' },
  { group: 'Storage', env: ['BUCKET_NAME'], path: 'storage.bucket', schema: str({ pattern: /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, patternMessage: 'must be a valid bucket name (3-63 lowercase letters, digits, "." or "-")' }).default('vision-platform'), modes: ALL, defaultText: 'vision-platform', help: 'Bucket holding datasets, checkpoints, logs and results.' },
  { group: 'Storage', env: ['AWS_REGION', 'S3_REGION'], path: 'storage.region', schema: str().optional(), modes: ALL, defaultText: 'auto for r2, else us-east-1', help: 'Region for request signing.' },
  { group: 'Storage', env: ['LOCAL_STORAGE_PATH'], path: 'storage.root', schema: str().default('./storage'), modes: ALL, defaultText: './storage', help: 'STORAGE_TYPE=local: folder that holds the object keys.' },
  { group: 'Storage', env: ['STORAGE_RETRY_SECONDS'], path: 'storageRetrySeconds', schema: int({ min: 0, max: 86400 }).default(300), modes: ALL, defaultText: '300', help: 'How long each storage operation keeps trying while the storage cannot be reached or answers with a server error (backoff up to 30 s between attempts). During a stop, uploads keep trying until the grace period ends. A checkpoint whose upload finally failed is never deleted: the work folder is kept and its path logged.' },
  { group: 'Storage', env: ['DATASET_PATH'], path: 'storage.datasetPath', schema: str().optional(), modes: ALL, help: 'STORAGE_TYPE=local: use this dataset folder (annotations.json + images/) directly.' },

  // Runtime
  { group: 'Runtime', env: ['ALLOWED_PRIVATE_HOSTS'], path: 'allowedPrivateHosts', schema: hostList().default([]), modes: ['train', 'infer'], defaultText: 'none (the storage endpoint\'s host is always allowed)', help: 'Comma-separated host names, IP addresses or CIDR ranges that PRETRAINED_WEIGHT_URL, OPENAI_BASE_URL and their redirects may reach on loopback or private addresses (e.g. an in-cluster model server: weights.internal,10.0.0.0/8). Link-local and cloud-metadata addresses (169.254.0.0/16, fd00:ec2::254, ...) are refused whatever this says.' },
  { group: 'Runtime', env: ['DEVICE'], path: 'device', schema: str({ pattern: /^(auto|cpu|mps|cuda(:\d+)?|\d+(,\d+)*)$/, patternMessage: 'must be auto, cpu, mps, cuda, cuda:N or GPU indices like 0 or 0,1' }).default('auto'), modes: ALL, defaultText: 'auto (GPU 0 if present, else cpu)', help: 'Device. Training: several GPU indices (0,1) train with one process per GPU (see NPROC_PER_NODE); inference and export run on one device.' },
  { group: 'Runtime', env: ['RETRY_EXIT_CODE_BASE'], path: 'retryExitCodeBase', schema: int({ min: 0, max: 128 }).refine((v) => v === 0 || v === 128, 'must be 0 or 128').default(0), modes: ALL, defaultText: '0', help: 'Added to the exit code of a failure a retry may fix (4, 6, 11; 143 stays). 128 suits the Training Operator\'s restartPolicy: ExitCode (PyTorchJob), which restarts a pod only for exit codes 128-255.' },
  { group: 'Runtime', env: ['NUM_WORKERS'], path: 'numWorkers', schema: int({ min: 0, max: 256 }).default(4), modes: ALL, defaultText: '4', help: 'Data-loader worker processes.' },
  { group: 'Runtime', env: ['CPU_THREADS'], path: 'cpuThreads', schema: int({ min: 1, max: 1024 }).optional(), modes: ALL, defaultText: 'OMP_NUM_THREADS if set, else the CPUs the process may use (cgroup CPU quota, CPU affinity)', help: "Threads for torch's intra-op and inter-op pools and OpenMP/MKL in the Python process; also caps NUM_WORKERS. The default follows a pod's CPU limit, not the node's core count, so a CPU-limited pod is not oversubscribed." },
  { group: 'Runtime', env: ['WORK_DIR'], path: 'workDir', schema: str().optional(), modes: ALL, defaultText: 'a new temp folder', help: 'Parent folder of the job work folder.' },
  { group: 'Runtime', env: ['LOG_UPLOAD_INTERVAL_SECONDS'], path: 'logUploadIntervalSeconds', schema: int({ min: 1, max: 3600 }).default(30), modes: ALL, defaultText: '30', help: 'The job log is uploaded at least this often (training: also after every epoch), and at the end: a job killed outright loses at most the last interval of it.' },
  { group: 'Runtime', env: ['KEEP_WORK_DIR'], path: 'keepWorkDir', schema: bool().default(false), modes: ALL, defaultText: 'false', help: 'Keep the job work folder after the job (for debugging).' },
  { group: 'Runtime', env: ['PYTHON_BIN'], path: 'pythonBin', schema: str().optional(), modes: ALL, defaultText: 'the venv built by npm run setup', help: 'Python interpreter with the pinned requirements.' },
  { group: 'Runtime', env: ['LOG_LEVEL'], path: 'logLevel', schema: oneOf(['debug', 'info', 'warn', 'error'] as const).default('info'), modes: ALL, defaultText: 'info', help: 'debug, info, warn or error.' },
  { group: 'Runtime', env: ['LOG_FORMAT'], path: 'logFormat', schema: oneOf(['auto', 'json', 'text'] as const).default('auto'), modes: ALL, defaultText: 'auto', help: 'auto: JSON lines unless stdout is a terminal.' },
];

export function variablesFor(mode: Mode): Variable[] {
  return VARIABLES.filter((v) => v.modes.includes(mode));
}
