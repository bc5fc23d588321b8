/**
 * The one logger. In a container (stdout is not a terminal) it writes JSON lines carrying
 * `job_id` and `trace_id`, so a log pipeline can join them with the backend's records; on a
 * terminal it writes readable lines and draws a progress bar. Everything is redacted first.
 * A job can also tee its lines into a file (uploaded as logs/job-{JOB_ID}/training.log).
 */
import { appendFileSync } from 'node:fs';
import { redact, redactDeep } from './redact.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
export type LogFormat = 'json' | 'text';
export type LogFields = Record<string, unknown>;

export interface LoggerOptions {
  level?: LogLevel;
  format?: LogFormat | 'auto';
  fields?: LogFields;
  /** Where lines go; defaults to stdout. Tests pass their own sink. */
  sink?: (line: string) => void;
}

interface SharedState {
  level: number;
  format: LogFormat;
  sink: (line: string) => void;
  files: Set<string>;
  progressVisible: boolean;
}

export class Logger {
  private constructor(
    private readonly state: SharedState,
    private readonly fields: LogFields,
  ) {}

  static create(options: LoggerOptions = {}): Logger {
    const format = options.format === undefined || options.format === 'auto' ? (process.stdout.isTTY ? 'text' : 'json') : options.format;
    return new Logger(
      {
        level: LEVELS[options.level ?? 'info'],
        format,
        sink: options.sink ?? ((line) => process.stdout.write(`${line}\n`)),
        files: new Set(),
        progressVisible: false,
      },
      options.fields ?? {},
    );
  }

  /** A logger that adds fields (e.g. job_id, trace_id, stage) to every line. */
  child(fields: LogFields): Logger {
    return new Logger(this.state, { ...this.fields, ...fields });
  }

  get format(): LogFormat {
    return this.state.format;
  }

  /** Also append every line (in readable form) to this file, e.g. the job's training.log. */
  teeTo(path: string): void {
    this.state.files.add(path);
  }
  untee(path: string): void {
    this.state.files.delete(path);
  }

  debug(msg: string, fields?: LogFields): void {
    this.write('debug', msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.write('info', msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.write('warn', msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.write('error', msg, fields);
  }

  /** The design's "=== Downloading Dataset ===" banners, as structured events. */
  stage(name: string, fields?: LogFields): void {
    this.write('info', `=== ${name} ===`, { event: 'stage', stage: name, ...fields });
  }

  /**
   * Batch-level progress. On a terminal it redraws one bar on stderr; in JSON mode it is
   * silent (epochs and heartbeats are logged as their own events).
   */
  progress(label: string, current: number, total: number, suffix = ''): void {
    if (this.state.format !== 'text' || !process.stderr.isTTY) return;
    const width = 28;
    const ratio = total > 0 ? Math.min(1, current / total) : 0;
    const filled = Math.round(ratio * width);
    const bar = `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`;
    process.stderr.write(`\r${label} ${bar} ${current}/${total} ${suffix}`.padEnd(process.stderr.columns ?? 100));
    this.state.progressVisible = current < total;
    if (!this.state.progressVisible) process.stderr.write('\n');
  }

  private write(level: LogLevel, msg: string, fields?: LogFields): void {
    if (LEVELS[level] < this.state.level) return;
    const all = redactDeep({ ...this.fields, ...fields });
    const text = redact(msg);
    const ts = new Date().toISOString();
    if (this.state.progressVisible) {
      process.stderr.write('\n');
      this.state.progressVisible = false;
    }
    const readable = `${ts.slice(11, 19)} ${level.toUpperCase().padEnd(5)} ${text}${formatFields(all)}`;
    this.state.sink(this.state.format === 'json' ? JSON.stringify({ ts, level, msg: text, ...all }) : readable);
    for (const file of this.state.files) {
      try {
        appendFileSync(file, `${ts} ${level.toUpperCase().padEnd(5)} ${text}${formatFields(all)}\n`);
      } catch {
        // A log file that cannot be written must not fail the job; the console still has it.
      }
    }
  }
}

function formatFields(fields: LogFields): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(fields)) {
    if (k === 'job_id' || k === 'trace_id' || k === 'event' || v === undefined) continue;
    parts.push(`${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  }
  return parts.length ? `  ${parts.join(' ')}` : '';
}

/** Process-wide default, replaced by jobs with one that carries job_id/trace_id. */
let current = Logger.create({ level: (process.env.LOG_LEVEL as LogLevel | undefined) ?? 'info' });
export function log(): Logger {
  return current;
}
export function setLogger(logger: Logger): void {
  current = logger;
}
