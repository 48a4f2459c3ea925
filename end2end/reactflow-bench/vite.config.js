import { defineConfig } from "vite";

// No React plugin: esbuild compiles the JSX, and the page has no dev
// server needs (the benchmark measures the production build).
export default defineConfig({
  esbuild: { jsx: "automatic" },
  base: "./",
  build: { outDir: "dist", emptyOutDir: true, chunkSizeWarningLimit: 1000 },
  preview: { host: "127.0.0.1", strictPort: true },
});
