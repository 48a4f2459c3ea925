import { test, expect, Page } from "./support";
import * as fs from "fs";
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
  await expect(days.locator("polyline")).toHaveCount(7);
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

  // No step was reached more often than participants entered: no note under the funnel.
  await expect(page.locator('[data-note="funnel"]')).toHaveCount(0);

  // "PNG" downloads the chart as a PNG twice its view box, with the chart drawn on it.
  const [download] = await Promise.all([page.waitForEvent("download"), days.getByRole("link", { name: "PNG" }).click()]);
  expect(download.suggestedFilename()).toMatch(new RegExp(`^flow-${flowId}-days-.*\\.png$`));
  const png = fs.readFileSync((await download.path())!);
  expect(png.subarray(0, 8).toString("hex")).toBe("89504e470d0a1a0a");
  fs.writeFileSync(path.join("screenshots", "24-report-days-chart.png"), png);
  const [width, height] = [png.readUInt32BE(16), png.readUInt32BE(20)];
  const viewBox = (await days.locator("svg.chart-svg").getAttribute("viewBox"))!.split(" ").map(Number);
  expect(width).toBe(viewBox[2] * 2);
  expect(height).toBe((viewBox[3] + 22) * 2); // the legend under the chart
  // Drawn in the browser: most pixels white, some the first series' blue, some dark text.
  const counts = await page.evaluate(async (b64) => {
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const canvas = document.createElement("canvas");
    [canvas.width, canvas.height] = [img.width, img.height];
    const ctx = canvas.getContext("2d")!;
    ctx.drawImage(img, 0, 0);
    const data = ctx.getImageData(0, 0, img.width, img.height).data;
    let [white, blue, dark] = [0, 0, 0];
    for (let i = 0; i < data.length; i += 4) {
      const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
      if (r > 240 && g > 240 && b > 240) white++;
      else if (r < 30 && Math.abs(g - 0x72) < 30 && Math.abs(b - 0xb2) < 30) blue++;
      else if (r < 100 && g < 100 && b < 100) dark++;
    }
    return { white, blue, dark, total: data.length / 4 };
  }, png.toString("base64"));
  expect(counts.white).toBeGreaterThan(counts.total / 2);
  expect(counts.blue).toBeGreaterThan(200);
  expect(counts.dark).toBeGreaterThan(200);

  // A chart fills its card at 1280 px; at 400 px it keeps a readable width and scrolls sideways.
  await page.setViewportSize({ width: 1280, height: 900 });
  const card = await days.boundingBox();
  const chart = await days.locator("svg.chart-svg").boundingBox();
  expect(chart!.width).toBeGreaterThan(card!.width * 0.95);
  await page.screenshot({ path: path.join("screenshots", "24-report.png"), fullPage: true });
  await page.setViewportSize({ width: 400, height: 900 });
  const narrow = await days.locator("svg.chart-svg").boundingBox();
  expect(narrow!.width).toBeGreaterThanOrEqual(600);
  const label = await days.locator("svg text").first().boundingBox();
  expect(label!.height).toBeGreaterThanOrEqual(9);
  await page.screenshot({ path: path.join("screenshots", "24-report-400.png"), fullPage: true });
  await days.screenshot({ path: path.join("screenshots", "24-report-400-days.png") });
  await funnel.screenshot({ path: path.join("screenshots", "24-report-400-funnel.png") });
});
