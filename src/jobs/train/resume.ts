/**
 * Retries continue, never restart. A training job records in storage what it has saved
 * (`logs/job-{JOB_ID}/state.json`: every checkpoint storage confirmed, the best one with
 * its epoch and metrics, the training time so far), written after each confirmed upload. An
 * attempt of the same JOB_ID that finds checkpoints there (RESUME=auto, no
 * RESUME_CHECKPOINT_PATH) resumes from the latest one with the same total epoch count, and
 * starts with the best of the earlier attempts as its best: its epoch, value and weights, so
 * `done` names the true best epoch of the whole job and best.pt holds it.
 *
 * When the earlier attempt had trained every epoch and only its final upload failed, nothing is
 * trained again: the best checkpoint in storage becomes best.pt.
 */
import { z } from 'zod';
import type { Metrics } from '../../events.js';
import type { Storage, StorageObject } from '../../storage/types.js';
import { checkpointKey, epochCheckpointKey } from './progress.js';

/** Beside the outcome, not among the checkpoints: checkpoints/job-{JOB_ID}/ holds checkpoints only. */
export const trainingStateKey = (jobId: string) => `logs/job-${jobId}/state.json`;

const StoredCheckpointSchema = z.object({
  epoch: z.number().int().nonnegative(),
  key: z.string(),
  /** A checkpoint saved at an epoch's end (periodic, or the best); a stop's may be mid-epoch. */
  complete: z.boolean(),
});

const BestSchema = z.object({
  epoch: z.number().int().nonnegative(),
  value: z.number().nullable(),
  /**
   * What later epochs without a backend answer are compared with (best.ts): the framework's
   * score, which for ultralytics is its fitness, not the primary metric. Absent in states
   * written before it was kept: the value stands in.
   */
  score: z.number().nullable().optional(),
  metrics: z.record(z.string(), z.number().nullable()),
  /** The stored checkpoint holding the best epoch's weights. */
  key: z.string(),
});

export const TrainingStateSchema = z.object({
  schema_version: z.literal(1),
  job_id: z.string(),
  epochs: z.number().int(),
  checkpoints: z.array(StoredCheckpointSchema),
  best: BestSchema.nullable(),
  /** Seconds every attempt so far ran (the completion's total_time_seconds). */
  seconds: z.number().nonnegative(),
  updated_at: z.string(),
});
export type TrainingState = z.infer<typeof TrainingStateSchema>;
export type StoredCheckpoint = z.infer<typeof StoredCheckpointSchema>;
export type StoredBest = z.infer<typeof BestSchema>;

/** Where an earlier attempt left the job. */
export interface ResumePoint {
  /** The latest checkpoint in storage. */
  latest: StoredCheckpoint;
  /** The best checkpoint of the earlier attempts, when the state names one that is in storage. */
  best: StoredBest | undefined;
  /** Seconds the earlier attempts ran. */
  seconds: number;
  /** Every epoch was trained (the latest checkpoint closes the last epoch): only best.pt is missing. */
  finished: boolean;
  /** Every epoch checkpoint in storage, newest first. */
  stored: Array<{ epoch: number; key: string }>;
}

const EPOCH_KEY = /\/epoch-(\d+)\.pt$/;

/** The checkpoints of earlier attempts of this job, newest first. */
function epochCheckpoints(objects: StorageObject[]): Array<{ epoch: number; key: string }> {
  return objects
    .map((o) => ({ key: o.key, epoch: Number(EPOCH_KEY.exec(o.key)?.[1] ?? Number.NaN) }))
    .filter((c) => Number.isInteger(c.epoch))
    .sort((a, b) => b.epoch - a.epoch);
}

/**
 * What storage holds of earlier attempts of this JOB_ID: undefined when there is no checkpoint.
 * The checkpoints are listed (an object exists only once its upload completed); the state adds
 * which one is best and whether the latest closed its epoch. A state that cannot be read is
 * ignored: the job then resumes from the latest checkpoint without an earlier best.
 */
export async function findResumePoint(storage: Storage, jobId: string, epochs: number, warn: (message: string) => void): Promise<ResumePoint | undefined> {
  const stored = epochCheckpoints(await storage.list(checkpointKey(jobId, 'epoch-')));
  const newest = stored[0];
  if (!newest) return undefined;
  let state: TrainingState | undefined;
  const stateKey = trainingStateKey(jobId);
  if (await storage.exists(stateKey)) {
    const parsed = TrainingStateSchema.safeParse(await storage.getJson(stateKey));
    if (parsed.success && parsed.data.job_id === jobId) state = parsed.data;
    else warn(`${storage.uri(stateKey)} is not a training state of this job; resuming without the earlier best`);
  }
  const keys = new Set(stored.map((c) => c.key));
  const known = state?.checkpoints.find((c) => c.key === newest.key && c.epoch === newest.epoch);
  const latest: StoredCheckpoint = { epoch: newest.epoch, key: newest.key, complete: known?.complete ?? false };
  const best = state?.best && keys.has(state.best.key) ? state.best : undefined;
  return { latest, best, seconds: state?.seconds ?? 0, finished: latest.complete && latest.epoch >= epochs, stored };
}

/**
 * The earlier attempts' best when state.json names none (an attempt killed before its state
 * recorded a best, or whose state writes failed): the best epoch the latest checkpoint records
 * (`recorded`, the trainer's view of every epoch before it), when that epoch's checkpoint is in
 * storage. Its metrics beyond the primary value are not known here.
 */
export function recoverBest(earlier: ResumePoint, recorded: { epoch: number | null; value: number | null }): StoredBest | undefined {
  if (earlier.best || recorded.epoch === null) return undefined;
  const stored = earlier.stored.find((c) => c.epoch === recorded.epoch);
  if (!stored) return undefined;
  // A stop's checkpoint of an epoch cut short holds part of the next epoch: not that epoch's weights.
  if (stored.key === earlier.latest.key && !earlier.latest.complete) return undefined;
  return { epoch: recorded.epoch, value: recorded.value, score: recorded.value, metrics: {}, key: stored.key };
}

/**
 * Keeps state.json current: what storage confirmed, and the best epoch once its checkpoint is
 * stored. Writes are queued one after another; a failed write is logged and the next one
 * (after the next checkpoint) carries everything again.
 */
export class TrainingStateWriter {
  private readonly checkpoints = new Map<number, StoredCheckpoint>();
  private best: StoredBest | null = null;
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly storage: Storage,
    private readonly jobId: string,
    private readonly epochs: number,
    private readonly seconds: () => number,
    private readonly warn: (message: string) => void,
  ) {}

  /** What earlier attempts stored stays in the state. */
  continueFrom(earlier: ResumePoint): void {
    this.checkpoints.set(earlier.latest.epoch, earlier.latest);
    if (earlier.best) {
      this.best = earlier.best;
      this.checkpoints.set(earlier.best.epoch, { epoch: earlier.best.epoch, key: earlier.best.key, complete: true });
    }
  }

  /** A checkpoint storage confirmed. */
  stored(epoch: number, complete: boolean): void {
    const previous = this.checkpoints.get(epoch);
    this.checkpoints.set(epoch, { epoch, key: epochCheckpointKey(this.jobId, epoch), complete: complete || (previous?.complete ?? false) });
  }

  /** The best epoch so far, once its checkpoint is stored: best.pt of a later attempt starts from it. */
  storedBest(epoch: number, value: number | null, score: number | null, metrics: Metrics): void {
    this.best = { epoch, value, score, metrics: { ...metrics }, key: epochCheckpointKey(this.jobId, epoch) };
  }

  /** Whether the checkpoint of this epoch is in storage. */
  has(epoch: number): boolean {
    return this.checkpoints.has(epoch);
  }

  write(): Promise<void> {
    const state: TrainingState = {
      schema_version: 1,
      job_id: this.jobId,
      epochs: this.epochs,
      checkpoints: [...this.checkpoints.values()].sort((a, b) => a.epoch - b.epoch),
      best: this.best,
      seconds: Math.round(this.seconds() * 10) / 10,
      updated_at: new Date().toISOString(),
    };
    this.chain = this.chain.then(async () => {
      try {
        await this.storage.putJson(trainingStateKey(this.jobId), state);
      } catch (err) {
        this.warn(`The training state could not be stored (a retried job may resume from an older point): ${(err as Error).message}`);
      }
    });
    return this.chain;
  }

  /** Resolves when every queued write has finished. */
  settled(): Promise<void> {
    return this.chain;
  }
}
