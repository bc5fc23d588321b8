/**
 * One temporary folder per test run: every test, child process and Python job below it writes
 * its scratch files (datasets, work folders, S3 server data) under this TMPDIR, and the folder
 * goes when the run ends, so a test that forgets to clean up cannot fill the disk over many runs.
 * KEEP_TEST_TMP=1 keeps it to look at after a failure.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): (() => void) | undefined {
  // Each project (unit, integration) runs the global set-up: the first one makes the folder.
  if (process.env.VT_TEST_RUN_TMPDIR) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'vt-tests-'));
  process.env.VT_TEST_RUN_TMPDIR = dir;
  process.env.TMPDIR = dir;
  return () => {
    if (process.env.KEEP_TEST_TMP === '1') process.stdout.write(`KEEP_TEST_TMP=1: the run's scratch files stay in ${dir}\n`);
    else rmSync(dir, { recursive: true, force: true });
  };
}
