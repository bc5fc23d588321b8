/**
 * `npm run bench:startup`: how long from `vision-trainer train` starting to its first epoch, on a
 * dataset of BENCH_STARTUP_IMAGES (default 20,000) small images in S3-compatible storage (the
 * local SeaweedFS server the tests use), against the two things it cannot avoid:
 *
 *   download alone    vision-trainer's dataset download by itself (a fresh Node process), into
 *                     an empty folder: the transfer the job must make before it can convert
 *   native start-up   ultralytics' training started by hand in Python (bench/native_ultralytics.py)
 *                     on the already-downloaded, already-converted data: interpreter, torch and
 *                     ultralytics imports, model, dataset scan, data loaders, up to its first epoch
 *                     (ultralytics' label cache removed before each run: the job scans its freshly
 *                     converted labels every time, so the native side does too)
 *   vision-trainer    the whole job (YOLO11n, 32 px, batch 32): preflight, download, validation and
 *                     conversion, the framework's imports meanwhile, up to `training_started`
 *
 * Aim: vision-trainer ≤ download alone + 1.1 x native start-up, i.e. Python's start-up overlaps
 * the download rather than following it. Each run is stopped once it reached its first epoch
 * (SIGTERM for the job, whose graceful stop is part of what it does; the native script is
 * killed). Both sides get the same OMP_NUM_THREADS and print their resolved settings, compared
 * as in bench:bridge. Interleaved BENCH_REPEATS times (default 2); results in
 * bench/results/startup.{json,md}, with the stages and milestones the job logged and when
 * (`jobPhases`: where its time went). BENCH_TRACE=1 prints the job's log lines as they come.
 *
 * BENCH_STARTUP_JOB=test_run measures a test run instead: `vision-trainer infer` (TEST_SPLIT=val,
 * a YOLO11n checkpoint trained by the bench on a few images first, INFERENCE_BACKEND=auto) from
 * starting to its first prediction batch, against the download alone; there is no native side
 * (what the job does before predicting, opening the model and exporting its graph, is its own
 * work), so its figure is the job's time past the download, and BENCH_STARTUP_COMPARE's pairs.
 *
 * BENCH_STARTUP_ZIP=1 stores the dataset as datasets/{id}.zip, the design's form, instead of
 * files under datasets/{id}/.
 *
 * BENCH_STARTUP_COMPARE=<another checkout, built> also runs that checkout's job in every
 * repeat, back to back with this one's, the order alternating, and prints the pairs: on a VM
 * whose disk speed swings by 2x within minutes, the difference within a pair is what a change
 * can be judged by, not the ratio against a download alone measured minutes apart.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { convertToYolo } from '../src/datasets/convert/yolo.js';
import { loadDataset } from '../src/datasets/load.js';
import { resolveSplits } from '../src/datasets/splits.js';
import { startCallbackReceiver } from '../src/dev/receiver.js';
import { startS3Server } from '../src/dev/s3server.js';
import { PROJECT_ROOT, PYTHON_DIR, defaultPythonBin } from '../src/paths.js';
import { mapWithConcurrency } from '../src/storage/files.js';
import { createStorage, createZip } from '../src/storage/index.js';
import { BENCH_THREADS, BenchError, describeMachine, fmtSpread, machine, measure, runBench, sameSettings, spread, table, writeResults } from './harness.js';

const IMAGES = Number(process.env.BENCH_STARTUP_IMAGES ?? 20_000);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 2);
const IMGSZ = 32;
const BATCH = 32;
const WORKERS = 0;
const DATASET_ID = 'startup';
/** train, or test_run (the time to a test run's first prediction). */
const JOB = process.env.BENCH_STARTUP_JOB ?? 'train';
if (JOB !== 'train' && JOB !== 'test_run') throw new Error(`BENCH_STARTUP_JOB=${JOB}: use train or test_run`);
/** The test run's checkpoint: trained by the bench on a dataset this small, stored under this job id. */
const MODEL_IMAGES = 64;
const MODEL_JOB = 'bench-startup-model';
/** BENCH_STARTUP_ZIP=1: the dataset stored as datasets/{id}.zip (the design's form) instead of files under datasets/{id}/. */
const AS_ZIP = process.env.BENCH_STARTUP_ZIP === '1';
/** BENCH_TRACE=1: every line the job logs, with its second from spawning. */
const TRACE = process.env.BENCH_TRACE === '1';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

interface Watched {
  /** Seconds from spawning to the line that marks the first epoch. */
  seconds: number;
  settings: Json | undefined;
  /** vision-trainer only: each stage and milestone the job logged, with its second from spawning. */
  phases?: [string, number][];
  load: number;
}

/**
 * Spawns a command, reads its JSON lines until `first` says the first epoch began, then ends it
 * with `signal` and waits for it to exit (a job's graceful stop included).
 */
function untilFirstEpoch(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  signal: NodeJS.Signals,
  read: (line: Record<string, unknown>, elapsed: number, w: Partial<Watched>) => boolean,
  cwd?: string,
): Promise<Watched> {
  const load = loadavg()[0]!;
  const started = performance.now();
  const child: ChildProcess = spawn(command, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const seen: Partial<Watched> = { load };
  let stderr = '';
  let buffered = '';
  let reached = false;
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-6000)));
  child.stdout!.on('data', (d: Buffer) => {
    buffered += d.toString();
    const parts = buffered.split('\n');
    buffered = parts.pop() ?? '';
    for (const line of parts) {
      if (reached || !line.startsWith('{')) continue;
      const elapsed = (performance.now() - started) / 1000;
      if (read(JSON.parse(line) as Record<string, unknown>, elapsed, seen)) {
        reached = true;
        seen.seconds = elapsed;
        child.kill(signal);
      }
    }
  });
  return new Promise((resolvePromise, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => {
      if (!reached) return reject(new BenchError(`${command} ${args.join(' ')} ended (exit ${code}) before its first epoch:\n${stderr}`));
      resolvePromise(seen as Watched);
    });
  });
}

/** The job's way to its first epoch in parts, from the stages and milestones it logged (seconds). */
const PARTS: [label: string, from: string, to: string][] = [
  ['start and preflight (Node, Python, torch, model check)', '', 'Downloading Dataset'],
  ['dataset download (framework imports and the layout meanwhile)', 'Downloading Dataset', 'dataset_downloaded'],
  ['validation (and conversion, when not done meanwhile)', 'dataset_downloaded', 'dataset_prepared'],
  ['framework set-up (model, label scan, data loaders)', 'dataset_prepared', 'training_started'],
];

/** A test run's way to its first prediction: the stages it logged (the model opens while the images download). */
const TEST_RUN_PARTS: [label: string, from: string, to: string][] = [
  ['start, Python up (the downloads begin)', '', 'Loading Test Dataset'],
  ["the preflight's torch import and checks (downloads meanwhile)", 'Loading Test Dataset', 'Loading Model'],
  ['model opened and exported, rest of the download, images verified', 'Loading Model', 'Processing'],
];

/** When the job logged `name` (seconds from spawning; '' is the spawn itself; a name matches a stage that starts with it). */
const phaseAt = (phases: [string, number][] | undefined, name: string) =>
  name === '' ? 0 : (phases?.find(([n]) => n === name || n.startsWith(`${name} `))?.[1] ?? Number.NaN);

const JOB_PARTS = JOB === 'train' ? PARTS : TEST_RUN_PARTS;
const REACHED = JOB === 'train' ? 'first epoch' : 'first prediction';
const parts = (phases: [string, number][] | undefined): number[] => JOB_PARTS.map(([, from, to]) => phaseAt(phases, to) - phaseAt(phases, from));

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

const work = (s: Json | undefined): Json | undefined =>
  s && typeof s === 'object' && !Array.isArray(s) ? { args: s.args ?? null, runtime: s.runtime ?? null } : s;

/** BENCH_STARTUP_COMPARE: another checkout (built) whose job runs beside this one's in every repeat. */
interface OtherBuild {
  dir: string;
  commit: string | undefined;
  cli: string;
  runs: Watched[];
}

function otherBuild(): OtherBuild | undefined {
  const dir = process.env.BENCH_STARTUP_COMPARE;
  if (!dir) return undefined;
  const cli = resolve(dir, 'dist/src/cli.js');
  if (!existsSync(cli)) throw new BenchError(`BENCH_STARTUP_COMPARE=${dir}: ${cli} does not exist; run \`npm run build\` in that checkout first`);
  const head = spawnSync('git', ['-C', dir, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' });
  return { dir: resolve(dir), commit: head.status === 0 ? head.stdout.trim() : undefined, cli, runs: [] };
}

/** This build against the other, pair by pair: the figure that survives this VM's swings, which hit both jobs of a pair alike. */
function compareSummary(other: OtherBuild, mine: Watched[]) {
  const here = mine.map((w) => w.seconds);
  const there = other.runs.map((w) => w.seconds);
  const gains = here.map((s, i) => (there[i] as number) - s);
  const sooner = gains.filter((g) => g > 0).length;
  const name = `${other.dir}${other.commit ? ` (${other.commit})` : ''}`;
  return {
    line: `against ${name}: ${REACHED} ${fmtSpread(spread(here))} s here, ${fmtSpread(spread(there))} s there; sooner here in ${sooner} of ${gains.length} pairs (by ${gains.map((g) => g.toFixed(2)).join(', ')} s)`,
    json: { other: other.dir, commit: other.commit ?? null, here, there, soonerHere: sooner, pairs: gains.length },
  };
}

/** vision_trainer.sample_data's detection images, made in `dir` and uploaded as files under datasets/{id}/, or as datasets/{id}.zip. */
async function storeSampleDataset(storage: ReturnType<typeof createStorage>, dir: string, id: string, images: number, asZip = false): Promise<void> {
  const made = spawnSync(defaultPythonBin(), ['-m', 'vision_trainer.sample_data', 'detection', dir, '--images', String(images), '--size', String(IMGSZ)], {
    cwd: PYTHON_DIR,
    encoding: 'utf8',
  });
  if (made.status !== 0) throw new Error(made.stderr);
  if (asZip) {
    const zip = `${dir}.zip`;
    await createZip(dir, zip);
    await storage.uploadFile(zip, `datasets/${id}.zip`);
    return;
  }
  await mapWithConcurrency(filesUnder(dir), 32, (f) => storage.uploadFile(f, `datasets/${id}/${relative(dir, f)}`));
}

/** The test run's checkpoint: YOLO11n trained for one epoch on MODEL_IMAGES images by `vision-trainer train`. */
async function trainModel(scratch: string, storage: ReturnType<typeof createStorage>, jobEnv: NodeJS.ProcessEnv): Promise<string> {
  const dir = join(scratch, 'model-dataset');
  process.stdout.write(`training the test run's checkpoint (YOLO11n, 1 epoch, ${MODEL_IMAGES} images) ...\n`);
  await storeSampleDataset(storage, dir, MODEL_JOB, MODEL_IMAGES);
  const env = {
    ...jobEnv,
    JOB_ID: MODEL_JOB,
    TRACE_ID: MODEL_JOB,
    DATASET_ID: MODEL_JOB,
    MODEL_NAME: 'yolo11n',
    EPOCHS: '1',
    IMAGE_SIZE: String(IMGSZ),
    TRAINER_ARGS: '{"plots":false}',
  };
  // Not spawnSync: the callback receiver the job reports to runs in this process's event loop.
  const child = spawn(process.execPath, [join(PROJECT_ROOT, 'dist/src/cli.js'), 'train'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  for (const stream of [child.stdout!, child.stderr!]) stream.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-6000)));
  const code = await new Promise<number | null>((done, fail) => child.on('error', fail).on('exit', done));
  if (code !== 0) throw new BenchError(`training the test run's checkpoint failed (exit ${code}):\n${output}`);
  return storage.uri(`checkpoints/job-${MODEL_JOB}/best.pt`);
}

/** A test run's time to its first prediction against the download alone, and the pairs against another build. */
function testRunResults(m: ReturnType<typeof machine>, download: number[], job: Watched[], compare: OtherBuild | undefined): void {
  const title = `test run, ultralytics YOLO11n, TEST_SPLIT=val of ${IMAGES} images at ${IMGSZ} px from S3${AS_ZIP ? ' (a zip)' : ''}`;
  const dl = spread(download);
  const vt = spread(job.map((j) => j.seconds));
  const jobParts = JOB_PARTS.map(([label], i) => ({ label, seconds: spread(job.map((j) => parts(j.phases)[i] as number)) }));
  const beyond = vt.median - dl.median;
  const versus = compare && compareSummary(compare, job);
  process.stdout.write(
    [
      '',
      `download alone                    ${fmtSpread(dl)} s`,
      `vision-trainer first prediction   ${fmtSpread(vt)} s (${beyond.toFixed(2)} s past the download alone, by the medians)`,
      'the test run to its first prediction, in parts:',
      ...jobParts.map((p) => `  ${p.label.padEnd(58)} ${fmtSpread(p.seconds)} s`),
      ...(versus ? ['', versus.line] : []),
      '',
    ].join('\n'),
  );
  writeResults(
    'startup-test-run',
    {
      machine: m,
      images: IMAGES,
      repeats: REPEATS,
      threads: BENCH_THREADS,
      title,
      download: dl,
      visionTrainer: vt,
      pastDownload: beyond,
      jobParts,
      ...(versus ? { compare: versus.json } : {}),
      jobPhases: job.map((j) => j.phases ?? []),
    },
    [
      "## bench:startup (BENCH_STARTUP_JOB=test_run): time to a test run's first prediction, dataset in S3",
      '',
      `${describeMachine(m)}. ${REPEATS} interleaved runs; median [min-max].`,
      '',
      ...table(
        ['dataset', 'download alone', 'vision-trainer to first prediction', 'past the download'],
        [[title, `${fmtSpread(dl)} s`, `${fmtSpread(vt)} s`, `${beyond.toFixed(2)} s`]],
      ),
      '',
      ...table(
        ['part', 'seconds'],
        jobParts.map((p) => [p.label, fmtSpread(p.seconds)]),
      ),
      ...(versus ? ['', versus.line] : []),
    ],
  );
}

async function main(): Promise<void> {
  const m = machine();
  process.stdout.write(`${describeMachine(m)}\n`);
  const scratch = mkdtempSync(join(tmpdir(), 'vt-bench-startup-'));
  const server = await startS3Server();
  const receiver = await startCallbackReceiver({ token: 'bench-token', print: false });
  try {
    const datasetDir = join(scratch, 'dataset');
    process.stdout.write(`making ${IMAGES} images at ${IMGSZ} px and uploading them as datasets/${DATASET_ID}${AS_ZIP ? '.zip' : '/'} ...\n`);
    const storage = createStorage(server.storageConfig());
    await storeSampleDataset(storage, datasetDir, DATASET_ID, IMAGES, AS_ZIP);
    // The native side starts on the data as it is after download and conversion.
    const dataset = JOB === 'train' ? await loadDataset(datasetDir, { taskType: 'object_detection' }) : undefined;
    const yolo = dataset ? await convertToYolo(dataset, resolveSplits(dataset), join(scratch, 'yolo')) : undefined;

    const threads = BENCH_THREADS > 0 ? { OMP_NUM_THREADS: String(BENCH_THREADS), MKL_NUM_THREADS: String(BENCH_THREADS) } : {};
    const storageEnv = {
      STORAGE_TYPE: 'minio',
      S3_ENDPOINT: server.endpoint,
      AWS_REGION: server.region,
      AWS_ACCESS_KEY_ID: server.accessKeyId,
      AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
      BUCKET_NAME: server.bucket,
    };
    const env = {
      ...process.env,
      PYTHONUNBUFFERED: '1',
      YOLO_OFFLINE: 'true',
      YOLO_AUTOINSTALL: 'false',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      ...threads,
    };
    const jobEnv = {
      ...env,
      ...storageEnv,
      LOG_FORMAT: 'json',
      BACKEND_BASE_URL: receiver.url,
      CALLBACK_TOKEN: 'bench-token',
      TASK_TYPE: 'object_detection',
      BATCH_SIZE: String(BATCH),
      DEVICE: 'cpu',
      WORK_DIR: join(scratch, 'work'),
    };
    const checkpoint = JOB === 'test_run' ? await trainModel(scratch, storage, jobEnv) : undefined;
    const download: number[] = [];
    const native: Watched[] = [];
    const job: Watched[] = [];
    const compare = otherBuild();
    for (let r = 0; r < REPEATS; r++) {
      const dest = join(scratch, `download-${r}`);
      const downloadAlone = async () => {
        const d = await measure(process.execPath, [join(PROJECT_ROOT, 'dist/bench/startup.js'), '--download', dest], { ...env, ...storageEnv });
        download.push(d.wall);
        rmSync(dest, { recursive: true, force: true });
      };
      // The disk of the VM this was written on slows for a while after tens of thousands of files
      // were written and deleted (the same download alone: 10.6 s, then 22.0 s in the next
      // repeat): the download alone and the job swap places every other repeat, so neither
      // always follows the other's deletions.
      if (r % 2 === 0) await downloadAlone();

      // ultralytics caches its label scan beside the labels (labels/train.cache): a later native
      // run would skip the scan the job makes on its freshly converted data every time.
      // Only the labels folder's top level: no walk over every label and image link.
      if (yolo) {
        const labels = join(yolo.outDir, 'labels');
        for (const f of readdirSync(labels)) if (f.endsWith('.cache')) rmSync(join(labels, f));
        native.push(
          await untilFirstEpoch(
            defaultPythonBin(),
            ['native_ultralytics.py', yolo.dataYaml, join(scratch, `native-${r}`), '1', String(BATCH), String(IMGSZ), String(WORKERS)],
            { ...env, YOLO_CONFIG_DIR: join(scratch, 'cfg-native') },
            'SIGKILL',
            (e, _t, w) => {
              if (e.bench === 'settings') w.settings = e.settings as Json;
              return e.bench === 'epoch_start';
            },
            join(PROJECT_ROOT, 'bench'),
          ),
        );
      }

      const runJob = (cli: string, jobId: string) =>
        untilFirstEpoch(
          process.execPath,
          [cli, JOB === 'train' ? 'train' : 'infer'],
          {
            ...jobEnv,
            JOB_ID: jobId,
            TRACE_ID: jobId,
            DATASET_ID,
            ...(JOB === 'train'
              ? {
                  MODEL_NAME: 'yolo11n',
                  // The native script draws no plots; the job draws them by default.
                  TRAINER_ARGS: '{"plots":false}',
                  EPOCHS: '1',
                  IMAGE_SIZE: String(IMGSZ),
                  NUM_WORKERS: String(WORKERS),
                }
              : { INFERENCE_TYPE: 'test_run', TEST_SPLIT: 'val', CHECKPOINT_PATH: checkpoint!, SAVE_VISUALIZATIONS: 'false' }),
            ...(TRACE ? { LOG_LEVEL: 'debug' } : {}),
          },
          'SIGTERM',
          (e, t, w) => {
            if (e.event === 'training_settings') w.settings = e.settings as Json;
            const phase = e.event === 'stage' ? e.stage : e.event;
            if (typeof phase === 'string') {
              w.phases ??= [];
              w.phases.push([phase, Number(t.toFixed(2))]);
            }
            if (TRACE) process.stdout.write(`  ${t.toFixed(2).padStart(7)} s  ${String(e.msg).slice(0, 110)}\n`);
            return JOB === 'train' ? e.event === 'training_started' : e.event === 'stage' && String(e.stage).startsWith('Processing');
          },
        );
      const runThis = async () => job.push(await runJob(join(PROJECT_ROOT, 'dist/src/cli.js'), `bench-startup-${r}`));
      if (compare) {
        // Back to back, the order alternating: neither build always pays for the other's files.
        const runOther = async () => compare.runs.push(await runJob(compare.cli, `bench-startup-other-${r}`));
        for (const run of r % 2 === 0 ? [runThis, runOther] : [runOther, runThis]) await run();
        process.stdout.write(
          `pair ${r + 1}/${REPEATS} (${r % 2 === 0 ? 'this build first' : 'the other first'}): ${REACHED} ${job.at(-1)!.seconds.toFixed(2)} s here, ${compare.runs.at(-1)!.seconds.toFixed(2)} s in ${compare.dir}\n`,
        );
      } else await runThis();
      if (r % 2 === 1) await downloadAlone();
      const last = (xs: Watched[]) => xs.at(-1)!;
      process.stdout.write(
        JOB === 'train'
          ? `run ${r + 1}/${REPEATS}: download alone ${download.at(-1)!.toFixed(2)} s; native start-up ${last(native).seconds.toFixed(2)} s; vision-trainer to its first epoch ${last(job).seconds.toFixed(2)} s (dataset downloaded at ${phaseAt(last(job).phases, 'dataset_downloaded').toFixed(2)} s)\n`
          : `run ${r + 1}/${REPEATS}: download alone ${download.at(-1)!.toFixed(2)} s; the test run to its first prediction ${last(job).seconds.toFixed(2)} s\n`,
      );
    }
    if (JOB === 'test_run') return testRunResults(m, download, job, compare);
    const title = `ultralytics YOLO11n on ${IMAGES} images at ${IMGSZ} px from S3${AS_ZIP ? ' (a zip)' : ''}`;
    sameSettings(title, { native: native[0]!.settings, 'vision-trainer': job[0]!.settings }, work);
    const dl = spread(download);
    const nat = spread(native.map((n) => n.seconds));
    const vt = spread(job.map((n) => n.seconds));
    const budget = dl.median + 1.1 * nat.median;
    const overhead = (vt.median - dl.median) / nat.median;
    const jobParts = PARTS.map(([label], i) => ({ label, seconds: spread(job.map((j) => parts(j.phases)[i] as number)) }));
    const row = { title, download: dl, nativeStartup: nat, visionTrainer: vt, budget, overheadOverNative: overhead, met: vt.median <= budget, jobParts };
    process.stdout.write(
      [
        '',
        `download alone              ${fmtSpread(dl)} s`,
        `native start-up             ${fmtSpread(nat)} s`,
        `vision-trainer first epoch  ${fmtSpread(vt)} s (aim: at most ${budget.toFixed(2)} s = download + 1.1 x native start-up)`,
        `start-up ratio: ${overhead.toFixed(2)}   ((vision-trainer - download) / native start-up; aim at most 1.10) ${row.met ? 'met' : 'NOT met'}`,
        'the job to its first epoch, in parts:',
        ...jobParts.map((p) => `  ${p.label.padEnd(58)} ${fmtSpread(p.seconds)} s`),
        '',
      ].join('\n'),
    );
    const versus = compare && compareSummary(compare, job);
    if (versus) process.stdout.write(`${versus.line}\n\n`);
    writeResults(
      'startup',
      {
        machine: m,
        images: IMAGES,
        repeats: REPEATS,
        threads: BENCH_THREADS,
        row,
        ...(versus ? { compare: versus.json } : {}),
        loads: { native: native.map((n) => n.load), visionTrainer: job.map((n) => n.load) },
        jobPhases: job.map((j) => j.phases ?? []),
      },
      [
        '## bench:startup: time to the first epoch, dataset in S3',
        '',
        `${describeMachine(m)}. ${REPEATS} interleaved runs, ${BENCH_THREADS} threads on both sides; median [min-max].`,
        '',
        ...table(
          [
            'dataset',
            'download alone',
            'native start-up',
            'vision-trainer to first epoch',
            'aim (download + 1.1 x native)',
            '(vision-trainer - download) / native',
          ],
          [[title, `${fmtSpread(dl)} s`, `${fmtSpread(nat)} s`, `${fmtSpread(vt)} s`, `${budget.toFixed(2)} s`, overhead.toFixed(2)]],
        ),
        '',
        'The job to its first epoch, in parts (from the stages and milestones it logged):',
        '',
        ...table(
          ['part', 'seconds'],
          jobParts.map((p) => [p.label, fmtSpread(p.seconds)]),
        ),
        ...(versus ? ['', versus.line] : []),
      ],
    );
  } finally {
    await receiver.close();
    await server.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--download') {
  // One download by itself, in a fresh process as the job has: what the job cannot do faster.
  const storage = createStorage({
    type: 'minio',
    endpoint: process.env.S3_ENDPOINT as string,
    accessKeyId: process.env.AWS_ACCESS_KEY_ID as string,
    secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY as string,
    bucket: process.env.BUCKET_NAME as string,
    forcePathStyle: true,
  });
  await storage.downloadDataset(DATASET_ID, resolve(process.argv[3]!));
} else {
  runBench(main);
}
