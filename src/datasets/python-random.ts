/**
 * CPython's `random.Random`, the parts a split needs, bit for bit: seeding from an integer,
 * `getrandbits`, `_randbelow` (the rejection sampling `shuffle` uses), `shuffle` and
 * `random`. The design splits datasets with `random.seed(seed); random.shuffle(images)`, and
 * a platform's other tools (dataset statistics, Python trainers) do the same, so this runtime
 * must put exactly the same images in each split for the same seed.
 *
 * The generator is MT19937 as in CPython's `_randommodule.c`: an integer seed `a` is replaced
 * by `abs(a)`, cut into 32-bit words from the least significant end and fed to
 * `init_by_array` (0 still gives one word). Everything is 32-bit integer arithmetic
 * (`Math.imul`, `>>> 0`), so the numbers are the same on every machine and Node version.
 */

const N = 624;
const M = 397;
const MATRIX_A = 0x9908b0df;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;
const TWO_POW_32 = 0x1_0000_0000;

export class PythonRandom {
  private readonly mt = new Uint32Array(N);
  private index = N + 1;

  /** `random.Random(seed)`: `seed` is an integer with |seed| < 2^53 (what a JSON number holds exactly). */
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer with |seed| < 2^53, got ${seed}`);
    const magnitude = Math.abs(seed);
    const low = magnitude % TWO_POW_32;
    const high = Math.floor(magnitude / TWO_POW_32);
    this.initByArray(high > 0 ? [low, high] : [low]);
  }

  private initGenrand(seed: number): void {
    const mt = this.mt;
    mt[0] = seed >>> 0;
    for (let i = 1; i < N; i++) {
      const previous = mt[i - 1] as number;
      mt[i] = (Math.imul(1812433253, previous ^ (previous >>> 30)) + i) >>> 0;
    }
    this.index = N;
  }

  private initByArray(key: readonly number[]): void {
    const mt = this.mt;
    this.initGenrand(19650218);
    let i = 1;
    let j = 0;
    for (let k = Math.max(N, key.length); k > 0; k--) {
      const previous = mt[i - 1] as number;
      mt[i] = (((mt[i] as number) ^ Math.imul(previous ^ (previous >>> 30), 1664525)) >>> 0) + (key[j] as number) + j;
      i++;
      j++;
      if (i >= N) {
        mt[0] = mt[N - 1] as number;
        i = 1;
      }
      if (j >= key.length) j = 0;
    }
    for (let k = N - 1; k > 0; k--) {
      const previous = mt[i - 1] as number;
      // Uint32Array stores modulo 2^32, which is the C code's unsigned wrap-around.
      mt[i] = (((mt[i] as number) ^ Math.imul(previous ^ (previous >>> 30), 1566083941)) >>> 0) - i;
      i++;
      if (i >= N) {
        mt[0] = mt[N - 1] as number;
        i = 1;
      }
    }
    mt[0] = UPPER_MASK;
  }

  /** `genrand_uint32`: the next 32 random bits. */
  nextUint32(): number {
    const mt = this.mt;
    if (this.index >= N) {
      let kk = 0;
      for (; kk < N - M; kk++) {
        const y = ((mt[kk] as number) & UPPER_MASK) | ((mt[kk + 1] as number) & LOWER_MASK);
        mt[kk] = (mt[kk + M] as number) ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
      }
      for (; kk < N - 1; kk++) {
        const y = ((mt[kk] as number) & UPPER_MASK) | ((mt[kk + 1] as number) & LOWER_MASK);
        mt[kk] = (mt[kk + (M - N)] as number) ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
      }
      const y = ((mt[N - 1] as number) & UPPER_MASK) | ((mt[0] as number) & LOWER_MASK);
      mt[N - 1] = (mt[M - 1] as number) ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
      this.index = 0;
    }
    let y = mt[this.index++] as number;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** `getrandbits(k)` for 0 <= k <= 32 (larger values need more than a JS number's exact integers). */
  getrandbits(k: number): number {
    if (!Number.isInteger(k) || k < 0 || k > 32) throw new RangeError(`getrandbits takes 0..32 bits here, got ${k}`);
    if (k === 0) return 0;
    return this.nextUint32() >>> (32 - k);
  }

  /** `_randbelow_with_getrandbits(n)`: uniform in [0, n), by rejection, as `shuffle` and `randrange` draw. */
  randbelow(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n >= TWO_POW_32) throw new RangeError(`randbelow takes 1..2^32-1, got ${n}`);
    const k = bitLength(n);
    let r = this.getrandbits(k);
    while (r >= n) r = this.getrandbits(k);
    return r;
  }

  /** `random.shuffle(x)`, in place: from the last index down, swap with `randbelow(i + 1)`. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.randbelow(i + 1);
      const held = items[i] as T;
      items[i] = items[j] as T;
      items[j] = held;
    }
    return items;
  }

  /** `random()`: a float in [0, 1) with 53 random bits. */
  random(): number {
    const a = this.nextUint32() >>> 5;
    const b = this.nextUint32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }
}

/** `int.bit_length()` for 1 <= n < 2^32. */
function bitLength(n: number): number {
  return 32 - Math.clz32(n);
}
