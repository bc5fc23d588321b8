/** HTTP callbacks to the backend: the client jobs use, and the schemas that define each body. */
export { CallbackClient, type CallbackClientOptions, type CallbackClientStats } from './client.js';
export { buildPayload, CallbackPayloadError, isoTimestamp, sanitizeNumbers } from './payload.js';
export { COMPLETION_RETRY_POLICY, PROGRESS_RETRY_POLICY, type FetchLike, type RetryPolicy } from './transport.js';
export * from './schemas.js';
