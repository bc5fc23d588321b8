/**
 * Benchmark: a dataset from S3-compatible storage into the work folder. vision-trainer's
 * dataset download against the AWS CLI and boto3's transfer manager, on the same SeaweedFS
 * server (the one the tests start), the same machine, in interleaved repeats.
 *
 *   npm run bench:transfer [-- --small 20000] [--zip-mb 2048] [--repeats 3] [--only small|zip]
 *       [--out DIR]
 *
 * Two datasets, each fetched by every side into an empty folder, the result checked (same files,
 * same bytes) so that every side did the same work:
 *
 *   small   --small objects of 2-12 KB plus annotations.json under datasets/<id>/:
 *           vision-trainer (downloadDataset, prefix) | `aws s3 sync` | boto3 TransferManager
 *   zip     one zip of --zip-mb MiB of pseudo-images (deflated as `zip` does), datasets/<id>.zip,
 *           extracted into the folder: vision-trainer (extracts while downloading) |
 *           `aws s3 cp` then `unzip` | boto3 download_file then zipfile.extractall; plus
 *           `aws s3 cp` alone (no extraction) as a reference: the download by itself
 *
 * Every run is a fresh process (its start-up included, as a job pays it), measured by
 * bench/measure.py: wall time, CPU time (user + sys of the whole process tree) and peak RSS.
 * Reported per side: median wall time with the spread [min-max] of the repeats, median CPU,
 * peak RSS, and the load average when each run started (the machine may be shared). Ratios
 * are other side / vision-trainer (above 1: vision-trainer faster). Results also go to
 * bench/results/transfer.{json,md} (BENCH_RESULTS_DIR elsewhere).
 *
 * The fixture (objects and zip) is made once and kept in SeaweedFS's data folder under the
 * cache (~/.cache/vision-trainer/bench-transfer, about 2.3 GB with the default sizes).
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { startS3Server, type S3Server } from '../src/dev/s3server.js';
import { cacheRoot, defaultVenvDir, PROJECT_ROOT } from '../src/paths.js';
import { DEFAULT_DOWNLOAD_CONCURRENCY } from '../src/storage/base.js';
import { MAX_ZIP_STREAMS } from '../src/storage/dataset.js';
import { mapWithConcurrency } from '../src/storage/files.js';
import { createStorage } from '../src/storage/index.js';
import { writeResults } from './harness.js';

const { values: args } = parseArgs({
  options: {
    small: { type: 'string', default: '20000' },
    'zip-mb': { type: 'string', default: '2048' },
    repeats: { type: 'string', default: '3' },
    only: { type: 'string' },
    /** Comma-separated side names to run (default: all), e.g. while tuning one side. */
    sides: { type: 'string' },
    out: { type: 'string' },
    // Internal: one vision-trainer download in a child process.
    child: { type: 'boolean', default: false },
    dataset: { type: 'string' },
    dest: { type: 'string' },
  },
});

const CACHE = join(cacheRoot(), 'bench-transfer');
const FIXTURE_FILE = join(CACHE, 'fixture.json');
/** Fixed so that the kept SeaweedFS data stays readable across runs; the server listens on 127.0.0.1 only. */
const SERVER = { accessKeyId: 'VTBENCHTRANSFER', secretAccessKey: 'bench-transfer-local-only', bucket: 'bench' };
const VENV_BIN = join(defaultVenvDir(), 'bin');
const PYTHON = join(VENV_BIN, 'python');
const AWS = join(VENV_BIN, 'aws');

interface DatasetFixture {
  id: string;
  files: number;
  bytes: number;
  zipBytes?: number;
}
interface Fixture {
  version: 1;
  small?: DatasetFixture;
  zip?: DatasetFixture;
}

interface Measurement {
  wall: number;
  cpu: number;
  maxrssMb: number;
  load: number;
}
interface Side {
  name: string;
  /** What the side runs, as printed in the report. */
  describe: string;
  command: (dest: string) => string[];
  /** What the folder holds afterwards (checked after every run). */
  expect: { files: number; bytes: number };
  /** Reference rows are printed but not part of the targets. */
  reference?: boolean;
}

async function main(): Promise<void> {
  for (const tool of [PYTHON, AWS]) {
    if (!existsSync(tool))
      throw new Error(`${tool} is missing: run \`npm run setup\` (the bench group, python/requirements-bench.txt, installs awscli and boto3)`);
  }
  const repeats = Math.max(1, Number(args.repeats));
  const scenarios = args.only === undefined ? ['small', 'zip'] : [args.only];
  mkdirSync(CACHE, { recursive: true });
  const base = mkdtempSync(join(args.out ? resolve(args.out) : tmpdir(), 'vt-bench-transfer-'));
  const server = await startS3Server({ dataDir: join(CACHE, 'weed-data'), ...SERVER });
  const machine = `${cpus().length} cores (${cpus()[0]?.model.trim()}), ${(totalmem() / 1024 ** 3).toFixed(0)} GiB, Node ${process.version}`;
  const startLoad = loadavg();
  console.log(`machine: ${machine}; load average at start ${startLoad.map((l) => l.toFixed(2)).join(' ')}`);
  console.log(`server: SeaweedFS at ${server.endpoint} (data in ${server.dataDir}); destinations under ${base}`);
  const report: Record<string, unknown> = { machine, loadAtStart: startLoad, repeats, scenarios: {} };
  try {
    const fixture = readFixture();
    const env = childEnv(server);
    for (const scenario of scenarios) {
      let sides: Side[];
      let title: string;
      if (scenario === 'small') {
        const small = await ensureSmall(server, fixture, Number(args.small));
        title = `${small.files.toLocaleString('en-US')} small objects (${mb(small.bytes)} MB) under datasets/${small.id}/`;
        sides = smallSides(server, small);
      } else if (scenario === 'zip') {
        const zip = ensureZip(server, fixture, Number(args['zip-mb']));
        title = `one zip of ${mb(zip.zipBytes ?? 0)} MB (${zip.files.toLocaleString('en-US')} files, ${mb(zip.bytes)} MB extracted), datasets/${zip.id}.zip`;
        sides = zipSides(server, zip);
      } else {
        throw new Error(`--only takes small or zip, not ${scenario}`);
      }
      if (args.sides !== undefined) {
        const wanted = new Set(args.sides.split(',').map((name) => name.trim()));
        sides = sides.filter((side) => side.name === 'vision-trainer' || wanted.has(side.name));
      }
      console.log(`\n== ${title}; ${repeats} interleaved repeats`);
      for (const side of sides) console.log(`   ${side.name.padEnd(26)} ${side.describe}`);
      const results = new Map<string, Measurement[]>(sides.map((s) => [s.name, []]));
      for (let repeat = 0; repeat < repeats; repeat++) {
        // Rotate the order so that no side always runs first (cold caches) or last.
        const order = sides.map((_, i) => sides[(i + repeat) % sides.length] as Side);
        for (const side of order) {
          const measured = runSide(side, base, env);
          results.get(side.name)?.push(measured);
          console.log(
            `   run ${repeat + 1} ${side.name.padEnd(26)} ${measured.wall.toFixed(2).padStart(7)} s wall ${measured.cpu.toFixed(2).padStart(7)} s cpu ${measured.maxrssMb.toFixed(0).padStart(5)} MB rss  (load ${measured.load.toFixed(2)})`,
          );
        }
      }
      report.scenarios = { ...(report.scenarios as object), [scenario]: summarize(title, sides, results) };
    }
  } finally {
    await server.stop();
    rmSync(base, { recursive: true, force: true });
  }
  writeTransferResults(report);
}

function smallSides(server: S3Server, small: DatasetFixture): Side[] {
  const prefix = `datasets/${small.id}/`;
  const expect = { files: small.files, bytes: small.bytes };
  return [
    {
      name: 'vision-trainer',
      describe: `downloadDataset (prefix), ${DEFAULT_DOWNLOAD_CONCURRENCY} objects at once`,
      command: (dest) => vtChild(small.id, dest),
      expect,
    },
    {
      name: 'aws s3 sync',
      describe: `aws-cli ${awsVersion()} defaults (max_concurrent_requests 10)`,
      command: (dest) => [AWS, 's3', 'sync', `s3://${server.bucket}/${prefix}`, dest, '--endpoint-url', server.endpoint, '--only-show-errors', '--no-progress'],
      expect,
    },
    {
      name: 'boto3 TransferManager',
      describe: 'boto3 s3transfer TransferManager, TransferConfig defaults (max_concurrency 10)',
      command: (dest) => [
        PYTHON,
        join(PROJECT_ROOT, 'bench', 'transfer_python.py'),
        'boto3-prefix',
        '--bucket',
        server.bucket,
        '--prefix',
        prefix,
        '--dest',
        dest,
      ],
      expect,
    },
  ];
}

function zipSides(server: S3Server, zip: DatasetFixture): Side[] {
  const uri = `s3://${server.bucket}/datasets/${zip.id}.zip`;
  const expect = { files: zip.files, bytes: zip.bytes };
  const cp = `${shellQuote(AWS)} s3 cp ${uri} "$1/dataset.zip" --endpoint-url ${server.endpoint} --only-show-errors --no-progress`;
  return [
    {
      name: 'vision-trainer',
      describe: `downloadDataset (zip): extraction streamed with the download, ${Math.min(DEFAULT_DOWNLOAD_CONCURRENCY, MAX_ZIP_STREAMS)} ranges at once`,
      command: (dest) => vtChild(zip.id, dest),
      expect,
    },
    {
      name: 'aws s3 cp + unzip',
      describe: `aws-cli ${awsVersion()} defaults (10 parts of 8 MiB at once), then unzip -q, then the zip removed`,
      command: (dest) => ['sh', '-c', `${cp} && unzip -q "$1/dataset.zip" -d "$1" && rm "$1/dataset.zip"`, 'sh', dest],
      expect,
    },
    {
      name: 'boto3 download + extract',
      describe: 'boto3 download_file (TransferConfig defaults), then zipfile.extractall',
      command: (dest) => [
        PYTHON,
        join(PROJECT_ROOT, 'bench', 'transfer_python.py'),
        'boto3-zip',
        '--bucket',
        server.bucket,
        '--key',
        `datasets/${zip.id}.zip`,
        '--dest',
        dest,
      ],
      expect,
    },
    {
      name: 'aws s3 cp (no extraction)',
      describe: 'reference: the download alone, the zip left packed',
      command: (dest) => ['sh', '-c', cp, 'sh', dest],
      expect: { files: 1, bytes: zip.zipBytes ?? 0 },
      reference: true,
    },
  ];
}

function vtChild(datasetId: string, dest: string): string[] {
  return [process.execPath, fileURLToPath(import.meta.url), '--child', '--dataset', datasetId, '--dest', dest];
}

function childEnv(server: S3Server): NodeJS.ProcessEnv {
  const isolated = join(CACHE, 'no-aws-config');
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    AWS_ACCESS_KEY_ID: server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
    AWS_DEFAULT_REGION: server.region,
    AWS_ENDPOINT_URL: server.endpoint,
    // The user's ~/.aws must not tune one side.
    AWS_CONFIG_FILE: isolated,
    AWS_SHARED_CREDENTIALS_FILE: isolated,
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    // Tuning runs only: another number of parallel downloads for the vision-trainer side.
    ...(process.env.VT_BENCH_CONCURRENCY ? { VT_BENCH_CONCURRENCY: process.env.VT_BENCH_CONCURRENCY } : {}),
  };
}

function runSide(side: Side, base: string, env: NodeJS.ProcessEnv): Measurement {
  const dest = join(base, side.name.replace(/\W+/g, '-'));
  rmSync(dest, { recursive: true, force: true });
  mkdirSync(dest, { recursive: true });
  const out = join(base, 'measure.json');
  const load = loadavg()[0] as number;
  const run = spawnSync(PYTHON, [join(PROJECT_ROOT, 'bench', 'measure.py'), out, '--', ...side.command(dest)], {
    env,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (run.status !== 0) throw new Error(`${side.name} failed (exit ${run.status}):\n${run.stdout.slice(-2000)}\n${run.stderr.slice(-4000)}`);
  const measured = JSON.parse(readFileSync(out, 'utf8')) as { wall: number; user: number; sys: number; maxrss_kb: number };
  const found = walk(dest);
  if (found.files !== side.expect.files || found.bytes !== side.expect.bytes) {
    throw new Error(
      `${side.name} did other work: ${found.files} files, ${found.bytes} bytes in ${dest}; expected ${side.expect.files} files, ${side.expect.bytes} bytes`,
    );
  }
  rmSync(dest, { recursive: true, force: true });
  return { wall: measured.wall, cpu: measured.user + measured.sys, maxrssMb: measured.maxrss_kb / 1024, load };
}

function walk(dir: string): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    files++;
    bytes += statSync(join(entry.parentPath, entry.name)).size;
  }
  return { files, bytes };
}

interface Row {
  side: string;
  reference: boolean;
  wallMedian: number;
  wallMin: number;
  wallMax: number;
  cpuMedian: number;
  peakRssMb: number;
  loads: number[];
  wallRatio: number;
  cpuRatio: number;
}

function summarize(title: string, sides: Side[], results: Map<string, Measurement[]>): { title: string; rows: Row[] } {
  const ours = results.get('vision-trainer') as Measurement[];
  const oursWall = median(ours.map((m) => m.wall));
  const oursCpu = median(ours.map((m) => m.cpu));
  const rows: Row[] = sides.map((side) => {
    const runs = results.get(side.name) as Measurement[];
    const wall = runs.map((m) => m.wall);
    const wallMedian = median(wall);
    const cpuMedian = median(runs.map((m) => m.cpu));
    return {
      side: side.name,
      reference: side.reference === true,
      wallMedian,
      wallMin: Math.min(...wall),
      wallMax: Math.max(...wall),
      cpuMedian,
      peakRssMb: Math.max(...runs.map((m) => m.maxrssMb)),
      loads: runs.map((m) => Number(m.load.toFixed(2))),
      wallRatio: wallMedian / oursWall,
      cpuRatio: cpuMedian / oursCpu,
    };
  });
  console.log(
    `\n   ${'side'.padEnd(26)} ${'wall median [min-max]'.padStart(24)} ${'cpu'.padStart(8)} ${'peak RSS'.padStart(9)}  ratio wall / cpu (x vision-trainer)`,
  );
  for (const row of rows) {
    console.log(
      `   ${row.side.padEnd(26)} ${`${row.wallMedian.toFixed(2)} s [${row.wallMin.toFixed(2)}-${row.wallMax.toFixed(2)}]`.padStart(24)} ${`${row.cpuMedian.toFixed(2)} s`.padStart(8)} ${`${row.peakRssMb.toFixed(0)} MB`.padStart(9)}  ${row.wallRatio.toFixed(2)}x / ${row.cpuRatio.toFixed(2)}x${row.reference ? '  (reference)' : ''}`,
    );
  }
  return { title, rows };
}

/** Into BENCH_RESULTS_DIR like every bench (bench:all:short once overwrote the full run's files here). */
function writeTransferResults(report: Record<string, unknown>): void {
  const lines = [
    `# bench:transfer`,
    '',
    `${report.machine as string}; load average at start ${(report.loadAtStart as number[]).map((l) => l.toFixed(2)).join(' ')}; ${report.repeats as number} interleaved repeats.`,
    '',
  ];
  for (const { title, rows } of Object.values(report.scenarios as Record<string, { title: string; rows: Row[] }>)) {
    lines.push(
      `## ${title}`,
      '',
      '| side | wall median [min-max] | CPU (user+sys) | peak RSS | wall ratio | CPU ratio | load at each run |',
      '|---|---|---|---|---|---|---|',
    );
    for (const r of rows) {
      lines.push(
        `| ${r.side}${r.reference ? ' (reference)' : ''} | ${r.wallMedian.toFixed(2)} s [${r.wallMin.toFixed(2)}-${r.wallMax.toFixed(2)}] | ${r.cpuMedian.toFixed(2)} s | ${r.peakRssMb.toFixed(0)} MB | ${r.wallRatio.toFixed(2)}x | ${r.cpuRatio.toFixed(2)}x | ${r.loads.join(', ')} |`,
      );
    }
    lines.push('');
  }
  lines.push("Ratios: the side's median / vision-trainer's median (above 1: vision-trainer is faster or uses less CPU).", '');
  writeResults('transfer', report, lines);
}

function readFixture(): Fixture {
  try {
    const fixture = JSON.parse(readFileSync(FIXTURE_FILE, 'utf8')) as Fixture;
    if (fixture.version === 1) return fixture;
  } catch {
    // first run
  }
  return { version: 1 };
}

function saveFixture(fixture: Fixture): void {
  writeFileSync(FIXTURE_FILE, `${JSON.stringify(fixture, null, 2)}\n`);
}

async function ensureSmall(server: S3Server, fixture: Fixture, count: number): Promise<DatasetFixture> {
  const id = `small-${count}`;
  if (fixture.small?.id === id) return fixture.small;
  console.log(`making the small-object fixture: ${count} objects (once; kept in ${CACHE})`);
  if (fixture.small !== undefined) removeObjects(server, [`datasets/${fixture.small.id}/`, '--recursive']);
  const client = new S3Client({
    region: server.region,
    endpoint: server.endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
  });
  const names = Array.from(
    { length: count },
    (_, i) => `images/batch-${String(Math.floor(i / 1000)).padStart(2, '0')}/img-${String(i + 1).padStart(6, '0')}.jpg`,
  );
  const annotations = Buffer.from(
    JSON.stringify({ format_version: '1.0', images: names.map((name, i) => ({ id: i + 1, file_name: name.slice('images/'.length), width: 64, height: 64 })) }),
  );
  let bytes = annotations.length;
  const objects = [
    { key: 'annotations.json', body: annotations },
    ...names.map((name) => ({ key: name, body: randomBytes(2048 + Math.floor(Math.random() * 10240)) })),
  ];
  for (const object of objects.slice(1)) bytes += object.body.length;
  await mapWithConcurrency(objects, 32, (object) =>
    client.send(new PutObjectCommand({ Bucket: server.bucket, Key: `datasets/${id}/${object.key}`, Body: object.body })),
  );
  client.destroy();
  fixture.small = { id, files: objects.length, bytes };
  saveFixture(fixture);
  return fixture.small;
}

function ensureZip(server: S3Server, fixture: Fixture, sizeMb: number): DatasetFixture {
  const id = `zip-${sizeMb}-v2`;
  if (fixture.zip?.id === id) return fixture.zip;
  console.log(`making the zip fixture: about ${sizeMb} MiB (once; kept in ${CACHE})`);
  const zipPath = join(CACHE, `${id}.zip`);
  // More content than the zip's target size: deflate saves about a tenth on it.
  if (fixture.zip !== undefined) removeObjects(server, [`datasets/${fixture.zip.id}.zip`]);
  const made = spawnSync(
    PYTHON,
    [join(PROJECT_ROOT, 'bench', 'transfer_python.py'), 'make-zip', '--out', zipPath, '--bytes', String(Math.round(sizeMb * 1.12 * 1024 * 1024))],
    { encoding: 'utf8' },
  );
  if (made.status !== 0) throw new Error(`making the zip failed: ${made.stderr}`);
  const info = JSON.parse(made.stdout.trim().split('\n').pop() as string) as { files: number; bytes: number; zip_bytes: number };
  const upload = spawnSync(AWS, ['s3', 'cp', zipPath, `s3://${server.bucket}/datasets/${id}.zip`, '--endpoint-url', server.endpoint, '--only-show-errors'], {
    env: childEnv(server),
    encoding: 'utf8',
  });
  if (upload.status !== 0) throw new Error(`uploading the zip failed: ${upload.stderr}`);
  rmSync(zipPath, { force: true });
  fixture.zip = { id, files: info.files, bytes: info.bytes, zipBytes: info.zip_bytes };
  saveFixture(fixture);
  return fixture.zip;
}

/** Drops a fixture that another size replaces, so the kept server data does not grow. */
function removeObjects(server: S3Server, target: string[]): void {
  const [key, ...flags] = target;
  spawnSync(AWS, ['s3', 'rm', `s3://${server.bucket}/${key}`, ...flags, '--endpoint-url', server.endpoint, '--only-show-errors'], {
    env: childEnv(server),
    encoding: 'utf8',
  });
}

let awsVersionText: string | undefined;
function awsVersion(): string {
  awsVersionText ??= spawnSync(AWS, ['--version'], { encoding: 'utf8' }).stdout.trim().split(' ')[0]?.replace('aws-cli/', '') ?? '?';
  return awsVersionText;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

function mb(bytes: number): string {
  return (bytes / 1e6).toFixed(0);
}

function shellQuote(text: string): string {
  return `'${text.replace(/'/g, "'\\''")}'`;
}

if (args.child) {
  const storage = createStorage(
    {
      type: 'minio',
      endpoint: process.env.AWS_ENDPOINT_URL as string,
      accessKeyId: process.env.AWS_ACCESS_KEY_ID as string,
      secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY as string,
      bucket: SERVER.bucket,
      forcePathStyle: true,
    },
    process.env.VT_BENCH_CONCURRENCY ? { downloadConcurrency: Number(process.env.VT_BENCH_CONCURRENCY) } : {},
  );
  const result = await storage.downloadDataset(args.dataset as string, resolve(args.dest as string));
  console.log(JSON.stringify({ files: result.files, bytes: result.bytes }));
} else {
  await main();
}
