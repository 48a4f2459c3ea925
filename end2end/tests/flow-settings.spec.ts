import { test, expect, Page } from "./support";
import * as path from "path";

async function open(page: Page, url: string) {
  await page.goto(url);
  await expect(page.locator(".app[data-hydrated=true]")).toBeVisible();
}

test("the flow's own settings are edited in the inspector, validated live, undone and saved", async ({ page, request }) => {
  const flowId = (await (await request.post("/api/v1/flows", { data: { name: "Settings e2e" } })).json()).id;
  await open(page, `/flows/${flowId}`);
  const form = page.locator("section.flow-settings");
  await expect(form).toBeVisible();

  await form.getByLabel("Flow time zone").fill("Mars/Olympus");
  await form.getByLabel("Flow time zone").press("Tab");
  await expect(page.locator('li.finding.error[data-code="invalid_setting"]')).toContainText("Mars/Olympus");
  await page.getByRole("button", { name: /Undo/ }).click();
  await expect(page.locator('li.finding[data-code="invalid_setting"]')).toHaveCount(0);
  await expect(form.getByLabel("Flow time zone")).toHaveValue("");

  await form.getByLabel("Flow time zone").fill("Europe/Paris");
  await form.getByLabel("Flow time zone").press("Tab");
  await form.locator('.day-hours[data-day="sat"] input[type="checkbox"]').check();
  await form.getByLabel("Holidays").fill("2026-12-25");
  await form.getByLabel("Holidays").press("Tab");
  await form.getByLabel("Slow drip limit").fill("25");
  await form.getByLabel("Slow drip limit").press("Tab");
  await page.screenshot({ path: path.join("screenshots", "16-flow-settings.png"), fullPage: true });

  await expect
    .poll(async () => (await (await request.get(`/api/v1/flows/${flowId}/draft`)).json()).document.settings, { timeout: 10_000 })
    .toMatchObject({ // autosaved, so a reload finds it
      timezone: "Europe/Paris",
      slow_drip: { limit: 25, per: "day" },
      business_hours: { holidays: ["2026-12-25"], days: { sat: ["09:00", "17:00"], mon: ["09:00", "17:00"] } },
    });
});

test("links to other flows are checked by the server and shown in the editor", async ({ page, request }) => {
  const goTo = (name: string, target: string) => ({
    document: {
      format: "waymark.flow/v1",
      name,
      steps: [{ id: "start", kind: "start" }, { id: "hop", kind: "go_to_flow", settings: { flow: target, mode: "move" } }],
      edges: [{ from: "start", port: "next", to: "hop" }],
    },
  });
  const ping = (await (await request.post("/api/v1/flows", { data: goTo("Ping", "Pong") })).json()).id;
  await request.post("/api/v1/flows", { data: goTo("Pong", "Ping") });
  await open(page, `/flows/${ping}`);
  await expect(page.locator('li.finding.error[data-code="recursion"]')).toContainText("Pong");
  await expect(page.locator('g.step[data-step="hop"] .badge.error')).toBeVisible();

  const lonely = (await (await request.post("/api/v1/flows", { data: goTo("Lonely", "Nowhere") })).json()).id;
  await open(page, `/flows/${lonely}`);
  await expect(page.locator('li.finding.error[data-code="unknown_target"]')).toContainText("Nowhere");
});

test("leaving while a save is on its way keeps the edits made after it started", async ({ page, request }) => {
  const flowId = (await (await request.post("/api/v1/flows", { data: { name: "Slow save e2e" } })).json()).id;
  // every save takes 2 seconds on its way to the server
  await page.route("**/fn/save_draft*", async (route) => {
    await new Promise((resolve) => setTimeout(resolve, 2000));
    await route.continue();
  });
  await open(page, `/flows/${flowId}`);
  const form = page.locator("section.flow-settings");
  await form.getByLabel("Flow time zone").fill("Europe/Paris");
  await form.getByLabel("Flow time zone").press("Tab");
  await expect(page.getByText("Saving…")).toBeVisible({ timeout: 5_000 });
  await form.getByLabel("Holidays").fill("2026-12-25");
  await form.getByLabel("Holidays").press("Tab");
  await page.getByRole("link", { name: "Flows", exact: true }).first().click();
  await expect
    .poll(async () => (await (await request.get(`/api/v1/flows/${flowId}/draft`)).json()).document.settings, { timeout: 15_000 })
    .toMatchObject({ timezone: "Europe/Paris", business_hours: { holidays: ["2026-12-25"] } });
});

test("plain forms fill the settings of the other kinds", async ({ page, request }) => {
  const flowId = (await (await request.post("/api/v1/flows", {
    data: {
      document: {
        format: "waymark.flow/v1",
        name: "Forms e2e",
        steps: [
          { id: "start", kind: "start", position: { x: 40, y: 80 } },
          { id: "tell", kind: "notify_email", position: { x: 260, y: 80 } },
          { id: "hook", kind: "webhook", position: { x: 480, y: 80 } },
        ],
        edges: [{ from: "start", port: "next", to: "tell" }, { from: "tell", port: "next", to: "hook" }],
      },
    },
  })).json()).id;
  await open(page, `/flows/${flowId}`);
  await expect(page.locator('li.finding.error[data-code="missing_setting"][data-step="tell"]')).toHaveCount(2);

  await page.locator('g.step[data-step="tell"] rect.card').click();
  const inspector = page.locator('section.inspector[data-step="tell"]');
  await inspector.getByLabel("Notify").fill("user:7");
  await inspector.getByLabel("Subject").fill("{{ email }} needs a call");
  await expect(page.locator('li.finding[data-step="tell"][data-code="missing_setting"]')).toHaveCount(0);

  await page.locator('g.step[data-step="hook"] rect.card').click();
  const hook = page.locator('section.inspector[data-step="hook"]');
  await hook.getByLabel("Method").selectOption("PUT");
  await hook.getByLabel("Address").fill("https://hooks.example.com/waymark");
  await expect(page.locator('li.finding.error[data-step="hook"]')).toHaveCount(0);

  await expect
    .poll(async () => {
      const doc = (await (await request.get(`/api/v1/flows/${flowId}/draft`)).json()).document;
      return Object.fromEntries(doc.steps.map((s: any) => [s.id, s.settings ?? {}]));
    }, { timeout: 10_000 })
    .toMatchObject({
      tell: { to: "user:7", subject: "{{ email }} needs a call" },
      hook: { method: "PUT", url: "https://hooks.example.com/waymark" },
    });
});

test("split branches, webhook headers and body, enrichment mapping and callback timing have forms", async ({ page, request }) => {
  const flowId = (await (await request.post("/api/v1/flows", {
    data: {
      document: {
        format: "waymark.flow/v1",
        name: "Structured forms e2e",
        steps: [
          { id: "start", kind: "start", position: { x: 40, y: 80 } },
          { id: "ab", kind: "split", position: { x: 260, y: 80 }, settings: { branches: [{ port: "a", percent: 50 }] } },
          { id: "hook", kind: "webhook", position: { x: 480, y: 40 }, settings: { url: "https://hooks.example.com/x" } },
          { id: "enrich", kind: "data_append", position: { x: 480, y: 200 }, settings: { url: "https://enrich.example.com/" } },
          { id: "later", kind: "schedule_callback", position: { x: 700, y: 80 } },
        ],
        edges: [
          { from: "start", port: "next", to: "ab" },
          { from: "ab", port: "a", to: "hook" },
          { from: "hook", port: "next", to: "enrich" },
          { from: "enrich", port: "next", to: "later" },
        ],
      },
    },
  })).json()).id;
  await open(page, `/flows/${flowId}`);

  await page.locator('g.step[data-step="ab"] rect.card').click();
  const split = page.locator('section.inspector[data-step="ab"]');
  await expect(split.locator("[data-total]")).toHaveAttribute("data-total", "50");
  await expect(page.locator('li.finding[data-step="ab"][data-code="split_not_100"]')).toHaveCount(1);
  await split.getByRole("button", { name: "Add a branch" }).click();
  await split.getByLabel("Branch 2 percent").fill("50");
  await split.getByLabel("Branch 2 percent").press("Tab");
  await expect(split.locator("[data-total]")).toHaveAttribute("data-total", "100");
  await expect(page.locator('li.finding[data-step="ab"][data-code="split_not_100"]')).toHaveCount(0);

  await page.locator('g.step[data-step="hook"] rect.card').click();
  const hook = page.locator('section.inspector[data-step="hook"]');
  await hook.getByLabel("New header").fill("X-Source");
  await hook.getByLabel("New value").fill("waymark {{ email }}");
  await hook.getByRole("button", { name: "Add" }).click();
  await expect(hook.getByLabel("header 1", { exact: true })).toHaveValue("X-Source");
  const body = hook.locator('textarea[name="body"]');
  await body.fill('{"email": "{{ email }}", oops');
  await body.press("Tab");
  await expect(hook.getByRole("alert")).toContainText("Not JSON yet");
  await body.fill('{"email": "{{ email }}"}');
  await body.press("Tab");
  await expect(hook.getByRole("alert")).toHaveCount(0);

  await page.locator('g.step[data-step="enrich"] rect.card').click();
  const enrich = page.locator('section.inspector[data-step="enrich"]');
  await enrich.getByLabel("New response field").fill("company.name");
  await enrich.getByLabel("New contact field").fill("company");
  await enrich.getByRole("button", { name: "Add" }).click();

  await page.locator('g.step[data-step="later"] rect.card').click();
  const later = page.locator('section.inspector[data-step="later"]');
  await later.getByLabel("Call back after: amount").fill("3");
  await later.getByLabel("Call back after: unit").selectOption("hours");
  await page.screenshot({ path: path.join("screenshots", "17-structured-forms.png"), fullPage: true });

  await expect
    .poll(async () => {
      const doc = (await (await request.get(`/api/v1/flows/${flowId}/draft`)).json()).document;
      return Object.fromEntries(doc.steps.map((s: any) => [s.id, s.settings ?? {}]));
    }, { timeout: 10_000 })
    .toMatchObject({
      ab: { branches: [{ port: "a", percent: 50 }, { port: "b", percent: 50 }] },
      hook: { headers: { "X-Source": "waymark {{ email }}" }, body: { email: "{{ email }}" } },
      enrich: { mapping: { "company.name": "company" } },
      later: { after: { amount: 3, unit: "hours" } },
    });
});
