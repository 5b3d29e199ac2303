/** The web console's build: served under /console/ (local/console-static.ts; CloudFront on AWS). */
import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

const root = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root,
  base: '/console/',
  plugins: [react()],
  // No public dir and no CDN: everything the page loads comes from dist/ on the same origin.
  publicDir: false,
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    target: 'es2022',
    sourcemap: false,
    reportCompressedSize: false,
  },
  server: {
    // `npx vite console` during development: the API of a running `npm start`, same origin.
    proxy: { '/v1': 'http://127.0.0.1:9292', '/v2': 'http://127.0.0.1:9292' },
  },
});
