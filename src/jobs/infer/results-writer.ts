/**
 * Writes results.json without holding every image's result in memory: each result goes to a
 * JSON-lines spill file in image order as soon as it is complete (an image in the visualisation
 * sample waits for its uploads and explanation), and the final document is assembled by
 * streaming that file between the summary's fields. Every part is validated against the
 * results.json schema as it is written.
 */
import { once } from 'node:events';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { z } from 'zod';
import { ImageResultSchema, InferenceResultsSchema, type ImageResult, type InferenceResults } from './results.js';

export type ResultsSummary = Omit<InferenceResults, 'results'>;
const SummarySchema = InferenceResultsSchema.omit({ results: true });

export class ResultsWriter {
  private readonly spill: WriteStream;
  private chain: Promise<void> = Promise.resolve();
  private failure: unknown;
  private count = 0;
  private errors = 0;

  constructor(private readonly spillPath: string) {
    this.spill = createWriteStream(spillPath, { encoding: 'utf8' });
  }

  /** Results must be added in index order; each is written once it resolves. */
  add(result: ImageResult | Promise<ImageResult>): void {
    this.chain = this.chain.then(async () => {
      if (this.failure !== undefined) return;
      try {
        const record = ImageResultSchema.parse(await result);
        this.count++;
        if (record.error !== null) this.errors++;
        if (!this.spill.write(`${JSON.stringify(record)}\n`)) await once(this.spill, 'drain');
      } catch (err) {
        this.failure = err;
      }
    });
  }

  get written(): { images: number; failed: number } {
    return { images: this.count, failed: this.errors };
  }

  /** Waits for every added result, then writes the whole document to `path`. */
  async finish(summary: ResultsSummary, path: string): Promise<void> {
    await this.flush();
    await this.endSpill();
    const head = SummarySchema.parse(summary);
    const out = createWriteStream(path, { encoding: 'utf8' });
    const write = async (text: string) => {
      if (!out.write(text)) await once(out, 'drain');
    };
    const pretty = JSON.stringify(head, null, 2);
    await write(`${pretty.slice(0, pretty.lastIndexOf('}')).trimEnd()},\n  "results": [`);
    let first = true;
    const lines = createInterface({ input: createReadStream(this.spillPath, { encoding: 'utf8' }), crlfDelay: Infinity });
    for await (const line of lines) {
      if (!line) continue;
      await write(`${first ? '\n' : ',\n'}    ${line}`);
      first = false;
    }
    await write(`${first ? '' : '\n  '}]\n}\n`);
    out.end();
    await once(out, 'finish');
  }

  /** Waits for the results added so far; rethrows a validation failure. */
  async flush(): Promise<void> {
    await this.chain;
    if (this.failure !== undefined) {
      const e = this.failure;
      throw e instanceof z.ZodError
        ? new Error(`an image result does not match the results.json schema: ${e.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`)
        : e;
    }
  }

  /** Removes the spill file (after finish, or when the job failed). */
  async close(): Promise<void> {
    await this.endSpill().catch(() => {});
    await rm(this.spillPath, { force: true });
  }

  private async endSpill(): Promise<void> {
    if (this.spill.writableFinished || this.spill.destroyed) return;
    const finished = once(this.spill, 'finish');
    this.spill.end();
    await finished;
  }
}
