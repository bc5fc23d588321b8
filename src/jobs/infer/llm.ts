/**
 * Natural-language explanations of predictions from any OpenAI-compatible chat server, through
 * the `openai` SDK (OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_MODEL).
 *
 * The model is asked for the design's JSON object (summary, key_factors, confidence_reasoning,
 * alternative_considerations), checked with zod, and asked once more when its answer is not
 * that. When the second answer is still not that object, its text is kept as the summary,
 * marked `format: "text"` (the design's fallback). A few requests run at once. An explanation
 * never fails the job: when the server is missing, down, slow or answers nothing, the image's
 * explanation says it is unavailable and why. The API key goes to the SDK only; every reason
 * text is redacted.
 */
import OpenAI, { APIConnectionTimeoutError, APIError } from 'openai';
import { fetch as undiciFetch } from 'undici';
import { z } from 'zod';
import type { Logger } from '../../log.js';
import { guardedAgent, type UrlPolicy, urlRefusal } from '../../net/url-guard.js';
import { redact, registerSecret } from '../../redact.js';
import { Limiter } from './limiter.js';
import type { Explanation, GroundTruthRecord, ImageMetrics, Predictions, XaiOutcome, XaiStatistics } from './results.js';

export const DEFAULT_LLM_TIMEOUT_MS = 60_000;
export const DEFAULT_LLM_CONCURRENCY = 4;
const MAX_TOKENS = 500;
const MAX_DETECTIONS_DESCRIBED = 10;

/** Text, or a list of texts joined into one (models sometimes list the alternatives). */
const TextOrList = z.union([
  z.string(),
  z
    .array(z.string())
    .max(10)
    .transform((items) => items.join('; ')),
]);

/** What the model must answer: the design's object. `alternatives` is accepted for `alternative_considerations`. */
export const LlmAnswerSchema = z.preprocess(
  (v) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const o = v as Record<string, unknown>;
      return { ...o, alternative_considerations: o.alternative_considerations ?? o.alternatives ?? '' };
    }
    return v;
  },
  z.object({
    summary: z.string().trim().min(1),
    key_factors: z.array(z.string().trim().min(1)).min(1).max(10),
    confidence_reasoning: z.string().trim().min(1),
    alternative_considerations: TextOrList,
  }),
);

export interface ExplainerOptions {
  apiKey?: string | undefined;
  baseUrl?: string | undefined;
  model: string;
  timeoutMs?: number;
  /** Retries of a failed HTTP request (by the SDK, with backoff); an invalid answer is asked again once regardless. */
  maxRetries?: number;
  concurrency?: number;
  logger: Logger;
  /** Which private hosts OPENAI_BASE_URL may reach (ALLOWED_PRIVATE_HOSTS); metadata addresses never. Default: public only. */
  policy?: UrlPolicy;
}

export interface ExplanationContext {
  taskType: string;
  fileName: string;
  width: number;
  height: number;
  predictions: Predictions;
  groundTruth?: GroundTruthRecord | null;
  metrics?: ImageMetrics | null;
  xai?: XaiOutcome | null;
}

export class Explainer {
  private readonly client: OpenAI | undefined;
  private readonly unavailable: string | undefined;
  private readonly limiter: Limiter;
  readonly model: string;

  constructor(private readonly options: ExplainerOptions) {
    this.model = options.model;
    this.limiter = new Limiter(options.concurrency ?? DEFAULT_LLM_CONCURRENCY);
    registerSecret(options.apiKey);
    if (!options.apiKey && !options.baseUrl) {
      this.unavailable = 'OPENAI_API_KEY is not set (set it, or OPENAI_BASE_URL for a server that needs no key)';
      return;
    }
    // OPENAI_BASE_URL comes from the job's configuration: every connection (redirects too) goes
    // through the URL guard, so it cannot reach cloud metadata or an unlisted private host.
    const dispatcher = guardedAgent(options.policy ?? { allowedPrivateHosts: [] });
    const guardedFetch = (input: string | URL | Request, init?: RequestInit) => undiciFetch(input as string, { ...(init as object), dispatcher } as never);
    this.client = new OpenAI({
      // Self-hosted OpenAI-compatible servers often need no key; the SDK insists on one.
      apiKey: options.apiKey ?? 'not-needed',
      ...(options.baseUrl ? { baseURL: options.baseUrl } : {}),
      timeout: options.timeoutMs ?? DEFAULT_LLM_TIMEOUT_MS,
      maxRetries: options.maxRetries ?? 1,
      fetch: guardedFetch as unknown as typeof fetch,
    });
  }

  /** Never rejects: a failure becomes an unavailable explanation that says why (`unavailableExplanation`). */
  explain(context: ExplanationContext): Promise<Explanation> {
    if (!this.client) return Promise.resolve(unavailableExplanation(this.model, this.unavailable!));
    const client = this.client;
    return this.limiter.run(async () => {
      try {
        return await this.ask(client, context);
      } catch (err) {
        const reason = describeFailure(err, this.options.timeoutMs ?? DEFAULT_LLM_TIMEOUT_MS);
        this.options.logger.warn(`LLM explanation unavailable for ${context.fileName}: ${reason}`);
        return unavailableExplanation(this.model, reason);
      }
    });
  }

  private async ask(client: OpenAI, context: ExplanationContext): Promise<Explanation> {
    const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [
      {
        role: 'system',
        content: 'You explain computer-vision model predictions to engineers, clearly and briefly. Answer with one JSON object and nothing else.',
      },
      { role: 'user', content: buildPrompt(context) },
    ];
    let problem = '';
    for (let attempt = 1; attempt <= 2; attempt++) {
      const completion = await client.chat.completions.create({
        model: this.model,
        messages,
        temperature: 0.3,
        max_tokens: MAX_TOKENS,
        response_format: { type: 'json_object' },
      });
      const text = completion.choices[0]?.message?.content ?? '';
      const stamp = { model: completion.model || this.model, generated_at: new Date().toISOString() };
      const parsed = parseAnswer(text);
      if (parsed.ok) return { available: true, format: 'json', ...parsed.answer, ...stamp };
      problem = parsed.problem;
      if (attempt === 2 && text.trim()) {
        this.options.logger.warn(`LLM explanation for ${context.fileName} kept as text: the answer was not the JSON object asked for, twice (${problem})`);
        return { available: true, format: 'text', summary: text.trim(), key_factors: [], confidence_reasoning: '', alternative_considerations: '', ...stamp };
      }
      messages.push(
        { role: 'assistant', content: text },
        { role: 'user', content: `That was not the JSON object asked for (${problem}). Answer again with only the JSON object.` },
      );
    }
    throw new InvalidAnswerError(`the model gave no usable answer, twice (${problem})`);
  }
}

class InvalidAnswerError extends Error {}

/**
 * No explanation could be had: still the design's fields (empty texts, no key factors, the model
 * that was asked, when it gave up), so a backend reading `summary` or `key_factors` never meets
 * a missing field; `available: false` and `reason` say there is none and why.
 */
export function unavailableExplanation(model: string, reason: string): Explanation {
  return {
    available: false,
    reason,
    summary: '',
    key_factors: [],
    confidence_reasoning: '',
    alternative_considerations: '',
    model,
    generated_at: new Date().toISOString(),
  };
}

export function parseAnswer(text: string): { ok: true; answer: z.infer<typeof LlmAnswerSchema> } | { ok: false; problem: string } {
  // Some servers wrap JSON in a Markdown fence despite response_format.
  const unfenced = text.trim().replace(/^```(?:json)?\s*([\s\S]*?)\s*```$/i, '$1');
  let value: unknown;
  try {
    value = JSON.parse(unfenced);
  } catch (err) {
    return { ok: false, problem: `not JSON: ${(err as Error).message}` };
  }
  const parsed = LlmAnswerSchema.safeParse(value);
  if (!parsed.success)
    return {
      ok: false,
      problem: parsed.error.issues
        .slice(0, 3)
        .map((i) => `${i.path.join('.') || 'answer'}: ${i.message}`)
        .join('; '),
    };
  return { ok: true, answer: parsed.data };
}

function describeFailure(err: unknown, timeoutMs: number): string {
  const refused = urlRefusal(err);
  if (refused) return redact(`OPENAI_BASE_URL was refused: ${refused.message}`.slice(0, 300));
  if (err instanceof APIConnectionTimeoutError)
    return `the LLM server did not answer within ${timeoutMs >= 1000 ? `${Math.round(timeoutMs / 1000)} s` : `${timeoutMs} ms`}`;
  if (err instanceof APIError && err.status !== undefined) return redact(`the LLM server answered HTTP ${err.status}: ${err.message}`.slice(0, 300));
  if (err instanceof APIError) return redact(`the LLM server could not be reached: ${err.message}`.slice(0, 300));
  if (err instanceof InvalidAnswerError) return redact(err.message.slice(0, 300));
  return redact(`explanation failed: ${err instanceof Error ? err.message : String(err)}`.slice(0, 300));
}

const pct = (v: number) => `${(v * 100).toFixed(1)}%`;

/** What the model is told: the prediction, the ground truth when known, and the heatmap's numbers. */
export function buildPrompt(c: ExplanationContext): string {
  const lines = [`Task: ${c.taskType}. Image: ${c.fileName} (${c.width}x${c.height} pixels).`, ''];
  if ('top5' in c.predictions) {
    lines.push(`Predicted class: ${c.predictions.class_name} (confidence ${pct(c.predictions.confidence)}).`);
    lines.push(`Top classes: ${c.predictions.top5.map((t) => `${t.class_name} ${pct(t.confidence)}`).join(', ')}.`);
  } else if ('classes' in c.predictions) {
    lines.push(`Predicted classes (share of the image): ${c.predictions.classes.map((t) => `${t.class_name} ${pct(t.pixel_fraction)}`).join(', ') || 'none'}.`);
  } else {
    const boxes = c.predictions.boxes;
    lines.push(boxes.length === 0 ? 'Detections: none above the confidence threshold.' : `Detections (${boxes.length}):`);
    for (const b of boxes.slice(0, MAX_DETECTIONS_DESCRIBED))
      lines.push(`- ${b.class_name} ${pct(b.confidence)} at box [${b.bbox.map((v) => Math.round(v)).join(', ')}]`);
    if (boxes.length > MAX_DETECTIONS_DESCRIBED) lines.push(`- ... and ${boxes.length - MAX_DETECTIONS_DESCRIBED} more`);
  }
  if (c.groundTruth && c.metrics) {
    if ('correct' in c.metrics && 'class_name' in c.groundTruth) {
      lines.push(
        `Ground truth: ${c.groundTruth.class_name}; the prediction is ${c.metrics.correct ? 'correct' : 'wrong'}${c.metrics.top5_correct ? '' : ' and the true class is not in the top 5'}.`,
      );
    } else if ('pixel_accuracy' in c.metrics) {
      const e = c.metrics;
      lines.push(
        `Ground truth: pixel accuracy ${e.pixel_accuracy === null ? 'n/a' : pct(e.pixel_accuracy)}, mean IoU ${e.mean_iou === null ? 'n/a' : pct(e.mean_iou)}; per class: ${e.class_iou.map((x) => `${x.class_name} ${pct(x.iou)}`).join(', ')}.`,
      );
    } else if ('matched' in c.metrics) {
      const e = c.metrics;
      lines.push(
        `Ground truth: ${e.matched.length} found, ${e.wrong_class.length} found with the wrong class, ${e.missed.length} missed, ${e.false_positives.length} false detections.`,
      );
      if (e.missed.length) lines.push(`Missed: ${e.missed.map((m) => m.class_name).join(', ')}.`);
      if (e.wrong_class.length) lines.push(`Confused: ${e.wrong_class.map((w) => `${w.true_class_name} taken for ${w.predicted_class_name}`).join(', ')}.`);
    }
  }
  const x = c.xai;
  const stats = x && !x.error ? ((x as Record<string, unknown>)[x.method] as XaiStatistics | undefined) : undefined;
  if (x && stats) {
    lines.push('', `${x.method} heatmap (layers ${x.target_layers.join(', ')}), values scaled to 0-1:`);
    if (stats.mean_activation != null)
      lines.push(`- mean activation ${stats.mean_activation.toFixed(2)}; ${pct(stats.high_activation_fraction ?? 0)} of the image above 0.5`);
    if (stats.peak) lines.push(`- strongest point at (${stats.peak.x}, ${stats.peak.y})`);
    if (stats.top_regions.length)
      lines.push(
        `- top regions (x, y, w, h, score): ${stats.top_regions.map((r) => `(${r.x}, ${r.y}, ${r.w}, ${r.h}, ${(r.score ?? 0).toFixed(2)})`).join('; ')}`,
      );
    if (stats.activation_in_predictions != null) lines.push(`- ${pct(stats.activation_in_predictions)} of the activation lies inside the detected boxes`);
  }
  lines.push(
    '',
    'Explain this prediction. Answer with a JSON object:',
    '{"summary": "1-2 sentences", "key_factors": ["3-4 things the model relied on"], "confidence_reasoning": "why the confidence is what it is", "alternative_considerations": "other readings or classes worth considering"}',
  );
  return lines.join('\n');
}
