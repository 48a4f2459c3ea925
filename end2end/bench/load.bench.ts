// Page load: how long a page takes from navigation to hydrated (its HTML,
// the wasm it needs fetched, compiled and run), with an empty cache, and the
// wasm it fetched (files, bytes). Each page is loaded WAYMARK_BENCH_ROUNDS
// times (default 5) in a new browser context, on the local link and on a
// throttled one (20 Mbit/s, 40 ms round trip), where bytes and requests cost
// what they cost on a real network. Run by `make bench-editor`; point
// WAYMARK_BIN / LEPTOS_SITE_ROOT at another build to compare builds. A
// measurement, not a test.
import { test, expect, type Browser } from "@playwright/test";
import * as fs from "fs";
import * as path from "path";

const graph = JSON.parse(fs.readFileSync(path.join(__dirname, "graph-1000.json"), "utf8"));
const ROUNDS = Number(process.env.WAYMARK_BENCH_ROUNDS ?? 5);
const LINKS = [
  { name: "local", throttle: null },
  { name: "20 Mbit/s, 40 ms", throttle: { offline: false, latency: 40, downloadThroughput: (20e6 / 8), uploadThroughput: (5e6 / 8) } },
];

type Load = { ms: number; files: number; bytes: number };

async function load(browser: Browser, url: string, throttle: object | null): Promise<Load> {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, storageState: process.env.WAYMARK_E2E_STATE });
  const page = await context.newPage();
  if (throttle) {
    const cdp = await context.newCDPSession(page);
    await cdp.send("Network.enable");
    await cdp.send("Network.emulateNetworkConditions", throttle);
  }
  // Stamps the moment the app marks itself hydrated.
  await page.addInitScript(() => {
    new MutationObserver(() => {
      const w = window as unknown as { __hydratedAt?: number };
      if (w.__hydratedAt === undefined && document.querySelector(".app[data-hydrated=true]")) w.__hydratedAt = performance.now();
    }).observe(document, { subtree: true, attributes: true, childList: true, attributeFilter: ["data-hydrated"] });
  });
  await page.goto(url);
  await expect(page.locator(".app[data-hydrated=true]")).toBeVisible({ timeout: 120_000 });
  const result = await page.evaluate(() => {
    const wasm = performance.getEntriesByType("resource").filter((e) => e.name.endsWith(".wasm")) as PerformanceResourceTiming[];
    return {
      ms: (window as unknown as { __hydratedAt: number }).__hydratedAt,
      files: wasm.length,
      bytes: wasm.reduce((sum, e) => sum + e.encodedBodySize, 0),
    };
  });
  await context.close();
  return result;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

test("page load to hydrated, empty cache", async ({ browser, request }) => {
  const created = await request.post("/api/v1/flows", { data: { document: { ...graph, name: `${graph.name} load` } } });
  expect(created.status()).toBe(201);
  const big = (await created.json()).id;
  const flows = await (await request.get("/api/v1/flows")).json();
  const demo = (flows.flows ?? flows).find((f: { name: string }) => f.name.includes("demo")).id;
  const pages = [
    ["flows list", "/"],
    ["contacts", "/contacts"],
    ["editor, demo flow", `/flows/${demo}`],
    ["editor, 1,000 steps", `/flows/${big}`],
  ];
  const lines = [`Page load to hydrated, empty cache, median of ${ROUNDS} (site ${process.env.LEPTOS_SITE_ROOT ?? "?"}):`];
  for (const link of LINKS) {
    for (const [name, url] of pages) {
      const loads: Load[] = [];
      for (let round = 0; round < ROUNDS; round++) loads.push(await load(browser, url, link.throttle));
      const ms = median(loads.map((l) => l.ms));
      const files = median(loads.map((l) => l.files));
      const kb = median(loads.map((l) => l.bytes)) / 1000;
      lines.push(`  ${link.name.padEnd(17)} ${name.padEnd(20)} ${ms.toFixed(0).padStart(6)} ms   wasm: ${String(files).padStart(4)} files, ${kb.toFixed(0).padStart(5)} KB`);
    }
  }
  console.log(lines.join("\n"));
  expect((await request.delete(`/api/v1/flows/${big}`)).ok()).toBeTruthy();
});
