import { defineConfig } from "@playwright/test";
import * as os from "os";
import * as path from "path";
import * as fs from "fs";

// One fresh database per run, a real server, Debian's Chromium.
const port = Number(process.env.WAYMARK_E2E_PORT ?? 3117);
// The config is read again by each worker process: keep the first one's folder.
const dataDir = (process.env.WAYMARK_E2E_DIR ??= fs.mkdtempSync(path.join(os.tmpdir(), "waymark-e2e-")));
const bin = process.env.WAYMARK_BIN ?? "../target/debug/waymark";
const db = `sqlite://${dataDir}/waymark.db`;
// The signed-in admin every test acts as (tests that need another role sign
// in themselves); the session is saved by global-setup.ts.
export const admin = { email: "admin@waymark.test", password: "e2e admin password" };
process.env.WAYMARK_E2E_ADMIN = JSON.stringify(admin);
process.env.WAYMARK_E2E_STATE = path.join(dataDir, "admin-state.json");
process.env.WAYMARK_E2E_DB = db;
process.env.WAYMARK_E2E_BIN = bin;

export default defineConfig({
  testDir: "./tests",
  timeout: 60_000,
  expect: { timeout: 15_000 },
  workers: 1,
  retries: 0,
  reporter: [["list"]],
  outputDir: "test-results",
  globalSetup: "./global-setup.ts",
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    storageState: process.env.WAYMARK_E2E_STATE,
    // API calls made from tests (not the page) say where they come from,
    // as a browser would; cross-site requests are refused.
    extraHTTPHeaders: { Origin: `http://127.0.0.1:${port}` },
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
    command: `WAYMARK_PASSWORD='${admin.password}' ${bin} --database-url ${db} user add --admin --email ${admin.email} --name "E2E Admin" && ${bin} --database-url ${db} serve --no-demo-data --addr 127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}/api/v1/flows`,
    timeout: 60_000,
    reuseExistingServer: false,
    stdout: "ignore",
    stderr: "pipe",
  },
});
