import { test, expect, Page } from "./support";
import * as path from "path";

async function open(page: Page, url: string) {
  await page.goto(url);
  await expect(page.locator(".app[data-hydrated=true]")).toBeVisible();
}

test("an agent completes a call from the inbox and the timeline shows it", async ({ page, request }) => {
  const flow = await request.post("/api/v1/flows", {
    data: {
      document: {
        format: "waymark.flow/v1",
        name: "Inbox e2e",
        steps: [
          { id: "start", kind: "start" },
          { id: "call", kind: "call", name: "Intro call", settings: { owner: "user:agent-1" } },
          { id: "wait", kind: "wait", settings: { mode: "duration", amount: 2, unit: "days" } },
          { id: "done", kind: "exit" },
        ],
        edges: [
          { from: "start", port: "next", to: "call" },
          { from: "call", port: "next", to: "wait" },
          { from: "wait", port: "next", to: "done" },
        ],
      },
    },
  });
  expect(flow.status()).toBe(201);
  const flowId = (await flow.json()).id;
  expect((await request.post(`/api/v1/flows/${flowId}/publish`)).status()).toBe(201);
  const contact = await request.post("/api/v1/contacts", {
    data: { email: "grace@example.com", mobile: "+15550123", timezone: "Europe/Paris" },
  });
  const contactId = (await contact.json()).id;
  const enrolled = await request.post(`/api/v1/flows/${flowId}/enroll`, { data: { contact_ids: [contactId] } });
  const participant = (await enrolled.json()).enrolled[0];

  // the scheduler reaches the call within a moment
  await expect
    .poll(async () => (await (await request.get(`/api/v1/participants/${participant}`)).json()).step, { timeout: 10_000 })
    .toBe("call");

  await open(page, "/inbox?owner=agent-1");
  const row = page.locator(`tr[data-participant="${participant}"]`);
  await expect(row).toContainText("Call grace@example.com");
  await page.screenshot({ path: path.join("screenshots", "06-inbox.png"), fullPage: true });
  await row.getByLabel("Disposition").fill("interested");
  await row.getByRole("button", { name: "Complete" }).click();
  await expect(row).toHaveCount(0);

  await open(page, `/participants/${participant}`);
  const call = page.locator('table.timeline tr[data-step="call"]');
  await expect(call).toContainText("completed");
  await expect(call).toContainText("disposition: interested");
  const wait = page.locator('table.timeline tr[data-step="wait"]');
  await expect(wait).toContainText("pending");
  await expect(wait).toContainText("CET"); // times in the contact's zone
  await page.screenshot({ path: path.join("screenshots", "07-timeline.png"), fullPage: true });

  // the flow's canvas shows where participants are and what they passed
  await open(page, `/flows/${flowId}`);
  await expect(page.locator('g.step[data-step="call"] .step-counts')).toHaveText("1 passed");
  await expect(page.locator('g.step[data-step="wait"] .step-counts')).toHaveText("1 here");
});

test("a test run shows the demo flow's timeline in the contact's zone", async ({ page }) => {
  await open(page, "/");
  await page.getByRole("table").getByRole("link", { name: "Welcome series (demo)" }).click();
  await expect(page.locator(".app[data-hydrated=true]")).toBeVisible();
  const panel = page.locator("section.test-run");
  await panel.getByLabel("Time zone").fill("Europe/Paris");
  await panel.getByLabel("Lists").fill("Newsletter signups");
  await panel.getByLabel("Fields (one field=value per line)").fill("first_name=Ada\ncountry=US");
  await panel.getByLabel("Start (RFC 3339, empty = now)").fill("2026-12-04T20:00:00Z");
  await panel.getByRole("button", { name: "Run test" }).click();
  const result = panel.locator(".test-run-result");
  await expect(result).toContainText("times in Europe/Paris");
  // a Friday evening signup: the wait takes a day, the welcome email waits for Monday 09:00 Paris time
  await expect(result.locator('tr[data-step="welcome"]')).toContainText("Mon 7 Dec 09:00 CET");
  await expect(result.locator('li[data-kind="email"]').first()).toContainText("Welcome aboard, Ada");
  await page.screenshot({ path: path.join("screenshots", "08-test-run.png"), fullPage: true });
});

test("participants on an old version are moved to the new one, counts shown first", async ({ page, request }) => {
  const doc = (callId: string) => ({
    format: "waymark.flow/v1",
    name: "Migrate e2e",
    steps: [{ id: "start", kind: "start" }, { id: callId, kind: "call" }, { id: "done", kind: "exit" }],
    edges: [{ from: "start", port: "next", to: callId }, { from: callId, port: "next", to: "done" }],
  });
  const flowId = (await (await request.post("/api/v1/flows", { data: { document: doc("call") } })).json()).id;
  await request.post(`/api/v1/flows/${flowId}/publish`);
  const ids: number[] = [];
  for (const email of ["m1@x.test", "m2@x.test"]) {
    ids.push((await (await request.post("/api/v1/contacts", { data: { email, mobile: "+15550199" } })).json()).id);
  }
  await request.post(`/api/v1/flows/${flowId}/enroll`, { data: { contact_ids: ids } });
  // wait until the scheduler has them both at the call
  await expect
    .poll(async () => (await request.get(`/api/v1/flows/${flowId}/participants/counts`)).json(), { timeout: 10_000 })
    .toEqual([{ version: 1, step: "call", status: "waiting", count: 2 }]);
  const draft = await (await request.get(`/api/v1/flows/${flowId}/draft`)).json();
  await request.put(`/api/v1/flows/${flowId}/draft`, { data: { revision: draft.revision, document: doc("intro_call") } });
  await request.post(`/api/v1/flows/${flowId}/publish`);

  await open(page, `/flows/${flowId}/participants`);
  await expect(page.locator('tr[data-version="1"][data-step="call"] td.count')).toHaveText("2");
  const button = page.getByRole("button", { name: /Move .* participant/ });
  await expect(button).toBeDisabled(); // no step of that id in v2: nothing chosen yet
  await page.getByLabel("Move call to").selectOption("intro_call");
  await expect(button).toHaveText("Move 2 participant(s) to v2");
  await page.screenshot({ path: path.join("screenshots", "09-migrate.png"), fullPage: true });
  await button.click();
  await expect(page.getByRole("status")).toContainText("Moved 2 participant(s)");
  await expect(page.locator('tr[data-version="2"][data-step="intro_call"] td.count')).toHaveText("2");
});

test("a participant failed by an unconfigured channel is retried from its page", async ({ page, request }) => {
  const flow = await request.post("/api/v1/flows", {
    data: {
      document: {
        format: "waymark.flow/v1",
        name: "Retry e2e",
        steps: [{ id: "start", kind: "start" }, { id: "mail", kind: "send_email", settings: { subject: "Hi", body: "Hello" } }],
        edges: [{ from: "start", port: "next", to: "mail" }],
      },
    },
  });
  const flowId = (await flow.json()).id;
  await request.post(`/api/v1/flows/${flowId}/publish`);
  const contactId = (await (await request.post("/api/v1/contacts", { data: { email: "retry@x.test" } })).json()).id;
  const participant = (await (await request.post(`/api/v1/flows/${flowId}/enroll`, { data: { contact_ids: [contactId] } })).json()).enrolled[0];
  await expect
    .poll(async () => (await (await request.get(`/api/v1/participants/${participant}`)).json()).status, { timeout: 10_000 })
    .toBe("failed");

  await open(page, `/participants/${participant}`);
  await expect(page.getByRole("alert")).toContainText("no email (SMTP) server is configured");
  await page.getByRole("button", { name: "Retry this step" }).click();
  // no SMTP yet, so it fails again, as a new row on the timeline
  await expect
    .poll(async () => (await (await request.get(`/api/v1/participants/${participant}/timeline`)).json()).length, { timeout: 10_000 })
    .toBe(3);
  await open(page, `/participants/${participant}`);
  await expect(page.locator('table.timeline tr[data-step="mail"]')).toHaveCount(2);
});
