/**
 * TRAINER_ARGS: framework-native training settings, passed on to the framework by name
 * (ultralytics' train arguments, transformers' TrainingArguments fields, the options of our timm
 * loop named as timm's train.py names them).
 *
 * What is known without asking the framework is checked here, with the rest of the
 * configuration: keys that duplicate a contract variable (the variable is the one way to set
 * it), keys refused because they would break the job's contract (where files go, which
 * checkpoints exist, what is reported), and for timm the whole option table, because that loop
 * is ours. ultralytics' and transformers' own key lists are read from the installed frameworks
 * by a Python preflight before any download (`python/vision_trainer/<framework>/trainer_args.py`),
 * so they cannot drift from the versions we pin.
 */
import { closest, distance } from 'fastest-levenshtein';
import { z } from 'zod';
import type { Framework } from './tasks.js';

/** A setting the contract already has: TRAINER_ARGS names the variable to use instead. */
const CONTRACT_KEYS: Record<Framework, Record<string, string>> = {
  ultralytics: {
    epochs: 'EPOCHS',
    batch: 'BATCH_SIZE',
    imgsz: 'IMAGE_SIZE',
    lr0: 'LEARNING_RATE',
    device: 'DEVICE',
    workers: 'NUM_WORKERS',
    seed: 'SEED',
    deterministic: 'SEED',
    model: 'MODEL_NAME',
    pretrained: 'PRETRAINED_WEIGHT_URL',
    data: 'DATASET_ID',
    task: 'TASK_TYPE',
    time: 'MAX_TRAINING_TIME_SECONDS',
    save_period: 'CHECKPOINT_FREQUENCY',
    resume: 'RESUME_CHECKPOINT_PATH',
  },
  timm: {
    epochs: 'EPOCHS',
    batch_size: 'BATCH_SIZE',
    validation_batch_size: 'BATCH_SIZE',
    lr: 'LEARNING_RATE',
    img_size: 'IMAGE_SIZE',
    input_size: 'IMAGE_SIZE',
    device: 'DEVICE',
    workers: 'NUM_WORKERS',
    seed: 'SEED',
    model: 'MODEL_NAME',
    pretrained: 'PRETRAINED_WEIGHT_URL',
    initial_checkpoint: 'PRETRAINED_WEIGHT_URL',
    resume: 'RESUME_CHECKPOINT_PATH',
    num_classes: 'DATASET_ID (the classes come from the dataset)',
    data_dir: 'DATASET_ID',
    checkpoint_hist: 'CHECKPOINT_FREQUENCY',
  },
  huggingface: {
    num_train_epochs: 'EPOCHS',
    per_device_train_batch_size: 'BATCH_SIZE',
    per_device_eval_batch_size: 'BATCH_SIZE',
    learning_rate: 'LEARNING_RATE',
    use_cpu: 'DEVICE',
    no_cuda: 'DEVICE',
    dataloader_num_workers: 'NUM_WORKERS',
    seed: 'SEED',
    data_seed: 'SEED',
    full_determinism: 'SEED',
    resume_from_checkpoint: 'RESUME_CHECKPOINT_PATH',
    max_steps: 'EPOCHS',
  },
};

const WHERE_FILES_GO = 'the job decides where files go (its work folder) and what is uploaded';
const CHECKPOINTS = 'checkpoints are written by the job (epoch-N.pt every CHECKPOINT_FREQUENCY epochs, best.pt)';
const PER_EPOCH_VALIDATION = 'the contract validates once per epoch (the validation callback, best.pt)';
const TRACKING = "tracking is the job's own (MLFLOW_TRACKING_URI, ENABLE_TENSORBOARD), the same for every framework";

/** Keys that would break what the job promises the backend, with the reason. */
const REFUSED_KEYS: Record<Framework, Record<string, string>> = {
  ultralytics: {
    project: WHERE_FILES_GO,
    name: WHERE_FILES_GO,
    exist_ok: WHERE_FILES_GO,
    save_dir: WHERE_FILES_GO,
    save: CHECKPOINTS,
    val: PER_EPOCH_VALIDATION,
    mode: 'the job is a training job',
    cfg: "a configuration file would replace the job's settings; give the settings themselves",
    single_cls: "the class list is the dataset's (per-class metrics, checkpoints and exports name them)",
  },
  timm: {
    output: WHERE_FILES_GO,
    experiment: WHERE_FILES_GO,
    log_wandb: TRACKING,
  },
  huggingface: {
    output_dir: WHERE_FILES_GO,
    overwrite_output_dir: WHERE_FILES_GO,
    logging_dir: TRACKING,
    report_to: TRACKING,
    run_name: TRACKING,
    save_strategy: CHECKPOINTS,
    save_steps: CHECKPOINTS,
    save_total_limit: CHECKPOINTS,
    save_only_model: CHECKPOINTS,
    save_safetensors: CHECKPOINTS,
    load_best_model_at_end: CHECKPOINTS,
    eval_strategy: PER_EPOCH_VALIDATION,
    evaluation_strategy: PER_EPOCH_VALIDATION,
    eval_steps: PER_EPOCH_VALIDATION,
    do_eval: PER_EPOCH_VALIDATION,
    remove_unused_columns: "the job's data collator needs every column of its dataset",
    label_names: 'the job names the labels of its own models',
    push_to_hub: 'a job uploads to its own storage, never to a model hub',
    hub_model_id: 'a job uploads to its own storage, never to a model hub',
    hub_token: 'a job uploads to its own storage, never to a model hub',
    hub_strategy: 'a job uploads to its own storage, never to a model hub',
    deepspeed: "a configuration file would be read from the job's machine; distributed training is not configured here",
  },
};

const TIMM_OPTIMIZERS = [
  'sgd',
  'momentum',
  'adam',
  'adamw',
  'nadam',
  'nadamw',
  'radam',
  'rmsprop',
  'rmsproptf',
  'adamp',
  'sgdp',
  'lamb',
  'lars',
  'adabelief',
  'adafactor',
  'lion',
  'madgrad',
  'adan',
] as const;
const TIMM_SCHEDULES = ['cosine', 'tanh', 'step', 'multistep', 'plateau', 'poly'] as const;
const fraction = z.number().min(0).max(1);
const nonNegative = z.number().min(0);
const range = z.tuple([z.number().positive(), z.number().positive()]).refine(([a, b]) => a <= b, 'must be [low, high] with low <= high');

/**
 * The options of our timm training loop (python/vision_trainer/timm/train.py), named and
 * defaulted as timm's train.py names them, where our loop's default differs from train.py's
 * the default here is ours (it is what the loop did before these options existed). Options left
 * out: distributed and device settings (contract variables), model EMA, checkpoint averaging.
 * The README lists this table (`timmTrainerArgsHelp`).
 */
export const TIMM_TRAINER_ARGS = {
  opt: { schema: z.enum(TIMM_OPTIMIZERS), default: 'adamw', help: `optimizer (${TIMM_OPTIMIZERS.join(', ')})` },
  opt_eps: { schema: z.number().positive().nullable(), default: null, help: "optimizer epsilon (null: the optimizer's default)" },
  opt_betas: { schema: z.tuple([fraction, fraction]).nullable(), default: null, help: "Adam-style betas [b1, b2] (null: the optimizer's default)" },
  momentum: { schema: fraction, default: 0.9, help: 'SGD/RMSprop momentum' },
  weight_decay: { schema: nonNegative, default: 0.05, help: 'weight decay' },
  clip_grad: { schema: z.number().positive().nullable(), default: null, help: 'gradient clipping threshold (null: no clipping)' },
  clip_mode: { schema: z.enum(['norm', 'value', 'agc']), default: 'norm', help: 'gradient clipping mode: norm, value or agc' },
  sched: { schema: z.enum(TIMM_SCHEDULES), default: 'cosine', help: `learning-rate schedule (${TIMM_SCHEDULES.join(', ')})` },
  min_lr: { schema: nonNegative.nullable(), default: null, help: 'lowest learning rate of the schedule (null: 1% of the learning rate)' },
  warmup_lr: { schema: nonNegative.nullable(), default: null, help: 'learning rate at the start of the warm-up (null: 1% of the learning rate)' },
  warmup_epochs: { schema: z.number().int().min(0).nullable(), default: null, help: 'warm-up epochs (null: EPOCHS/10, at most 5)' },
  cooldown_epochs: { schema: z.number().int().min(0), default: 0, help: 'epochs at min_lr after the schedule (counted within EPOCHS)' },
  decay_epochs: { schema: z.number().positive(), default: 90, help: 'step schedule: epochs between decays' },
  decay_milestones: { schema: z.array(z.number().int().positive()), default: [90, 180, 270], help: 'multistep schedule: the epochs at which the rate decays' },
  decay_rate: { schema: z.number().positive(), default: 0.1, help: 'step/multistep/plateau schedules: the decay factor' },
  patience_epochs: { schema: z.number().int().min(0), default: 10, help: 'plateau schedule: epochs without improvement before decaying' },
  smoothing: { schema: fraction, default: 0.1, help: 'label smoothing' },
  scale: { schema: range, default: [0.5, 1.0], help: 'random-resized-crop area range' },
  ratio: { schema: range, default: [3 / 4, 4 / 3], help: 'random-resized-crop aspect-ratio range' },
  hflip: { schema: fraction, default: 0.5, help: 'horizontal flip probability' },
  vflip: { schema: fraction, default: 0.0, help: 'vertical flip probability' },
  color_jitter: { schema: nonNegative, default: 0.4, help: 'colour jitter strength' },
  aa: { schema: z.string().min(1).nullable(), default: null, help: 'AutoAugment/RandAugment policy, e.g. rand-m9-mstd0.5-inc1 (null: none)' },
  reprob: { schema: fraction, default: 0.0, help: 'random-erasing probability' },
  remode: { schema: z.enum(['const', 'rand', 'pixel']), default: 'pixel', help: 'random-erasing mode' },
  recount: { schema: z.number().int().min(1), default: 1, help: 'random-erasing count' },
  mixup: { schema: nonNegative, default: 0.0, help: 'mixup alpha (0: off)' },
  cutmix: { schema: nonNegative, default: 0.0, help: 'cutmix alpha (0: off)' },
  mixup_prob: { schema: fraction, default: 1.0, help: 'probability of mixup or cutmix per batch' },
  mixup_switch_prob: { schema: fraction, default: 0.5, help: 'probability of cutmix instead of mixup when both are on' },
  mixup_mode: { schema: z.enum(['batch', 'pair', 'elem']), default: 'batch', help: 'how mixup/cutmix parameters are drawn' },
  drop: { schema: z.number().min(0).max(0.99), default: 0.0, help: 'dropout rate before the classifier' },
  drop_path: { schema: z.number().min(0).max(0.99).nullable(), default: null, help: "stochastic depth rate (null: the model's default)" },
} as const;

export type TrainerArgs = Record<string, unknown>;

/** Candidates ordered by closeness to `key` (edit distance), the closest first. */
export function closestFirst(key: string, candidates: readonly string[]): string[] {
  const best = candidates.length ? closest(key, [...candidates]) : undefined;
  const rest = [...candidates].filter((c) => c !== best).sort((a, b) => distance(key, a) - distance(key, b) || a.localeCompare(b));
  return best === undefined ? rest : [best, ...rest];
}

export interface TrainerArgProblem {
  key: string;
  message: string;
}

/**
 * The problems the configuration can see by itself: contract duplicates and refused keys for
 * every framework; for timm, unknown keys and wrong values too.
 */
export function trainerArgProblems(framework: Framework, args: TrainerArgs): TrainerArgProblem[] {
  const problems: TrainerArgProblem[] = [];
  for (const [key, value] of Object.entries(args)) {
    const variable = CONTRACT_KEYS[framework][key];
    const refused = REFUSED_KEYS[framework][key];
    if (variable) problems.push({ key, message: `duplicates a contract variable: set ${variable} instead` });
    else if (refused) problems.push({ key, message: `cannot be set: ${refused}` });
    else if (framework === 'timm') {
      const option = (TIMM_TRAINER_ARGS as Record<string, { schema: z.ZodType }>)[key];
      if (!option) problems.push({ key, message: unknownKeyMessage(key, Object.keys(TIMM_TRAINER_ARGS), 'the timm loop') });
      else {
        const parsed = option.schema.safeParse(value);
        if (!parsed.success)
          problems.push({ key, message: `${JSON.stringify(value)} is not allowed: ${parsed.error.issues.map((i) => i.message).join('; ')}` });
      }
    }
  }
  return problems;
}

/** "is not a setting of X; valid keys (closest first): a, b, c, ..." */
export function unknownKeyMessage(key: string, valid: readonly string[], owner: string): string {
  return `is not a setting of ${owner}; valid keys (closest first): ${closestFirst(key, valid).join(', ')}`;
}

/** timm's options with the defaults filled in: what the loop will use. */
export function resolveTimmArgs(args: TrainerArgs): TrainerArgs {
  const resolved: TrainerArgs = {};
  for (const [key, option] of Object.entries(TIMM_TRAINER_ARGS)) resolved[key] = key in args ? args[key] : option.default;
  return resolved;
}

/** The timm option table as Markdown rows (README). */
export function timmTrainerArgsHelp(): string {
  return Object.entries(TIMM_TRAINER_ARGS)
    .map(([key, o]) => `| \`${key}\` | \`${JSON.stringify(o.default)}\` | ${o.help} |`)
    .join('\n');
}
