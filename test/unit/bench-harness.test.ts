/** The benches' equal-work check: a real difference fails, the same value printed two ways does not. */
import { describe, expect, it } from 'vitest';
import { differences } from '../../bench/harness.js';

describe('differences', () => {
  it('names every path whose value differs', () => {
    expect(differences({ runtime: { torch_threads: 1 }, batch: 16 }, { runtime: { torch_threads: 2 }, batch: 16 })).toEqual(['runtime.torch_threads: 1 vs 2']);
    expect(differences({ t: 'scale=(0.5, 1.0)' }, { t: 'scale=(0.25, 1.0)' })).toHaveLength(1);
    expect(differences({ lr: 0.01 }, { lr: 0.015 })).toHaveLength(1);
  });

  it('treats a whole-number float and its integer as the same value', () => {
    expect(differences({ t: 'RandomResizedCrop(scale=(0.5, 1.0))' }, { t: 'RandomResizedCrop(scale=(0.5, 1))' })).toEqual([]);
    expect(differences({ epochs: 2.0, x: '10.05' }, { epochs: 2, x: '10.05' })).toEqual([]);
    expect(differences({ x: '10.05' }, { x: '10.5' })).toHaveLength(1);
  });
});
