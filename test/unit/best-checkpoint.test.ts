/** Which epoch becomes best.pt (src/jobs/train/best.ts): the backend's is_best answers, else the score. */
import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Logger } from '../../src/log.js';
import { BestCheckpoint, type BestState, type Decision } from '../../src/jobs/train/best.js';
import { answeredIsBest } from '../../src/jobs/train/validation-results.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/**
 * A trainer that rewrites one `last.pt` every epoch, as the frameworks do: in place
 * (ultralytics), or with `replaced` as a new file renamed over it (the timm and transformers
 * trainers' save_atomically).
 */
function setup({ replaced = false } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'vt-best-'));
  dirs.push(dir);
  const lines: string[] = [];
  const logger = Logger.create({ format: 'text', level: 'debug', sink: (line) => lines.push(line) });
  const chosen: Array<{ state: BestState; decision: Decision }> = [];
  const best = new BestCheckpoint(join(dir, 'best'), logger, (state, decision) => chosen.push({ state, decision }));
  const last = join(dir, 'last.pt');
  const epoch = (n: number, score: number, answer: Promise<boolean | undefined>) => {
    if (replaced) {
      writeFileSync(`${last}.tmp`, `weights of epoch ${n}`);
      renameSync(`${last}.tmp`, last);
    } else writeFileSync(last, `weights of epoch ${n}`);
    const decided = best.consider({ epoch: n, value: score, score, metrics: { accuracy: score }, checkpointPath: last, replaced }, answer);
    return decided;
  };
  const weights = () => readFileSync(best.path!, 'utf8');
  return { best, epoch, weights, chosen, lines, last, dir };
}

/** An answer the test gives later, as a backend answers while the next epoch trains. */
function later<T>() {
  let give!: (value: T) => void;
  const promise = new Promise<T>((resolve) => {
    give = resolve;
  });
  return { promise, give };
}

describe('BestCheckpoint', () => {
  it("links the candidate of a trainer that only replaces its file (no copy while Python waits), copies one that writes in place; either keeps its epoch's weights", async () => {
    for (const replaced of [true, false]) {
      const { best, epoch, weights, last, dir } = setup({ replaced });
      const answer1 = later<boolean | undefined>();
      const decided1 = epoch(1, 0.8, answer1.promise);
      const [candidate] = readdirSync(join(dir, 'best'));
      const linked = statSync(join(dir, 'best', candidate!)).ino === statSync(last).ino;
      expect(linked).toBe(replaced);
      // Epoch 2 saves before epoch 1's answer arrives; epoch 1 stays the best.
      const decided2 = epoch(2, 0.5, Promise.resolve(false));
      answer1.give(true);
      expect(await decided1).toMatchObject({ epoch: 1, isBest: true });
      expect(await decided2).toMatchObject({ epoch: 2, isBest: false });
      await best.settle(1_000);
      expect(weights()).toBe('weights of epoch 1');
      expect(readFileSync(last, 'utf8')).toBe('weights of epoch 2');
    }
  });

  it('makes a lower-scoring epoch the best when the backend says is_best, after the next epoch overwrote the trainer file', async () => {
    const { best, epoch, weights, chosen, lines } = setup();
    await epoch(1, 0.8, Promise.resolve(true));
    const answer2 = later<boolean | undefined>();
    const decided2 = epoch(2, 0.5, answer2.promise);
    // Epoch 3 trains (and rewrites last.pt) before epoch 2's answer arrives.
    const answer3 = later<boolean | undefined>();
    const decided3 = epoch(3, 0.9, answer3.promise);
    answer2.give(true);
    answer3.give(false);
    expect(await decided2).toEqual({ epoch: 2, isBest: true, decidedBy: 'backend' });
    expect(await decided3).toEqual({ epoch: 3, isBest: false, decidedBy: 'backend' });
    await best.settle(1_000);
    expect(weights()).toBe('weights of epoch 2');
    expect(best.current).toMatchObject({ epoch: 2, value: 0.5, decidedBy: 'backend' });
    expect(chosen.map((c) => c.decision.epoch)).toEqual([1, 2]);
    expect(lines.some((l) => l.includes('Epoch 2 is the best because the backend answered is_best'))).toBe(true);
  });

  it('judges an epoch without an answer by its score against the best so far, whoever chose that best', async () => {
    const { best, epoch, weights } = setup();
    await epoch(1, 0.9, Promise.resolve(false)); // the backend refuses the first epoch: no best yet
    expect(best.path).toBeUndefined();
    await epoch(2, 0.4, Promise.resolve(true)); // ...and picks a weak one
    expect(await epoch(3, 0.5, Promise.resolve(undefined))).toEqual({ epoch: 3, isBest: true, decidedBy: 'score' });
    expect(await epoch(4, 0.45, Promise.reject(new Error('callback failed')))).toEqual({ epoch: 4, isBest: false, decidedBy: 'score' });
    expect(weights()).toBe('weights of epoch 3');
  });

  it('decides in epoch order, and an answer still out when training ends counts as none after the wait', async () => {
    const { best, epoch, weights } = setup();
    const never = new Promise<boolean | undefined>(() => {});
    const decided1 = epoch(1, 0.3, never);
    const decided2 = epoch(2, 0.6, Promise.resolve(false));
    await best.settle(50);
    expect(await decided1).toEqual({ epoch: 1, isBest: true, decidedBy: 'score' });
    expect(await decided2).toEqual({ epoch: 2, isBest: false, decidedBy: 'backend' });
    expect(weights()).toBe('weights of epoch 1');
  });

  it('restores a previous run’s best as the best so far, its state as plain JSON', async () => {
    const { best, epoch, weights, last } = setup();
    writeFileSync(last, 'weights of epoch 4');
    const saved: BestState = { epoch: 4, value: 0.7, score: 0.7, metrics: { accuracy: 0.7 }, decidedBy: 'backend' };
    best.restore(JSON.parse(JSON.stringify(saved)), last);
    expect(await epoch(5, 0.6, Promise.resolve(undefined))).toMatchObject({ isBest: false });
    expect(weights()).toBe('weights of epoch 4');
    expect(best.toJSON()).toEqual(saved);
  });
});

describe('answeredIsBest', () => {
  it('reads the backend’s is_best among the subscribers’ answers, and nothing else', () => {
    expect(answeredIsBest([undefined, { status: 'ok', is_best: true, note: 'kept' }])).toBe(true);
    expect(answeredIsBest([{ status: 'ok', is_best: false }])).toBe(false);
    expect(answeredIsBest([{ status: 'ok' }, undefined])).toBeUndefined();
    expect(answeredIsBest([{ status: 'ok', is_best: 'yes' }])).toBeUndefined();
  });
});
