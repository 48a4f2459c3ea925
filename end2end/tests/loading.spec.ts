import { test, expect, type Page } from "./support";

// The browser code is split (.ci/package-site): every page loads the first
// module, then the chunks its route needs; the step form's code comes with
// the first selection. The manifest the server preloads from says which
// chunks each split point needs.

type Manifest = Record<string, string[]>;

function chunks(manifest: Manifest, split: string): string[] {
  const found = Object.entries(manifest).find(([name]) => name.replace(/^_+/, "").startsWith(split));
  expect(found, `split point ${split} in the manifest`).toBeTruthy();
  return found![1];
}

function wasmFetched(page: Page): Set<string> {
  const fetched = new Set<string>();
  page.on("request", (request) => {
    const file = request.url().match(/\/pkg\/([^/]+)\.wasm$/);
    if (file) fetched.add(file[1]);
  });
  return fetched;
}

test("a page loads only its own code; the editor's and the step form's come when they are needed", async ({ page, request }) => {
  const manifest: Manifest = await (await request.get("/pkg/__wasm_split_manifest.json")).json();
  const list = chunks(manifest, "work_pages");
  const editor = chunks(manifest, "editor_pages");
  const form = chunks(manifest, "step_inspector");
  const editorOnly = editor.filter((file) => !list.includes(file));
  // (a chunk may be shared with the list page, which has loaded it already)
  const formOnly = form.filter((file) => !editor.includes(file) && !list.includes(file));
  expect(editorOnly.length).toBeGreaterThan(0);
  expect(formOnly.length).toBeGreaterThan(0);

  const fetched = wasmFetched(page);
  await page.goto("/");
  await expect(page.locator(".app[data-hydrated=true]")).toBeVisible();
  expect(fetched.has("waymark")).toBe(true);
  expect(list.filter((file) => !fetched.has(file))).toEqual([]);
  expect(editorOnly.filter((file) => fetched.has(file))).toEqual([]);

  // In-app navigation to the editor fetches its chunks, and it works.
  await page.getByRole("table").getByRole("link", { name: "Welcome series (demo)" }).click();
  await expect(page.locator("svg.flow-graph g.step")).toHaveCount(20);
  expect(editorOnly.filter((file) => !fetched.has(file))).toEqual([]);
  expect(formOnly.filter((file) => fetched.has(file))).toEqual([]);

  // Selecting a step brings the form's chunk, and the form.
  await page.locator('g.step[data-step="wait_1d"] rect.card').click();
  await expect(page.locator(".step-details h2")).toContainText("Wait 1 day");
  await expect(page.locator(".inspector label.field", { hasText: "Name" }).locator("input")).toHaveValue("Wait 1 day");
  expect(formOnly.filter((file) => !fetched.has(file))).toEqual([]);
});

test("a page opened directly is served with preloads for its chunks", async ({ page, request }) => {
  const manifest: Manifest = await (await request.get("/pkg/__wasm_split_manifest.json")).json();
  const html = await (await request.get("/contacts")).text();
  for (const file of chunks(manifest, "contact_pages")) expect(html).toContain(`href="/pkg/${file}.wasm"`);
  const fetched = wasmFetched(page);
  await page.goto("/contacts");
  await expect(page.locator(".app[data-hydrated=true]")).toBeVisible();
  expect(chunks(manifest, "contact_pages").filter((file) => !fetched.has(file))).toEqual([]);
});

test("the site's files go out gzipped to a browser that asks; pages stream as they are", async ({ request }) => {
  const wasm = await request.get("/pkg/waymark.wasm", { headers: { "Accept-Encoding": "gzip" } });
  expect(wasm.status()).toBe(200);
  expect(wasm.headers()["content-encoding"]).toBe("gzip");
  // Chunk names are not hashed: the browser must ask again, not guess.
  expect(wasm.headers()["cache-control"]).toBe("no-cache");
  expect([...(await wasm.body()).subarray(0, 4)]).toEqual([0x00, 0x61, 0x73, 0x6d]); // "\0asm", once inflated
  const page = await request.get("/", { headers: { "Accept-Encoding": "gzip" } });
  expect(page.status()).toBe(200);
  expect(page.headers()["content-encoding"]).toBeUndefined();
});
