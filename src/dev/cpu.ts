import { readFileSync } from 'node:fs';

/**
 * Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX), which OpenVINO needs to
 * honour INFERENCE_PRECISION=bf16: bench:infer adds its openvino-bf16 runs and the tests expect
 * bf16 to run only where this holds. Linux only; elsewhere false.
 */
export function cpuHasNativeBf16(): boolean {
  try {
    return /\b(avx512_bf16|amx_bf16)\b/.test(readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    return false;
  }
}
