import { request, type FullConfig } from "@playwright/test";

// Signs in once as the admin the server was started with and saves the
// session cookie for every test.
export default async function globalSetup(config: FullConfig) {
  const baseURL = config.projects[0].use.baseURL!;
  const admin = JSON.parse(process.env.WAYMARK_E2E_ADMIN!);
  const context = await request.newContext({ baseURL, extraHTTPHeaders: { Origin: baseURL } });
  const reply = await context.post("/auth/login", { form: { email: admin.email, password: admin.password, next: "/" }, maxRedirects: 0 });
  if (reply.status() !== 303 || !(reply.headers()["set-cookie"] ?? "").includes("waymark_session=")) {
    throw new Error(`signing in the e2e admin failed: ${reply.status()} ${await reply.text()}`);
  }
  await context.storageState({ path: process.env.WAYMARK_E2E_STATE! });
  await context.dispose();
}
