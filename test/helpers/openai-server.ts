/**
 * A local OpenAI-compatible chat server (node:http) for the LLM explanation tests: it answers
 * POST /v1/chat/completions with what the test scripts, one behaviour per request, and records
 * every request (headers, body) so a test can check what the SDK sent.
 *
 *   const llm = await startOpenAiServer();
 *   llm.script({ answer: { summary: '…', key_factors: ['…'], confidence_reasoning: '…', alternative_considerations: '…' } });
 *   ... OPENAI_BASE_URL = llm.baseUrl ...
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type Behaviour =
  /** A chat completion whose message content is this object as JSON (or this text, as is). */
  | { answer: unknown; delayMs?: number }
  | { text: string; delayMs?: number }
  /** An HTTP error with a JSON error body. */
  | { status: number; message?: string }
  /** Never answer (the client must time out). */
  | { hang: true };

export interface RecordedRequest {
  path: string;
  authorization: string | undefined;
  body: { model?: string; messages?: Array<{ role: string; content: string }>; response_format?: unknown; [k: string]: unknown };
}

export interface OpenAiServer {
  /** For OPENAI_BASE_URL / the SDK's baseURL (ends in /v1). */
  baseUrl: string;
  readonly requests: RecordedRequest[];
  /** Most requests the server was answering at one time. */
  readonly peakInFlight: number;
  /** Behaviours for the next requests, in order; after they run out, `fallback` answers. */
  script(...behaviours: Behaviour[]): void;
  fallback: Behaviour;
  close(): Promise<void>;
}

export const GOOD_ANSWER = {
  summary: 'The model found the shape from its colour and outline.',
  key_factors: ['solid colour', 'sharp edges', 'contrast with the background'],
  confidence_reasoning: 'The shape is clear and alone in the image.',
  alternative_considerations: 'a similar shape of another colour',
};

function completion(content: string, model: string): string {
  return JSON.stringify({
    id: 'chatcmpl-test',
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 10, completion_tokens: 10, total_tokens: 20 },
  });
}

export async function startOpenAiServer(): Promise<OpenAiServer> {
  const queue: Behaviour[] = [];
  const requests: RecordedRequest[] = [];
  const hanging = new Set<ServerResponse>();
  const state = { fallback: { answer: GOOD_ANSWER } as Behaviour, inFlight: 0, peakInFlight: 0 };

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    state.inFlight++;
    state.peakInFlight = Math.max(state.peakInFlight, state.inFlight);
    res.on('close', () => state.inFlight--);
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: RecordedRequest['body'] = {};
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
      } catch {
        // recorded as empty; the test will see it
      }
      requests.push({ path: req.url ?? '', authorization: req.headers.authorization, body });
      if (req.method !== 'POST' || !req.url?.endsWith('/chat/completions')) {
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'not found' } }));
        return;
      }
      const behaviour = queue.shift() ?? state.fallback;
      const model = typeof body.model === 'string' ? body.model : 'test-model';
      if ('hang' in behaviour) {
        hanging.add(res);
        res.on('close', () => hanging.delete(res));
        return;
      }
      if ('status' in behaviour) {
        res
          .writeHead(behaviour.status, { 'content-type': 'application/json' })
          .end(JSON.stringify({ error: { message: behaviour.message ?? 'server error', type: 'server_error' } }));
        return;
      }
      const content = 'text' in behaviour ? behaviour.text : JSON.stringify(behaviour.answer);
      setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(completion(content, model)), behaviour.delayMs ?? 0);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    requests,
    get peakInFlight() {
      return state.peakInFlight;
    },
    script: (...behaviours) => queue.push(...behaviours),
    get fallback() {
      return state.fallback;
    },
    set fallback(b: Behaviour) {
      state.fallback = b;
    },
    async close() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
