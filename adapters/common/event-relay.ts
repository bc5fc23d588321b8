/**
 * The Node end of a distributed training's event channel (python/vision_trainer/common/distributed.py,
 * SocketRelay). The trainer runs in worker processes the bridge cannot reach, and JavaScript
 * functions can only be called from the bridged interpreter's main thread, which is busy
 * launching them; so global rank 0 connects to this Unix socket and sends each trainer event as
 * one JSON line, then waits for one JSON line back: {"answer": "stop" | null}, or
 * {"error": message} when the event was refused (it did not fit its schema, a handler threw).
 * Node's event loop is free while the bridge call is pending, so events are handled as they come.
 */
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TrainerAnswer } from '../../src/frameworks/protocol.js';

export interface EventServer {
  readonly path: string;
  /** Stops listening, ends open connections and removes the socket file. */
  close(): Promise<void>;
}

/**
 * Listens on a new socket (in the temp folder: a Unix socket path may be at most ~104 bytes,
 * shorter than a job's work folder can be).
 */
export async function serveEvents(onEvent: (raw: unknown) => TrainerAnswer): Promise<EventServer> {
  const path = join(tmpdir(), `vt-events-${process.pid}-${randomBytes(6).toString('hex')}.sock`);
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.setEncoding('utf8');
    let partial = '';
    socket.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) if (line.trim()) socket.write(`${JSON.stringify(answer(onEvent, line))}\n`);
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  return {
    path,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(path, { force: true });
    },
  };
}

function answer(onEvent: (raw: unknown) => TrainerAnswer, line: string): { answer: 'stop' | null } | { error: string } {
  try {
    return { answer: onEvent(JSON.parse(line)) === 'stop' ? 'stop' : null };
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}
