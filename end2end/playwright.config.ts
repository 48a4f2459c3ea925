import { defineConfig } from "@playwright/test";
import * as os from "os";
import * as path from "path";
import * as fs from "fs";

// One fresh database per run, a real server, Debian's Chromium.
const port = Number(process.env.WAYMARK_E2E_PORT ?? 3117);
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "waymark-e2e-"));
const bin = process.env.WAYMARK_BIN ?? "../target/debug/waymark";

export default defineConfig({
  testDir: "./tests",
  timeout: 60_000,
  expect: { timeout: 15_000 },
  workers: 1,
  retries: 0,
  reporter: [["list"]],
  outputDir: "test-results",
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    viewport: { width: 1440, height: 900 },
    launchOptions: {
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
  },
  webServer: {
    command: `${bin} --database-url sqlite://${dataDir}/waymark.db serve --addr 127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}/api/v1/flows`,
    timeout: 60_000,
    reuseExistingServer: false,
    stdout: "ignore",
    stderr: "pipe",
  },
});
