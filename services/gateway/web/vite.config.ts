/// <reference types="vitest/config" />
import { defineConfig } from "vite";

// The gateway serves dist/ at / and dist/assets/ at /assets/ (services/gateway/webapp.py),
// under a Content-Security-Policy with no inline script: Vite's module preload polyfill
// (an inline script in older setups) is off, and every asset is a file with a hashed name.
export default defineConfig({
  base: "/",
  build: {
    outDir: "dist",
    assetsDir: "assets",
    emptyOutDir: true,
    // pdf.js uses current JavaScript (top-level await, private fields).
    target: "es2022",
    modulePreload: { polyfill: false },
    sourcemap: false,
    chunkSizeWarningLimit: 1500,
  },
  server: {
    // `npm run dev`: the API of a local `documind up` on :8000.
    proxy: { "/v1": "http://127.0.0.1:8000" },
  },
  test: {
    environment: "jsdom",
    include: ["tests/**/*.test.ts"],
    setupFiles: ["tests/setup.ts"],
    restoreMocks: true,
    // The CI machine has 2 cores shared with the Python suite's processes: a test that
    // takes 1 s alone can take several (vitest's default limit is 5 s).
    testTimeout: 20_000,
  },
});
