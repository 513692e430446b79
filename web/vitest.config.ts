import { defineConfig } from 'vitest/config'
import { sourceConditions } from './vite.config'

// The app's unit tests. The SDK's own (packages/client) run first in
// `npm test`, from that package.
export default defineConfig({
  ...sourceConditions,
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
})
