import { defineConfig } from 'vitest/config';

// Two projects: `unit` is the fast inner loop (no Python, no servers); `integration` runs the
// real parts (SeaweedFS, the callback receiver, the CLI as a child process, real training).
export default defineConfig({
  test: {
    // Node 20 is supported with the locked AWS SDK; its notice about future releases is noise here.
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    globalSetup: ['test/global-tmp.ts'],
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
          // The machine has 2 cores and each integration file may start Python and a server.
          fileParallelism: false,
        },
      },
    ],
  },
});
