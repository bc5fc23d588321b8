/**
 * Writes the JSON Schemas of the contracts this runtime implements into docs/schemas/, from the
 * zod schemas that define them (so the documents cannot drift from the code):
 *
 *   callbacks.schema.json  every callback body, by endpoint, and the backend's answer to a
 *                          validation callback (src/callbacks/schemas.ts)
 *   results.schema.json    results.json of test runs and inference jobs (src/jobs/infer/results.ts)
 *   images.schema.json     validation-results/job-{JOB_ID}/epoch-{N}/images.json, each validated
 *                          epoch's per-image results (src/jobs/train/validation-results.ts)
 *   metadata.schema.json   metadata.json of export packages (src/jobs/export/metadata.ts)
 *   bridge.schema.json     what crosses the Python bridge (src/frameworks/protocol.ts), which
 *                          python/vision_trainer/protocol.py mirrors
 *
 * `node dist/scripts/schemas.js --write` updates the files; without --write it lists what is
 * out of date and exits 1. A unit test checks they are current.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { ENDPOINTS, ValidationResponseSchema } from '../src/callbacks/schemas.js';
import { BRIDGE_SCHEMAS } from '../src/frameworks/protocol.js';
import { MetadataSchema } from '../src/jobs/export/metadata.js';
import { InferenceResultsSchema } from '../src/jobs/infer/results.js';
import { ValidationImagesSchema } from '../src/jobs/train/validation-results.js';
import { PROJECT_ROOT } from '../src/paths.js';

export const SCHEMAS_DIR = join(PROJECT_ROOT, 'docs/schemas');

type Io = 'input' | 'output';
const DRAFT = 'https://json-schema.org/draft/2020-12/schema';
function json(schema: z.ZodType, io: Io): Record<string, unknown> {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any', target: 'draft-2020-12' });
  return rest;
}

/** File name → its JSON text. */
export function schemaDocuments(): Record<string, string> {
  const doc = (title: string, defs: Record<string, unknown>) => `${JSON.stringify({ $schema: DRAFT, title, $defs: defs }, null, 2)}\n`;
  const callbacks = Object.fromEntries(
    Object.entries(ENDPOINTS).map(([kind, e]) => [kind, { ...json(e.schema, 'output'), description: `POST ${e.path} (${e.delivery})` }]),
  );
  callbacks.validationResponse = {
    ...json(ValidationResponseSchema, 'input'),
    description: "The backend's answer to a validation callback: is_best decides whether that epoch becomes the best (best.pt)",
  };
  const bridge = Object.fromEntries(Object.entries(BRIDGE_SCHEMAS).map(([name, s]) => [name, json(s.schema, s.io)]));
  return {
    'callbacks.schema.json': doc('vision-trainer callback bodies, by endpoint', callbacks),
    'results.schema.json': `${JSON.stringify({ $schema: DRAFT, title: 'results.json of a test run or inference job', ...json(InferenceResultsSchema, 'output') }, null, 2)}\n`,
    'images.schema.json': `${JSON.stringify({ $schema: DRAFT, title: 'images.json: the per-image results of one validated epoch', ...json(ValidationImagesSchema, 'output') }, null, 2)}\n`,
    'metadata.schema.json': `${JSON.stringify({ $schema: DRAFT, title: 'metadata.json of an export package', ...json(MetadataSchema, 'output') }, null, 2)}\n`,
    'bridge.schema.json': doc('What crosses the Python bridge: parameters as TypeScript sends them, answers and events as Python must write them', bridge),
  };
}

/** The files that differ from what the code generates. */
export function staleSchemas(): string[] {
  return Object.entries(schemaDocuments())
    .filter(([name, text]) => {
      try {
        return readFileSync(join(SCHEMAS_DIR, name), 'utf8') !== text;
      } catch {
        return true;
      }
    })
    .map(([name]) => name);
}

if (process.argv[1]?.endsWith('schemas.js')) {
  if (process.argv.includes('--write')) {
    for (const [name, text] of Object.entries(schemaDocuments())) writeFileSync(join(SCHEMAS_DIR, name), text);
  } else {
    const stale = staleSchemas();
    if (stale.length) {
      process.stderr.write(`out of date: ${stale.join(', ')} (run npm run docs:schemas)\n`);
      process.exitCode = 1;
    }
  }
}
