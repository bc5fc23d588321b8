import { defineConfig } from 'vitest/config';

// `npm run test:container` only: the production image built and run for real (minutes; needs a
// Docker engine). The default configuration's projects never include these files.
export default defineConfig({
  test: {
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    include: ['test/container/**/*.test.ts'],
    testTimeout: 900_000,
    hookTimeout: 600_000,
    fileParallelism: false,
  },
});
