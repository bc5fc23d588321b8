/**
 * Idempotency-Keys. A progress callback gets a random key, the same for all its attempts. A
 * completion's key is derived from what it says: the job id, the endpoint and the body without
 * its timestamp. The same outcome sent again, by this process or by a retried pod re-sending
 * the stored outcome (src/jobs/outcome.ts), is then recognisably the same delivery; a
 * different outcome of the same job gets a different key.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { CallbackKind } from './schemas.js';

export function progressKey(): string {
  return randomUUID();
}

/** JSON with object keys sorted at every depth: equal values give equal text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  });
}

/** A UUID-shaped (version 8, name-based) digest of the job id, the endpoint and the body without its timestamp. */
export function completionKey(jobId: string, kind: CallbackKind, body: object): string {
  const { timestamp: _timestamp, ...content } = body as Record<string, unknown>;
  const hex = createHash('sha256')
    .update(`vision-trainer completion\n${jobId}\n${kind}\n${canonicalJson(content)}`)
    .digest('hex');
  const variant = ((Number.parseInt(hex[16] as string, 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}
