import { test, expect, Page, publishLinearFlow } from "./support";
import * as path from "path";

/// Waits until the page is hydrated: clicks before that do nothing.
async function open(page: Page, url: string) {
  await page.goto(url);
  await expect(page.locator(".app[data-hydrated=true]")).toBeVisible();
}

async function shot(page: Page, name: string) {
  await page.screenshot({ path: path.join("screenshots", `${name}.png`), fullPage: true });
}

test("the demo flow is seeded and its warning is shown", async ({ page }) => {
  await open(page, "/");
  const demo = page.locator("tr", { hasText: "Welcome series (demo)" });
  await expect(demo).toBeVisible();
  await expect(demo.locator("td.errors")).toHaveText("0");
  await expect(demo.locator("td.warnings")).not.toHaveText("0");
  await shot(page, "01-flows-list");

  await demo.getByRole("link", { name: "Welcome series (demo)" }).click();
  await expect(page.locator("h1.flow-name")).toHaveText("Welcome series (demo)");
  await expect(page.locator("svg.flow-graph g.step")).toHaveCount(20);
  const finding = page.locator('li.finding.warning[data-code="sms_multi_segment"]');
  await expect(finding).toBeVisible();
  await finding.locator("button").click();
  await expect(page.locator('g.step.selected[data-step="no_email_sms"]')).toBeVisible();
  await expect(page.locator(".step-details h2")).toContainText("Ask for an email");
  // The finding's row is marked as its step's, and only while it is selected.
  await expect(page.locator("li.finding.selected")).toHaveCount(1);
  await expect(finding).toHaveClass(/selected/);
  await shot(page, "02-demo-flow");
  await page.keyboard.press("Escape");
  await expect(page.locator("li.finding.selected")).toHaveCount(0);
});

test("on a phone the top bar keeps the account in view and the links on a row of their own", async ({ page }) => {
  await page.setViewportSize({ width: 400, height: 800 });
  await open(page, "/");
  const signOut = await page.getByRole("button", { name: "Sign out" }).boundingBox();
  expect(signOut!.x + signOut!.width).toBeLessThanOrEqual(400);
  const account = await page.locator(".topbar .account").boundingBox();
  const nav = await page.locator(".topbar nav").boundingBox();
  expect(nav!.y).toBeGreaterThanOrEqual(account!.y + account!.height - 1);
  expect(nav!.height).toBeLessThan(60); // one row, not a column of links
  // The page does not scroll sideways (the flows table scrolls in its own box).
  expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(400);
  await shot(page, "01b-flows-list-phone");
  // The last link is reached by scrolling the row.
  await page.getByRole("link", { name: "Audit log" }).click();
  await expect(page).toHaveURL(/\/audit$/);
});

test("on a phone the task inbox is a list of cards", async ({ page, request }) => {
  const run = Date.now();
  const flowId = await publishLinearFlow(request, `Phone inbox ${run}`, { id: "ring", kind: "task", name: "Call them", settings: { priority: "high" } });
  const contact = (await (await request.post("/api/v1/contacts", { data: { email: `phone-${run}@example.com` } })).json()).id;
  const participant = (await (await request.post(`/api/v1/flows/${flowId}/enroll`, { data: { contact_ids: [contact] } })).json()).enrolled[0];
  await expect
    .poll(async () => (await (await request.get(`/api/v1/participants/${participant}`)).json()).step, { timeout: 10_000 })
    .toBe("ring");

  await page.setViewportSize({ width: 400, height: 800 });
  await open(page, "/inbox");
  const card = page.locator(`table.tasks tr[data-participant="${participant}"]`);
  await expect(card).toBeVisible();
  await expect(page.locator("table.tasks thead")).toBeHidden();
  await expect(card.locator('td[data-label="Contact"]')).toContainText(`phone-${run}@example.com`);
  const complete = await card.getByRole("button", { name: "Complete" }).boundingBox();
  expect(complete!.x + complete!.width).toBeLessThanOrEqual(400);
  expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(400);
  await shot(page, "01c-inbox-phone");
});

test("a marketer creates, renames and deletes a flow", async ({ page }) => {
  await open(page, "/");
  await page.getByLabel("New flow name").fill("Spring campaign");
  await page.getByRole("button", { name: "Create flow" }).click();
  await expect(page).toHaveURL(/\/flows\/\d+$/);
  await expect(page.locator("h1.flow-name")).toHaveText("Spring campaign");
  // a new flow is one start step, which leads nowhere yet
  await expect(page.locator('li.finding[data-code="unconnected_output"]')).toBeVisible();

  await page.getByRole("link", { name: "Flows", exact: true }).first().click();
  const row = page.locator('tr[data-flow="Spring campaign"]');
  await expect(row).toBeVisible();
  await row.getByRole("button", { name: "Rename" }).click();
  await row.getByLabel("Flow name").fill("Spring campaign 2027");
  await row.getByRole("button", { name: "Save" }).click();
  const renamed = page.locator("tr", { hasText: "Spring campaign 2027" });
  await expect(renamed).toBeVisible();

  // a taken name is refused with a readable message
  await page.getByLabel("New flow name").fill("spring CAMPAIGN 2027");
  await page.getByRole("button", { name: "Create flow" }).click();
  await expect(page.getByRole("alert")).toContainText("already exists");

  await renamed.getByRole("button", { name: "Delete" }).click();
  await expect(renamed.getByRole("alertdialog")).toContainText("removed for good");
  await renamed.getByRole("button", { name: "Delete for good" }).click();
  await expect(page.locator("tr", { hasText: "Spring campaign 2027" })).toHaveCount(0);
  await shot(page, "03-after-delete");
});

test("an imported flow shows its findings, and the review lists them", async ({ page }) => {
  await open(page, "/");
  await page.locator('label.import input[type="file"]').setInputFiles(path.join(__dirname, "..", "fixtures", "loop.waymark.json"));
  const row = page.locator("tr", { hasText: "Imported loop" });
  await expect(row).toBeVisible();
  await expect(row.locator("td.errors")).toHaveText("1");

  await row.getByRole("link", { name: "Imported loop" }).click();
  await expect(page.locator('li.finding.error[data-code="instant_loop"]')).toBeVisible();
  await expect(page.locator('li.finding.warning[data-code="unreachable_step"][data-step="orphan"]')).toBeVisible();
  await expect(page.locator('g.step[data-step="orphan"] .badge.warning')).toBeVisible();
  await expect(page.locator('g.step[data-step="bump"] .badge.error')).toBeVisible();
  await shot(page, "04-imported-flow");

  // a file that is not a flow is refused, in words
  await page.getByRole("link", { name: "Flows", exact: true }).first().click();
  await expect(page.locator(".app[data-hydrated=true]")).toBeVisible();
  await page.locator('label.import input[type="file"]').setInputFiles({
    name: "notes.json",
    mimeType: "application/json",
    buffer: Buffer.from('{"steps": "lots"}'),
  });
  await expect(page.getByRole("alert")).toContainText("not a Waymark flow");

  await open(page, "/review");
  await expect(page.locator('tr[data-code="instant_loop"]')).toHaveCount(1);
  await page.locator('select[name="code"]').selectOption("unreachable_step");
  await page.getByRole("button", { name: "Filter" }).click();
  await expect(page).toHaveURL(/code=unreachable_step/);
  await expect(page.locator("table.review tbody tr")).toHaveCount(1);
  await shot(page, "05-review");
  await page.locator("table.review tbody tr td:nth-child(4) a").click();
  await expect(page.locator('g.step.selected[data-step="orphan"]')).toBeVisible();
});
