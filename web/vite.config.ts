import react from '@vitejs/plugin-react'
import { defaultClientConditions, defaultServerConditions, defineConfig } from 'vite'

// The app is served by parley at /, which fills in the WebSocket port (see
// web.go). `npm run dev` proxies the API to a parley on :8080.
//
// @parley/client, the workspace package in packages/client, is bundled from
// its sources (its exports' "parley-source" condition): no build of the
// package first, and hot reload of SDK changes in `npm run dev`.
export const sourceConditions = {
  resolve: { conditions: ['parley-source', ...defaultClientConditions] },
  ssr: { resolve: { conditions: ['parley-source', ...defaultServerConditions] } },
}

export default defineConfig({
  ...sourceConditions,
  plugins: [react()],
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    chunkSizeWarningLimit: 700,
    rollupOptions: {
      output: {
        // Libraries change less often than the app: their own files stay cached.
        manualChunks(id) {
          if (/node_modules\/(react|react-dom|scheduler)\//.test(id)) return 'react'
          if (id.includes('node_modules/mqtt/')) return 'mqtt'
        },
      },
    },
  },
  server: {
    proxy: { '/v1': 'http://127.0.0.1:8080' },
  },
})
