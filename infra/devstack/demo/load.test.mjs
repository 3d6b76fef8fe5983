// Load and faults on the local cloud (loopback only, bounded, stops by itself).
//
// One devstack runs with faults: every provider webhook and event and every S3 event delivered
// twice more, out of order (--duplicate-provider-events 2); the Bunny library API and
// MediaConvert answering 503 to 10% of calls and holding 3% for 3 s (--provider-errors,
// --provider-hang); moto refusing 5% of DynamoDB item reads and writes as a throttled table
// does (--table-throttle). Against it, with autocannon as the load generator:
//   1. an intake storm: INTAKES intakes at once over as many exercises, both providers;
//      refused ones (a documented 503 with Retry-After) are retried after Retry-After, as a
//      frontend would;
//   2. two thirds of them upload (a presigned PUT, or TUS with tus-js-client), the rest are
//      abandoned and must end `failed` / `upload_expired`;
//   3. a playback storm while they transcode (patients reading GET …/video);
//   4. once every upload has ended, a storm of duplicated, reordered and contradictory Bunny
//      webhooks (every status 0-5 twice, shuffled, for every Bunny video);
// while a monitor reads every exercise in turn and records each status it sees.
// It then asserts: every uploaded exercise `ready`, every abandoned one `failed`
// (upload_expired), no status ever went back (a `ready` never became anything else, nor
// changed its facts after the storm), and no 5xx but a 503 with Retry-After. It prints the
// figures: requests, concurrency, p50/p99 latency and statuses per storm.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import * as tus from 'tus-js-client';

const root = join(dirname(fileURLToPath(import.meta.url)), '../../..');
const target = process.env.CARGO_TARGET_DIR || join(root, 'target');
const INTAKES = Number(process.env.EXVID_LOAD_INTAKES || 90);
const INTAKE_CONNECTIONS = 50;
const PLAYBACK_CONNECTIONS = 20;
const PLAYBACK_SECONDS = 10;
const UPLOAD_CONCURRENCY = 8;
const UPLOAD_TTL = 45;
const ORG = 'org-load';
// devstack's local Bunny webhook signing key (infra/devstack/src/local.rs).
const BUNNY_SIGNING_KEY = 'bunny-read-only-key-0001';
const BUNNY_LIBRARY_ID = 133;
const ORDER = { awaiting_upload: 0, processing: 1, ready: 2, failed: 2 };
const FAULTS = ['--duplicate-provider-events', '2', '--provider-errors', '0.1',
  '--provider-hang', '0.03', '--table-throttle', '0.05'];

const clip = join(tmpdir(), `exvid-load-${process.pid}.mp4`);
let stack;
let urls;
const stackLines = [];

function startStack() {
  return new Promise((resolve, reject) => {
    const bin = join(target, 'debug/devstack');
    if (!existsSync(bin)) {
      reject(new Error(`${bin} not found: cargo build --workspace --bins`));
      return;
    }
    stack = spawn(bin, ['up', '--port', '0', '--reconcile-every', '5',
      '--upload-ttl', String(UPLOAD_TTL), ...FAULTS], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => reject(new Error(`devstack did not start:\n${out}`)), 60_000);
    const keep = (d) => {
      stackLines.push(...String(d).split('\n').filter(Boolean).map((l) => l.slice(0, 300)));
      stackLines.splice(0, Math.max(0, stackLines.length - 20_000));
    };
    stack.stdout.on('data', (d) => {
      keep(d);
      if (urls) return;
      out += d;
      const m = out.match(/devstack: urls (\{.*\})/);
      if (m) {
        clearTimeout(timer);
        urls = JSON.parse(m[1]);
        resolve();
      }
    });
    stack.stderr.on('data', keep);
    stack.on('exit', (code) => {
      clearTimeout(timer);
      if (!urls) reject(new Error(`devstack exited (${code}):\n${out}`));
    });
  });
}

async function token(role) {
  const r = await fetch(`${urls.gateway}/local/token?org=${ORG}&role=${role}&sub=load-${role}`);
  return (await r.json()).token;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const exerciseId = (n) => `ex-load-${String(n).padStart(4, '0')}`;
const providerOf = (n) => (n % 2 ? 'aws_mediaconvert' : 'bunny_stream');
const abandoned = (n) => n % 3 === 2;

// Statuses seen by anyone, and the 5xx answers that are not a 503 with Retry-After.
const undocumented5xx = [];
function check5xx(what, status, headers) {
  if (status >= 500 && !(status === 503 && headers['retry-after'])) {
    undocumented5xx.push(`${what}: ${status}`);
  }
}

// One autocannon run; its figures as a line, and the result.
async function storm(title, opts) {
  const result = await autocannon({ title, timeout: 30, ...opts });
  const statuses = Object.entries(result.statusCodeStats)
    .map(([s, { count }]) => `${s}: ${count}`).join(', ');
  const line = `load: ${title}: ${result.requests.total} requests, ${opts.connections} connections, `
    + `latency p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms, max ${result.latency.max} ms; `
    + `statuses {${statuses}}; errors ${result.errors}, timeouts ${result.timeouts}`;
  console.log(line);
  return result;
}

// A request through the gateway, with a few retries after Retry-After (what a frontend does).
async function api(method, path, bearer, body, extra = {}) {
  for (let attempt = 1; ; attempt++) {
    const r = await fetch(`${urls.gateway}${path}`, {
      method,
      headers: { authorization: `Bearer ${bearer}`, ...(body ? { 'content-type': 'application/json' } : {}), ...extra },
      body: body ? JSON.stringify(body) : undefined,
    });
    const headers = Object.fromEntries(r.headers);
    check5xx(`${method} ${path}`, r.status, headers);
    if (r.status === 503 && attempt < 8) {
      await sleep(1000 * Number(headers['retry-after'] || 1));
      continue;
    }
    return { status: r.status, headers, body: await r.text() };
  }
}

function tusUpload(upload, bytes) {
  return new Promise((resolve, reject) => {
    new tus.Upload(bytes, {
      endpoint: upload.endpoint,
      headers: upload.headers,
      metadata: upload.metadata,
      retryDelays: [0, 1000, 3000, 5000],
      onSuccess: resolve,
      onError: reject,
    }).start();
  });
}

async function s3Put(upload, bytes) {
  const r = await fetch(upload.url, { method: upload.method || 'PUT', headers: upload.headers, body: bytes });
  assert.equal(r.status, 200, `presigned PUT: ${await r.text()}`);
}

// At most `limit` of `jobs` at once.
async function pool(limit, jobs) {
  const queue = [...jobs];
  await Promise.all(Array.from({ length: limit }, async () => {
    while (queue.length) await queue.shift()();
  }));
}

function shuffle(a) {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

before(async () => {
  execFileSync('ffmpeg', [
    '-nostdin', '-y', '-loglevel', 'error',
    '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=15:duration=2',
    '-f', 'lavfi', '-i', 'sine=frequency=440:duration=2',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest', clip,
  ]);
  await startStack();
});

after(() => {
  if (stack) stack.kill('SIGINT');
  rmSync(clip, { force: true });
});

test('under load and faults, every upload ends ready or failed, nothing regresses, no undocumented 5xx', { timeout: 600_000 }, async () => {
  const t0 = Date.now();
  const bytes = readFileSync(clip);
  const admin = await token('admin');
  const patient = await token('patient');
  const intakes = new Map(); // n -> intake answer
  const refused = [];

  // 1. The intake storm.
  let next = 0;
  const intakeStorm = await storm('intake storm', {
    url: urls.gateway,
    connections: INTAKE_CONNECTIONS,
    amount: INTAKES,
    requests: [{
      method: 'POST',
      setupRequest: (req, context) => {
        const n = next++;
        context.n = n;
        return {
          ...req,
          path: `/v1/exercises/${exerciseId(n)}/video`,
          headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json', 'x-exvid-provider': providerOf(n) },
          body: JSON.stringify({ filename: 'squat.mp4', content_type: 'video/mp4', size_bytes: bytes.length }),
        };
      },
      onResponse: (status, body, context, headers) => {
        check5xx('intake', status, headers);
        if (status === 201) intakes.set(context.n, JSON.parse(body));
        else refused.push({ n: context.n, status });
      },
    }],
  });
  assert.equal(intakeStorm.requests.total, INTAKES);
  // Refused intakes (503 provider or store unavailable) are tried again, as a page would.
  for (const { n, status } of refused) {
    assert.equal(status, 503, `intake ${exerciseId(n)} answered ${status}`);
    const r = await api('POST', `/v1/exercises/${exerciseId(n)}/video`, admin,
      { filename: 'squat.mp4', content_type: 'video/mp4', size_bytes: bytes.length },
      { 'x-exvid-provider': providerOf(n) });
    assert.equal(r.status, 201, `intake ${exerciseId(n)} retried: ${r.status} ${r.body}`);
    intakes.set(n, JSON.parse(r.body));
  }
  console.log(`load: intakes: ${INTAKES} accepted, ${refused.length} of them after a 503 and Retry-After`);
  const all = [...intakes.keys()].sort((a, b) => a - b);
  const uploaded = all.filter((n) => !abandoned(n));
  const dropped = all.filter(abandoned);

  // A monitor: every exercise in turn, each status in the order seen.
  const seen = new Map(all.map((n) => [n, []]));
  let monitoring = true;
  let monitorReads = 0;
  const monitor = (async () => {
    while (monitoring) {
      for (const n of all) {
        const r = await api('GET', `/v1/exercises/${exerciseId(n)}/video`, patient);
        monitorReads++;
        if (r.status !== 200) continue;
        const v = JSON.parse(r.body);
        const s = seen.get(n);
        if (s[s.length - 1]?.status !== v.video_status) s.push({ status: v.video_status, at: Date.now() - t0 });
      }
      await sleep(200);
    }
  })();

  // 2. The uploads, a few at a time; 3. a playback storm while they transcode.
  const uploads = pool(UPLOAD_CONCURRENCY, uploaded.map((n) => async () => {
    const { upload } = intakes.get(n);
    if (providerOf(n) === 'bunny_stream') await tusUpload(upload, bytes);
    else await s3Put(upload, bytes);
  }));
  const playbackStorm = await storm('playback storm', {
    url: urls.gateway,
    connections: PLAYBACK_CONNECTIONS,
    duration: PLAYBACK_SECONDS,
    requests: [{
      method: 'GET',
      setupRequest: (req) => ({
        ...req,
        path: `/v1/exercises/${exerciseId(all[Math.floor(Math.random() * all.length)])}/video`,
        headers: { authorization: `Bearer ${patient}` },
      }),
      onResponse: (status, _body, _context, headers) => check5xx('playback', status, headers),
    }],
  });
  await uploads;
  console.log(`load: uploads: ${uploaded.length} sent (${uploaded.filter((n) => providerOf(n) === 'bunny_stream').length} TUS, `
    + `${uploaded.filter((n) => providerOf(n) !== 'bunny_stream').length} presigned PUT), ${dropped.length} intakes abandoned`);

  // Every upload ends: uploaded ones ready, abandoned ones failed once their authorization
  // expired (the reconciler). Bounded: the authorization's life, a grace and some intervals.
  const deadline = Date.now() + (UPLOAD_TTL + 150) * 1000;
  const final = new Map();
  for (;;) {
    for (const n of all) {
      if (final.has(n)) continue;
      const r = await api('GET', `/v1/exercises/${exerciseId(n)}/video`, patient);
      const v = r.status === 200 ? JSON.parse(r.body) : {};
      // Ended: failed, or ready with its final facts (Bunny makes a video playable at
      // "resolution finished" and lists its MP4 download at "finished", a moment later).
      if (v.video_status === 'failed' || (v.video_status === 'ready' && v.video_downloads?.length)) final.set(n, v);
    }
    if (final.size === all.length || Date.now() > deadline) break;
    await sleep(2000);
  }
  const settledAt = (Date.now() - t0) / 1000;
  const open = all.filter((n) => !final.has(n)).map(exerciseId);
  const notReady = uploaded.filter((n) => final.get(n)?.video_status !== 'ready')
    .map((n) => `${exerciseId(n)} (${providerOf(n)}): ${JSON.stringify(final.get(n)?.video_error_code ?? 'not ended')}`);
  const notExpired = dropped.filter((n) => final.get(n)?.video_error_code !== 'upload_expired')
    .map((n) => `${exerciseId(n)}: ${final.get(n)?.video_status ?? 'not ended'}`);

  // 4. The webhook storm: duplicated, reordered and contradictory, for every Bunny video.
  const guids = all.filter((n) => providerOf(n) === 'bunny_stream').map((n) => intakes.get(n).upload.headers.VideoId);
  const bodies = shuffle(guids.flatMap((g) => [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]
    .map((status) => JSON.stringify({ VideoLibraryId: BUNNY_LIBRARY_ID, VideoGuid: g, Status: status }))));
  let b = 0;
  const webhookStorm = await storm('webhook storm', {
    url: urls.gateway,
    connections: 20,
    amount: bodies.length,
    requests: [{
      method: 'POST',
      setupRequest: (req) => {
        const body = bodies[b++ % bodies.length];
        return {
          ...req,
          path: '/webhooks/video-ready',
          headers: {
            'content-type': 'application/json; charset=utf-8',
            'x-bunnystream-signature-version': 'v1',
            'x-bunnystream-signature-algorithm': 'hmac-sha256',
            'x-bunnystream-signature': createHmac('sha256', BUNNY_SIGNING_KEY).update(body).digest('hex'),
          },
          body,
        };
      },
      onResponse: (status, _body, _context, headers) => check5xx('webhook', status, headers),
    }],
  });
  // Two reconciler passes after the storm, then nothing may have moved.
  await sleep(12_000);
  monitoring = false;
  await monitor;
  const moved = [];
  for (const n of all) {
    const r = await api('GET', `/v1/exercises/${exerciseId(n)}/video`, patient);
    const v = JSON.parse(r.body);
    const before = final.get(n);
    if (!before) continue;
    const facts = (x) => JSON.stringify([x.video_status, x.video_error_code, x.video_width, x.video_height,
      x.video_duration_seconds, (x.video_downloads || []).length, (x.video_url || '').split('/').slice(4).join('/')]);
    if (facts(v) !== facts(before)) moved.push(`${exerciseId(n)}: ${facts(before)} -> ${facts(v)}`);
  }

  // No status went back: each exercise's statuses in the order the monitor saw them.
  const regressions = [];
  for (const [n, s] of seen) {
    for (let i = 1; i < s.length; i++) {
      if (ORDER[s[i].status] < ORDER[s[i - 1].status] || ['ready', 'failed'].includes(s[i - 1].status)) {
        regressions.push(`${exerciseId(n)}: ${s.map((x) => `${x.status}@${x.at}ms`).join(' -> ')}`);
        break;
      }
    }
  }
  const faults = (re) => stackLines.filter((l) => re.test(l)).length;
  console.log(`load: ended: ${uploaded.length - notReady.length} of ${uploaded.length} uploads ready, `
    + `${dropped.length - notExpired.length} of ${dropped.length} abandoned intakes upload_expired, all by ${settledAt.toFixed(0)} s; `
    + `monitor ${monitorReads} reads; faults injected: ${faults(/answered 503 \(--provider-errors\)/)} provider 503s`);
  console.log(`load: lost uploads ${notReady.length + open.length}, regressions ${regressions.length} (statuses) + ${moved.length} (facts after the storm), `
    + `undocumented 5xx ${undocumented5xx.length}; webhook storm ${webhookStorm.requests.total} deliveries for ${guids.length} Bunny videos; `
    + `playback storm ${playbackStorm.requests.total} reads; total ${((Date.now() - t0) / 1000).toFixed(0)} s`);

  const context = () => `\n--- the local cloud's last lines:\n${stackLines.slice(-60).join('\n')}`;
  assert.deepEqual(open, [], `uploads that never ended${context()}`);
  assert.deepEqual(notReady, [], `uploads that did not end ready${context()}`);
  assert.deepEqual(notExpired, [], 'abandoned intakes that did not end upload_expired');
  assert.deepEqual(regressions, [], 'statuses that went back');
  assert.deepEqual(moved, [], 'records the webhook storm changed');
  assert.deepEqual(undocumented5xx, [], '5xx answers other than a 503 with Retry-After');
  for (const r of [intakeStorm, playbackStorm, webhookStorm]) assert.equal(r.errors + r.timeouts, 0, `${r.title}: connection errors or timeouts`);
});
