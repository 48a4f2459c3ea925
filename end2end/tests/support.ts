// What every spec imports instead of "@playwright/test": the same API, and
// one more check on every test. A hydration mismatch or a panic in the
// pages' wasm stops their script without a word on screen: the page looks
// right and stops reacting, and the spec fails much later on something
// else, or passes. So any uncaught error a page throws, and any hydration
// or panic message it logs, in any page of any context the test opens,
// fails the test with the page's address and the message.
import { test as base, expect, APIRequestContext, BrowserContext, Page } from "@playwright/test";

export * from "@playwright/test";

let reported: string[] = [];
const watched = new WeakSet<BrowserContext>();

function watch(context: BrowserContext) {
  if (watched.has(context)) return;
  watched.add(context);
  const onPage = (page: Page) => {
    page.on("pageerror", (err) => reported.push(`${page.url()}: ${err.message}`));
    page.on("console", (message) => {
      if (message.type() === "error" && /hydrat|panicked/i.test(message.text())) reported.push(`${page.url()}: ${message.text()}`);
    });
  };
  context.pages().forEach(onPage);
  context.on("page", onPage);
}

export const test = base.extend<{ context: BrowserContext; scriptErrors: void }>({
  context: async ({ context }, use) => {
    watch(context);
    await use(context);
  },
  scriptErrors: [
    async ({ browser }, use) => {
      const [newContext, newPage] = [browser.newContext, browser.newPage];
      browser.newContext = async (...args) => {
        const context = await newContext.apply(browser, args);
        watch(context);
        return context;
      };
      browser.newPage = async (...args) => {
        const page = await newPage.apply(browser, args);
        watch(page.context());
        return page;
      };
      reported = [];
      try {
        await use();
      } finally {
        browser.newContext = newContext;
        browser.newPage = newPage;
      }
      expect(reported, "errors the pages' script reported").toEqual([]);
    },
    { auto: true },
  ],
});

/// Creates and publishes, through the REST API, a flow start → `step` →
/// exit (`step` is the middle one: id, kind, name, settings); its id.
export async function publishLinearFlow(request: APIRequestContext, name: string, step: { id: string; [key: string]: unknown }): Promise<number> {
  const flow = await request.post("/api/v1/flows", {
    data: {
      document: {
        format: "waymark.flow/v1",
        name,
        steps: [{ id: "start", kind: "start" }, step, { id: "done", kind: "exit" }],
        edges: [
          { from: "start", port: "next", to: step.id },
          { from: step.id, port: "next", to: "done" },
        ],
      },
    },
  });
  expect(flow.status()).toBe(201);
  const id: number = (await flow.json()).id;
  expect((await request.post(`/api/v1/flows/${id}/publish`)).status()).toBe(201);
  return id;
}
