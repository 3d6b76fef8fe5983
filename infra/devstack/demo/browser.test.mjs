// Browser end-to-end test: the real devstack, the demo page in headless Debian Chromium
// (playwright-core, no downloaded browsers). For each provider it uploads a clip through the
// page, waits for the progress bar to reach 100% and the status to become ready, and checks
// that the <video> element plays (currentTime advances) and reports how it plays (hls.js's CMCD
// v2 event reports, read back from the stats route by the page's quality panel); on the AWS path the page uploads with a
// stock Uppy in parts, cut, paused and resumed. A patient on a throttled network (Chromium's
// network emulation over CDP) plays the low rung and stalls; playback.degraded reaches a
// subscriber verifying it with the Standard Webhooks reference library, and unthrottled,
// playback.recovered. It also manages instruction images
// through the page (an SVG carrying a script is served under a CSP that stops it), adds caption
// tracks through the page and sees hls.js show the German cue at its time, and renders the API
// reference offline. Screenshots of failures are kept in target/browser-failures/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
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
// A subscriber verifying every webhook with the Standard Webhooks reference library.
let subscriber;
let subscriberUrl;
const venv = process.env.EXVID_VENV || join(root, '.venv');
const LOCAL_WEBHOOK_SECRET = 'whsec_ZXh2aWQtbG9jYWwtd2ViaG9vay1zZWNyZXQtMDAwMSE=';
const longClip = join(tmpdir(), `exvid-browser-${process.pid}-long.mp4`);
// The stack's last lines (gateway, functions, S3 events), added to a failure's message.
const stackLines = [];
let browser;
const clip = join(tmpdir(), `exvid-browser-${process.pid}.mp4`);
// One cue per language inside the 6 s clip; the German one is looked for on screen.
const CUES = {
  en: { from: 2, to: 4.5, text: 'Keep the knee over the toes' },
  de: { from: 2, to: 4.5, text: 'Knie über den Zehen halten' },
};
const captionFile = (lang) => join(tmpdir(), `exvid-browser-${process.pid}.${lang}.vtt`);
const still = (ext) => join(tmpdir(), `exvid-browser-${process.pid}.${ext}`);
// An SVG that marks the document when its script runs.
const HOSTILE_SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40">'
  + '<rect width="40" height="40" fill="teal"/>'
  + '<script>document.documentElement.setAttribute("data-ran", "yes")</script></svg>';

function startStack() {
  return new Promise((resolve, reject) => {
    const bin = join(target, 'debug/devstack');
    if (!existsSync(bin)) {
      reject(new Error(`${bin} not found: cargo build --workspace --bins`));
      return;
    }
    stack = spawn(bin, ['up', '--port', '0', '--webhook-url', `${subscriberUrl}hook`], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`devstack did not start:\n${out}\n${err}`)), 60_000);
    stack.stdout.on('data', (d) => {
      if (!urls) out += d;
      stackLines.push(...String(d).split('\n').filter(Boolean).map((l) => l.slice(0, 400)));
      stackLines.splice(0, Math.max(0, stackLines.length - 80));
      const m = out.match(/devstack: urls (\{.*\})/);
      if (m && !urls) {
        clearTimeout(timer);
        urls = JSON.parse(m[1]);
        resolve();
      }
    });
    stack.stderr.on('data', (d) => {
      if (!urls) err += d;
      stackLines.push(...String(d).split('\n').filter(Boolean).map((l) => l.slice(0, 400)));
      stackLines.splice(0, Math.max(0, stackLines.length - 80));
    });
    stack.on('exit', (code) => {
      clearTimeout(timer);
      if (!urls) reject(new Error(`devstack exited (${code}):\n${out}\n${err}`));
    });
  });
}

function startSubscriber() {
  return new Promise((resolve, reject) => {
    subscriber = spawn(join(venv, 'bin/python'), [join(root, 'infra/devstack/webhook_subscriber.py'),
      '--secret', LOCAL_WEBHOOK_SECRET], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    subscriber.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/"listening": (\d+)/);
      if (m && !subscriberUrl) {
        subscriberUrl = `http://127.0.0.1:${m[1]}/`;
        resolve();
      }
    });
    subscriber.on('exit', (code) => { if (!subscriberUrl) reject(new Error(`subscriber exited (${code})`)); });
  });
}

// The reference-verified deliveries of `type` for `exercise` so far.
async function delivered(type, exercise) {
  const all = await (await fetch(`${subscriberUrl}deliveries`)).json();
  return all.filter((d) => d.type === type && d.exercise_id === exercise && d.status === 204);
}

async function until(what, check, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = await check();
    if (got) return got;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

before(async () => {
  execFileSync('ffmpeg', [
    '-nostdin', '-y', '-loglevel', 'error',
    '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30:duration=6',
    '-f', 'lavfi', '-i', 'sine=frequency=440:duration=6',
    '-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest', clip,
  ]);
  for (const [lang, c] of Object.entries(CUES)) {
    writeFileSync(captionFile(lang), `WEBVTT\n\n00:00:0${c.from}.000 --> 00:00:0${Math.floor(c.to)}.${String(Math.round((c.to % 1) * 1000)).padStart(3, '0')}\n${c.text}\n`);
  }
  for (const [ext, colour] of [['png', 'red'], ['jpg', 'blue']]) {
    execFileSync('ffmpeg', ['-nostdin', '-y', '-loglevel', 'error', '-f', 'lavfi',
      '-i', `color=c=${colour}:s=64x48`, '-frames:v', '1', still(ext)]);
  }
  // Two minutes of 720p (two rungs on the Bunny stand-in: 360p and 720p), long enough to stall
  // under a throttle and then play a clean minute.
  execFileSync('ffmpeg', [
    '-nostdin', '-y', '-loglevel', 'error',
    '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30:duration=120',
    '-f', 'lavfi', '-i', 'sine=frequency=440:duration=120',
    '-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest', longClip,
  ]);
  await startSubscriber();
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
  if (subscriber && subscriber.exitCode === null) subscriber.kill();
  for (const f of [clip, longClip, still('png'), still('jpg'), captionFile('en'), captionFile('de')]) rmSync(f, { force: true });
});

// Runs `body(page, lines)`; on failure keeps a screenshot and adds the page's log.
async function onPage(name, body) {
  const page = await browser.newPage();
  const lines = [];
  page.on('console', (m) => lines.push(`console: ${m.text()}`));
  page.on('pageerror', (e) => lines.push(`page error: ${e.message}`));
  try {
    await body(page, lines);
  } catch (e) {
    mkdirSync(failures, { recursive: true });
    await page.screenshot({ path: join(failures, `${name}.png`), fullPage: true }).catch(() => {});
    e.message += `\n${lines.join('\n')}\nlog: ${await page.textContent('#log').catch(() => '')}`;
    e.message += `\nstack (last lines):\n${stackLines.join('\n')}`;
    throw e;
  } finally {
    await page.close();
  }
}

// Waits until the page's log has said `text` `times` times.
const logSays = (page, text, times = 1) => page.waitForFunction(
  ([t, n]) => document.querySelector('#log').textContent.split(t).length > n, [text, times], { timeout: 30_000 },
);

test('the demo page manages instruction images; a scripted SVG is served inert', { timeout: 120_000 }, async () => {
  await onPage('images', async (page) => {
    await page.goto(`${urls.gateway}/`);
    await page.fill('#exercise', 'ex-browser-images');
    await page.dispatchEvent('#exercise', 'change');
    // An exercise without a video says so.
    await page.waitForFunction(() => document.querySelector('#status').textContent === 'no video yet');
    const upload = async (step, file) => {
      await page.fill('#step', step);
      await page.setInputFiles('#step-file', file);
      await page.click('#step-upload');
    };
    await upload('1', { name: 'step.svg', mimeType: 'image/svg+xml', buffer: Buffer.from(HOSTILE_SVG) });
    await logSays(page, 'step 1 listed');
    await upload('2', still('png'));
    await logSays(page, 'step 2 listed');
    // Text declared as PNG is refused by its bytes and never listed.
    await upload('3', { name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('just some text, not a PNG\n') });
    await logSays(page, 'step 3 was not listed');
    assert.equal(await page.$('#steps li[data-step="3"]'), null);
    // Listed images load from the CDN, signed.
    await page.waitForFunction(() => document.querySelector('#steps li[data-step="2"] img').naturalWidth === 64);
    // Replace step 2 in its row, then delete step 1, and upload a thumbnail.
    await page.setInputFiles('#steps li[data-step="2"] input[type=file]', still('jpg'));
    await logSays(page, 'step 2 listed', 2);
    await page.waitForFunction(() => document.querySelector('#steps li[data-step="2"]').textContent.includes('image/jpeg'));
    await page.setInputFiles('#thumbnail-file', still('jpg'));
    await logSays(page, 'thumbnail listed');
    await page.waitForFunction(() => document.querySelector('#thumbnail').naturalWidth === 64);

    // Opened on its own (where an SVG's script would run), the signed SVG stays inert. The
    // same document served without the CSP runs its script: the test can tell.
    const svgUrl = await page.getAttribute('#steps li[data-step="1"] img', 'src');
    const svg = await browser.newPage();
    try {
      const r = await svg.goto(svgUrl);
      assert.equal(r.status(), 200, svgUrl);
      assert.match(r.headers()['content-security-policy'], /sandbox/);
      assert.equal(r.headers()['x-content-type-options'], 'nosniff');
      assert.equal(await svg.evaluate(() => document.documentElement.getAttribute('data-ran')), null);
      const control = `${urls.gateway}/control.svg`;
      await svg.route(control, (route) => route.fulfill({ contentType: 'image/svg+xml', body: HOSTILE_SVG }));
      await svg.goto(control);
      assert.equal(await svg.evaluate(() => document.documentElement.getAttribute('data-ran')), 'yes');
    } finally {
      await svg.close();
    }
    await page.click('#steps li[data-step="1"] button');
    await page.waitForFunction(() => !document.querySelector('#steps li[data-step="1"]'));
  });
});

test('the API reference renders docs/openapi.yaml from local files only', { timeout: 60_000 }, async () => {
  await onPage('docs', async (page) => {
    // Redoc's one outside link (its logo on cdn.redoc.ly) is stopped by the page's CSP: no
    // response may come from anywhere but the local cloud.
    const local = (u) => u.startsWith(urls.gateway) || /^(data|blob):/.test(u);
    const elsewhere = [];
    page.on('response', (r) => { if (!local(r.url())) elsewhere.push(r.url()); });
    await page.goto(`${urls.gateway}/`);
    await page.click('a[href="/docs"]');
    await page.waitForFunction(() => document.body.textContent.includes('Status and short-lived signed playback URLs'), null, { timeout: 30_000 });
    for (const op of ['startVideoUpload', 'getMedia', 'deleteInstructionImage']) {
      assert.ok(await page.$(`[id*="${op}"]`), `${op} is rendered`);
    }
    assert.deepEqual(elsewhere, []);
    const spec = await (await page.request.get(`${urls.gateway}/openapi.yaml`)).text();
    assert.equal(spec, readFileSync(join(root, 'docs/openapi.yaml'), 'utf8'));
  });
});

test('the demo page links the Markdown guides, rendered by the local cloud with working links', { timeout: 60_000 }, async () => {
  await onPage('guides', async (page) => {
    await page.goto(`${urls.gateway}/`);
    await page.click('#topics a[href="/docs/local-cloud.md"]');
    await page.waitForSelector('h1');
    assert.equal(await page.textContent('h1'), 'The local cloud (devstack)');
    // A relative link between topics, as on GitHub.
    await page.click('a[href="testing.md"]');
    await page.waitForFunction(() => document.querySelector('h1')?.textContent === 'Testing');
    // An anchor lands on its heading.
    const r = await page.goto(`${urls.gateway}/docs/deploy.md#rotating-keys`);
    assert.equal(r.status(), 200);
    assert.ok(await page.$('h3#rotating-keys'));
    assert.match(r.headers()['content-security-policy'], /default-src 'none'/);
    // Nothing outside docs/, nothing but topics.
    for (const p of ['/docs/../README.md', '/docs/%2e%2e/README.md', '/docs/openapi.yaml.md', '/docs/a/b/c.md', '/docs/API.md']) {
      assert.equal((await page.request.get(`${urls.gateway}${p}`)).status(), 404, p);
    }
  });
});

test('Uppy uploads a video in parts on the AWS path, cut, paused and resumed from the listed parts', { timeout: 240_000 }, async () => {
  await onPage('uppy', async (page) => {
    // The clip padded to three 5 MiB parts with an MP4 `free` box (ffmpeg skips it).
    const box = Buffer.alloc(11 * 1024 * 1024);
    box.writeUInt32BE(box.length, 0);
    box.write('free', 4, 'latin1');
    const file = Buffer.concat([readFileSync(clip), box]);
    // Parts travel slowly enough to pause between them, and part 2's first attempt is cut.
    const sent = [];
    let cut = false;
    await page.route(/[?&]partNumber=/, async (route) => {
      const n = Number(new URL(route.request().url()).searchParams.get('partNumber'));
      sent.push(n);
      if (n === 2 && !cut) {
        cut = true;
        await route.abort('connectionreset');
        return;
      }
      await new Promise((done) => setTimeout(done, 700));
      await route.continue().catch(() => {}); // a pause may have aborted it meanwhile
    });
    const listed = [];
    page.on('request', (r) => {
      if (r.method() === 'GET' && /\/video\/uploads\/[^/]+\/parts$/.test(new URL(r.url()).pathname)) listed.push(r.url());
    });
    await page.goto(`${urls.gateway}/`);
    await page.selectOption('#provider', 'aws_mediaconvert');
    await page.fill('#exercise', 'ex-browser-uppy');
    await page.setInputFiles('#file', { name: 'knee bend.mp4', mimeType: 'video/mp4', buffer: file });
    await page.click('#upload');
    await logSays(page, 'part 1 uploaded');
    await page.click('#pause');
    await logSays(page, 'upload paused');
    await page.waitForTimeout(500);
    await page.click('#pause');
    await logSays(page, 'resuming: S3 has part');
    await page.waitForFunction(() => document.querySelector('#upload-progress').value === 100, null, { timeout: 60_000 });
    await page.waitForFunction(() => document.querySelector('#status').textContent === 'ready', null, { timeout: 120_000 });
    await page.evaluate(() => document.querySelector('#player').play().catch(() => {}));
    await page.waitForFunction(() => document.querySelector('#player').currentTime > 1, null, { timeout: 30_000 });
    assert.ok(cut, 'part 2 was cut once');
    assert.ok(listed.length >= 1, 'the resume asked which parts S3 has');
    assert.deepEqual([...new Set(sent)].sort(), [1, 2, 3]);
    assert.match(await page.textContent('#uppy-status'), /complete/i);
  });
});

for (const provider of ['bunny_stream', 'aws_mediaconvert']) {
  test(`the demo page uploads and plays a video (${provider})`, { timeout: 180_000 }, async () => {
    const page = await browser.newPage();
    const lines = [];
    page.on('console', (m) => lines.push(`console: ${m.text()}`));
    page.on('pageerror', (e) => lines.push(`page error: ${e.message}`));
    page.on('response', (r) => r.status() >= 400 && lines.push(`${r.status()} ${r.request().method()} ${r.url()}`));
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
      // hls.js reports how it plays (CMCD v2 event mode, configuration only) to the session
      // GET …/video handed out; the quality panel reads them back from the stats route.
      await page.waitForFunction(() => Number(document.querySelector('#quality').dataset.rungs) >= 1, null, { timeout: 30_000 });
      const quality = await page.textContent('#quality');
      console.log(`${provider}: ${quality}`);
      assert.match(quality, /rungs \d+ kbps \d+%/);
      assert.match(quality, /throughput p50 \d+ kbps/);
      assert.match(quality, /stalls 0 .* now good/);
      // The MP4 link may follow `ready` (Bunny's fallback comes with "finished").
      await page.waitForSelector('#download:not([hidden])', { timeout: 30_000 });
      const href = await page.getAttribute('#download', 'href');
      assert.match(href, /\.mp4\?token=HS256-/);
      // Captions: the page uploads an English and a German track; the player reloads the
      // master, which lists both, and shows the German cue while the clip is at its time.
      for (const [lang, label, isDefault, file] of [['en', 'English', false, captionFile('en')], ['de', 'Deutsch', true, captionFile('de')]]) {
        await page.fill('#caption-lang', lang);
        await page.fill('#caption-label', label);
        await page.setChecked('#caption-default', isDefault);
        await page.setInputFiles('#caption-file', file);
        await page.click('#caption-upload');
        await logSays(page, `captions ${lang}: stored`);
      }
      await page.waitForFunction(() => document.querySelectorAll('#captions li').length === 2, null, { timeout: 30_000 });
      await logSays(page, 'subtitle tracks: en, de');
      // Each change went out as video.captions_ready (verified by the reference library).
      await logSays(page, 'event video.captions_ready (en) pushed');
      await logSays(page, 'event video.captions_ready (en, de) pushed');
      await page.evaluate(() => document.querySelector('#player').play().catch(() => {}));
      await page.waitForFunction((text) => document.querySelector('#cue').textContent.includes(text), CUES.de.text, { timeout: 30_000 })
        .catch(async (e) => {
          // What the player made of the tracks: each one's mode and cue times.
          const tracks = await page.evaluate(() => [...document.querySelector('#player').textTracks].map((t) => ({
            language: t.language, mode: t.mode, cues: t.cues ? [...t.cues].map((c) => [c.startTime, c.endTime, c.text]) : null,
          })));
          e.message += `\ntext tracks: ${JSON.stringify(tracks)}; at ${await page.evaluate(() => document.querySelector('#player').currentTime)}`;
          throw e;
        });
      const cue = await page.evaluate(() => ({ ...document.querySelector('#cue').dataset }));
      console.log(`${provider}: "${CUES.de.text}" shown at ${cue.at} s (cue ${CUES.de.from}–${CUES.de.to} s)`);
      assert.equal(cue.language, 'de');
      // timeupdate fires every ~250 ms: the cue is seen within that of its window.
      assert.ok(Number(cue.at) >= CUES.de.from - 0.3 && Number(cue.at) <= CUES.de.to + 0.3, JSON.stringify(cue));
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

test('a patient on a slow network: the low rung, a stall and playback.degraded, then playback.recovered', { timeout: 480_000 }, async () => {
  await onPage('throttled', async (page) => {
    const exercise = 'ex-browser-throttled';
    await page.goto(`${urls.gateway}/`);
    await page.selectOption('#provider', 'bunny_stream');
    await page.fill('#exercise', exercise);
    await page.setInputFiles('#file', longClip);
    await page.click('#upload');
    await page.waitForFunction(() => document.querySelector('#upload-progress').value === 100, null, { timeout: 120_000 });
    // From now on the page downloads at 200 kbit/s: below the 720p rung, below even 360p's.
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Network.enable');
    const throttle = (bytesPerSecond) => cdp.send('Network.emulateNetworkConditions', {
      offline: false, latency: bytesPerSecond > 0 ? 80 : 0, downloadThroughput: bytesPerSecond, uploadThroughput: -1,
    });
    await throttle(25_000);
    await page.waitForFunction(() => document.querySelector('#status').textContent === 'ready', null, { timeout: 240_000 });
    await page.evaluate(() => document.querySelector('#player').play().catch(() => {}));
    await page.waitForFunction(() => Number(document.querySelector('#quality').dataset.stalls) >= 1, null, { timeout: 120_000 });
    const degraded = await until('playback.degraded', async () => (await delivered('playback.degraded', exercise))[0], 90_000);
    assert.equal(degraded.verified, true);
    const slow = await page.textContent('#quality');
    console.log(`throttled: ${slow}`);
    assert.match(slow, /rungs (.* )?896 kbps/, 'played the 360p rung');
    const p50 = Number(slow.match(/throughput p50 (\d+) kbps/)[1]);
    assert.ok(p50 < 2596, `throughput p50 ${p50} kbps is below the 720p rung`);

    await throttle(-1);
    const recovered = await until('playback.recovered', async () => (await delivered('playback.recovered', exercise))[0], 150_000);
    assert.equal(recovered.verified, true);
    assert.notEqual(recovered.id, degraded.id);
    await page.waitForFunction(() => document.querySelector('#quality').dataset.verdict === 'good', null, { timeout: 15_000 });
    console.log(`recovered: ${await page.textContent('#quality')}`);
    console.log(`events: ${degraded.type} ${degraded.id} verified, ${recovered.type} ${recovered.id} verified`);
  });
});
