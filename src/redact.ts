/**
 * Secrets never reach logs, callbacks or error messages. Every string that leaves the
 * process (logger, callback payloads, error messages) passes through `redact`.
 * Secret values are registered when the configuration is parsed; presigned-URL
 * signatures and bearer tokens are recognised by shape as well.
 */
const REDACTED = '[REDACTED]';
const secrets = new Set<string>();

/** Remember a secret value (token, key) so it is masked wherever it appears later. */
export function registerSecret(value: string | undefined | null): void {
  // Very short values would mask innocent text; they are not real credentials anyway.
  if (value && value.length >= 6) secrets.add(value);
}

/** Forget registered secrets (tests run several jobs in one process). */
export function clearSecrets(): void {
  secrets.clear();
}

const SHAPES: Array<[RegExp, string]> = [
  // S3/R2 presigned URLs (SigV4 and SigV2), GCS, Azure SAS and generic token query parameters.
  [
    /([?&](?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature|AWSAccessKeyId|X-Goog-Signature|X-Goog-Credential|sig|token|access_token|api_key|apikey|key)=)[^&\s"'#]+/gi,
    `$1${REDACTED}`,
  ],
  [/(Bearer\s+)[A-Za-z0-9._~+/=-]{6,}/g, `$1${REDACTED}`],
  // OpenAI-style API keys.
  [/\bsk-[A-Za-z0-9_-]{8,}/g, REDACTED],
  // Credentials embedded in URLs: scheme://user:password@host
  [/(\b[a-z][a-z0-9+.-]*:\/\/[^/\s:@]+:)[^@\s/]+@/gi, `$1${REDACTED}@`],
];

export function redact(text: string): string {
  let out = text;
  for (const secret of secrets) {
    if (out.includes(secret)) out = out.split(secret).join(REDACTED);
  }
  for (const [pattern, replacement] of SHAPES) out = out.replace(pattern, replacement);
  return out;
}

/** Whether `text` holds a registered secret or something shaped like a credential. */
export function containsSecret(text: string): boolean {
  return redact(text) !== text;
}

/** A URL safe to print: scheme, host and path only; the query (where signatures live) is dropped. */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}${u.search ? '?…' : ''}`;
  } catch {
    return redact(url);
  }
}

/** Deep-redacts every string inside a JSON-like value. */
export function redactDeep<T>(value: T): T {
  if (typeof value === 'string') return redact(value) as T;
  if (Array.isArray(value)) return value.map((v) => redactDeep(v)) as T;
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = redactDeep(v);
    return out as T;
  }
  return value;
}
