/**
 * The environment the Python child starts with. Python parses artifacts that come from outside
 * (checkpoints, weights, datasets), so it gets nothing it could leak: no CALLBACK_TOKEN, no
 * storage keys, no OPENAI_API_KEY, no HF_TOKEN. Node does all network I/O; Python reads and
 * writes local files only. The child's environment is built from an allow-list, never from
 * process.env minus a deny-list, so a secret added to the job later stays out by default.
 *
 * What passes (taken from Node's environment when set):
 *  - paths and identity: PATH, HOME, USER, LOGNAME, TMPDIR/TMP/TEMP, XDG_CACHE_HOME,
 *    XDG_CONFIG_HOME, LD_LIBRARY_PATH, PYTHONPATH (ours is prepended), SSL_CERT_FILE/SSL_CERT_DIR
 *  - locale and time: LANG, LANGUAGE, LC_*, TZ
 *  - accelerators: CUDA_*, NVIDIA_*, NCCL_*, CUBLAS_*, CUDNN_*, ROCR_*, HIP_*
 *  - thread counts and math libraries: OMP_*, MKL_*, OPENBLAS_*, KMP_*, GOMP_*, NUMEXPR_*
 *  - the C allocator: GLIBC_TUNABLES
 *  - frameworks: TORCH_*, TORCHINDUCTOR_*, TRITON_*, PYTORCH_*, HF_*, TRANSFORMERS_*, YOLO_*,
 *    ULTRALYTICS_*, TIMM_*, MPLCONFIGDIR, OPENCV_*
 *  - test fault injection: VISION_TRAINER_FAILPOINTS
 * Any of those whose name looks like a credential (TOKEN, SECRET, PASSWORD, KEY, CREDENTIAL,
 * AUTH, ...) or whose value holds a registered secret is dropped all the same (HF_TOKEN).
 *
 * What is always set: PYTHONUNBUFFERED=1 (output reaches the log as it happens),
 * PYTHONDONTWRITEBYTECODE=1 (the application folder is read-only in the container),
 * ULTRALYTICS_SAFE_LOAD=1 (ultralytics' allow-list checkpoint loader), then the adapter's
 * variables (offline switches, per-job cache folders).
 */
import { containsSecret } from '../redact.js';

const EXACT = new Set([
  'PATH',
  'HOME',
  'USER',
  'LOGNAME',
  'TMPDIR',
  'TMP',
  'TEMP',
  'XDG_CACHE_HOME',
  'XDG_CONFIG_HOME',
  'LD_LIBRARY_PATH',
  'SSL_CERT_FILE',
  'SSL_CERT_DIR',
  'LANG',
  'LANGUAGE',
  'TZ',
  'MPLCONFIGDIR',
  'GLIBC_TUNABLES',
  'VISION_TRAINER_FAILPOINTS',
]);

const PREFIXES = [
  'LC_',
  'CUDA_',
  'NVIDIA_',
  'NCCL_',
  'CUBLAS_',
  'CUDNN_',
  'ROCR_',
  'HIP_',
  'OMP_',
  'MKL_',
  'OPENBLAS_',
  'KMP_',
  'GOMP_',
  'NUMEXPR_',
  'TORCH_',
  'TORCHINDUCTOR_',
  'TRITON_',
  'PYTORCH_',
  'HF_',
  'TRANSFORMERS_',
  'YOLO_',
  'ULTRALYTICS_',
  'TIMM_',
  'OPENCV_',
];

/** Names that look like credentials, wherever they appear in the name. */
const SECRET_NAME = /TOKEN|SECRET|PASSW|PASSPHRASE|CREDENTIAL|API_?KEY|ACCESS_?KEY|PRIVATE|AUTH|COOKIE|SESSION|(^|_)KEY($|_)/i;

/** Whether Node passes `name` on to Python (before the secret checks). */
export function isAllowedPythonVariable(name: string): boolean {
  if (SECRET_NAME.test(name)) return false;
  return EXACT.has(name) || PREFIXES.some((p) => name.startsWith(p));
}

export interface PythonEnvironmentOptions {
  /** Folders put first on PYTHONPATH (our python/ package). */
  pythonPath: string[];
  /** The adapter's variables (offline switches, cache folders): always set. */
  extra?: Record<string, string> | undefined;
}

/** The complete environment for the Python child, built from `source` (Node's environment). */
export function pythonEnvironment(source: NodeJS.ProcessEnv, options: PythonEnvironmentOptions): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(source)) {
    if (value === undefined || !isAllowedPythonVariable(name) || containsSecret(value)) continue;
    env[name] = value;
  }
  const inherited = source.PYTHONPATH && !containsSecret(source.PYTHONPATH) ? [source.PYTHONPATH] : [];
  const pythonPath = [...options.pythonPath, ...inherited].join(':');
  if (pythonPath) env.PYTHONPATH = pythonPath;
  Object.assign(env, {
    PYTHONUNBUFFERED: '1',
    PYTHONDONTWRITEBYTECODE: '1',
    ULTRALYTICS_SAFE_LOAD: '1',
  });
  for (const [name, value] of Object.entries(options.extra ?? {})) {
    if (SECRET_NAME.test(name)) throw new Error(`refusing to pass ${name} to Python: Python holds no credentials`);
    env[name] = value;
  }
  return env;
}

/**
 * glibc malloc settings under which Python keeps the memory a batch freed for the next one: no
 * mmap below 256 MiB (glibc's dynamic threshold otherwise maps and unmaps a model's activations
 * on every batch) and no trimming below 512 MiB of free heap, 64 MiB of heap grown at a time. With
 * glibc's defaults a small ViT's inference loop took 56,000 fresh zeroed pages a second; with
 * these, none. What is kept was in use at the peak, so the peak does not grow.
 */
export const RETAIN_FREED_MEMORY_TUNABLES = 'glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=536870912:glibc.malloc.top_pad=67108864';

/**
 * GLIBC_TUNABLES for a job's Python when RETAIN_FREED_MEMORY is on: the environment's own
 * malloc tunables win (an operator's choice stands); other tunables it sets are kept beside ours.
 */
export function retainFreedMemoryEnv(source: NodeJS.ProcessEnv): Record<string, string> {
  const existing = source.GLIBC_TUNABLES?.trim();
  if (!existing) return { GLIBC_TUNABLES: RETAIN_FREED_MEMORY_TUNABLES };
  if (/(^|:)glibc\.malloc\./.test(existing)) return { GLIBC_TUNABLES: existing };
  return { GLIBC_TUNABLES: `${existing}:${RETAIN_FREED_MEMORY_TUNABLES}` };
}

/**
 * libgomp's spin before an idle OpenMP thread sleeps, for inference jobs: 10,000 rounds (well
 * under a millisecond) instead of 300,000. Inside a forward pass the gaps between parallel
 * regions are microseconds, so torch's threads still find work while spinning; between batches
 * they sleep instead of spinning against the threads decoding the next batch and Node's work on
 * the last answer. Measured on 2 CPUs (timm ResNet-18 jobs, interleaved): 88-97 images/s against
 * 76-95 with the default, and steadier. An environment that sets GOMP_SPINCOUNT or
 * OMP_WAIT_POLICY keeps its own (they reach Python through the allow-list).
 */
export const INFERENCE_GOMP_SPINCOUNT = '10000';

export function inferenceSpinEnv(source: NodeJS.ProcessEnv): Record<string, string> {
  return source.GOMP_SPINCOUNT?.trim() || source.OMP_WAIT_POLICY?.trim() ? {} : { GOMP_SPINCOUNT: INFERENCE_GOMP_SPINCOUNT };
}
