/**
 * An HTTP reverse proxy in front of a real server (SeaweedFS, the callback receiver) that fails
 * requests on purpose, chosen per request by a rule the test sets and changes while a job runs:
 *
 *  - `pass`: forwarded unchanged (an S3 client signs for the proxy's host, which is the Host
 *    header the server receives; `Expect` is not a signed header and is answered here);
 *  - `reset`: the connection is destroyed before anything reaches the server (a server that
 *    went away, a dropped network);
 *  - `hang`: the request is held, never answered, until `release()` or `close()`;
 *  - `deliver-then-reset`: the server receives and answers the request, the client gets a reset
 *    instead of the answer (the backend did take the callback; its answer was lost);
 *  - `{ status }`: answered with that status without reaching the server.
 *
 * Every request is recorded with the action taken, so a test asserts on what really happened
 * rather than on timing.
 */
import { request as httpRequest, createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type FaultAction = 'pass' | 'reset' | 'hang' | 'deliver-then-reset' | { status: number };

export interface ProxiedRequest {
  method: string;
  /** Path and query, as the client sent them. */
  path: string;
  action: FaultAction;
  /** Request headers, lower-cased. */
  headers: Record<string, string | string[] | undefined>;
}

export interface FaultProxy {
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string;
  /** Decides each request's fate; `() => 'pass'` by default. */
  rule: (request: { method: string; path: string }) => FaultAction;
  /** Every request, in arrival order, with the action taken. */
  readonly seen: ProxiedRequest[];
  /** Resolves when a request matching `predicate` arrives (or already has). */
  waitFor(predicate: (r: ProxiedRequest) => boolean, timeoutMs?: number): Promise<ProxiedRequest>;
  /** Destroys the connections of held (`hang`) requests. */
  release(): void;
  close(): Promise<void>;
}

export async function startFaultProxy(upstreamPort: number): Promise<FaultProxy> {
  const held = new Set<Socket>();
  const sockets = new Set<Socket>();
  const waiters: Array<{ predicate: (r: ProxiedRequest) => boolean; resolve: (r: ProxiedRequest) => void }> = [];

  const forward = (req: IncomingMessage, res: ServerResponse, resetAfter: boolean): void => {
    const { expect: _expect, ...headers } = req.headers;
    const upstream = httpRequest({ host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers }, (answer) => {
      if (resetAfter) {
        answer.resume();
        answer.on('end', () => req.socket.destroy());
        return;
      }
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => req.socket.destroy());
    req.pipe(upstream);
  };

  const proxy: FaultProxy = {
    endpoint: '',
    rule: () => 'pass',
    seen: [],
    waitFor(predicate, timeoutMs = 120_000) {
      const found = proxy.seen.find(predicate);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no matching request within ${timeoutMs} ms`)), timeoutMs);
        waiters.push({
          predicate,
          resolve: (r) => {
            clearTimeout(timer);
            resolve(r);
          },
        });
      });
    },
    release() {
      for (const socket of held) socket.destroy();
      held.clear();
    },
    close: () =>
      new Promise<void>((done) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => done());
      }),
  };

  const server = createServer((req, res) => {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const action = proxy.rule({ method, path });
    const record: ProxiedRequest = { method, path, action, headers: req.headers };
    proxy.seen.push(record);
    for (const w of waiters.splice(0)) {
      if (w.predicate(record)) w.resolve(record);
      else waiters.push(w);
    }
    if (action === 'pass' || action === 'deliver-then-reset') return forward(req, res, action === 'deliver-then-reset');
    if (action === 'reset') return void req.socket.destroy();
    if (action === 'hang') {
      held.add(req.socket);
      req.resume();
      return;
    }
    req.resume();
    res.writeHead(action.status, { 'content-type': 'text/plain' }).end('injected failure');
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  Object.assign(proxy, { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
  return proxy;
}
