/**
 * The dashboard's HTTP side, served on the callback receiver's own port (every GET that is not a
 * callback path): the page's static files, uPlot from node_modules, the board's state as JSON,
 * live updates as Server-Sent Events, and test-run images from the stack's S3 server.
 *
 * Loopback only: requests must name the loopback host in `Host` (no DNS-rebinding page can
 * read the board), and the page runs under a strict Content-Security-Policy.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { PROJECT_ROOT } from '../../paths.js';
import { ARTIFACTS_ROUTE, type DashboardArtifacts } from './artifacts.js';
import { LIMITS, type JobBoard } from './board.js';
import type { JobView, LogEntry, Snapshot, StackInfo } from './view.js';

/** The page's own files (HTML, JavaScript modules, CSS): served as they are, no build step. */
export const PAGE_DIR = join(PROJECT_ROOT, 'src', 'dev', 'dashboard', 'page');
const PAGE_FILES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'charts.js': 'text/javascript; charset=utf-8',
  'panels.js': 'text/javascript; charset=utf-8',
  'dom.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
  'icon.svg': 'image/svg+xml',
};

/** uPlot's browser builds, straight from the installed package. */
const UPLOT_DIST = dirname(createRequire(import.meta.url).resolve('uplot'));
const VENDOR_FILES: Record<string, { file: string; type: string }> = {
  'uPlot.esm.js': { file: join(UPLOT_DIST, 'uPlot.esm.js'), type: 'text/javascript; charset=utf-8' },
  'uPlot.min.css': { file: join(UPLOT_DIST, 'uPlot.min.css'), type: 'text/css; charset=utf-8' },
};

/** Job updates are coalesced: a job's view is sent at most this often per client. */
const FLUSH_MS = 150;
/** An SSE comment this often lets both ends notice a dead connection. */
const PING_MS = 15_000;

export interface Dashboard {
  /** For the receiver's `serveOther`: takes every GET/HEAD that is not a callback path. */
  serve(req: IncomingMessage, res: ServerResponse): boolean;
  setStack(info: StackInfo): void;
  close(): Promise<void>;
}

export function createDashboard(board: JobBoard, artifacts: DashboardArtifacts): Dashboard {
  const contentSecurityPolicy = pagePolicy();
  const clients = new Set<SseClient>();
  let stack: StackInfo = { s3Endpoint: '', bucket: '', receiverUrl: '', dashboardUrl: '' };

  const snapshot = (): Snapshot => ({ stack, jobs: board.allJobs(), log: board.recentLog() });

  const unsubscribe = board.subscribe((change) => {
    for (const client of clients) client.queue(change);
  });

  async function route(req: IncomingMessage, res: ServerResponse, pathname: string): Promise<void> {
    const headOnly = req.method === 'HEAD';
    if (pathname === '/' || pathname === '/index.html')
      return sendFile(res, join(PAGE_DIR, 'index.html'), PAGE_FILES['index.html']!, headOnly, contentSecurityPolicy);
    if (pathname.startsWith('/app/')) {
      const name = pathname.slice('/app/'.length);
      const type = Object.hasOwn(PAGE_FILES, name) ? PAGE_FILES[name] : undefined;
      if (type) return sendFile(res, join(PAGE_DIR, name), type, headOnly);
    }
    if (pathname.startsWith('/vendor/')) {
      const name = pathname.slice('/vendor/'.length);
      const vendor = Object.hasOwn(VENDOR_FILES, name) ? VENDOR_FILES[name] : undefined;
      if (vendor) return sendFile(res, vendor.file, vendor.type, headOnly);
    }
    if (pathname === '/api/state') return sendJson(res, snapshot());
    if (pathname === '/api/events') return openEventStream(req, res);
    const requestMatch = /^\/api\/requests\/(\d+)$/.exec(pathname);
    if (requestMatch) {
      const request = board.request(Number(requestMatch[1]));
      return request ? sendJson(res, request) : sendText(res, 404, 'no such request (the log keeps the latest 5000)');
    }
    if (pathname.startsWith(ARTIFACTS_ROUTE)) return artifacts.serve(pathname, res, headOnly);
    if (pathname === '/favicon.ico') return sendFile(res, join(PAGE_DIR, 'icon.svg'), PAGE_FILES['icon.svg']!, headOnly);
    sendText(res, 404, `not found: ${pathname}`);
  }

  function openEventStream(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    const client = new SseClient(res);
    clients.add(client);
    client.send('snapshot', snapshot());
    req.on('close', () => {
      client.close();
      clients.delete(client);
    });
  }

  return {
    serve(req, res) {
      if (req.method !== 'GET' && req.method !== 'HEAD') return false;
      let pathname: string;
      try {
        pathname = new URL(req.url ?? '/', 'http://dashboard.local').pathname;
      } catch {
        return false;
      }
      if (!isLoopbackHost(req.headers.host, req.socket.localPort)) {
        sendText(res, 403, 'the dev dashboard answers requests for 127.0.0.1 or localhost only');
        return true;
      }
      route(req, res, pathname).catch((err: unknown) => {
        if (!res.headersSent) sendText(res, 500, `dashboard error: ${(err as Error).message}`);
        else res.destroy();
      });
      return true;
    },
    setStack(info) {
      stack = info;
    },
    async close() {
      unsubscribe();
      for (const client of clients) client.close();
      clients.clear();
    },
  };
}

/** One browser's event stream: job views coalesced per FLUSH_MS, log lines batched with them. */
class SseClient {
  private readonly jobs = new Map<string, JobView>();
  private log: LogEntry[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private readonly pingTimer: NodeJS.Timeout;

  constructor(private readonly res: ServerResponse) {
    this.pingTimer = setInterval(() => this.res.write(': ping\n\n'), PING_MS);
    this.pingTimer.unref();
  }

  queue(change: { job?: JobView; log?: LogEntry }): void {
    if (change.job) this.jobs.set(change.job.key, change.job);
    if (change.log) this.log.push(change.log);
    if (this.log.length > LIMITS.snapshotLog) this.log = this.log.slice(-LIMITS.snapshotLog);
    if (!this.flushTimer) {
      this.flushTimer = setTimeout(() => this.flush(), FLUSH_MS);
      this.flushTimer.unref();
    }
  }

  send(event: string, data: unknown): void {
    if (!this.res.destroyed) this.res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  close(): void {
    clearTimeout(this.flushTimer);
    clearInterval(this.pingTimer);
    if (!this.res.destroyed) this.res.end();
  }

  private flush(): void {
    this.flushTimer = undefined;
    for (const job of this.jobs.values()) this.send('job', job);
    this.jobs.clear();
    if (this.log.length) this.send('log', this.log);
    this.log = [];
  }
}

function isLoopbackHost(host: string | undefined, port: number | undefined): boolean {
  if (!host || port === undefined) return false;
  return [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`].includes(host.toLowerCase());
}

/**
 * Scripts only from this server, plus the page's one inline script (its import map, which names
 * uPlot's module), allowed by hash; nothing inline otherwise, no framing, no other origins.
 */
function pagePolicy(): string {
  const html = readFileSync(join(PAGE_DIR, 'index.html'), 'utf8');
  const importMap = /<script type="importmap">([\s\S]*?)<\/script>/.exec(html)?.[1];
  const hash = importMap === undefined ? '' : ` 'sha256-${createHash('sha256').update(importMap).digest('base64')}'`;
  return [
    "default-src 'none'",
    `script-src 'self'${hash}`,
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

async function sendFile(res: ServerResponse, path: string, type: string, headOnly: boolean, csp?: string): Promise<void> {
  const body = await readFile(path);
  res.writeHead(200, {
    'Content-Type': type,
    'Content-Length': String(body.length),
    'Cache-Control': 'no-cache',
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    ...(csp ? { 'Content-Security-Policy': csp } : {}),
  });
  res.end(headOnly ? undefined : body);
}

function sendJson(res: ServerResponse, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' });
  res.end(body);
}

function sendText(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
  res.end(`${text}\n`);
}
