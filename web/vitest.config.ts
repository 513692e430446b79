import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['sdk/**/*.test.ts', 'src/**/*.test.ts'],
    environment: 'node',
  },
})
