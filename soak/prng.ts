/**
 * A small seeded PRNG (mulberry32) and a string hash, so every random decision of the soak
 * can be replayed from `--seed`. Independent streams (`fork`) keep one kind of decision
 * (say, the LLM's faults, whose number depends on timing) from shifting the others.
 */

/** 32-bit FNV-1a of a string. */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export class Prng {
  private state: number;

  constructor(readonly seed: number | string) {
    this.state = typeof seed === 'number' ? seed >>> 0 || 0x9e3779b9 : hash32(seed);
  }

  /** A float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[Math.floor(this.next() * items.length)]!;
  }

  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  }

  /** An independent stream named `label` (same seed + label = same stream). */
  fork(label: string): Prng {
    return new Prng(`${this.seed}/${label}`);
  }
}

/** A decision that depends only on (seed, key): the same request gets the same answer whatever the timing. */
export function keyed(seed: number, key: string): Prng {
  return new Prng(`${seed}#${key}`);
}
