import { defineConfig } from 'vitest/config'

// Browser end-to-end tests: a real parley, a real Postgres, Debian's Chromium.
export default defineConfig({
  test: {
    include: ['e2e/**/*.e2e.ts'],
    environment: 'node',
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 150_000,
    reporters: ['verbose'],
  },
})
