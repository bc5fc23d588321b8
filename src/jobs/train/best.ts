/**
 * Which epoch is the best, and its weights: what becomes `best.pt`.
 *
 * The backend decides when it answers. Every validation callback is answered with
 * `{"status": "ok", "is_best": true|false}`; that answer, for that epoch, makes it the best or
 * not, whatever the framework's score says. An epoch whose validation got no answer (the
 * callback failed or was dropped, the backend sent no `is_best`, no backend is configured, or
 * the answer had not arrived when training ended and the wait below ran out) is judged by the
 * framework's score (ultralytics' fitness, else the primary metric; higher is better) against
 * the best so far, whichever way that best was chosen.
 *
 * Progress callbacks never block training, so an answer usually arrives while the next epoch
 * trains and the trainer has overwritten its checkpoint. So every validated epoch's checkpoint
 * is snapshotted here the moment it is reported (Python waits for that: a hard link when the
 * trainer only ever replaces its file, as ours do, else a copy) and kept as a candidate
 * until its decision: it then replaces the best copy or is deleted. Decisions are made in epoch
 * order (the callbacks are delivered in order too), so at most the best and the candidates
 * whose answers are in flight are on disk. When training ends the job waits up to
 * ANSWER_WAIT_MS for answers still out, then judges the rest by score.
 *
 * The state (`BestState`) is plain JSON in one place: it goes out with every `best` run event
 * and every checkpoint event, and `restore` takes it back with the weights it names, for a run
 * that continues another (RESUME_CHECKPOINT_PATH, automatic resume).
 */
import { constants, copyFileSync, mkdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Metrics } from '../../events.js';
import type { Logger } from '../../log.js';
import { snapshotSync } from './uploads.js';

/** How long the end of training waits for validation answers still out. */
export const ANSWER_WAIT_MS = 30_000;

export type BestDecider = 'backend' | 'score';

export interface BestState {
  epoch: number | null;
  /** The primary metric's value at that epoch. */
  value: number | null;
  /** What later epochs without an answer are compared with. */
  score: number | null;
  metrics: Metrics;
  /** Who made it the best: the backend's is_best answer, or the score. */
  decidedBy: BestDecider | null;
}

export interface Candidate {
  epoch: number;
  value: number | null;
  score: number | null;
  metrics: Metrics;
  /** The trainer's checkpoint of this epoch, snapshotted at once. */
  checkpointPath: string;
  /** The trainer only ever replaces that file (never writes into it): linked, not copied. */
  replaced?: boolean;
}

export interface Decision {
  epoch: number;
  isBest: boolean;
  decidedBy: BestDecider;
}

const EMPTY: BestState = { epoch: null, value: null, score: null, metrics: {}, decidedBy: null };

export class BestCheckpoint {
  private state: BestState = { ...EMPTY };
  private file: string | undefined;
  private chain: Promise<void> = Promise.resolve();
  private readonly decisions = new Map<number, Promise<Decision>>();
  private counter = 0;
  private expire: (() => void) | undefined;
  private readonly expired = new Promise<undefined>((resolve) => {
    this.expire = () => resolve(undefined);
  });

  constructor(
    private readonly dir: string,
    private readonly logger: Logger,
    private readonly onBest: (state: BestState, decision: Decision) => void = () => {},
  ) {}

  get current(): Readonly<BestState> {
    return this.state;
  }

  /** The best epoch's weights, when there is a best. */
  get path(): string | undefined {
    return this.file;
  }

  /**
   * Snapshots the candidate's checkpoint now, synchronously (the trainer may overwrite it as
   * soon as this returns; a link where it only replaces the file), and decides once `answer`
   * settles: true/false from the backend, or undefined for no answer. Resolves with the decision.
   */
  consider(candidate: Candidate, answer: Promise<boolean | undefined>): Promise<Decision> {
    mkdirSync(this.dir, { recursive: true });
    const copy = join(this.dir, `candidate-${++this.counter}-epoch-${candidate.epoch}.pt`);
    snapshotSync(candidate.checkpointPath, copy, candidate.replaced === true);
    // An answer that arrived before the wait ran out counts, even when its turn comes after.
    let arrived: { isBest: boolean | undefined } | undefined;
    const settled = answer.then(
      (isBest) => {
        arrived = { isBest };
        return isBest;
      },
      () => {
        arrived = { isBest: undefined };
        return undefined;
      },
    );
    const decided = this.chain.then(async () => {
      const said = await Promise.race([settled, this.expired]);
      return this.decide(candidate, copy, arrived ? arrived.isBest : said);
    });
    this.chain = decided.then(
      () => undefined,
      () => undefined,
    );
    this.decisions.set(candidate.epoch, decided);
    return decided;
  }

  /** The decision on an epoch, once made; undefined for an epoch that was not a candidate. */
  decisionFor(epoch: number): Promise<Decision> | undefined {
    return this.decisions.get(epoch);
  }

  /** Waits for every pending decision; answers not in after `timeoutMs` count as none. */
  async settle(timeoutMs: number = ANSWER_WAIT_MS): Promise<void> {
    const timer = setTimeout(() => this.expire?.(), timeoutMs);
    try {
      await this.chain;
    } finally {
      clearTimeout(timer);
    }
  }

  /** A previous run's best (its state and weights), as the best so far of this one. */
  restore(state: BestState, weightsPath: string): void {
    mkdirSync(this.dir, { recursive: true });
    const copy = join(this.dir, `restored-epoch-${state.epoch}.pt`);
    copyFileSync(weightsPath, copy, constants.COPYFILE_FICLONE);
    this.file = copy;
    this.state = { ...state, metrics: { ...state.metrics } };
  }

  toJSON(): BestState {
    return { ...this.state, metrics: { ...this.state.metrics } };
  }

  private async decide(candidate: Candidate, copy: string, answer: boolean | undefined): Promise<Decision> {
    const byScore = candidate.score !== null && (this.state.score === null || candidate.score > this.state.score);
    const decision: Decision = { epoch: candidate.epoch, isBest: answer ?? byScore, decidedBy: answer === undefined ? 'score' : 'backend' };
    if (!decision.isBest) {
      await rm(copy, { force: true });
      return decision;
    }
    const previous = this.file;
    this.file = copy;
    this.state = { epoch: candidate.epoch, value: candidate.value, score: candidate.score, metrics: { ...candidate.metrics }, decidedBy: decision.decidedBy };
    if (previous) await rm(previous, { force: true });
    if (decision.decidedBy === 'backend' && !byScore)
      this.logger.info(`Epoch ${candidate.epoch} is the best because the backend answered is_best; its score alone would not have made it the best`);
    this.onBest(this.toJSON(), decision);
    return decision;
  }
}
