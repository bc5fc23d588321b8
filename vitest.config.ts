import { defineConfig } from 'vitest/config';

// Two projects: `unit` is the fast inner loop (no Python, no servers); `integration` runs the
// real parts (SeaweedFS, the callback receiver, the CLI as a child process, real training).
export default defineConfig({
  test: {
    // Node 20 is supported with the locked AWS SDK; its notice about future releases is noise here.
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    globalSetup: ['test/global-tmp.ts'],
    // Two files at a time, integration files included, even on the 2-core CI machine: a file
    // spends much of its time in single-threaded work (Python start-up and imports, data loading,
    // the S3 server, waiting on a child job), so a second file fills the idle core. Every file has
    // its own ports, S3 server, fixtures and temporary folder. VT_TEST_WORKERS=1: one at a time.
    maxWorkers: Number(process.env.VT_TEST_WORKERS ?? 2),
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          testTimeout: 30_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          testTimeout: 240_000,
          hookTimeout: 300_000,
        },
      },
    ],
  },
});
