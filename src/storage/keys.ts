/**
 * Object keys, URIs and the one rule that keeps untrusted names (object keys, zip entries)
 * inside the folder they are written to.
 */
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StorageError } from '../errors.js';
import { describeUrl } from '../redact.js';

/**
 * Throws unless `key` is a usable object key: not empty, no leading slash, no `.`/`..`
 * segments, no NUL. S3 would accept more, but such keys cannot map onto a local folder safely.
 */
export function assertValidKey(key: string): void {
  const problem = keyProblem(key, false);
  if (problem)
    throw new StorageError(`Invalid object key ${JSON.stringify(key)}: ${problem}`, {
      key,
      hint: 'Object keys look like `datasets/my-set.zip`: relative, slash-separated, no `.` or `..` parts.',
    });
}

/** Like assertValidKey, but an empty prefix (everything) and a trailing slash are fine. */
export function assertValidPrefix(prefix: string): void {
  if (prefix === '') return;
  const problem = keyProblem(prefix, true);
  if (problem) throw new StorageError(`Invalid key prefix ${JSON.stringify(prefix)}: ${problem}`, { key: prefix });
}

function keyProblem(key: string, isPrefix: boolean): string | undefined {
  if (key === '') return 'it is empty';
  if (key.includes('\0')) return 'it contains a NUL character';
  if (key.startsWith('/')) return 'it starts with "/" (keys are relative to the bucket)';
  if (key.includes('\\')) return 'it contains a backslash (use "/" between folders)';
  const segments = key.split('/');
  if (isPrefix && segments.at(-1) === '') segments.pop();
  if (segments.some((s) => s === '.' || s === '..')) return 'it contains a "." or ".." segment';
  return undefined;
}

/**
 * The absolute path of `name` (a slash-separated relative path from an untrusted source)
 * under `root`, or undefined when it would land outside root (`..`, absolute paths, drive
 * letters, backslash tricks) or is root itself.
 */
export function resolveInside(root: string, name: string): string | undefined {
  if (name.includes('\0') || name.includes('\\') || /^[a-zA-Z]:/.test(name) || name.startsWith('/')) return undefined;
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.length === 0 || parts.includes('..')) return undefined;
  const base = resolve(root);
  const target = resolve(base, ...parts);
  const rel = relative(base, target);
  if (rel === '' || rel.startsWith(`..${sep}`) || rel === '..' || isAbsolute(rel)) return undefined;
  return target;
}

export function s3Uri(bucket: string, key: string): string {
  return `s3://${bucket}/${key}`;
}

/**
 * The key a URI names, for a storage whose bucket is `bucket` and (local storage only) whose
 * folder is `localRoot`. Accepts `s3://{bucket}/{key}`, `file://` paths inside localRoot, and
 * bare keys (no scheme), which are returned as they are after validation.
 */
export function parseStorageUri(uri: string, bucket: string | undefined, localRoot?: string): string {
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(uri)?.[1]?.toLowerCase();
  if (scheme === undefined) {
    assertValidKey(uri);
    return uri;
  }
  if (scheme === 's3') {
    const rest = uri.slice('s3://'.length);
    const slash = rest.indexOf('/');
    const uriBucket = slash === -1 ? rest : rest.slice(0, slash);
    const key = slash === -1 ? '' : rest.slice(slash + 1);
    if (bucket === undefined) {
      throw new StorageError(`Cannot resolve ${uri}: this local storage has no bucket name to match it against`, {
        key,
        hint: 'Give local storage a bucket (BUCKET_NAME) so s3:// URIs map into its folder, or pass a file:// path or a plain key.',
      });
    }
    if (uriBucket !== bucket) {
      throw new StorageError(`${uri} is in bucket "${uriBucket}", but this job's storage is bucket "${bucket}"`, {
        key,
        hint: `Copy the object into bucket "${bucket}", or set BUCKET_NAME to "${uriBucket}" if that is the bucket the job should use.`,
      });
    }
    if (key === '') throw new StorageError(`${uri} names a bucket but no object key`, { hint: `Write it as s3://${bucket}/path/to/object.` });
    assertValidKey(key);
    return key;
  }
  if (scheme === 'file' && localRoot !== undefined) {
    let path: string;
    try {
      path = fileURLToPath(uri);
    } catch (err) {
      throw new StorageError(`${uri} is not a valid file:// URI: ${(err as Error).message}`);
    }
    const rel = relative(resolve(localRoot), path);
    if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) {
      throw new StorageError(`${uri} is outside the local storage folder ${resolve(localRoot)}`, {
        hint: 'Local storage only reads files under its root folder; copy the file there or change the root.',
      });
    }
    const key = rel.split(sep).join('/');
    assertValidKey(key);
    return key;
  }
  const accepted = localRoot === undefined ? 's3://' : 's3:// or file://';
  throw new StorageError(`${describeUrl(uri)} is not a storage URI this job can read (expected ${accepted})`, {
    hint: 'Pass an object URI such as s3://bucket/checkpoints/job-1/best.pt, or a plain object key.',
  });
}
