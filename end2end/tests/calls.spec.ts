import { test, expect, Page } from "./support";

async function open(page: Page, url: string) {
  await page.goto(url);
  await expect(page.locator(".app[data-hydrated=true]")).toBeVisible();
}

test("a call step is placed by a person or automatically, as the inspector chooses", async ({ page, request }) => {
  const document = (activation?: string) => ({
    format: "waymark.flow/v1",
    name: `Calls e2e ${activation ?? "default"}`,
    steps: [
      { id: "start", kind: "start", position: { x: 40, y: 80 } },
      { id: "ring", kind: "call", position: { x: 260, y: 80 }, settings: activation ? { activation } : {} },
    ],
    edges: [{ from: "start", port: "next", to: "ring" }],
  });
  const flowId = (await (await request.post("/api/v1/flows", { data: { document: document() } })).json()).id;
  await open(page, `/flows/${flowId}`);
  await page.locator('g.step[data-step="ring"] rect.card').click();
  const inspector = page.locator('section.inspector[data-step="ring"]');
  await expect(inspector.getByLabel("Placed")).toHaveValue("manual");
  await inspector.getByLabel("Placed").selectOption("automatic");
  await inspector.getByLabel(/Call script/).fill("Hello {{ first_name }}");
  await expect(inspector.getByText(/no status within 90 minutes fails the step/)).toBeVisible();
  await expect
    .poll(async () => {
      const doc = (await (await request.get(`/api/v1/flows/${flowId}/draft`)).json()).document;
      return doc.steps.find((s: any) => s.id === "ring").settings;
    }, { timeout: 10_000 })
    .toMatchObject({ activation: "automatic", script: "Hello {{ first_name }}" });
  await expect(page.locator('li.finding.error[data-step="ring"]')).toHaveCount(0);

  // a value that is neither is a finding on the step
  const odd = (await (await request.post("/api/v1/flows", { data: { document: document("robot") } })).json()).id;
  await open(page, `/flows/${odd}`);
  await expect(page.locator('li.finding.error[data-code="invalid_setting"][data-step="ring"]')).toContainText("robot");
});
