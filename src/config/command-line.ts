/**
 * The environment a `vision-trainer` command runs with, from three sources: `--env-file FILE`
 * (dotenv syntax, read with the `dotenv` package's parser), the process environment, and
 * `NAME=value` arguments. Files are defaults, as with Node's own `--env-file` and docker
 * compose's `env_file`: the environment wins over them, and an argument wins over both.
 *
 * Arguments are strict: a name that is not one of the mode's variables is an error naming the
 * variable that was probably meant. Files may hold other variables (thread counts, CUDA
 * settings) and only warn about a name that looks like a misspelt contract variable.
 */
import { readFileSync } from 'node:fs';
import { parse as parseDotenv } from 'dotenv';
import { type ConfigProblem, ConfigError } from '../errors.js';
import { type Mode, VARIABLES, variablesFor } from './variables.js';

/** Every name the mode reads (canonical names and accepted spellings). */
export function variableNames(mode: Mode | 'doctor'): string[] {
  const vars = mode === 'doctor' ? VARIABLES : variablesFor(mode);
  return [...new Set(vars.flatMap((v) => v.env))];
}

/** Edit distance with adjacent transpositions counted once (EPOHCS is one step from EPOCHS); names are short. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = d[i]!;
      row[j] = Math.min(d[i - 1]![j]! + 1, row[j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/** The frameworks' own names for settings the contract has a variable for (ultralytics' CLI, HF TrainingArguments). */
const PEER_NAMES: Record<string, string> = {
  imgsz: 'IMAGE_SIZE',
  lr0: 'LEARNING_RATE',
  data: 'DATASET_ID',
  workers: 'NUM_WORKERS',
  dataloader_num_workers: 'NUM_WORKERS',
  num_train_epochs: 'EPOCHS',
  per_device_train_batch_size: 'BATCH_SIZE',
  weights: 'PRETRAINED_WEIGHT_URL',
  resume: 'RESUME_CHECKPOINT_PATH',
};

/**
 * The variable a user probably meant by `name` (`epochs`, `--model-name`, `EPOHCS`, `model`,
 * `imgsz`): the same letters in upper snake case, the framework's name for it, a variable that
 * begins with it, or one a typo away.
 */
export function closestVariable(name: string, names: readonly string[]): string | undefined {
  const bare = name.replace(/^-+/, '');
  const upper = bare.replace(/-/g, '_').toUpperCase();
  if (!upper) return undefined;
  if (names.includes(upper)) return upper;
  const peer = PEER_NAMES[bare.replace(/-/g, '_').toLowerCase()];
  if (peer && names.includes(peer)) return peer;
  const prefixed = names.filter((n) => n.startsWith(`${upper}_`));
  if (prefixed.length === 1) return prefixed[0];
  let best: { name: string; distance: number } | undefined;
  for (const n of names) {
    const distance = editDistance(upper, n);
    if (distance <= Math.max(1, Math.floor(n.length / 4)) && (!best || distance < best.distance)) best = { name: n, distance };
  }
  return best?.name;
}

/** What to say about a name that is not a variable of `mode`. */
export function unknownVariableMessage(mode: Mode | 'doctor', name: string): string {
  const command = `vision-trainer ${mode}`;
  const owner = (['train', 'infer', 'export'] as const).filter((m) => m !== mode && variableNames(m).includes(name));
  if (owner.length > 0) return `is not read by ${command} (it is a variable of ${owner.map((m) => `vision-trainer ${m}`).join(' and ')})`;
  const meant = closestVariable(name, variableNames(mode));
  if (meant) return `is not a variable of ${command}; did you mean ${meant}?`;
  // Lower-case names are how ultralytics' own CLI takes its settings (patience=5, mosaic=0).
  if (name === name.toLowerCase()) {
    const trainerArgs = mode === 'train' && variableNames('train').includes('TRAINER_ARGS');
    return trainerArgs
      ? `is not a variable of ${command}; framework settings go in TRAINER_ARGS as JSON, e.g. TRAINER_ARGS='{"${name}": ...}'`
      : `is not a variable of ${command}; arguments set the environment variables listed by \`${command} --help\``;
  }
  return `is not a variable of ${command} (\`${command} --help\` lists them)`;
}

/** `NAME=value` arguments, each checked against the mode's variables; every problem at once. */
export function parseAssignments(mode: Mode | 'doctor', args: readonly string[]): Record<string, string> {
  const names = variableNames(mode);
  const values: Record<string, string> = {};
  const problems: ConfigProblem[] = [];
  for (const arg of args) {
    const eq = arg.indexOf('=');
    if (eq <= 0) {
      const meant = closestVariable(arg, names);
      problems.push({
        variable: arg,
        message: `is not NAME=value${meant ? `; to set ${meant}, write ${meant}=...` : ''} (arguments set the variables listed by \`vision-trainer ${mode} --help\`)`,
      });
      continue;
    }
    const name = arg.slice(0, eq);
    const value = arg.slice(eq + 1);
    if (!names.includes(name)) problems.push({ variable: name, value, message: unknownVariableMessage(mode, name) });
    else values[name] = value;
  }
  if (problems.length > 0) throw new ConfigError(problems, mode === 'doctor' ? undefined : mode);
  return values;
}

/** The variables of dotenv files, later files winning; a file that cannot be read is an error. */
export function readEnvFiles(files: readonly string[], mode: Mode | 'doctor'): { values: Record<string, string>; warnings: string[] } {
  const values: Record<string, string> = {};
  const warnings: string[] = [];
  const names = variableNames(mode);
  const problems: ConfigProblem[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      problems.push({ variable: '--env-file', value: file, message: `cannot be read: ${(err as NodeJS.ErrnoException).code ?? String(err)}` });
      continue;
    }
    const parsed = parseDotenv(text);
    for (const [name, value] of Object.entries(parsed)) {
      values[name] = value;
      if (names.includes(name) || VARIABLES.some((v) => v.env.includes(name))) continue;
      const meant = closestVariable(name, names);
      if (meant && meant !== name) warnings.push(`${file}: ${name} is not a variable of vision-trainer ${mode}; did you mean ${meant}? (set as it is)`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems, mode === 'doctor' ? undefined : mode);
  return { values, warnings };
}

/**
 * Applies the three sources to `env` (the process environment, for the CLI): file values where
 * `env` has none, then the arguments. Returns warnings for file values the environment hides.
 */
export function applyCommandLine(
  env: NodeJS.ProcessEnv,
  mode: Mode | 'doctor',
  options: { envFiles?: readonly string[]; assignments?: readonly string[] },
): string[] {
  const assignments = parseAssignments(mode, options.assignments ?? []);
  const { values, warnings } = readEnvFiles(options.envFiles ?? [], mode);
  for (const [name, value] of Object.entries(values)) {
    if (name in assignments) continue;
    if (env[name] === undefined) env[name] = value;
    else if (env[name] !== value) warnings.push(`--env-file: ${name} is also set in the environment, whose value is used`);
  }
  Object.assign(env, assignments);
  return warnings;
}
