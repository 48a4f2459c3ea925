import { test, expect, Page, publishLinearFlow } from "./support";
import * as fs from "fs";
import * as path from "path";

async function open(page: Page, url: string) {
  await page.goto(url);
  await expect(page.locator(".app[data-hydrated=true]")).toBeVisible();
}

test("a marketer searches participants, previews a bulk pause, applies it, watches it finish and undoes it", async ({ page, request }) => {
  const flowId = await publishLinearFlow(request, "Bulk e2e", { id: "call", kind: "call", name: "Intro call", settings: { owner: "user:agent-1" } });
  const ids: number[] = [];
  for (const [i, region] of ["north", "south", "north"].entries()) {
    const contact = await request.post("/api/v1/contacts", {
      data: { email: `bulk${i}@example.com`, mobile: `+1555010${i}00`, fields: { region } },
    });
    ids.push((await contact.json()).id);
  }
  await request.post(`/api/v1/flows/${flowId}/enroll`, { data: { contact_ids: ids } });
  // the scheduler brings all three to the call
  await expect
    .poll(async () => {
      const counts = await (await request.get(`/api/v1/flows/${flowId}/participants/counts`)).json();
      return counts.filter((c: any) => c.step === "call" && c.status === "waiting").map((c: any) => c.count)[0] ?? 0;
    }, { timeout: 10_000 })
    .toBe(3);

  // search: the flow's participants whose region is north
  await open(page, `/participants?flow=${flowId}&field=region&value=north`);
  await expect(page.locator("p.summary")).toContainText("2 participant(s) match");
  await expect(page.locator("table.participant-results tbody tr")).toHaveCount(2);

  // export: the same search as CSV, downloaded from the page's button
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("link", { name: "Export CSV" }).click()]);
  expect(download.suggestedFilename()).toBe("participants.csv");
  const csv = fs.readFileSync(await download.path(), "utf8").trim().split("\n");
  expect(csv[0]).toBe("participant_id,flow_id,flow,version,status,step,pass_count,next_run_at,reserved_for,callback_at,contact_id,email,mobile,timezone,owner");
  expect(csv).toHaveLength(3);
  expect(csv.slice(1).map((row) => row.split(",")[11]).sort()).toEqual(["bulk0@example.com", "bulk2@example.com"]);

  // preview: the effect in words, the count and the sample, before anything changes
  await page.getByLabel("Action").selectOption("pause");
  await page.getByRole("button", { name: "Preview" }).click();
  const preview = page.locator(".preview");
  await expect(preview).toContainText("status paused");
  await expect(preview).toContainText("2 participant(s)");
  await expect(preview).toContainText("can be undone");
  await expect(preview.locator("table.sample tbody tr")).toHaveCount(2);

  // apply: a background run whose progress is shown until it is done
  await preview.getByRole("button", { name: "Apply to 2 participant(s)" }).click();
  const progress = page.locator(".progress-box");
  await expect(progress).toHaveAttribute("data-status", "done");
  await expect(progress).toContainText("2 of 2 processed, 2 changed");
  // the table shows what the run changed
  await expect(page.locator('table.participant-results tr[data-status="paused"]')).toHaveCount(2);
  await page.screenshot({ path: path.join("screenshots", "08-bulk-action.png"), fullPage: true });

  // the job page: audit, and undo for a reversible run
  await progress.getByRole("link", { name: "Open the job page" }).click();
  await expect(page.locator("h1")).toContainText("Bulk run");
  await expect(page.locator("table.run-audit")).toContainText("2 chosen, 2 processed, 2 changed");
  await expect(page.locator(".app[data-hydrated=true]")).toBeVisible();
  await page.getByRole("button", { name: "Undo this run" }).click();
  await expect(page.locator(".notice[role=status]")).toContainText("2 participant(s) went back");
  const counts = await (await request.get(`/api/v1/flows/${flowId}/participants/counts`)).json();
  expect(counts.filter((c: any) => c.status === "paused")).toHaveLength(0);
  await page.screenshot({ path: path.join("screenshots", "09-bulk-run-undone.png"), fullPage: true });
});

test("contacts: list, search, create, and the contact page with its flows", async ({ page, request }) => {
  await request.post("/api/v1/contacts", { data: { email: "lin@example.com", fields: { first_name: "Lin", company: "Acme" }, lists: ["Webinar"] } });
  await request.post("/api/v1/contacts", { data: { email: "zhang@example.com", fields: { first_name: "Linus" } } });
  // by how the email or the name starts
  await open(page, "/contacts?q=lin");
  await expect(page.locator("table.contacts tbody tr")).toHaveCount(2);
  await open(page, "/contacts?q=lin%40");
  await expect(page.locator("table.contacts tbody tr")).toHaveCount(1);
  await page.getByRole("link", { name: "lin@example.com" }).click();
  await expect(page.locator("h1")).toHaveText("lin@example.com");
  await expect(page.locator("ul.lists")).toContainText("Webinar");

  await open(page, "/contacts/new");
  await page.getByLabel("Email").fill("new.person@example.com");
  await page.getByLabel("Custom fields").fill("company = Globex");
  await page.getByLabel("Lists").fill("Trial");
  await page.getByRole("button", { name: "Save contact" }).click();
  await expect(page.locator("h1")).toHaveText("new.person@example.com");
  await expect(page.locator("table.fields")).toContainText("Globex");
  await page.screenshot({ path: path.join("screenshots", "10-contact.png"), fullPage: true });
});

test("contacts: a CSV import runs in the background, its progress and refused rows shown", async ({ page }) => {
  await open(page, "/contacts/import");
  await page.getByLabel("CSV file").setInputFiles({
    name: "people.csv",
    mimeType: "text/csv",
    buffer: Buffer.from("Mail,Company\nimp1@example.com,=HYPERLINK(1)\nimp2@example.com,Initech\nnot-an-email,X\n"),
  });
  await page.getByLabel("Column mapping").fill("Mail = email");
  await page.getByLabel("Add everyone to the list").fill("Imported");
  await page.getByRole("button", { name: "Import" }).click();
  const progress = page.locator(".import-progress");
  await expect(progress).toHaveAttribute("data-status", "done");
  await expect(progress).toContainText("3 row(s) read: 2 created, 0 updated, 0 skipped, 1 refused");
  await expect(progress.locator("table.import-errors")).toContainText("not an email");
  await expect(progress.locator("table.import-errors td").first()).toHaveText("4");
  // the past imports: when, who, which file, the counts and the refused rows' report
  const past = page.locator("table.past-imports tbody tr").first();
  await expect(past).toHaveAttribute("data-status", "done");
  await expect(past).toContainText("people.csv");
  await expect(past).toContainText("admin@waymark.test");
  await expect(past.locator("td").nth(4)).toHaveText("3");
  await expect(past.locator("td").nth(8)).toHaveText("1");
  await expect(past.getByRole("link", { name: "Refused rows (CSV)" })).toHaveAttribute("href", /\/api\/v1\/contacts\/imports\/\d+\/errors\.csv$/);
  await page.screenshot({ path: path.join("screenshots", "11-contact-import.png"), fullPage: true });
  await open(page, "/contacts?list=Imported");
  await expect(page.locator("table.contacts tbody tr")).toHaveCount(2);
});
