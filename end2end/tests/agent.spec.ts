import { test, expect, Page, Browser, publishLinearFlow, request as requests } from "./support";
import { execFileSync, spawn, ChildProcess } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as http from "http";
import * as os from "os";
import * as path from "path";

// An agent's day in the workspace, against real components: the edited
// email reaches a local SMTP server (aiosmtpd), the call and the text go to
// a local Twilio-compatible server started here, and the call's progress
// comes back as the provider's signed status reports.

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
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(/\/inbox$/);
  return page;
}

/// Twilio's request signature: HMAC-SHA1 over the URL and the sorted fields, base64.
function signature(token: string, url: string, fields: [string, string][]) {
  const sorted = [...fields].sort((a, b) => (a[0] === b[0] ? (a[1] < b[1] ? -1 : 1) : a[0] < b[0] ? -1 : 1));
  const mac = crypto.createHmac("sha1", token);
  mac.update(url);
  for (const [k, v] of sorted) mac.update(k + v);
  return mac.digest("base64");
}

type Arrival = { path: string; form: URLSearchParams };
let sink: ChildProcess;
let sinkDir: string;
let sinkPort: number;
let provider: http.Server;
let providerPort: number;
const arrivals: Arrival[] = [];

test.beforeAll(async () => {
  sinkDir = fs.mkdtempSync(path.join(os.tmpdir(), "waymark-e2e-agent-mail-"));
  sink = spawn("python3", [path.resolve(__dirname, "../../server/tests/support/smtp_sink.py"), sinkDir], { stdio: ["pipe", "pipe", "inherit"] });
  sinkPort = await new Promise<number>((resolve, reject) => {
    sink.stdout!.on("data", (chunk) => {
      const ready = /ready (\d+)/.exec(chunk.toString());
      if (ready) resolve(Number(ready[1]));
    });
    sink.on("exit", (code) => reject(new Error(`the SMTP sink exited (${code}); is aiosmtpd installed?`)));
  });
  // The Twilio-compatible provider: records each request, accepts it with a sid.
  provider = http.createServer((req, res) => {
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      arrivals.push({ path: req.url ?? "", form: new URLSearchParams(body) });
      const n = String(arrivals.length).padStart(32, "0");
      const sid = (req.url ?? "").endsWith("/Calls.json") ? `CA${n}` : `SM${n}`;
      res.writeHead(201, { "content-type": "application/json" });
      res.end(JSON.stringify({ sid, status: "queued" }));
    });
  });
  providerPort = await new Promise<number>((resolve) => provider.listen(0, "127.0.0.1", () => resolve((provider.address() as any).port)));
});

test.afterAll(() => {
  sink?.stdin?.end();
  sink?.kill();
  provider?.close();
});

// The e2e server is shared by every spec: leave no channel configured.
test.afterEach(async ({ request }) => {
  await request.put("/api/v1/settings/integrations", { data: { smtp: null, sms: null } });
});

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

test("an agent works the day: edits and sends the email, places the call, picks a disposition, texts a contact, empties the queue", async ({
  browser,
  request,
  baseURL,
}) => {
  const run = Date.now();
  const agent = `agent-${run}@waymark.test`;
  addUser(agent, "agent", "the agent's long password");
  const callback = `${baseURL}/api/v1/channels/calls/status`;
  const saved = await request.put("/api/v1/settings/integrations", {
    data: {
      smtp: { host: "127.0.0.1", port: sinkPort, tls: "none", from: "Sales <sales@waymark.test>" },
      sms: {
        base_url: `http://127.0.0.1:${providerPort}`,
        account_sid: "AC123",
        token: "tok",
        senders: ["+12125550100"],
        voice: { status_callback: callback, ring_secs: 20 },
      },
    },
  });
  expect(saved.status()).toBe(200);

  const flowId = await publishLinearFlow(request, `Agent day e2e ${run}`, {
    id: "mail",
    kind: "send_email",
    name: "Intro email",
    settings: { activation: "manual", subject: "Hello {{first_name}}", body: "<p>Template body for {{first_name}}</p>", cc: "manager@example.com" },
  });
  // The call is its own flow: the contact reaches it at once.
  const callFlowId = await publishLinearFlow(request, `Agent calls e2e ${run}`, {
    id: "ring",
    kind: "call",
    name: "Intro call",
    settings: { script: "Ask {{first_name}} about the pilot", dispositions: { Interested: "", "Not now": "" } },
  });
  const mailContact = (await (await request.post("/api/v1/contacts", {
    data: { email: `ada-${run}@example.com`, owner: agent, fields: { first_name: "Ada" } },
  })).json()).id;
  const callContact = (await (await request.post("/api/v1/contacts", {
    data: { email: `bo-${run}@example.com`, mobile: "+14155551234", owner: agent, timezone: "America/New_York", fields: { first_name: "Bo" } },
  })).json()).id;
  const mailP = (await (await request.post(`/api/v1/flows/${flowId}/enroll`, { data: { contact_ids: [mailContact] } })).json()).enrolled[0];
  const callP = (await (await request.post(`/api/v1/flows/${callFlowId}/enroll`, { data: { contact_ids: [callContact] } })).json()).enrolled[0];
  for (const [p, step] of [[mailP, "mail"], [callP, "ring"]]) {
    await expect
      .poll(async () => (await (await request.get(`/api/v1/participants/${p}`)).json()).step, { timeout: 10_000 })
      .toBe(step);
  }

  // Sign in as the agent and start the day.
  const page = await signedInAs(browser, agent, "the agent's long password");
  await page.getByRole("link", { name: "Start my day" }).click();
  await expect(page.locator(".app[data-hydrated=true]")).toBeVisible();
  await expect(page.locator("p.left")).toHaveText("2 left");
  const phone = page.locator("form.phone");
  await phone.getByLabel("Your phone").fill("+12125550199");
  await phone.getByRole("button", { name: "Save" }).click();
  await expect(phone.locator(".saved")).toBeVisible();

  let previous = "";
  for (let round = 0; round < 2; round++) {
    const work = page.locator("div.work");
    await expect(work).toBeVisible();
    // The task just closed may stay on screen a moment while the next one loads.
    if (previous) await expect(work).not.toHaveAttribute("data-participant", previous);
    previous = (await work.getAttribute("data-participant"))!;
    const kind = await work.getAttribute("data-kind");
    if (kind === "send_email") {
      // The composer opens prefilled from the step; the agent edits it.
      const composer = page.locator("form.composer");
      await expect(composer.getByLabel("Subject")).toHaveValue("Hello Ada");
      await expect(composer.getByLabel("Cc", { exact: true })).toHaveValue("manager@example.com");
      const editor = composer.getByRole("textbox", { name: "Body" });
      await expect(editor.locator("p")).toHaveText("Template body for Ada");
      await composer.getByLabel("Subject").fill("Ada, the pilot plan you asked for");
      await composer.getByLabel("Cc", { exact: true }).fill("partner@example.com");
      // The body is rewritten in the rich-text editor, from the keyboard and the toolbar.
      await editor.click();
      await page.keyboard.press("ControlOrMeta+A");
      await page.keyboard.type("Hi Ada, here is the ");
      await page.keyboard.press("Control+B");
      await page.keyboard.type("pilot plan");
      await page.keyboard.press("Control+B");
      await page.keyboard.type(" and ");
      await page.keyboard.press("Control+I");
      await page.keyboard.type("soon");
      await page.keyboard.press("Control+I");
      await page.keyboard.press("Enter");
      await composer.getByRole("button", { name: "Bulleted list" }).click();
      await page.keyboard.type("read the plan");
      await page.keyboard.press("Shift+Home");
      page.once("dialog", (dialog) => dialog.accept("https://example.com/plan"));
      await composer.getByRole("button", { name: "Link the selected words" }).click();
      await page.keyboard.press("End");
      // Typing letters that are shortcuts elsewhere on the page (s sends) only types them.
      await page.keyboard.press("Enter");
      await page.keyboard.type("ask questions");
      await expect(editor.locator("b")).toHaveText("pilot plan");
      await expect(editor.locator("i")).toHaveText("soon");
      await expect(editor.locator("ul li")).toHaveCount(2);
      await expect(editor.locator("ul li a")).toHaveAttribute("href", "https://example.com/plan");
      // Pasted markup goes in as text: nothing of it runs or renders.
      await editor.evaluate((el) => {
        const data = new DataTransfer();
        data.setData("text/html", '<img src=x onerror="document.title=1">');
        data.setData("text/plain", '<img src=x onerror="document.title=1">');
        el.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
      });
      await expect(editor).toContainText('<img src=x onerror="document.title=1">');
      await expect(editor.locator("img")).toHaveCount(0);
      await expect(composer).toBeVisible();
      await composer.getByRole("button", { name: "Preview" }).click();
      const preview = composer.frameLocator("iframe[title='Email preview']");
      await expect(preview.locator("b")).toHaveText("pilot plan");
      await expect(preview.locator("i")).toHaveText("soon");
      await expect(preview.locator("ul li a")).toHaveAttribute("href", "https://example.com/plan");
      await expect(preview.locator("script, img")).toHaveCount(0);
      await page.screenshot({ path: path.join("screenshots", "40-workspace-composer.png"), fullPage: true });
      await composer.getByRole("button", { name: "Send (s)" }).click();
      const mail = await mailTo(`ada-${run}@example.com`);
      expect(mail.headers.subject).toBe("Ada, the pilot plan you asked for");
      expect(mail.headers.cc).toBe("partner@example.com");
      const html = mail.parts.find((p: any) => p.content_type === "text/html").text;
      expect(html).toContain("<b>pilot plan</b>");
      expect(html).toContain("<i>soon</i>");
      expect(html).toMatch(/<ul>.*read the plan.*ask questions.*<\/ul>/s);
      expect(html).toContain("&lt;img src=x onerror=");
      expect(html).not.toContain("Template body");
      expect(html).not.toContain("<script");
      expect(html).not.toContain("<img src=\"x\"");
    } else {
      expect(kind).toBe("call");
      await expect(work.locator("blockquote.script")).toHaveText("Ask Bo about the pilot");
      // Text the contact first, with the live segment counter.
      await page.keyboard.press("m");
      const sms = page.locator("form.sms");
      await sms.getByLabel("Text", { exact: true }).fill("Hi Bo, calling you in a minute — Ana");
      await expect(sms.locator(".segments")).toContainText("1 segment(s) · Unicode");
      await sms.getByRole("button", { name: "Send text" }).click();
      await expect(sms.getByRole("status")).toContainText("Text to +14155551234 queued (1 segment).");
      // The thread beside the task shows it at once.
      await expect(page.locator('.work-context ol.thread li[data-channel="sms"]')).toContainText("Hi Bo, calling you in a minute");
      await expect.poll(() => arrivals.filter((a) => a.path.endsWith("/Messages.json")).length, { timeout: 20_000 }).toBe(1);
      const text = arrivals.find((a) => a.path.endsWith("/Messages.json"))!;
      expect(text.form.get("To")).toBe("+14155551234");
      expect(text.form.get("Body")).toBe("Hi Bo, calling you in a minute — Ana");

      // Call now: the provider is asked to ring the agent, then bridge the contact.
      await page.locator("#ws-call").click();
      await expect(page.locator("p.call-state").first()).toContainText("Call queued");
      const placed = arrivals.find((a) => a.path.endsWith("/Calls.json"))!;
      expect(placed.form.get("To")).toBe("+12125550199");
      const statusUrl = placed.form.get("StatusCallback")!;
      expect(statusUrl).toBe(`${baseURL}/api/v1/workspace/calls/status`);
      // The contact's leg reports to the same place.
      expect(placed.form.get("Twiml")).toContain(`<Number statusCallback="${statusUrl}" statusCallbackMethod="POST"`);
      expect(placed.form.get("Twiml")).toContain(">+14155551234</Number>");
      const sid = `CA${String(arrivals.indexOf(placed) + 1).padStart(32, "0")}`;
      // The provider's reports carry no session: a context of its own.
      const providerSide = await requests.newContext({ storageState: { cookies: [], origins: [] } });
      const leg: [string, string][] = [["CallSid", "CAcontactleg"], ["ParentCallSid", sid]];
      const reports: [string, [string, string][]][] = [
        ["in-progress", [["CallSid", sid]]],
        ["ringing", leg],
        ["in-progress", leg],
        ["completed", [...leg, ["CallDuration", "80"]]],
        ["completed", [["CallSid", sid], ["CallDuration", "95"]]],
      ];
      for (const [status, extra] of reports) {
        const fields: [string, string][] = [["AccountSid", "AC123"], ...extra, ["CallStatus", status]];
        const reply = await providerSide.post(statusUrl, {
          headers: { "x-twilio-signature": signature("tok", statusUrl, fields), "content-type": "application/x-www-form-urlencoded" },
          data: new URLSearchParams(fields).toString(),
        });
        expect(reply.status()).toBe(200);
      }
      await providerSide.dispose();
      await expect(page.locator("p.call-state").first()).toContainText("Call completed", { timeout: 10_000 });
      await expect(page.locator("p.call-state").first()).toContainText("answered");
      await expect(page.locator("p.call-state").first()).toContainText("95 s");
      await expect(page.locator("p.call-state.contact-leg")).toContainText("Contact completed");
      await expect(page.locator("p.call-state.contact-leg")).toContainText("talked 80 s");
      await expect(page.locator('.work-context ol.thread li[data-channel="call"]')).toContainText("95 s");
      await page.screenshot({ path: path.join("screenshots", "41-workspace-call.png"), fullPage: true });
      const outcome = page.locator("div.outcome");
      await outcome.getByLabel("Disposition").selectOption("Interested");
      await outcome.getByLabel("Notes").fill("Wants the pilot in January");
      await outcome.getByRole("button", { name: "Complete" }).click();
    }
    await expect(page.locator("p.left")).toHaveText(`${1 - round} left`);
  }

  await expect(page.locator("p.queue-empty")).toContainText("Your queue is empty");
  await page.screenshot({ path: path.join("screenshots", "42-workspace-empty.png"), fullPage: true });

  // The steps were completed with their dispositions; the contact's thread has all of it.
  const timeline = await (await request.get(`/api/v1/participants/${callP}/timeline`)).json();
  expect(JSON.stringify(timeline)).toContain("disposition: Interested");
  const admin = await browser.newPage();
  await open(admin, `/contacts/${callContact}`);
  const thread = admin.locator("ol.thread");
  await expect(thread.locator('li[data-channel="call"]')).toContainText("Notes: Wants the pilot in January");
  await expect(thread.locator('li[data-channel="sms"]')).toContainText("Hi Bo, calling you in a minute");
  await admin.close();
});
