/** docs/schemas/*.json are what the zod schemas generate (scripts/schemas.ts). */
import { describe, expect, it } from 'vitest';
import { schemaDocuments, staleSchemas } from '../../scripts/schemas.js';
import { BRIDGE_SCHEMAS } from '../../src/frameworks/protocol.js';

describe('generated JSON Schemas', () => {
  it('are current (run `npm run docs:schemas` after changing a schema)', () => {
    expect(staleSchemas()).toEqual([]);
  });

  it('name every shape that crosses the bridge, each an object with its required keys', () => {
    const bridge = JSON.parse(schemaDocuments()['bridge.schema.json']!) as { $defs: Record<string, { type: string; required?: string[] }> };
    expect(Object.keys(bridge.$defs)).toEqual(Object.keys(BRIDGE_SCHEMAS));
    for (const [name, def] of Object.entries(bridge.$defs)) expect(def.type, name).toBe('object');
    expect(bridge.$defs.ExportAnswer!.required).toEqual(['path', 'directory']);
  });
});
