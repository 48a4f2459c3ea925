import { test, expect, Page, Locator } from "./support";
import * as fs from "fs";
import * as path from "path";

// Flows that react: a wait for an open built from the palette and the
// inspector, test-run with and without the open; engagement criteria, the
// goal and exit on reply edited in their forms.

async function open(page: Page, url: string) {
  await page.goto(url);
  await expect(page.locator(".app[data-hydrated=true]")).toBeVisible();
}

/// Screenshots for people to look at: beside the other specs' (screenshots/),
/// and under /tmp/shots when that can be written.
async function shot(target: Page | Locator, name: string) {
  const page = "screenshot" in target && "goto" in target ? (target as Page) : null;
  const options = page ? { fullPage: true } : {};
  await target.screenshot({ path: path.join("screenshots", `${name}.png`), ...options });
  try {
    fs.mkdirSync("/tmp/shots", { recursive: true });
    await target.screenshot({ path: path.join("/tmp/shots", `${name}.png`), ...options });
  } catch {
    // only a copy
  }
}

async function createFlow(page: Page, name: string) {
  await open(page, "/");
  await page.getByLabel("New flow name").fill(name);
  await page.getByRole("button", { name: "Create flow" }).click();
  await expect(page).toHaveURL(/\/flows\/\d+$/);
  await expect(page.locator('div.flow-canvas g.step[data-step="start"]')).toBeVisible();
}

async function centre(locator: Locator) {
  const box = await locator.boundingBox();
  if (!box) throw new Error("not on screen");
  return { x: box.x + box.width / 2, y: box.y + box.height / 2 };
}

async function drag(page: Page, from: { x: number; y: number }, to: { x: number; y: number }) {
  await page.mouse.move(from.x, from.y);
  await page.mouse.down();
  await page.mouse.move((from.x + to.x) / 2, (from.y + to.y) / 2, { steps: 5 });
  await page.mouse.move(to.x, to.y, { steps: 5 });
  await page.mouse.up();
}

const step = (page: Page, id: string) => page.locator(`div.flow-canvas g.step[data-step="${id}"]`);

async function place(page: Page, kind: string, x: number, y: number) {
  const canvas = await page.locator("div.flow-canvas").boundingBox();
  await drag(page, await centre(page.locator(`.palette-item[data-kind="${kind}"]`)), { x: canvas!.x + x, y: canvas!.y + y });
}

async function connect(page: Page, from: string, port: string, to: string) {
  const dot = step(page, from).locator(`circle.port.output[data-port="${port}"]`);
  await drag(page, await centre(dot), await centre(step(page, to).locator("rect.card")));
  await expect(page.locator(`g.wire[data-from="${from}"][data-port="${port}"][data-to="${to}"]`)).toHaveCount(1);
}

async function draft(page: Page) {
  const id = page.url().split("/").pop();
  return (await (await page.request.get(`/api/v1/flows/${id}/draft`)).json()).document;
}

test("a wait for an open, built in the editor, leaves by met when the test run's contact opens, else by timed out", async ({ page }) => {
  await createFlow(page, "Reacts to opens");
  for (const [kind, x, y] of [
    ["send_email", 364, 108],
    ["wait_until", 364, 268],
    ["task", 604, 228],
    ["send_sms", 604, 348],
  ] as [string, number, number][]) {
    await place(page, kind, x, y);
    await expect(step(page, `${kind}_1`)).toBeVisible();
  }

  // The wait's two outputs are drawn and named; each takes a wire.
  const wait = step(page, "wait_until_1");
  await expect(wait.locator("circle.port.output")).toHaveCount(2);
  await expect(wait.locator("text.port-name")).toHaveText(["met", "timed out"]);
  await connect(page, "start", "next", "send_email_1");
  await connect(page, "send_email_1", "next", "wait_until_1");
  await connect(page, "wait_until_1", "met", "task_1");
  await connect(page, "wait_until_1", "timed_out", "send_sms_1");
  await expect(page.locator('g.wire[data-port="timed_out"] text.port-label')).toHaveText("timed out");
  await shot(page.locator("div.canvas-wrap"), "19-wait-until-canvas");

  const inspector = page.locator("section.inspector");
  await step(page, "send_email_1").click();
  await inspector.locator('input[name="subject"]').fill("Hello {{first_name}}");
  await inspector.locator('textarea[name="body"]').fill("<p>Have a look.</p>");
  await step(page, "send_sms_1").click();
  await inspector.locator('textarea[name="text"]').fill("Did you see our email, {{first_name}}?");

  // The wait: an open of that email, or three days.
  await step(page, "wait_until_1").click();
  await expect(inspector).toHaveAttribute("data-kind", "wait_until");
  await expect(page.locator('li.finding.error[data-step="wait_until_1"][data-code="missing_setting"]')).toHaveCount(2);
  await inspector.getByRole("button", { name: "+ Add something to wait for" }).click();
  await expect(inspector.getByLabel("Matcher 1: kind")).toHaveValue("email_opened");
  await inspector.getByLabel("Matcher 1: which message").selectOption("send_email_1");
  await inspector.getByLabel("Time out after: amount").fill("3");
  await expect(inspector.getByLabel("Time out after: unit")).toHaveValue("days");
  await expect(page.locator('li.finding[data-step="wait_until_1"]')).toHaveCount(0);
  // A link click narrows by URL; switching back drops what no longer applies.
  await inspector.getByLabel("Matcher 1: kind").selectOption("link_clicked");
  await expect(inspector.getByLabel("Matcher 1: link contains")).toBeVisible();
  await inspector.getByLabel("Matcher 1: link contains").fill("/pricing");
  await inspector.getByLabel("Matcher 1: kind").selectOption("email_opened");
  await expect(inspector.getByLabel("Matcher 1: link contains")).toHaveCount(0);
  await expect(inspector.getByLabel("Matcher 1: which message")).toHaveValue("send_email_1");
  await expect.poll(async () => (await draft(page)).steps.find((s: any) => s.id === "wait_until_1")?.settings, { timeout: 10_000 })
    .toEqual({ until: [{ event: "email_opened", step: "send_email_1" }], timeout: { amount: 3, unit: "days" } });
  await shot(inspector, "20-wait-until-inspector");

  // The test run: an open two hours in.
  const panel = page.locator("section.test-run");
  await panel.getByLabel("Time zone").fill("Europe/Paris");
  await panel.getByLabel("Start (RFC 3339, empty = now)").fill("2026-12-01T09:00:00Z");
  await panel.getByRole("button", { name: "+ Add an event" }).click();
  const offset = panel.getByLabel("Event 1: time after the start");
  await offset.fill("+2x");
  await expect(panel.locator('.event-row[data-row="1"] .field-error')).toContainText("is not a time after the start");
  await panel.getByRole("button", { name: "Run test" }).click();
  await expect(panel.getByRole("alert")).toContainText("Event 1: “+2x” is not a time after the start like +2h");
  await offset.fill("+2h");
  await expect(panel.getByLabel("Event 1: kind")).toHaveValue("email_opened");
  await expect(panel.getByLabel("Event 1: message")).toHaveValue("send_email_1");
  await panel.getByRole("button", { name: "Run test" }).click();
  const result = panel.locator(".test-run-result");
  const opened = result.locator('table.events tr[data-event="email_opened"]');
  await expect(opened).toHaveAttribute("data-effect", "met");
  await expect(opened).toContainText("Tue 1 Dec 12:00 CET"); // 09:00 UTC + 2h, in Paris
  await expect(opened).toContainText("send_email_1");
  await expect(result.locator('tr[data-step="wait_until_1"]')).toHaveAttribute("data-port", "met");
  await expect(result.locator('tr[data-step="wait_until_1"]')).toContainText("→ met");
  await expect(result.locator('tr[data-step="task_1"]')).toHaveCount(1);
  await expect(result.locator('tr[data-step="send_sms_1"]')).toHaveCount(0);
  await panel.scrollIntoViewIfNeeded();
  await shot(panel, "21-test-run-events");

  // Without the open, the wait times out after three days.
  await panel.getByRole("button", { name: "Remove event 1" }).click();
  await panel.getByRole("button", { name: "Run test" }).click();
  await expect(result.locator('tr[data-step="wait_until_1"]')).toHaveAttribute("data-port", "timed_out");
  await expect(result.locator('tr[data-step="wait_until_1"]')).toContainText("Fri 4 Dec 10:00 CET");
  await expect(result.locator('tr[data-step="send_sms_1"]')).toHaveCount(1);
  await expect(result.locator('tr[data-step="task_1"]')).toHaveCount(0);
  await expect(result.locator("table.events")).toHaveCount(0);
});

test("engagement criteria, the goal and exit on reply are edited in forms and written as FLOW_FORMAT says", async ({ page, request }) => {
  const flowId = (await (await request.post("/api/v1/flows", {
    data: {
      document: {
        format: "waymark.flow/v1",
        name: "Engagement forms e2e",
        steps: [
          { id: "start", kind: "start", position: { x: 40, y: 80 } },
          { id: "e1", kind: "send_email", name: "Welcome", position: { x: 260, y: 80 }, settings: { subject: "Hi", body: "<p>Hi</p>" } },
          { id: "w", kind: "wait", position: { x: 480, y: 80 }, settings: { mode: "duration", amount: 2, unit: "days" } },
          { id: "c", kind: "condition", position: { x: 700, y: 80 } },
          { id: "yes", kind: "exit", position: { x: 920, y: 40 } },
          { id: "no", kind: "exit", position: { x: 920, y: 160 } },
        ],
        edges: [
          { from: "start", port: "next", to: "e1" },
          { from: "e1", port: "next", to: "w" },
          { from: "w", port: "next", to: "c" },
          { from: "c", port: "yes", to: "yes" },
          { from: "c", port: "no", to: "no" },
        ],
      },
    },
  })).json()).id;
  await open(page, `/flows/${flowId}`);

  // The goal: a custom event; and exit on reply.
  const form = page.locator("section.flow-settings");
  await form.getByLabel("Goal", { exact: true }).selectOption("event");
  await expect(form.getByLabel("Goal event: kind")).toHaveValue("link_clicked");
  await form.getByLabel("Goal event: kind").selectOption("custom");
  await form.getByLabel("Goal event: event name").fill("purchased");
  await form.getByLabel("Exit on reply").check();
  await shot(form.locator("fieldset.goal"), "22-goal");

  // The condition: "clicked the welcome email's pricing link".
  await page.locator('g.step[data-step="c"] rect.card').click();
  const inspector = page.locator('section.inspector[data-step="c"]');
  await inspector.getByRole("button", { name: "+ Add criterion" }).click();
  await inspector.getByLabel("Criterion 1 field").fill("country");
  await inspector.getByLabel("Criterion 1 operator").selectOption("opened");
  await expect(inspector.getByLabel("Criterion 1 field")).toHaveCount(0);
  await expect(inspector.getByLabel("Criterion 1 message")).toHaveValue("any");
  await inspector.getByLabel("Criterion 1 message").selectOption("e1");
  await inspector.getByLabel("Criterion 1 operator").selectOption("clicked");
  await expect(inspector.getByLabel("Criterion 1 message")).toHaveValue("e1");
  await inspector.getByLabel("Criterion 1 link contains").fill("pricing");
  await expect(page.locator('li.finding.error[data-step="c"]')).toHaveCount(0);
  await inspector.getByRole("button", { name: "+ Add criterion" }).click();
  await inspector.getByLabel("Criterion 2 operator").selectOption("unsubscribed");
  await expect(inspector.getByLabel("Criterion 2 channel")).toHaveValue("email");
  await inspector.getByLabel("Criterion 2 channel").selectOption("sms");
  await inspector.locator('select[name="logic"]').selectOption("any");
  await shot(inspector, "23-engagement-criteria");

  await expect
    .poll(async () => {
      const doc = (await (await request.get(`/api/v1/flows/${flowId}/draft`)).json()).document;
      return { settings: doc.settings, c: doc.steps.find((s: any) => s.id === "c").settings };
    }, { timeout: 10_000 })
    .toEqual({
      settings: { goal: { event: { event: "custom", name: "purchased" } }, exit_on_reply: true },
      c: {
        criteria: [{ op: "clicked", value: "e1", url_contains: "pricing" }, { op: "unsubscribed", value: "sms" }],
        logic: "any",
      },
    });

  // A test run where the contact buys a day in: the goal is met.
  const panel = page.locator("section.test-run");
  await panel.getByLabel("Start (RFC 3339, empty = now)").fill("2026-12-01T09:00:00Z");
  await panel.getByRole("button", { name: "+ Add an event" }).click();
  await panel.getByLabel("Event 1: time after the start").fill("+1d");
  await panel.getByLabel("Event 1: kind").selectOption("custom");
  await panel.getByLabel("Event 1: event name").fill("purchased");
  await panel.getByRole("button", { name: "Run test" }).click();
  const result = panel.locator(".test-run-result");
  await expect(result.locator('table.events tr[data-event="custom"]')).toHaveAttribute("data-effect", "goal");
  await expect(result.locator(".status")).toHaveText("converted");
});

test("a wait's matchers load from the document and write back what the form shows: custom events with properties, contact criteria", async ({ page, request }) => {
  const until = [{ event: "link_clicked", step: "e1", url_contains: "/pricing", include_machine: true }];
  const flowId = (await (await request.post("/api/v1/flows", {
    data: {
      document: {
        format: "waymark.flow/v1",
        name: "Matchers e2e",
        steps: [
          { id: "start", kind: "start", position: { x: 40, y: 80 } },
          { id: "e1", kind: "send_email", name: "Offer", position: { x: 260, y: 80 }, settings: { subject: "Hi", body: "<p>Hi</p>" } },
          { id: "w", kind: "wait_until", position: { x: 480, y: 80 }, settings: { until, timeout: { amount: 2, unit: "weeks" } } },
        ],
        edges: [
          { from: "start", port: "next", to: "e1" },
          { from: "e1", port: "next", to: "w" },
        ],
      },
    },
  })).json()).id;
  await open(page, `/flows/${flowId}`);
  await page.locator('g.step[data-step="w"] rect.card').click();
  const inspector = page.locator('section.inspector[data-step="w"]');
  await expect(inspector.getByLabel("Matcher 1: kind")).toHaveValue("link_clicked");
  await expect(inspector.getByLabel("Matcher 1: which message")).toHaveValue("e1");
  await expect(inspector.getByLabel("Matcher 1: link contains")).toHaveValue("/pricing");
  await expect(inspector.getByLabel("Matcher 1: include machine opens and clicks")).toBeChecked();
  await expect(inspector.getByLabel("Time out after: amount")).toHaveValue("2");
  await expect(inspector.getByLabel("Time out after: unit")).toHaveValue("weeks");

  // A custom event with a property condition.
  await inspector.getByRole("button", { name: "+ Add something to wait for" }).click();
  await inspector.getByLabel("Matcher 2: kind").selectOption("custom");
  await inspector.getByLabel("Matcher 2: event name").fill("purchased");
  await inspector.getByRole("button", { name: "+ Add a property condition" }).click();
  await inspector.getByLabel("Matcher 2: property 1 field").fill("plan");
  await inspector.getByLabel("Matcher 2: property 1 value").fill("pro");
  // Criteria over the contact: an event in the last week.
  await inspector.getByRole("button", { name: "+ Add something to wait for" }).click();
  await inspector.getByLabel("Matcher 3: kind").selectOption("criteria");
  await inspector.getByRole("button", { name: "+ Add criterion" }).click();
  await inspector.getByLabel("Matcher 3: criterion 1 operator").selectOption("did_event");
  await inspector.getByLabel("Matcher 3: criterion 1 event name").fill("visited");
  await inspector.getByLabel("Matcher 3: criterion 1 within: amount").fill("7");
  await expect(page.locator('li.finding.error[data-step="w"]')).toHaveCount(0);
  await shot(inspector, "24-matchers");

  const expected = [
    ...until,
    { event: "custom", name: "purchased", where: [{ field: "plan", op: "equals", value: "pro" }] },
    { criteria: [{ op: "did_event", value: "visited", within: { amount: 7, unit: "days" } }], logic: "all" },
  ];
  await expect
    .poll(async () => (await (await request.get(`/api/v1/flows/${flowId}/draft`)).json()).document.steps.find((s: any) => s.id === "w").settings, { timeout: 10_000 })
    .toEqual({ until: expected, timeout: { amount: 2, unit: "weeks" } });

  // Removing a matcher removes only it.
  await inspector.getByRole("button", { name: "Remove matcher 2", exact: true }).click();
  await expect(inspector.getByLabel("Matcher 2: kind")).toHaveValue("criteria");
  await expect
    .poll(async () => (await (await request.get(`/api/v1/flows/${flowId}/draft`)).json()).document.steps.find((s: any) => s.id === "w").settings.until, { timeout: 10_000 })
    .toEqual([expected[0], expected[2]]);
});
