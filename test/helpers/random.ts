/**
 * A tiny seeded PRNG for generating test data (synthetic images, fuzz cases): the same seed
 * gives the same bytes on every machine. Splits use CPython's generator
 * (src/datasets/python-random.ts); this one only has to be stable, so test fixtures keep
 * their bytes.
 */

/** mulberry32 (Tommy Ettinger): 32-bit state, uniform floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
