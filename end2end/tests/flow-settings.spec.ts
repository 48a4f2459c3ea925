import { test, expect, Page } from "@playwright/test";
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
