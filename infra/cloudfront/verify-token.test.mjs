// Tests the CloudFront Function in Node (node --test): against Bunny's published token vectors
// and against tokens minted by the Rust signer (written by shared/tests/cloudfront_cases.rs).
// The function's `import cf from 'cloudfront'` is replaced by a tiny stand-in whose KeyValueStore
// holds the key; `Date.now()` is pinned per case.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const source = fs.readFileSync(path.join(here, 'verify-token.js'), 'utf8');

// Loads the function with a KVS holding `key` (or none) and a clock stuck at `nowSeconds`.
function load(key, nowSeconds) {
  const body = source
    .replace(/^import cf from 'cloudfront';$/m, '')
    .replace(/^import crypto from 'crypto';$/m, '');
  assert.notEqual(body, source, 'the imports the stand-in replaces are present');
  const cf = {
    kvs: () => ({
      get: async (name) => {
        if (key === undefined || name !== 'cdn_token_key') throw new Error(`key not found: ${name}`);
        return key;
      },
    }),
  };
  const FixedDate = { now: () => nowSeconds * 1000 };
  const context = vm.createContext({ cf, crypto, Buffer, Date: FixedDate, decodeURIComponent });
  vm.runInContext(body, context);
  return context.handler;
}

// A CloudFront viewer-request event for a URL path+query, as the function receives it.
function eventFor(uriWithQuery, ip = '198.51.100.7') {
  const [uri, query = ''] = uriWithQuery.split('?');
  const querystring = {};
  for (const pair of query.split('&').filter(Boolean)) {
    const i = pair.indexOf('=');
    querystring[i === -1 ? pair : pair.slice(0, i)] = { value: i === -1 ? '' : pair.slice(i + 1) };
  }
  return { version: '1.0', viewer: { ip }, request: { method: 'GET', uri, querystring, headers: {}, cookies: {} } };
}

const allowed = (r) => r.statusCode === undefined;

test('the function fits CloudFront Functions’ 10 KB code limit', () => {
  assert.ok(Buffer.byteLength(source) < 10 * 1024, `${Buffer.byteLength(source)} bytes`);
});

const vectors = JSON.parse(
  fs.readFileSync(process.env.EXVID_FIXTURES_DIR
    ? path.join(process.env.EXVID_FIXTURES_DIR, 'bunny-token-vectors.json')
    : path.resolve(root, '../shared/fixtures/bunny-token-vectors.json'), 'utf8'),
);

test('accepts every Bunny vector until it expires, with the token stripped', async () => {
  assert.equal(vectors.cases.length, 15);
  for (const c of vectors.cases) {
    const uri = c.expectSignedUrl.slice(vectors.host.length);
    const ip = c.userIp || '198.51.100.7';
    const live = await load(vectors.key, vectors.expires - 1)(eventFor(uri, ip));
    assert.ok(allowed(live), `${c.name}: ${JSON.stringify(live)}`);
    assert.equal(live.uri, c.path, c.name);
    assert.equal(live.querystring.token, undefined, c.name);
    assert.equal(live.querystring.expires, undefined, c.name);
    const expired = await load(vectors.key, vectors.expires)(eventFor(uri, ip));
    assert.equal(expired.statusCode, 403, `${c.name} must expire`);
    const otherKey = await load('AnotherKey', vectors.expires - 1)(eventFor(uri, ip));
    assert.equal(otherKey.statusCode, 403, `${c.name} with another key`);
  }
});

test('refuses every single-character change of a vector token', async () => {
  const c = vectors.cases.find((v) => v.name === 'directory_plain');
  const uri = c.expectSignedUrl.slice(vectors.host.length);
  const start = uri.indexOf('HS256-') + 'HS256-'.length;
  const end = uri.indexOf('&');
  const handler = load(vectors.key, vectors.expires - 1);
  for (let i = start; i < end; i++) {
    const changed = uri.slice(0, i) + (uri[i] === 'A' ? 'B' : 'A') + uri.slice(i + 1);
    assert.equal((await handler(eventFor(changed))).statusCode, 403, `position ${i}`);
  }
});

test('an IP-bound vector fails from another address', async () => {
  const c = vectors.cases.find((v) => v.name === 'ip_v4_only');
  const uri = c.expectSignedUrl.slice(vectors.host.length);
  const r = await load(vectors.key, vectors.expires - 1)(eventFor(uri, '1.2.3.5'));
  assert.equal(r.statusCode, 403);
});

test('fails closed without a key in the KeyValueStore', async () => {
  const c = vectors.cases[0];
  const uri = c.expectSignedUrl.slice(vectors.host.length);
  const r = await load(undefined, vectors.expires - 1)(eventFor(uri));
  assert.equal(r.statusCode, 403);
});

test('agrees with the Rust verifier on every Rust-minted case', async () => {
  const target = process.env.CARGO_TARGET_DIR ? path.resolve(root, process.env.CARGO_TARGET_DIR) : path.join(root, 'target');
  const file = process.env.EXVID_CF_CASES || path.join(target, 'tmp/cloudfront-cases.json');
  assert.ok(fs.existsSync(file), `${file} is missing: run the cargo tests first (make test does)`);
  const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
  assert.ok(doc.cases.length >= 10);
  for (const c of doc.cases) {
    const handler = load(doc.key, c.now);
    const event = { version: '1.0', viewer: { ip: '198.51.100.7' }, request: { method: 'GET', uri: c.uri, querystring: c.querystring, headers: {}, cookies: {} } };
    const r = await handler(event);
    if (c.expect === 'allow') {
      assert.ok(allowed(r), `${c.name}: expected allow, got ${JSON.stringify(r)}`);
      assert.equal(r.uri, c.origin_uri, c.name);
      assert.deepEqual(Object.keys(r.querystring), [], `${c.name}: token parameters stripped`);
    } else {
      assert.equal(r.statusCode, 403, `${c.name}: expected deny (${c.rust_verdict})`);
    }
  }
});

test('malformed requests are refused, never thrown', async () => {
  const handler = load('k', 1000);
  for (const uri of ['/bcdn_token=HS256-x', '/bcdn_token=%zz&expires=5/a', '/a.ts?token=x', '/a.ts?token=x&expires=soon', '/a.ts?token=x&expires=1&expires=2', '/bcdn_token=HS256-x&expires=9999/a/../b']) {
    const r = await handler(eventFor(uri));
    assert.equal(r.statusCode, 403, uri);
  }
  const multi = eventFor('/a.ts?token=x&expires=9999');
  multi.request.querystring.token.multiValue = [{ value: 'x' }, { value: 'y' }];
  assert.equal((await handler(multi)).statusCode, 403);
});
