// Browser end-to-end test: the real devstack, the demo page in headless Debian Chromium
// (playwright-core, no downloaded browsers). For each provider it uploads a clip through the
// page, waits for the progress bar to reach 100% and the status to become ready, and checks
// that the <video> element plays (currentTime advances). Screenshots of failures are kept in
// target/browser-failures/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = join(dirname(fileURLToPath(import.meta.url)), '../../..');
const target = process.env.CARGO_TARGET_DIR || join(root, 'target');
const failures = join(root, 'target/browser-failures');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';

let stack;
let urls;
let browser;
const clip = join(tmpdir(), `exvid-browser-${process.pid}.mp4`);

function startStack() {
  return new Promise((resolve, reject) => {
    const bin = join(target, 'debug/devstack');
    if (!existsSync(bin)) {
      reject(new Error(`${bin} not found: cargo build --workspace --bins`));
      return;
    }
    stack = spawn(bin, ['up', '--port', '0', '--quiet'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`devstack did not start:\n${out}\n${err}`)), 60_000);
    stack.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/devstack: urls (\{.*\})/);
      if (m && !urls) {
        clearTimeout(timer);
        urls = JSON.parse(m[1]);
        resolve();
      }
    });
    stack.stderr.on('data', (d) => { err += d; });
    stack.on('exit', (code) => {
      clearTimeout(timer);
      if (!urls) reject(new Error(`devstack exited (${code}):\n${out}\n${err}`));
    });
  });
}

before(async () => {
  execFileSync('ffmpeg', [
    '-nostdin', '-y', '-loglevel', 'error',
    '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30:duration=6',
    '-f', 'lavfi', '-i', 'sine=frequency=440:duration=6',
    '-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest', clip,
  ]);
  await startStack();
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--autoplay-policy=no-user-gesture-required'],
  });
});

after(async () => {
  if (browser) await browser.close();
  if (stack && stack.exitCode === null) {
    const exited = new Promise((r) => stack.on('exit', r));
    stack.kill('SIGINT');
    await exited;
  }
  rmSync(clip, { force: true });
});

for (const provider of ['bunny_stream', 'aws_mediaconvert']) {
  test(`the demo page uploads and plays a video (${provider})`, { timeout: 180_000 }, async () => {
    const page = await browser.newPage();
    const lines = [];
    page.on('console', (m) => lines.push(`console: ${m.text()}`));
    page.on('pageerror', (e) => lines.push(`page error: ${e.message}`));
    try {
      await page.goto(`${urls.gateway}/`);
      await page.selectOption('#provider', provider);
      await page.fill('#exercise', `ex-browser-${provider.replace('_', '-')}`);
      await page.setInputFiles('#file', clip);
      await page.click('#upload');
      await page.waitForFunction(() => document.querySelector('#upload-progress').value === 100, null, { timeout: 60_000 });
      await page.waitForFunction(() => document.querySelector('#status').textContent === 'ready', null, { timeout: 120_000 });
      // The status change also arrived pushed: notify's signed event, relayed to the page.
      await page.waitForFunction(() => document.querySelector('#log').textContent.includes('event video.ready'), null, { timeout: 30_000 });
      // Muted video autoplays; make sure it was asked to play, then watch the clock move.
      await page.evaluate(() => document.querySelector('#player').play().catch(() => {}));
      await page.waitForFunction(() => document.querySelector('#player').currentTime > 1, null, { timeout: 30_000 });
      const state = await page.evaluate(() => {
        const v = document.querySelector('#player');
        return { t: v.currentTime, w: v.videoWidth, h: v.videoHeight, err: v.error && v.error.code };
      });
      assert.equal(state.err, null);
      assert.equal(state.w > 0 && state.h > 0, true, JSON.stringify(state));
      // The MP4 link may follow `ready` (Bunny's fallback comes with "finished").
      await page.waitForSelector('#download:not([hidden])', { timeout: 30_000 });
      const href = await page.getAttribute('#download', 'href');
      assert.match(href, /\.mp4\?token=HS256-/);
    } catch (e) {
      mkdirSync(failures, { recursive: true });
      await page.screenshot({ path: join(failures, `${provider}.png`), fullPage: true }).catch(() => {});
      e.message += `\n${lines.join('\n')}\nlog: ${await page.textContent('#log').catch(() => '')}`;
      throw e;
    } finally {
      await page.close();
    }
  });
}
