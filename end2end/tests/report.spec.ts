import { test, expect, Page } from "@playwright/test";
import * as path from "path";

async function open(page: Page, url: string) {
  await page.goto(url);
  await expect(page.locator(".app[data-hydrated=true]")).toBeVisible();
}

test("a flow's report draws the numbers the API gives, with a table and downloads behind each chart", async ({ page, request }) => {
  // start → wait 2 days → exit; a purchase is the goal.
  const flow = await request.post("/api/v1/flows", {
    data: {
      document: {
        format: "waymark.flow/v1",
        name: "Report e2e",
        settings: { goal: { event: { event: "custom", name: "purchase" } } },
        steps: [
          { id: "start", kind: "start", name: "Joined" },
          { id: "wait", kind: "wait", name: "Wait 2 days", settings: { mode: "duration", amount: 2, unit: "days" } },
          { id: "done", kind: "exit", name: "Done" },
        ],
        edges: [
          { from: "start", port: "next", to: "wait" },
          { from: "wait", port: "next", to: "done" },
        ],
      },
    },
  });
  expect(flow.status()).toBe(201);
  const flowId = (await flow.json()).id;
  expect((await request.post(`/api/v1/flows/${flowId}/publish`)).status()).toBe(201);
  const contacts: number[] = [];
  for (let i = 0; i < 6; i++) {
    const made = await request.post("/api/v1/contacts", { data: { email: `report-${i}@example.com` } });
    expect(made.status()).toBe(201);
    contacts.push((await made.json()).id);
  }
  const enrolled = await request.post(`/api/v1/flows/${flowId}/enroll`, { data: { contact_ids: contacts } });
  expect(enrolled.ok()).toBeTruthy();
  // Everyone reaches the wait, then two of them buy (converted).
  await expect
    .poll(async () => (await (await request.get(`/api/v1/flows/${flowId}/report`)).json()).steps.find((s: any) => s.step === "wait").waiting, {
      timeout: 15_000,
    })
    .toBe(6);
  for (const id of contacts.slice(0, 2)) {
    const sent = await request.post("/api/v1/events", { data: { contact: { id }, event: "custom", name: "purchase" } });
    expect(sent.status()).toBe(202);
  }
  await expect
    .poll(async () => (await (await request.get(`/api/v1/flows/${flowId}/report`)).json()).days.reduce((n: number, d: any) => n + d.converted, 0), {
      timeout: 15_000,
    })
    .toBe(2);
  const report = await (await request.get(`/api/v1/flows/${flowId}/report`)).json();
  const sum = (key: string) => report.days.reduce((n: number, d: any) => n + d[key], 0);

  await open(page, `/flows/${flowId}/report`);
  await expect(page.getByRole("heading", { name: "Report", exact: true })).toBeVisible();
  await expect(page.locator('[data-total="entered"]')).toHaveText(String(sum("entered")));
  await expect(page.locator('[data-total="converted"]')).toHaveText("2");
  await expect(page.locator('[data-total="active"]')).toHaveText("4");

  // The per-day chart: one line per series, with its title; the table behind it says the API's numbers.
  const days = page.locator('figure[data-chart="days"]');
  await expect(days.locator("svg title").first()).toHaveText("Participants per day");
  await expect(days.locator("polyline")).toHaveCount(6);
  const today = report.days[report.days.length - 1];
  await days.getByText("The numbers").click();
  const row = days.locator("tbody tr").last();
  await expect(row.locator("th")).toHaveText(today.date);
  await expect(row.locator("td").nth(0)).toHaveText(String(today.entered));
  await expect(row.locator("td").nth(1)).toHaveText(String(today.active));
  await expect(row.locator("td").nth(3)).toHaveText(String(today.converted));
  // The entered line's last point is as high as the others' scale says: the
  // highest value sits at the top of the plot.
  const entered = days.locator('polyline[data-series="entered"]');
  const points = (await entered.getAttribute("points"))!.trim().split(" ");
  expect(points.length).toBe(report.days.length);

  // The funnel: a bar per step and series, each bar's title naming the API's count.
  const funnel = page.locator('figure[data-chart="funnel"]');
  for (const step of report.steps) {
    await expect(funnel.locator("rect title", { hasText: `${step.name}, reached: ${step.reached}` })).toHaveCount(1);
    await expect(funnel.locator("rect title", { hasText: `${step.name}, waiting now: ${step.waiting}` })).toHaveCount(1);
  }

  // Downloads: the same numbers as CSV, the chart as SVG.
  const csv = await request.get(`/api/v1/flows/${flowId}/report/days.csv?from=${report.from}&to=${report.to}`);
  expect(csv.headers()["content-type"]).toContain("text/csv");
  expect(await csv.text()).toContain(`${today.date},${today.entered},${today.active},`);
  const svg = await request.get(`/api/v1/flows/${flowId}/report/funnel.svg`);
  expect(svg.headers()["content-type"]).toBe("image/svg+xml");
  expect(await svg.text()).toContain("<title id=\"t\">Steps</title>");
  await expect(funnel.getByRole("link", { name: "SVG" })).toHaveAttribute("href", new RegExp(`/api/v1/flows/${flowId}/report/funnel.svg`));

  await page.screenshot({ path: path.join("screenshots", "24-report.png"), fullPage: true });
});
