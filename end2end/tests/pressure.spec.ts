import { test, expect, Page, Browser } from "./support";
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";

// The contact-pressure settings page (admins): caps and quiet hours for the
// whole installation, saved, refused with the core's problems, and closed
// to marketers.

async function open(page: Page, url: string) {
  await page.goto(url);
  await expect(page.locator(".app[data-hydrated=true]")).toBeVisible();
}

const policy = {
  caps: [{ channel: "email", max: 2, per: { amount: 7, unit: "days" } }],
  quiet_hours: { channels: ["sms", "call"], from: "21:00", to: "08:00" },
};

test("an admin caps email and quiets texts and calls overnight, and finds both kept", async ({ page, request }) => {
  expect((await request.put("/api/v1/settings/pressure", { data: {} })).status()).toBe(200);
  await open(page, "/admin/pressure");
  await expect(page.getByRole("heading", { name: "Contact pressure" })).toBeVisible();
  await expect(page.locator("header nav").getByRole("link", { name: "Contact pressure" })).toHaveAttribute("aria-current", "page");
  const form = page.locator('form[data-form="pressure"]');
  await expect(form.getByText("No caps")).toBeVisible();
  await expect(form.locator(".changed")).toContainText("Last changed");
  await expect(page.getByRole("complementary")).toContainText("Transactional flows are exempt");
  await expect(form.locator("fieldset.quiet").getByLabel("From", { exact: true })).toBeDisabled();
  fs.mkdirSync("/tmp/shots", { recursive: true });
  await page.screenshot({ path: "/tmp/shots/pressure-empty.png", fullPage: true });

  // From the keyboard: the new row's channel takes the focus.
  await form.getByRole("button", { name: "Add a cap" }).focus();
  await page.keyboard.press("Enter");
  const cap = form.locator("li.cap-row").first();
  await expect(cap.getByLabel("Channel")).toBeFocused();
  await cap.getByLabel("Channel").selectOption("email");
  await cap.getByLabel("At most").fill("2");
  await cap.getByLabel("Per", { exact: true }).fill("7");
  await cap.getByLabel("Window unit").selectOption("days");
  // A second row, removed again: the focus goes back to "Add a cap".
  await form.getByRole("button", { name: "Add a cap" }).click();
  await expect(form.locator("li.cap-row")).toHaveCount(2);
  await expect(form.locator("li.cap-row").nth(1).getByLabel("Channel")).toHaveValue("sms");
  await form.getByRole("button", { name: "Remove cap 2" }).click();
  await expect(form.locator("li.cap-row")).toHaveCount(1);
  await expect(form.getByRole("button", { name: "Add a cap" })).toBeFocused();

  const quiet = form.locator("fieldset.quiet");
  await quiet.getByLabel("Hold messages during quiet hours").check();
  await quiet.getByLabel("SMS", { exact: true }).check();
  await quiet.getByLabel("Automatic calls").check();
  await quiet.getByLabel("Email", { exact: true }).uncheck();
  await quiet.getByLabel("From", { exact: true }).fill("21:00");
  await quiet.getByLabel("To", { exact: true }).fill("08:00");
  await expect(page.getByRole("status")).toHaveText("Unsaved changes.");
  await form.getByRole("button", { name: "Save policy" }).click();
  await expect(page.getByRole("status")).toHaveText("Saved. It applies from the next send.");
  await expect(form.locator(".changed")).toContainText("by admin@waymark.test");
  expect(await (await request.get("/api/v1/settings/pressure")).json()).toEqual(policy);

  await open(page, "/admin/pressure");
  const kept = page.locator('form[data-form="pressure"] li.cap-row');
  await expect(kept).toHaveCount(1);
  await expect(kept.getByLabel("Channel")).toHaveValue("email");
  await expect(kept.getByLabel("At most")).toHaveValue("2");
  await expect(kept.getByLabel("Per", { exact: true })).toHaveValue("7");
  await expect(kept.getByLabel("Window unit")).toHaveValue("days");
  const quietKept = page.locator("fieldset.quiet");
  await expect(quietKept.getByLabel("Hold messages during quiet hours")).toBeChecked();
  await expect(quietKept.getByLabel("SMS", { exact: true })).toBeChecked();
  await expect(quietKept.getByLabel("Automatic calls")).toBeChecked();
  await expect(quietKept.getByLabel("Email", { exact: true })).not.toBeChecked();
  await expect(quietKept.getByLabel("From", { exact: true })).toHaveValue("21:00");
  await expect(quietKept.getByLabel("To", { exact: true })).toHaveValue("08:00");
  await expect(page.getByRole("status")).toHaveText("");
  await page.screenshot({ path: "/tmp/shots/pressure.png", fullPage: true });
  await page.screenshot({ path: path.join("screenshots", "pressure.png"), fullPage: true });
  // A laptop's width: every link of the navigation still shows, whole.
  await page.setViewportSize({ width: 1280, height: 800 });
  for (const link of await page.locator("header nav a").all()) {
    await expect(link).toBeInViewport({ ratio: 1 });
  }
  await page.screenshot({ path: "/tmp/shots/pressure-1280.png" });
});

test("a cap of 0 is refused with the core's words, and the stored policy stays", async ({ page, request }) => {
  expect((await request.put("/api/v1/settings/pressure", { data: policy })).status()).toBe(200);
  await open(page, "/admin/pressure");
  const form = page.locator('form[data-form="pressure"]');
  const cap = form.locator("li.cap-row").first();
  await cap.getByLabel("At most").fill("0");
  await form.getByRole("button", { name: "Save policy" }).click();
  const alert = form.getByRole("alert");
  await expect(alert).toContainText("The policy was not saved.");
  await expect(alert).toContainText("Cap 1: a cap of 0 would never send");
  await expect(alert).toBeFocused();
  await expect(cap.getByLabel("At most")).toHaveAttribute("aria-invalid", "true");
  await expect(cap.locator(".field-error")).toContainText("a cap of 0 would never send");
  await expect(page.getByRole("status")).toHaveText("Unsaved changes.");
  await page.screenshot({ path: "/tmp/shots/pressure-refused.png", fullPage: true });
  expect(await (await request.get("/api/v1/settings/pressure")).json()).toEqual(policy);

  // Both problems of two mistakes, each in words.
  await cap.getByLabel("Per", { exact: true }).fill("100");
  await form.locator("fieldset.quiet").getByLabel("To", { exact: true }).fill("21:00");
  await form.getByRole("button", { name: "Save policy" }).click();
  await expect(alert.locator("li")).toHaveCount(3);
  await expect(alert).toContainText("Cap 1: a window from a minute to 90 days");
  await expect(alert).toContainText("Quiet hours: from and to are the same time");

  await open(page, "/admin/pressure");
  await expect(page.locator("li.cap-row").first().getByLabel("At most")).toHaveValue("2");
});

function addUser(email: string, role: string, password: string) {
  execFileSync(process.env.WAYMARK_E2E_BIN!, ["--database-url", process.env.WAYMARK_E2E_DB!, "user", "add", "--email", email, "--role", role], {
    env: { ...process.env, WAYMARK_PASSWORD: password },
  });
}

async function signedInAs(browser: Browser, email: string, password: string) {
  const context = await browser.newContext({ storageState: { cookies: [], origins: [] } });
  const page = await context.newPage();
  await open(page, "/login");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(/\/$/);
  return page;
}

test("a marketer has no way to the policy", async ({ browser }) => {
  addUser("mark.pressure@waymark.test", "marketer", "mark's long password");
  const page = await signedInAs(browser, "mark.pressure@waymark.test", "mark's long password");
  await expect(page.locator(".app[data-hydrated=true]")).toBeVisible();
  await expect(page.locator("header nav").getByRole("link", { name: "Flows" })).toBeVisible();
  await expect(page.locator("header nav").getByRole("link", { name: "Contact pressure" })).toHaveCount(0);
  const refused = await page.goto("/admin/pressure");
  expect(refused!.status()).toBe(403);
  await expect(page.getByText("Your role (marketer) may not do this.")).toBeVisible();
  expect((await page.request.get("/api/v1/settings/pressure")).status()).toBe(403);
  expect((await page.request.put("/api/v1/settings/pressure", { data: {} })).status()).toBe(403);
  await page.context().close();
});
