/**
 * A real browser for the dashboard test: Debian's Chromium (`scripts/setup.sh` installs it where
 * apt is available and we are root) driven by playwright-core, which downloads no browser.
 * CHROMIUM_PATH points at another Chromium build.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

export function chromiumPath(): string {
  const path = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
  if (!existsSync(path)) {
    throw new Error(
      `Chromium is not installed at ${path}: run \`npm run setup\` as root on Debian/Ubuntu (it runs \`apt-get install chromium\`), or set CHROMIUM_PATH to a Chromium binary.`,
    );
  }
  return path;
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: chromiumPath(), args: CHROMIUM_FLAGS, timeout: 60_000 });
}
