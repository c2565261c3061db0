import { svelte } from '@sveltejs/vite-plugin-svelte';
import { defineConfig } from 'vitest/config';

export default defineConfig(({ mode }) => ({
  // Relative asset paths: the same dist/ is served from `/` by `modelfactory serve`
  // and loaded by the Tauri webview.
  base: './',
  plugins: [svelte()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
  },
  // Vitest runs with mode "test": use Svelte's client runtime so runes in `.svelte.ts`
  // classes are reactive there too.
  resolve: mode === 'test' ? { conditions: ['browser'] } : undefined,
  test: {
    include: ['src/**/*.spec.ts'],
    environment: 'happy-dom',
  },
}));
