/** The Python child's environment is built from an allow-list: no credential ever reaches it. */
import { afterEach, describe, expect, it } from 'vitest';
import {
  RETAIN_FREED_MEMORY_TUNABLES,
  inferenceSpinEnv,
  isAllowedPythonVariable,
  pythonEnvironment,
  retainFreedMemoryEnv,
} from '../../src/bridge/environment.js';
import { clearSecrets, registerSecret } from '../../src/redact.js';

/** Variables the frameworks need: passed as they are. */
const NEEDED = {
  PATH: '/usr/bin',
  HOME: '/home/job',
  LANG: 'C.UTF-8',
  LC_ALL: 'C.UTF-8',
  TMPDIR: '/tmp',
  CUDA_VISIBLE_DEVICES: '0,1',
  NVIDIA_DRIVER_CAPABILITIES: 'compute',
  NCCL_DEBUG: 'WARN',
  OMP_NUM_THREADS: '4',
  MKL_NUM_THREADS: '4',
  PYTORCH_CUDA_ALLOC_CONF: 'expandable_segments:True',
  HF_HUB_OFFLINE: '1',
  YOLO_VERBOSE: 'false',
};

/** Credentials and everything else: never passed. */
const OTHERS = {
  CALLBACK_TOKEN: 'callback-token-123456',
  AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE123',
  AWS_SECRET_ACCESS_KEY: 'storage-secret-123456',
  R2_SECRET_ACCESS_KEY: 'r2-secret-123456',
  OPENAI_API_KEY: 'sk-openai-1234567890',
  HF_TOKEN: 'hf_token_1234567890',
  HUGGING_FACE_HUB_TOKEN: 'hf_token_1234567890',
  YOLO_API_KEY: 'yolo-key-123456',
  TORCH_PASSWORD: 'pw-123456',
  BACKEND_BASE_URL: 'https://api.example.com',
  PRETRAINED_WEIGHT_URL: 'https://x/w.pt?X-Amz-Signature=abc',
  NODE_OPTIONS: '--inspect',
  LD_PRELOAD: '/tmp/evil.so',
  SOMETHING_ELSE: 'x',
};

const SOURCE: NodeJS.ProcessEnv = { ...NEEDED, PYTHONPATH: '/opt/extra', ...OTHERS };

afterEach(() => clearSecrets());

describe('pythonEnvironment', () => {
  it('passes paths, locale, accelerator, thread and framework settings, and nothing else', () => {
    const env = pythonEnvironment(SOURCE, { pythonPath: ['/app/python'], extra: { YOLO_OFFLINE: 'true' } });
    expect(env).toEqual({
      ...NEEDED,
      PYTHONPATH: '/app/python:/opt/extra',
      PYTHONUNBUFFERED: '1',
      PYTHONDONTWRITEBYTECODE: '1',
      ULTRALYTICS_SAFE_LOAD: '1',
      YOLO_OFFLINE: 'true',
    });
  });

  it('drops an allow-listed variable whose value holds a registered secret', () => {
    registerSecret('callback-token-123456');
    const env = pythonEnvironment({ ...SOURCE, OMP_SCHEDULE: 'static callback-token-123456' }, { pythonPath: [] });
    expect(env.OMP_SCHEDULE).toBeUndefined();
    expect(JSON.stringify(env)).not.toContain('callback-token-123456');
  });

  it('refuses an adapter variable named like a credential', () => {
    expect(() => pythonEnvironment(SOURCE, { pythonPath: [], extra: { HF_TOKEN: 'x' } })).toThrow(/Python holds no credentials/);
  });

  it('judges names: credentials never, whatever their prefix', () => {
    for (const name of ['HF_TOKEN', 'HF_API_KEY', 'YOLO_API_KEY', 'CUDA_SECRET', 'TORCH_AUTH_HEADER', 'OMP_PASSWORD', 'NVIDIA_ACCESS_KEY'])
      expect(isAllowedPythonVariable(name), name).toBe(false);
    for (const name of ['HF_HOME', 'CUDA_VISIBLE_DEVICES', 'TORCH_HOME', 'LC_CTYPE', 'OPENBLAS_NUM_THREADS', 'VISION_TRAINER_FAILPOINTS'])
      expect(isAllowedPythonVariable(name), name).toBe(true);
  });
});

describe('retainFreedMemoryEnv (RETAIN_FREED_MEMORY)', () => {
  it("sets glibc's malloc tunables, keeps an operator's other tunables, and never overrides their malloc ones", () => {
    expect(retainFreedMemoryEnv({})).toEqual({ GLIBC_TUNABLES: RETAIN_FREED_MEMORY_TUNABLES });
    expect(RETAIN_FREED_MEMORY_TUNABLES).toMatch(/^glibc\.malloc\.mmap_threshold=268435456:glibc\.malloc\.trim_threshold=536870912:/);
    expect(retainFreedMemoryEnv({ GLIBC_TUNABLES: 'glibc.cpu.hwcaps=-AVX512F' })).toEqual({
      GLIBC_TUNABLES: `glibc.cpu.hwcaps=-AVX512F:${RETAIN_FREED_MEMORY_TUNABLES}`,
    });
    expect(retainFreedMemoryEnv({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' })).toEqual({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' });
  });

  it('reaches Python through the allow-list', () => {
    expect(isAllowedPythonVariable('GLIBC_TUNABLES')).toBe(true);
    expect(pythonEnvironment({ PATH: '/usr/bin' }, { pythonPath: [], extra: retainFreedMemoryEnv({}) }).GLIBC_TUNABLES).toBe(RETAIN_FREED_MEMORY_TUNABLES);
  });
});

describe('inferenceSpinEnv', () => {
  it("shortens libgomp's spin unless the environment chose a spin or a wait policy", () => {
    expect(inferenceSpinEnv({})).toEqual({ GOMP_SPINCOUNT: '10000' });
    expect(inferenceSpinEnv({ GOMP_SPINCOUNT: '300000' })).toEqual({});
    expect(inferenceSpinEnv({ OMP_WAIT_POLICY: 'PASSIVE' })).toEqual({});
    expect(pythonEnvironment({ GOMP_SPINCOUNT: '300000' }, { pythonPath: [] }).GOMP_SPINCOUNT).toBe('300000');
  });
});
