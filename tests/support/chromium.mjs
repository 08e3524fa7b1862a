// Debian's Chromium, headless, for the browser tests: one launch, the same flags everywhere.
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { ROOT } from "./harness.mjs";

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

/** Launches Chromium (scripts/test installs it); build/ exists for screenshots. */
export async function launchChromium() {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: scripts/test installs Debian's chromium`);
  mkdirSync(join(ROOT, "build"), { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/** Whether `request` is the SDK's boot signal (its beacon to the edge's report endpoint). */
export const isBoot = (request) => request.method() === "POST" && request.url().endsWith("/__canary/report") &&
  (request.postData() ?? "").includes('"kind":"boot"');
