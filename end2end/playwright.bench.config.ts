import { defineConfig } from "@playwright/test";
import base from "./playwright.config";

// The editor benchmark (make bench-editor), never part of `make test`: the
// same server set-up as the browser tests, plus the React Flow page it is
// compared with, served from its production build.
export const reactFlowPort = Number(process.env.WAYMARK_BENCH_RF_PORT ?? 3118);
process.env.WAYMARK_BENCH_RF_URL = `http://127.0.0.1:${reactFlowPort}`;

export default defineConfig({
  ...base,
  testDir: "./bench",
  testMatch: "*.bench.ts",
  timeout: 15 * 60_000,
  webServer: [
    base.webServer as any,
    {
      command: `node_modules/.bin/vite preview --port ${reactFlowPort}`,
      cwd: "reactflow-bench",
      url: `http://127.0.0.1:${reactFlowPort}/`,
      timeout: 60_000,
      reuseExistingServer: false,
      stdout: "ignore",
      stderr: "pipe",
    },
  ],
});
