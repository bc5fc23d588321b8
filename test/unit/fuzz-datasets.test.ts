/**
 * Fuzzing the dataset loader: a few thousand annotation files made by mutating valid ones
 * (wrong types, missing fields, NaN/huge numbers, bad ids, hostile paths, truncated or
 * corrupted JSON, deep nesting). Each must either load or fail with our DatasetError, never
 * with anything else (a TypeError, a RangeError, a ZodError), and the error must stay readable.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DatasetError } from '../../src/errors.js';
import { loadDataset } from '../../src/datasets/load.js';
import { TaskTypeSchema, type TaskType } from '../../src/datasets/schema.js';
import { mulberry32 } from '../helpers/random.js';
import { writeSyntheticDataset, type SyntheticTask } from '../helpers/synthetic.js';

const ITERATIONS = 3000;
const scratch = mkdtempSync(join(tmpdir(), 'vt-fuzz-datasets-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const bases: Array<{ task: SyntheticTask; root: string; doc: Json }> = [];
for (const [task, formats] of [
  ['image_classification', ['platform', 'coco']],
  ['object_detection', ['platform', 'coco']],
  ['instance_segmentation', ['platform', 'coco']],
  ['pose_estimation', ['platform', 'coco']],
  ['semantic_segmentation', ['platform']],
] as const) {
  for (const format of formats) {
    const ds = writeSyntheticDataset(join(scratch, `${task}-${format}`), {
      taskType: task,
      format,
      count: 5,
      width: 32,
      height: 24,
      backgroundEvery: 4,
      multiPartEvery: 2,
      seed: 3,
    });
    bases.push({ task, root: ds.root, doc: ds.annotations as Json });
  }
}

class Fuzzer {
  readonly log: string[] = [];
  private readonly random: () => number;

  constructor(readonly seed: number) {
    this.random = mulberry32(seed);
  }

  int(n: number): number {
    return Math.floor(this.random() * n);
  }
  chance(p: number): boolean {
    return this.random() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }

  weirdValue(): Json {
    const deep = (depth: number): Json => (depth === 0 ? 1 : this.chance(0.5) ? [deep(depth - 1)] : { x: deep(depth - 1) });
    const options: Array<() => Json> = [
      () => null,
      () => true,
      () => '',
      () => 'x'.repeat(this.pick([1, 300, 20_000])),
      () => '../../etc/passwd',
      () => '/abs/path.png',
      () => 'C:\\win\\path.png',
      () => 'nul\u0000byte.png',
      () => '🦓/ünïcödé.png',
      () => '__proto__',
      () => -1,
      () => 0,
      () => -0,
      () => 0.5,
      () => 1e308,
      () => -1e308,
      () => 2 ** 53 + 2,
      () => Number.MIN_VALUE,
      () => this.int(10),
      () => [],
      () => [1, 2],
      () => [1, 2, 3, 4, 5],
      () => [[1, 2, 3]],
      () => ({}),
      () => ({ id: 1 }),
      () => deep(this.pick([5, 50, 300])),
    ];
    return this.pick(options)();
  }

  /** A random node (container and key) of the document, walking down from the top. */
  private randomSlot(doc: Json): { parent: Json[] | { [k: string]: Json }; key: string | number } | undefined {
    let node: Json = doc;
    let slot: { parent: Json[] | { [k: string]: Json }; key: string | number } | undefined;
    for (let depth = 0; depth < 8; depth++) {
      if (Array.isArray(node)) {
        if (node.length === 0) break;
        const key = this.int(node.length);
        slot = { parent: node, key };
        node = node[key] as Json;
      } else if (node !== null && typeof node === 'object') {
        const keys = Object.keys(node);
        if (keys.length === 0) break;
        const key = this.pick(keys);
        slot = { parent: node, key };
        node = node[key] as Json;
      } else break;
      if (this.chance(0.2)) break;
    }
    return slot;
  }

  mutateTree(doc: Json): void {
    if (this.chance(0.25)) {
      this.mutateEntry(doc);
      return;
    }
    const slot = this.randomSlot(doc);
    if (!slot) return;
    const { parent, key } = slot;
    const current = (parent as Record<string | number, Json>)[key] as Json;
    const action = this.int(7);
    switch (action) {
      case 0:
      case 1:
        (parent as Record<string | number, Json>)[key] = this.weirdValue();
        this.log.push(`set ${String(key)}`);
        break;
      case 2:
        if (Array.isArray(parent)) parent.splice(key as number, 1);
        else delete parent[key as string];
        this.log.push(`delete ${String(key)}`);
        break;
      case 3:
        // Duplicate an element: duplicate ids, classes, annotations.
        if (Array.isArray(parent)) parent.push(structuredClone(current));
        else parent[`${String(key)}_copy`] = structuredClone(current);
        this.log.push(`duplicate ${String(key)}`);
        break;
      case 4:
        if (typeof current === 'number')
          (parent as Record<string | number, Json>)[key] = this.pick([current + 1, -current, current * 1e6, current + 0.5, String(current)]);
        else if (typeof current === 'string')
          (parent as Record<string | number, Json>)[key] = this.pick([Number(current) || 7, `${current}/../..`, current.toUpperCase(), '']);
        else (parent as Record<string | number, Json>)[key] = this.weirdValue();
        this.log.push(`nudge ${String(key)}`);
        break;
      case 5:
        if (!Array.isArray(parent)) {
          // Own keys (plain assignment to __proto__ would set the prototype and vanish from the JSON).
          Object.defineProperty(parent, '__proto__', { value: { polluted: true }, enumerable: true, configurable: true, writable: true });
          Object.defineProperty(parent, 'constructor', { value: 'x', enumerable: true, configurable: true, writable: true });
          this.log.push('proto keys');
        }
        break;
      default:
        (parent as Record<string | number, Json>)[key] = Array.isArray(current) ? {} : [current];
        this.log.push(`wrap ${String(key)}`);
    }
  }

  /** Replaces one entry of a top-level list (an image, annotation or class) with something else. */
  private mutateEntry(doc: Json): void {
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return;
    const lists = Object.keys(doc).filter((k) => Array.isArray(doc[k]) && (doc[k] as Json[]).length > 0);
    if (lists.length === 0) return;
    const name = this.pick(lists);
    const list = doc[name] as Json[];
    const index = this.int(list.length);
    list[index] = this.pick<() => Json>([() => null, () => 7, () => 'entry', () => [], () => ({}), () => this.weirdValue()])();
    this.log.push(`entry ${name}[${index}]`);
  }

  mutateText(text: string): string {
    const action = this.int(8);
    this.log.push(`text ${action}`);
    switch (action) {
      case 0:
        return text.slice(0, this.int(text.length));
      case 1: {
        const at = this.int(text.length);
        return (
          text.slice(0, at) + this.pick(['{', '}', '[', ']', ',', ':', '"', '\\', 'NaN', 'Infinity', '1e999', '-', '\n', 'undefined', "'"]) + text.slice(at)
        );
      }
      case 2: {
        const at = this.int(text.length);
        return text.slice(0, at) + text.slice(at + 1 + this.int(5));
      }
      case 3: {
        // A number literal JSON.parse turns into Infinity.
        return text.replace(/(?<=[:[,])\s*\d+(\.\d+)?/, '1e999');
      }
      case 4: {
        const depth = this.pick([1_000, 50_000]);
        const nested = this.chance(0.5) ? '['.repeat(depth) + ']'.repeat(depth) : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
        return text.replace(/(?<=:)\s*(\d+|"[^"]*")/, nested);
      }
      case 5:
        return `\uFEFF${text}`;
      case 6:
        return this.pick([
          '',
          'null',
          '[]',
          '"text"',
          '42',
          '{}',
          '{"classes": {}, "images": {}}',
          '{"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}',
        ]);
      default:
        return text.replace(/"id"/, '"id" ');
    }
  }
}

describe('fuzzing loadDataset', () => {
  it(`loads or throws DatasetError for ${ITERATIONS} mutated annotation files`, async () => {
    const failures: string[] = [];
    const outcomes = { loaded: 0, datasetError: 0 };
    const tasks: readonly TaskType[] = TaskTypeSchema.options;
    for (let i = 0; i < ITERATIONS; i++) {
      const fuzz = new Fuzzer(1000 + i);
      const base = fuzz.pick(bases);
      const doc = structuredClone(base.doc);
      const mutations = 1 + fuzz.int(3);
      for (let m = 0; m < mutations; m++) fuzz.mutateTree(doc);
      let text = JSON.stringify(doc);
      if (fuzz.chance(0.25)) text = fuzz.mutateText(text);
      const annotationsPath = join(scratch, 'fuzzed.json');
      writeFileSync(annotationsPath, text);
      // Mostly the dataset's own task; sometimes another, which must be refused cleanly.
      const taskType = fuzz.chance(0.8) ? base.task : fuzz.pick(tasks);
      try {
        await loadDataset(base.root, { taskType, annotationsPath, verifyImages: fuzz.chance(0.3) });
        outcomes.loaded++;
      } catch (error) {
        if (error instanceof DatasetError && error.message.length < 40_000 && error.message.trim() !== '') outcomes.datasetError++;
        else
          failures.push(
            `seed ${fuzz.seed} (${base.task}, job ${taskType}; ${fuzz.log.join(', ')}): ${error instanceof Error ? `${error.name}: ${error.message.slice(0, 300)}\n${error.stack?.split('\n').slice(1, 4).join('\n')}` : String(error)}`,
          );
      }
    }
    expect(failures.slice(0, 5), `${failures.length} inputs failed some other way`).toEqual([]);
    // Both outcomes occur: the mutations are neither all harmless nor all fatal.
    expect(outcomes.loaded).toBeGreaterThan(ITERATIONS * 0.05);
    expect(outcomes.datasetError).toBeGreaterThan(ITERATIONS * 0.3);
  }, 60_000);
});
