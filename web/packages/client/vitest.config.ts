import { defineConfig } from 'vitest/config'

// The package's tests: src/**/*.test.ts import the sources; test/ imports
// the built package ('@parley/client', dist/) as a consumer would, so
// `npm test` builds first.
export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    environment: 'node',
    // A few tests run the TypeScript compiler over the package (2 to 4 s
    // alone): on a busy machine the default 5 s is not enough.
    testTimeout: 30_000,
  },
})
