// Typing in the inspector on the 1,000-step flow (bench/graph-1000.json):
// the main-thread time each keystroke in a step's name costs, from
// Chromium's own TaskDuration (CDP Performance metrics) over the 150 ms
// after each key, and the long tasks (> 50 ms) the page saw. An edit must
// cost the steps it changed, not the whole flow. Run by `make bench-editor`
// beside the frame-time bench; a measurement, not a test.
import { test, expect } from "@playwright/test";
import * as fs from "fs";
import * as path from "path";

const graph = JSON.parse(fs.readFileSync(path.join(__dirname, "graph-1000.json"), "utf8"));
const KEYS = "Welcome back, friend";

test("keystroke cost in the inspector on the 1,000-step flow", async ({ browser, request }) => {
  // Its own copy: flow names are unique, and the frame-time bench keeps its.
  const created = await request.post("/api/v1/flows", { data: { document: { ...graph, name: `${graph.name} typing` } } });
  expect(created.status()).toBe(201);
  const id = (await created.json()).id;
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, storageState: process.env.WAYMARK_E2E_STATE });
  const page = await context.newPage();
  await page.goto(`/flows/${id}`);
  await expect(page.locator(".app[data-hydrated=true]")).toBeVisible({ timeout: 120_000 });
  await page.locator('g.step[data-step="s25"] rect.card').click();
  const name = page.locator(".inspector label.field", { hasText: "Name" }).locator("input");
  await name.click();
  await page.evaluate(() => {
    const w = window as unknown as { __long: number[] };
    w.__long = [];
    new PerformanceObserver((list) => list.getEntries().forEach((e) => w.__long.push(e.duration))).observe({ type: "longtask" });
  });
  const cdp = await context.newCDPSession(page);
  await cdp.send("Performance.enable");
  const busy = async () => (await cdp.send("Performance.getMetrics")).metrics.find((m: { name: string }) => m.name === "TaskDuration")!.value * 1000;
  const costs: number[] = [];
  for (const key of KEYS) {
    const before = await busy();
    await cdp.send("Input.dispatchKeyEvent", { type: "keyDown", text: key, key, unmodifiedText: key });
    await cdp.send("Input.dispatchKeyEvent", { type: "keyUp", key });
    await new Promise((r) => setTimeout(r, 150));
    costs.push((await busy()) - before);
  }
  await expect(name).toHaveValue(new RegExp(`${KEYS}$`));
  const long = (await page.evaluate(() => (window as unknown as { __long: number[] }).__long)).map(Math.round);
  const sorted = [...costs].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
  console.log(
    `Keystrokes in a step's name, 1,000-step flow (${costs.length} keys): main thread per key p50 ${at(50).toFixed(1)} ms, ` +
      `p95 ${at(95).toFixed(1)} ms, max ${sorted[sorted.length - 1].toFixed(1)} ms; long tasks (> 50 ms): ${long.length ? long.join(", ") + " ms" : "none"}`,
  );
  await context.close();
  expect((await request.delete(`/api/v1/flows/${id}`)).ok()).toBeTruthy();
});
