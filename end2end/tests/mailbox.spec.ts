import { test, expect, Page, Locator } from "./support";
import * as fs from "fs";
import * as path from "path";

// The "Bounces and replies" settings page: an admin sets up the bounce
// mailbox (the password is write-only), a provider webhook's key, and
// reads how the last poll went.

async function open(page: Page, url: string) {
  await page.goto(url);
  await expect(page.locator(".app[data-hydrated=true]")).toBeVisible();
}

/// Screenshots beside the other specs' and under /tmp/shots when writable.
async function shot(target: Page | Locator, name: string) {
  const page = "goto" in target ? (target as Page) : null;
  const options = page ? { fullPage: true } : {};
  await target.screenshot({ path: path.join("screenshots", `${name}.png`), ...options });
  try {
    fs.mkdirSync("/tmp/shots", { recursive: true });
    await target.screenshot({ path: path.join("/tmp/shots", `${name}.png`), ...options });
  } catch {
    // only a copy
  }
}

test("an admin sets up the bounce mailbox and a provider webhook; secrets stay write-only", async ({ page, request }) => {
  await open(page, "/admin/mailbox");
  await expect(page.getByRole("heading", { name: "Bounces and replies" })).toBeVisible();
  await expect(page.locator(".mailbox-status")).toHaveText("Never read yet.");

  const form = page.locator("form[data-form=mailbox]");
  await form.getByLabel("Read this mailbox").check();
  await form.getByLabel("Host").fill("127.0.0.1");
  await form.getByLabel("Port", { exact: true }).fill("1");
  await form.locator("select[name='mailbox[tls]']").selectOption("none");
  await form.getByLabel("User name").fill("bounces@waymark.test");
  await form.getByLabel("Password", { exact: true }).fill("imap password 1");
  await form.getByLabel("Soft bounces in a row").fill("2");
  await form.getByRole("button", { name: "Save mailbox" }).click();
  await expect(page.locator("[data-saved=mailbox]")).toHaveText("Saved.");
  await expect(form.getByLabel("Password (stored; empty keeps it)")).toHaveValue("");

  // Stored as typed, the password only as a flag.
  const stored = await (await request.get("/api/v1/settings/mailbox")).json();
  expect(stored).toMatchObject({ enabled: true, host: "127.0.0.1", port: 1, tls: "none", soft_bounce_limit: 2, password_set: true });
  expect(JSON.stringify(stored)).not.toContain("imap password 1");

  // Nothing listens on port 1: reading now says why, and the page keeps it.
  await page.getByRole("button", { name: "Read the mailbox now" }).click();
  await expect(page.getByRole("alert").first()).toContainText("cannot connect to 127.0.0.1:1");

  // A refused value names what is wrong and changes nothing.
  await form.getByLabel("Host").fill("imap.example.test");
  await form.getByRole("button", { name: "Save mailbox" }).click();
  await expect(page.getByRole("alert").first()).toContainText("mailbox.tls");
  expect((await (await request.get("/api/v1/settings/mailbox")).json()).host).toBe("127.0.0.1");

  // Mailgun's signing key.
  const mailgun = page.locator("[data-provider=mailgun]");
  await mailgun.getByLabel("HTTP webhook signing key").fill("key-e2e-mailgun");
  await mailgun.getByRole("button", { name: "Save Mailgun" }).click();
  await expect(page.locator("[data-saved=webhooks]")).toHaveText("Saved.");
  await expect(mailgun.locator("h3")).toHaveText("Mailgun set up");
  const hooks = await (await request.get("/api/v1/settings/email-webhooks")).json();
  expect(hooks.mailgun).toMatchObject({ configured: true, signing_key_set: true, webhook_path: "/api/v1/channels/mailgun/events" });
  expect(JSON.stringify(hooks)).not.toContain("key-e2e-mailgun");

  await shot(page, "mailbox-settings");
});
