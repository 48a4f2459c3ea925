import { test, expect, Page, Locator } from "./support";
import { spawn, ChildProcess } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

// The engagement loop in a browser: an admin sets up DKIM and reads the
// record to publish; a flow emails a contact through a real SMTP server
// (aiosmtpd); the recipient's mail client loads the pixel and follows a
// link; the recipient opens the unsubscribe link in a browser of their own
// (no session), unsubscribes and chooses per channel; the marketer sees
// each step on the contact's and the participant's message list.

const FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

async function open(page: Page, url: string) {
  await page.goto(url);
  await expect(page.locator(".app[data-hydrated=true]")).toBeVisible();
}

/// Screenshots for people to look at: beside the other specs' (screenshots/),
/// and under /tmp/shots when that can be written.
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

let sink: ChildProcess;
let sinkDir: string;
let sinkPort: number;

test.beforeAll(async () => {
  sinkDir = fs.mkdtempSync(path.join(os.tmpdir(), "waymark-e2e-mail-"));
  sink = spawn("python3", [path.resolve(__dirname, "../../server/tests/support/smtp_sink.py"), sinkDir], { stdio: ["pipe", "pipe", "inherit"] });
  sinkPort = await new Promise<number>((resolve, reject) => {
    sink.stdout!.on("data", (chunk) => {
      const ready = /ready (\d+)/.exec(chunk.toString());
      if (ready) resolve(Number(ready[1]));
    });
    sink.on("exit", (code) => reject(new Error(`the SMTP sink exited (${code}); is aiosmtpd installed?`)));
  });
});

test.afterAll(() => {
  sink?.stdin?.end();
  sink?.kill();
});

// The e2e server is shared by every spec: leave no SMTP server configured,
// as the others expect (runtime.spec fails a send for want of one).
test.afterEach(async ({ request }) => {
  await request.put("/api/v1/settings/integrations", { data: { smtp: null } });
});

/// The message the SMTP server received for `to`, once it is there.
async function mailTo(to: string): Promise<any> {
  const find = () =>
    fs
      .readdirSync(sinkDir)
      .filter((f) => f.endsWith(".json"))
      .map((f) => JSON.parse(fs.readFileSync(path.join(sinkDir, f), "utf8")))
      .find((m) => m.rcpt_tos.includes(to));
  await expect.poll(() => find() !== undefined, { timeout: 20_000 }).toBe(true);
  return find();
}

test("a recipient unsubscribes from an email and chooses per channel; the marketer sees it on the message list", async ({ page, request, browser, baseURL }) => {
  const run = Date.now();
  // The sender: SMTP to the local server; clicks are a person's even right after sending.
  const saved = await request.put("/api/v1/settings/integrations", {
    data: { smtp: { host: "127.0.0.1", port: sinkPort, tls: "none", from: "Shop <news@shop.test>" }, tracking: { scanner_secs: 0 } },
  });
  expect(saved.status()).toBe(200);

  // DKIM on the integrations page: domain and selector, a generated key, the record to publish.
  await open(page, "/admin/integrations");
  const dkim = page.locator("form.dkim");
  await dkim.getByLabel("Domain").fill("shop.test");
  await dkim.getByLabel("Selector").fill("s2026");
  await dkim.getByRole("button", { name: "Save DKIM" }).click();
  const generate = page.locator("form.generate-key");
  await expect(generate).toBeVisible();
  await generate.getByLabel("Key type").selectOption("ed25519-sha256");
  await generate.getByRole("button", { name: /Generate a (new )?key/ }).click();
  const record = page.locator('.dns-record[data-record="dkim"]');
  await expect(record.locator("code.name")).toHaveText("s2026._domainkey.shop.test");
  await expect(record.locator("code.value")).toHaveText(/^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$/);
  await expect(dkim.getByLabel(/Private key \(stored; empty keeps it\)/)).toHaveValue("");
  await shot(page.locator("form.dkim").locator(".."), "30-dkim-record");

  // A flow that emails, then waits for an open and a click.
  const wait = (until: object) => ({ until: [until], timeout: { amount: 3, unit: "days" } });
  const body =
    '<h1>Hello {{ first_name }}</h1><p><a href="https://shop.test/sale">The sale</a> · <a href="mailto:help@shop.test">Write to us</a></p>' +
    '<p><a href="{{ unsubscribe_url }}">Unsubscribe or choose what you get</a></p>';
  const created = await request.post("/api/v1/flows", {
    data: {
      document: {
        format: "waymark.flow/v1",
        name: `Preferences e2e ${run}`,
        steps: [
          { id: "start", kind: "start" },
          { id: "e1", kind: "send_email", settings: { subject: "Our sale, {{ first_name }}", body } },
          { id: "opened", kind: "wait_until", settings: wait({ event: "email_opened", step: "e1" }) },
          { id: "clicked", kind: "wait_until", settings: wait({ event: "link_clicked", step: "e1" }) },
          { id: "done", kind: "exit" },
        ],
        edges: [
          { from: "start", port: "next", to: "e1" },
          { from: "e1", port: "next", to: "opened" },
          { from: "opened", port: "met", to: "clicked" },
          { from: "opened", port: "timed_out", to: "done" },
          { from: "clicked", port: "met", to: "done" },
          { from: "clicked", port: "timed_out", to: "done" },
        ],
      },
    },
  });
  expect(created.status()).toBe(201);
  const flowId = (await created.json()).id;
  expect((await request.post(`/api/v1/flows/${flowId}/publish`)).status()).toBe(201);
  const contact = await request.post("/api/v1/contacts", { data: { email: `ada.${run}@example.test`, fields: { first_name: "Ada" } } });
  expect(contact.status()).toBe(201);
  const contactId = (await contact.json()).id;
  const enrolled = await (await request.post(`/api/v1/flows/${flowId}/enroll`, { data: { contact_ids: [contactId] } })).json();
  const participantId = enrolled.enrolled[0];

  // The email, as it arrived: List-Unsubscribe (https and mailto, one-click) and signed.
  const message = await mailTo(`ada.${run}@example.test`);
  expect(message.headers["list-unsubscribe-post"]).toBe("List-Unsubscribe=One-Click");
  const [https, mailto] = message.headers["list-unsubscribe"].split(",").map((p: string) => p.trim().replace(/^<|>$/g, ""));
  expect(https).toMatch(new RegExp(`^${baseURL}/u/[0-9a-f]{50}$`));
  expect(mailto).toMatch(/^mailto:unsubscribe\+[0-9a-f]{50}@shop\.test\?subject=unsubscribe$/);
  expect(message.headers["dkim-signature"]).toContain("a=ed25519-sha256");
  const html: string = message.parts.find((p: any) => p.content_type === "text/html").text;
  const pixel = /<img src="([^"]+\/t\/o\/[0-9a-f]+)"/.exec(html)![1];
  const link = /href="([^"]+\/t\/c\/[0-9a-f]+)"/.exec(html)![1];
  expect(html).toContain(`href="${https}"`);

  // The recipient's mail client: images, then the link.
  const gif = await request.get(pixel, { headers: { "user-agent": FIREFOX } });
  expect(gif.status()).toBe(200);
  expect(gif.headers()["content-type"]).toBe("image/gif");
  const click = await request.get(link, { headers: { "user-agent": FIREFOX }, maxRedirects: 0 });
  expect(click.status()).toBe(302);
  expect(click.headers()["location"]).toBe("https://shop.test/sale");

  // The recipient, in a browser of their own: no session, no cookies set.
  const own = await browser.newContext({ baseURL, storageState: { cookies: [], origins: [] }, extraHTTPHeaders: {} });
  const recipient = await own.newPage();
  const response = await recipient.goto(https);
  expect(response!.status()).toBe(200);
  expect(response!.headers()["content-security-policy"]).toContain("default-src 'none'");
  await expect(recipient.getByRole("heading", { name: "Your preferences" })).toBeVisible();
  await expect(recipient.locator("p.meta")).toContainText("ad•••@example.test");
  await expect(recipient.locator("p.meta")).not.toContainText(`ada.${run}`);
  await expect(recipient.locator("script")).toHaveCount(0);
  for (const channel of ["Email", "Text messages (SMS)", "Phone calls"]) {
    await expect(recipient.getByLabel(channel)).toBeChecked();
  }
  await shot(recipient, "31-preferences");

  await recipient.getByRole("button", { name: "Unsubscribe", exact: true }).click();
  await expect(recipient.getByRole("status")).toHaveText("You are unsubscribed from these emails.");
  await expect(recipient.getByLabel("Email")).not.toBeChecked();
  await expect(recipient.getByRole("button", { name: "Unsubscribe", exact: true })).toHaveCount(0);
  await recipient.getByLabel("Text messages (SMS)").uncheck();
  await recipient.getByRole("button", { name: "Save preferences" }).click();
  await expect(recipient.getByRole("status")).toHaveText("Your preferences are saved.");
  await expect(recipient.getByLabel("Text messages (SMS)")).not.toBeChecked();
  await expect(recipient.getByLabel("Phone calls")).toBeChecked();
  await shot(recipient, "32-preferences-saved");
  expect(await own.cookies()).toEqual([]);
  await own.close();

  const stored = await (await request.get(`/api/v1/contacts/${contactId}`)).json();
  expect([...(stored.opted_out ?? stored.contact?.opted_out ?? [])].sort()).toEqual(["email", "sms"]);

  // The marketer: the message with its sent, opened, clicked and unsubscribed times.
  await expect
    .poll(async () => (await (await request.get(`/api/v1/participants/${participantId}/conversations`)).json()).conversations[0], { timeout: 10_000 })
    .toMatchObject({ step: "e1", opens: 1, clicks: 1, tracked: true });
  await open(page, `/contacts/${contactId}`);
  const row = page.locator("table.conversations tr.conversation").first();
  await expect(row).toContainText("Our sale, Ada");
  for (const at of ["sent", "opened", "clicked", "unsubscribed"]) {
    await expect(row.locator(`td[data-at="${at}"]`)).toHaveText(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}/);
  }
  await expect(row.locator('td[data-at="replied"]')).toHaveText("—");
  await row.locator("details.links summary").click();
  await expect(row.locator("details.links li")).toContainText("https://shop.test/sale 1 click(s)");
  await shot(page.locator("table.conversations"), "33-contact-conversations");

  await expect
    .poll(async () => (await (await request.get(`/api/v1/participants/${participantId}`)).json()).status, { timeout: 15_000 })
    .toBe("completed");
  await open(page, `/participants/${participantId}`);
  await expect(page.locator("table.conversations tr.conversation")).toHaveCount(1);
  await expect(page.locator("table.events")).toContainText("opened e1");
  await shot(page, "34-participant-messages");
});
