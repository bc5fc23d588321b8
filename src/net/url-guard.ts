/**
 * URLs that come from a job's configuration (PRETRAINED_WEIGHT_URL, OPENAI_BASE_URL), and every
 * redirect they lead to, cannot reach inside the cluster:
 *  - only http: and https:;
 *  - link-local and cloud-metadata addresses (addresses.ts) are always refused;
 *  - loopback and private addresses are refused unless the host is the configured storage
 *    endpoint's host or is listed in ALLOWED_PRIVATE_HOSTS (names, IPs or CIDR ranges).
 * The check runs where the connection is made, not on a name resolved beforehand: the DNS
 * lookup of every connection is judged before connecting, and the address the socket actually
 * connected to is judged again before a byte is sent, so a name that resolves differently the
 * second time (DNS rebinding) or an IP literal cannot slip through.
 *
 * Not affected: the backend (BACKEND_BASE_URL) and the storage endpoint, which the job trusts,
 * and the AWS SDK's own credential providers, which must reach instance/container metadata.
 */
import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions, type LookupOneOptions } from 'node:dns';
import type { Socket } from 'node:net';
import { Agent, buildConnector, type Dispatcher } from 'undici';
import { ExitCode, VisionTrainerError } from '../errors.js';
import { describeUrl } from '../redact.js';
import { addressInEntry, classifyAddress, parseIp } from './addresses.js';

export const ALLOW_VARIABLE = 'ALLOWED_PRIVATE_HOSTS';

export interface UrlPolicy {
  /**
   * ALLOWED_PRIVATE_HOSTS: host names (matched by name), IP literals and CIDR ranges (matched by
   * the address connected to) that may be reached on loopback/private addresses.
   */
  allowedPrivateHosts: readonly string[];
  /** The storage endpoint's host, allowed by name: the bucket is trusted, another name for its address is not. */
  storageHost?: string | undefined;
}

/** The policy of a job: ALLOWED_PRIVATE_HOSTS plus the storage endpoint's host. */
export function jobUrlPolicy(config: { allowedPrivateHosts?: readonly string[]; storage: object }): UrlPolicy {
  const endpoint = 'endpoint' in config.storage ? (config.storage.endpoint as string | undefined) : undefined;
  return urlPolicy(config.allowedPrivateHosts, endpoint);
}

export function urlPolicy(allowed: readonly string[] | undefined, storageEndpoint?: string): UrlPolicy {
  let storageHost: string | undefined;
  try {
    storageHost = storageEndpoint ? bareHost(new URL(storageEndpoint).hostname) : undefined;
  } catch {
    // config validation reports a bad endpoint
  }
  return { allowedPrivateHosts: [...(allowed ?? [])], storageHost };
}

/** A URL (or a redirect of it) that points where the job must not go: a configuration problem, never retried. */
export class UrlRefusedError extends VisionTrainerError {
  readonly code = 'ERR_VISION_TRAINER_URL_REFUSED';
  constructor(message: string, hint: string) {
    super(message, { exitCode: ExitCode.config, hint });
  }
}

const PRIVATE_HINT = `To reach a host on a private network on purpose, add its name (or address/CIDR range) to ${ALLOW_VARIABLE}. Link-local and cloud-metadata addresses can never be allowed.`;

function bareHost(hostname: string): string {
  return hostname.replace(/^\[|\]$/g, '').toLowerCase();
}

function isAllowed(policy: UrlPolicy, hostname: string, address: string): boolean {
  const host = bareHost(hostname);
  if (policy.storageHost !== undefined && host === policy.storageHost) return true;
  return policy.allowedPrivateHosts.some((entry) => {
    const e = entry.trim().toLowerCase();
    if (!e) return false;
    if (parseIp(e) || e.includes('/')) return addressInEntry(address, e) || (parseIp(host) !== undefined && addressInEntry(host, e));
    return bareHost(e) === host;
  });
}

/** Why `hostname` reached at `address` is refused, or undefined when it is fine. */
export function refusal(policy: UrlPolicy, hostname: string, address: string): UrlRefusedError | undefined {
  const verdict = classifyAddress(address);
  const where = bareHost(hostname) === bareHost(address) ? address : `${bareHost(hostname)} (${address})`;
  if (verdict.kind === 'forbidden') {
    return new UrlRefusedError(`${where} is a ${verdict.range} address: URLs from the job's configuration never reach it`, PRIVATE_HINT);
  }
  if (verdict.kind === 'private' && !isAllowed(policy, hostname, address)) {
    return new UrlRefusedError(`${where} is a ${verdict.range} address, and ${bareHost(hostname)} is not in ${ALLOW_VARIABLE}`, PRIVATE_HINT);
  }
  return undefined;
}

/** Checks a URL before any request: http(s) only, and an IP literal host judged at once. */
export function checkUrl(policy: UrlPolicy, url: string, what: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UrlRefusedError(`${what} ${JSON.stringify(describeUrl(url))} is not a valid URL`, 'Use a full http(s) URL.');
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new UrlRefusedError(
      `${what} ${describeUrl(url)} was refused: only http:// and https:// URLs are followed, not ${parsed.protocol}//`,
      'Use an http(s) URL.',
    );
  }
  if (parsed.username || parsed.password) {
    throw new UrlRefusedError(
      `${what} ${describeUrl(url)} was refused: it carries credentials in the URL`,
      'Use a presigned URL (the signature in the query string) instead.',
    );
  }
  if (parseIp(parsed.hostname)) {
    const refused = refusal(policy, parsed.hostname, parsed.hostname);
    if (refused) throw new UrlRefusedError(`${what} ${describeUrl(url)} was refused: ${refused.message}`, refused.hint ?? PRIVATE_HINT);
  }
  return parsed;
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** dns.lookup that fails for names resolving to a refused address (any of them). */
function guardedLookup(policy: UrlPolicy) {
  return (hostname: string, options: LookupOneOptions | LookupAllOptions | number, callback: LookupCallback): void => {
    const opts = typeof options === 'number' ? { family: options } : options;
    dnsLookup(hostname, { ...opts, all: true }, (err, addresses) => {
      if (err) return callback(err, []);
      for (const { address } of addresses) {
        const refused = refusal(policy, hostname, address);
        if (refused) return callback(refused as unknown as NodeJS.ErrnoException, []);
      }
      if ((opts as LookupAllOptions).all) return callback(null, addresses);
      const first = addresses[0];
      if (!first) return callback(Object.assign(new Error(`${hostname} did not resolve`), { code: 'ENOTFOUND' }), []);
      callback(null, first.address, first.family);
    });
  };
}

export interface GuardedAgentOptions {
  connectTimeoutMs?: number;
  headersTimeoutMs?: number;
  bodyTimeoutMs?: number;
  /**
   * Replaces the guarded DNS lookup (tests: a resolver that lies, as DNS rebinding does). The
   * address the socket connected to is judged all the same.
   */
  unguardedLookup?: (hostname: string, options: object, callback: LookupCallback) => void;
}

/** An undici dispatcher whose every connection, redirects included, obeys the policy. */
export function guardedAgent(policy: UrlPolicy, options: GuardedAgentOptions = {}): Agent {
  const base = buildConnector({ timeout: options.connectTimeoutMs ?? 60_000, lookup: (options.unguardedLookup ?? guardedLookup(policy)) as never });
  const connect: buildConnector.connector = (opts, callback) => {
    const literal = parseIp(opts.hostname);
    if (literal) {
      const refused = refusal(policy, opts.hostname, opts.hostname);
      if (refused) return callback(refused, null);
    }
    base(opts, (err, socket) => {
      if (err) return callback(err, null);
      const remote = (socket as Socket).remoteAddress;
      const refused = remote
        ? refusal(policy, opts.hostname, remote)
        : new UrlRefusedError(`the connection to ${opts.hostname} has no peer address`, PRIVATE_HINT);
      if (refused) {
        socket!.destroy();
        return callback(refused, null);
      }
      callback(null, socket!);
    });
  };
  return new Agent({
    connect,
    ...(options.headersTimeoutMs !== undefined ? { headersTimeout: options.headersTimeoutMs } : {}),
    ...(options.bodyTimeoutMs !== undefined ? { bodyTimeout: options.bodyTimeoutMs } : {}),
  });
}

/** The UrlRefusedError inside an error undici raised, if that is what it is. */
export function urlRefusal(err: unknown): UrlRefusedError | undefined {
  let e: unknown = err;
  for (let depth = 0; e && depth < 5; depth++) {
    if (e instanceof UrlRefusedError) return e;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

export type { Dispatcher };
