import { test, expect, Page, Browser } from "./support";
import { execFileSync } from "child_process";
import * as path from "path";

// Records CSP violations and any dialog a stored payload might open.
async function watch(page: Page) {
  const dialogs: string[] = [];
  page.on("dialog", async (dialog) => {
    dialogs.push(dialog.message());
    await dialog.dismiss();
  });
  await page.addInitScript(() => {
    (window as any).__violations = [];
    document.addEventListener("securitypolicyviolation", (e) =>
      (window as any).__violations.push(`${e.violatedDirective} ${e.blockedURI}`),
    );
  });
  return dialogs;
}

async function open(page: Page, url: string) {
  await page.goto(url);
  await expect(page.locator(".app[data-hydrated=true]")).toBeVisible();
}

function addUser(email: string, role: string, password: string) {
  execFileSync(process.env.WAYMARK_E2E_BIN!, ["--database-url", process.env.WAYMARK_E2E_DB!, "user", "add", "--email", email, "--role", role], {
    env: { ...process.env, WAYMARK_PASSWORD: password },
  });
}

async function signedInAs(browser: Browser, email: string, password: string) {
  const context = await browser.newContext({ storageState: { cookies: [], origins: [] } });
  const page = await context.newPage();
  await open(page, "/inbox");
  await expect(page).toHaveURL(/\/login\?next=\/inbox$/);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(/\/inbox$/);
  return page;
}

test("stored markup renders as text, and the app raises no CSP violation", async ({ page, request }) => {
  const dialogs = await watch(page);
  const payloads = ['<svg onload=alert("flow")>', '"><img src=x onerror=alert("img")>', "javascript:alert('js')"];
  const ids: number[] = [];
  for (const payload of payloads) {
    const reply = await request.post("/api/v1/flows", { data: { name: `${payload} e2e` } });
    expect(reply.status()).toBe(201);
    ids.push((await reply.json()).id);
  }
  const contact = await request.post("/api/v1/contacts", {
    data: { email: "xss@example.com", fields: { first_name: '<img src=x onerror=alert("contact")>' } },
  });
  expect(contact.status()).toBe(201);
  const contactId = (await contact.json()).id;

  const pages = ["/", `/flows/${ids[0]}`, `/flows/${ids[1]}`, "/review", "/audit", "/admin/users", "/admin/tokens", "/inbox",
    "/contacts", `/contacts/${contactId}`, "/participants", "/admin/pressure"];
  for (const url of pages) {
    await open(page, url);
    expect(await page.evaluate(() => (window as any).__violations), url).toEqual([]);
  }
  await open(page, "/");
  for (const payload of payloads) {
    await expect(page.getByRole("table").getByText(`${payload} e2e`, { exact: true })).toBeVisible();
  }
  await expect(page.locator("svg[onload], img[onerror]")).toHaveCount(0);
  await expect(page.locator('a[href^="javascript:"]')).toHaveCount(0);
  await open(page, `/contacts/${contactId}`);
  await expect(page.getByText('<img src=x onerror=alert("contact")>')).toBeVisible();
  await expect(page.locator("img[onerror]")).toHaveCount(0);
  await page.screenshot({ path: path.join("screenshots", "20-xss-inert.png"), fullPage: true });
  expect(dialogs).toEqual([]);
});

test("an agent sees only the inbox; other pages are refused", async ({ browser }) => {
  addUser("ann@waymark.test", "agent", "ann's long password");
  const page = await signedInAs(browser, "ann@waymark.test", "ann's long password");
  const nav = page.locator("header nav");
  await expect(nav.getByRole("link", { name: "Task inbox" })).toBeVisible();
  await expect(nav.getByRole("link", { name: "Flows" })).toHaveCount(0);
  await expect(nav.getByRole("link", { name: "Validation review" })).toHaveCount(0);
  await expect(page.locator(".account .who")).toContainText("agent");
  await expect(page.locator('select[name="owner"]')).toBeDisabled();
  await page.screenshot({ path: path.join("screenshots", "21-agent-inbox.png"), fullPage: true });
  expect((await page.goto("/"))!.status()).toBe(403);
  const review = await page.goto("/review");
  expect(review!.status()).toBe(403);
  await expect(page.getByText("Your role (agent) may not do this.")).toBeVisible();
  const api = await page.request.get("/api/v1/flows");
  expect(api.status()).toBe(403);
  expect((await api.json()).code).toBe("forbidden");

  await page.goto("/inbox");
  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/login\?signed_out=1/);
  await page.goto("/inbox");
  await expect(page).toHaveURL(/\/login/);
  await page.context().close();
});

test("a page loaded before signing in again says so and does nothing", async ({ browser }) => {
  addUser("mo@waymark.test", "marketer", "mo's long password");
  const page = await signedInAs(browser, "mo@waymark.test", "mo's long password");
  await open(page, "/");
  // Another tab of the same browser signs out and in again: a new session.
  const other = await page.context().newPage();
  await open(other, "/inbox");
  await other.getByRole("button", { name: "Sign out" }).click();
  await expect(other).toHaveURL(/\/login\?signed_out=1/);
  await open(other, "/inbox");
  await other.getByLabel("Email").fill("mo@waymark.test");
  await other.getByLabel("Password").fill("mo's long password");
  await other.getByRole("button", { name: "Sign in" }).click();
  await expect(other).toHaveURL(/\/inbox$/);
  // The first tab still holds the old session's token.
  await page.getByLabel("New flow name").fill("Made by a stale page");
  await page.getByRole("button", { name: "Create flow" }).click();
  // Said where the flow was to be created (and where the list, asked again, was refused too).
  await expect(page.getByText("You signed in again since this page was loaded").first()).toBeVisible();
  // In words, not as a failure to read the server's answer.
  await expect(page.getByText(/deserializ|server function/i)).toHaveCount(0);
  const flows = await (await other.request.get("/api/v1/flows")).json();
  expect(JSON.stringify(flows)).not.toContain("Made by a stale page");
  // Reloaded, it works.
  await open(page, "/");
  await page.getByLabel("New flow name").fill("Made after reloading");
  await page.getByRole("button", { name: "Create flow" }).click();
  await expect(page).toHaveURL(/\/flows\/\d+$/);
  await page.context().close();
});

test("a wrong password is refused with a readable message", async ({ browser }) => {
  const context = await browser.newContext({ storageState: { cookies: [], origins: [] } });
  const page = await context.newPage();
  await open(page, "/login");
  await page.getByLabel("Email").fill("nobody@waymark.test");
  await page.getByLabel("Password").fill("not the password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("alert")).toContainText("do not match an active user");
  await page.screenshot({ path: path.join("screenshots", "22-sign-in-refused.png"), fullPage: true });
  await context.close();
});

test("an admin creates and revokes an API token, and acknowledges a warning marketers then see", async ({ page, request }) => {
  await open(page, "/admin/tokens");
  await page.getByLabel("Name").fill("Warehouse sync");
  await page.getByLabel("Scope").selectOption("write");
  await page.getByRole("button", { name: "Create token" }).click();
  const secret = await page.locator("[data-secret]").getAttribute("data-secret");
  expect(secret).toMatch(/^wm_/);
  const withToken = await request.get("/api/v1/flows", { headers: { Authorization: `Bearer ${secret}` } });
  expect(withToken.status()).toBe(200);
  const row = page.locator('tr[data-token="Warehouse sync"]');
  await row.getByRole("button", { name: "Revoke" }).click();
  await expect(row).toContainText("revoked");
  const revoked = await request.get("/api/v1/flows", { headers: { Authorization: `Bearer ${secret}` } });
  expect(revoked.status()).toBe(401);

  const doc = {
    format: "waymark.flow/v1",
    name: "Long text e2e",
    steps: [
      { id: "start", kind: "start" },
      { id: "text", kind: "send_sms", settings: { text: "x".repeat(200) } },
      { id: "done", kind: "exit" },
    ],
    edges: [
      { from: "start", port: "next", to: "text" },
      { from: "text", port: "next", to: "done" },
    ],
  };
  const flowId = (await (await request.post("/api/v1/flows", { data: { document: doc } })).json()).id;
  await open(page, `/review?flow=${flowId}`);
  const warning = page.locator('tr.warning[data-code="sms_multi_segment"]');
  await warning.getByPlaceholder("Why this is acceptable").fill("Two segments are fine for this offer.");
  await warning.getByRole("button", { name: "Acknowledge" }).click();
  await expect(warning).toContainText("Acknowledged by admin@waymark.test");
  await page.screenshot({ path: path.join("screenshots", "23-review-ack.png"), fullPage: true });
  await open(page, `/flows/${flowId}`);
  await expect(page.locator(".findings .ack")).toContainText("Two segments are fine for this offer.");
});

test("an admin sets up SMTP on the integrations page; the password is never shown again", async ({ page, request }) => {
  await open(page, "/admin/integrations");
  const form = page.locator('form[data-channel="smtp"]');
  await form.getByLabel("Host", { exact: true }).fill("smtp.example.test");
  await form.getByLabel("Port", { exact: true }).fill("2525");
  await form.getByLabel("Security").selectOption("none");
  await form.getByLabel("User name", { exact: true }).fill("mailer");
  await form.locator("input[name=password]").fill("hunter2-secret");
  await form.getByLabel("From", { exact: true }).fill("Waymark <news@example.test>");
  await form.getByRole("button", { name: "Save SMTP" }).click();
  await expect(page.getByRole("status")).toHaveText("Saved.");
  await expect(form.getByLabel("Password (stored; empty keeps it)")).toBeVisible();

  const stored = await (await request.get("/api/v1/settings/integrations")).json();
  expect(stored.smtp).toMatchObject({ host: "smtp.example.test", port: 2525, tls: "none", username: "mailer", password_set: true });
  expect(JSON.stringify(stored)).not.toContain("hunter2-secret");
  await page.reload();
  expect(await page.content()).not.toContain("hunter2-secret");
  await expect(page.locator('form[data-channel="smtp"]').getByLabel("Host", { exact: true })).toHaveValue("smtp.example.test");

  // Another channel, as JSON: a mistake is explained and nothing is saved.
  const sms = page.locator('details[data-channel="sms"]');
  await sms.locator("summary").click();
  await sms.getByLabel("Settings (JSON)").fill('{"base_url": "http://127.0.0.1:9/"');
  await sms.getByRole("button", { name: "Save SMS" }).click();
  await expect(page.getByRole("alert")).toContainText("not JSON");
  await page.screenshot({ path: path.join("screenshots", "24-integrations.png"), fullPage: true });
  expect((await (await request.get("/api/v1/settings/integrations")).json()).sms).toBeNull();
});
