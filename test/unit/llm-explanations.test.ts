/**
 * LLM explanations with the real `openai` SDK against a local OpenAI-compatible server: the
 * answer is validated, an invalid answer is asked again once, and every failure (no key, HTTP
 * 500, invalid JSON twice, timeout, unreachable server) becomes "unavailable, because ..."
 * instead of an error. The API key reaches the server and nothing else.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Explainer, buildPrompt, parseAnswer, type ExplanationContext } from '../../src/jobs/infer/llm.js';
import { ExplanationSchema } from '../../src/jobs/infer/results.js';
import { Logger } from '../../src/log.js';
import { urlPolicy } from '../../src/net/url-guard.js';
import { clearSecrets } from '../../src/redact.js';
import { designProblems } from '../helpers/design-contract.js';
import { GOOD_ANSWER, startOpenAiServer, type OpenAiServer } from '../helpers/openai-server.js';

const KEY = 'sk-test-explainer-key-0123456789';
let server: OpenAiServer;
const logLines: string[] = [];
const logger = Logger.create({ format: 'text', level: 'debug', sink: (line) => logLines.push(line) });

const DETECTION: ExplanationContext = {
  taskType: 'object_detection',
  fileName: 'street.jpg',
  width: 640,
  height: 480,
  predictions: { boxes: [{ bbox: [10, 20, 110, 220], class_id: 0, class_name: 'person', confidence: 0.91 }] },
  groundTruth: {
    objects: [
      { bbox: [12, 18, 108, 221], class_id: 0, class_name: 'person' },
      { bbox: [300, 300, 340, 360], class_id: 1, class_name: 'dog' },
    ],
  },
  metrics: {
    precision: 1,
    recall: 0.5,
    mean_iou: 0.93,
    matched: [{ prediction: 0, ground_truth: 0, class_id: 0, class_name: 'person', iou: 0.93 }],
    wrong_class: [],
    missed: [{ ground_truth: 1, class_id: 1, class_name: 'dog' }],
    false_positives: [],
  },
  xai: {
    method: 'gradcam',
    target_layers: ['model.16', 'model.19', 'model.22'],
    target: { detections: 1, classes: ['person'] },
    gradcam: {
      max_activation: 1,
      mean_activation: 0.21,
      high_activation_fraction: 0.08,
      peak: { x: 60, y: 90 },
      top_regions: [{ x: 20, y: 30, w: 80, h: 150, score: 0.82 }],
      activation_in_predictions: 0.74,
    },
    error: null,
  },
};

/** An unavailable explanation: the design's fields, empty, the model that was to answer, and why. */
const unavailable = (reason: unknown, model = 'test-model') => ({
  available: false,
  reason,
  summary: '',
  key_factors: [],
  confidence_reasoning: '',
  alternative_considerations: '',
  model,
  generated_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT.*Z$/),
});

function explainer(overrides: Partial<ConstructorParameters<typeof Explainer>[0]> = {}) {
  // The test server listens on 127.0.0.1, which OPENAI_BASE_URL reaches only when allowed.
  return new Explainer({
    apiKey: KEY,
    baseUrl: server.baseUrl,
    model: 'test-model',
    timeoutMs: 2_000,
    maxRetries: 0,
    logger,
    policy: urlPolicy(['127.0.0.1']),
    ...overrides,
  });
}

beforeAll(async () => {
  server = await startOpenAiServer();
});
afterAll(async () => {
  await server.close();
  clearSecrets();
});
afterEach(() => {
  server.requests.length = 0;
  logLines.length = 0;
  server.fallback = { answer: GOOD_ANSWER };
});

describe('LLM explanations', () => {
  it('returns the validated answer with the model name and a timestamp; sends the key, JSON mode and the facts', async () => {
    const result = await explainer().explain(DETECTION);
    expect(ExplanationSchema.parse(result)).toEqual({ available: true, format: 'json', ...GOOD_ANSWER, model: 'test-model', generated_at: expect.any(String) });
    expect(server.requests).toHaveLength(1);
    const sent = server.requests[0]!;
    expect(sent.path).toBe('/v1/chat/completions');
    expect(sent.authorization).toBe(`Bearer ${KEY}`);
    expect(sent.body.model).toBe('test-model');
    expect(sent.body.response_format).toEqual({ type: 'json_object' });
    const prompt = sent.body.messages!.at(-1)!.content;
    expect(prompt).toContain('person 91.0% at box [10, 20, 110, 220]');
    expect(prompt).toContain('1 missed');
    expect(prompt).toContain('Missed: dog');
    expect(prompt).toContain('74.0% of the activation lies inside the detected boxes');
  });

  it('asks once more when the answer is not the JSON asked for, and uses the second answer', async () => {
    server.script({ text: 'Sure! The model saw a person.' });
    const result = await explainer().explain(DETECTION);
    expect(result.available).toBe(true);
    expect(server.requests).toHaveLength(2);
    const retry = server.requests[1]!.body.messages!;
    expect(retry.at(-2)).toEqual({ role: 'assistant', content: 'Sure! The model saw a person.' });
    expect(retry.at(-1)!.content).toMatch(/^That was not the JSON object asked for \(not JSON/);
  });

  it('a second answer that is not the JSON object is kept as text: the summary, marked format "text" (the design\'s fallback)', async () => {
    server.script({ answer: { summary: 'x' } }, { text: 'The model saw a person, I think.' });
    const result = await explainer().explain(DETECTION);
    expect(ExplanationSchema.parse(result)).toEqual({
      available: true,
      format: 'text',
      summary: 'The model saw a person, I think.',
      key_factors: [],
      confidence_reasoning: '',
      alternative_considerations: '',
      model: 'test-model',
      generated_at: expect.any(String),
    });
    expect(server.requests).toHaveLength(2);
    expect(logLines.join('\n')).toContain('kept as text');
  });

  it('two empty answers: unavailable, with the reason', async () => {
    server.script({ text: '' }, { text: '  ' });
    const result = await explainer().explain(DETECTION);
    expect(result).toEqual(unavailable(expect.stringMatching(/^the model gave no usable answer, twice \(not JSON/)));
    // As a backend written against the design reads it: the same fields as an answer, and valid by our schema.
    expect(designProblems('llmExplanation', result as Record<string, unknown>, 'object_detection')).toEqual([]);
    expect(ExplanationSchema.parse(result)).toEqual(result);
  });

  it('HTTP 500: unavailable with the status, after the SDK retry; the key is not in the reason even when the server echoes it', async () => {
    server.fallback = { status: 500, message: `internal error for Bearer ${KEY}` };
    const result = await explainer({ maxRetries: 1 }).explain(DETECTION);
    expect(result.available).toBe(false);
    if (result.available) return;
    expect(result.reason).toMatch(/^the LLM server answered HTTP 500/);
    expect(result.reason).not.toContain(KEY);
    expect(server.requests).toHaveLength(2); // the SDK's one retry for a 5xx
    expect(logLines.join('\n')).not.toContain(KEY);
    expect(logLines.join('\n')).toContain('LLM explanation unavailable for street.jpg');
  });

  it('timeout: unavailable, saying how long it waited', async () => {
    server.fallback = { hang: true };
    const started = Date.now();
    const result = await explainer({ timeoutMs: 300 }).explain(DETECTION);
    expect(result).toEqual(unavailable('the LLM server did not answer within 300 ms'));
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('no API key and no base URL: unavailable without any request', async () => {
    const result = await new Explainer({ model: 'gpt-4o-mini', logger }).explain(DETECTION);
    expect(result).toEqual(unavailable(expect.stringContaining('OPENAI_API_KEY is not set'), 'gpt-4o-mini'));
    expect(designProblems('llmExplanation', result as Record<string, unknown>, 'image_classification')).toEqual([]);
    expect(server.requests).toHaveLength(0);
  });

  it('an unreachable server: unavailable, not an error', async () => {
    const result = await explainer({ baseUrl: 'http://127.0.0.1:9/v1' }).explain(DETECTION);
    expect(result).toEqual(unavailable(expect.stringMatching(/^the LLM server could not be reached/)));
  });

  it('OPENAI_BASE_URL on a private address that is not allowed: unavailable, saying why, nothing sent', async () => {
    const result = await explainer({ baseUrl: server.baseUrl.replace('127.0.0.1', 'localhost'), policy: urlPolicy([]) }).explain(DETECTION);
    expect(result).toEqual(
      unavailable(
        expect.stringMatching(
          /^OPENAI_BASE_URL was refused: localhost \((127\.0\.0\.1|::1)\) is a loopback address, and localhost is not in ALLOWED_PRIVATE_HOSTS/,
        ),
      ),
    );
    expect(server.requests).toHaveLength(0);
  });

  it('runs at most `concurrency` requests at once', async () => {
    server.fallback = { answer: GOOD_ANSWER, delayMs: 100 };
    const limited = explainer({ concurrency: 2 });
    const results = await Promise.all(Array.from({ length: 6 }, () => limited.explain(DETECTION)));
    expect(results.every((r) => r.available)).toBe(true);
    expect(server.requests).toHaveLength(6);
    expect(server.peakInFlight).toBe(2);
  });
});

describe('answer parsing and the prompt', () => {
  it("accepts a fenced answer and the design's alternative_considerations", () => {
    const parsed = parseAnswer('```json\n{"summary":"s","key_factors":["a"],"confidence_reasoning":"c","alternative_considerations":"maybe a dog"}\n```');
    expect(parsed).toEqual({ ok: true, answer: { summary: 's', key_factors: ['a'], confidence_reasoning: 'c', alternative_considerations: 'maybe a dog' } });
  });

  it('takes a list of alternatives (or an `alternatives` list) as one text', () => {
    const parsed = parseAnswer('{"summary":"s","key_factors":["a"],"confidence_reasoning":"c","alternatives":["a dog","a fox"]}');
    expect(parsed).toEqual({ ok: true, answer: { summary: 's', key_factors: ['a'], confidence_reasoning: 'c', alternative_considerations: 'a dog; a fox' } });
  });

  it('names what is missing', () => {
    const parsed = parseAnswer('{"summary":"s"}');
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.problem).toContain('key_factors');
  });

  it('describes a classification with its top classes and the ground truth', () => {
    const prompt = buildPrompt({
      taskType: 'image_classification',
      fileName: 'a.png',
      width: 32,
      height: 32,
      predictions: {
        class_id: 1,
        class_name: 'cat',
        confidence: 0.6,
        top5: [
          { class_id: 1, class_name: 'cat', confidence: 0.6 },
          { class_id: 0, class_name: 'dog', confidence: 0.4 },
        ],
      },
      groundTruth: { class_id: 0, class_name: 'dog' },
      metrics: { correct: false, top5_correct: true },
    });
    expect(prompt).toContain('Predicted class: cat (confidence 60.0%)');
    expect(prompt).toContain('Top classes: cat 60.0%, dog 40.0%');
    expect(prompt).toContain('Ground truth: dog; the prediction is wrong.');
  });
});
