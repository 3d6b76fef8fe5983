// CloudFront Function (cloudfront-js-2.0, viewer request): checks exvid's playback tokens, the
// same Bunny Advanced (HS256) format the Rust signer mints (shared/src/playback_token.rs), with
// the key from the distribution's KeyValueStore. A bad, expired, tampered or wrong-directory
// token, an unsafe path, or any request for an uploaded original answers 403. A good request
// goes to the S3 origin without the token prefix or token parameters, so the cache key is the
// plain object path.
import cf from 'cloudfront';
import crypto from 'crypto';

var kvs = cf.kvs();
var KEY_NAME = 'cdn_token_key';
var DIRECTORY_MARK = '/bcdn_token=';
var ORIGINAL = /^\/[^/]+\/exercises\/[^/]+\/video\/original\.[^/]*$/i;

function deny() {
  return {
    statusCode: 403,
    statusDescription: 'Forbidden',
    headers: { 'cache-control': { value: 'no-store' } },
  };
}

function decode(value) {
  return decodeURIComponent(value); // throws on malformed escapes: the caller denies
}

// A %XX escape of a letter, digit, '-', '.', '_' or '~': no encoder makes one (RFC 3986 2.3);
// it can only disguise a path (a validly signed '%6Friginal.mp4' is the origin's original.mp4).
function encodesUnreserved(path) {
  var escapes = path.match(/%[0-9A-Fa-f]{2}/g) || [];
  for (var i = 0; i < escapes.length; i++) {
    var c = String.fromCharCode(parseInt(escapes[i].slice(1), 16));
    if (/[A-Za-z0-9\-._~]/.test(c)) return true;
  }
  return false;
}

// Refuses '.', '..' (also percent-encoded), empty inner segments, backslashes and encoded
// unreserved characters, so the rules below judge the path the origin fetches.
function safePath(path) {
  if (path.charAt(0) !== '/' || path.indexOf('\\') !== -1 || encodesUnreserved(path)) return false;
  var segments = path.slice(1).split('/');
  for (var i = 0; i < segments.length; i++) {
    var s = decode(segments[i]);
    if (s === '.' || s === '..' || s.indexOf('/') !== -1 || s.indexOf('\\') !== -1) return false;
    if (segments[i] === '' && i !== segments.length - 1) return false;
  }
  return true;
}

// `path` is `dir` or below it, on a segment boundary.
function within(path, dir) {
  if (dir.charAt(dir.length - 1) === '/') return path.indexOf(dir) === 0;
  return path === dir || path.indexOf(dir + '/') === 0;
}

function ipBytes(ip) {
  if (ip.indexOf(':') === -1) {
    var v4 = ip.split('.');
    if (v4.length !== 4) return null;
    return v4.map(function (p) { return parseInt(p, 10) & 255; });
  }
  // IPv6: expand '::', keep the /64, zero the rest.
  var halves = ip.split('::');
  var head = halves[0] ? halves[0].split(':') : [];
  var tail = halves.length > 1 && halves[1] ? halves[1].split(':') : [];
  var groups = head.concat(new Array(8 - head.length - tail.length).fill('0'), tail);
  var bytes = [];
  for (var i = 0; i < 8; i++) {
    var g = i < 4 ? parseInt(groups[i] || '0', 16) : 0;
    bytes.push((g >> 8) & 255, g & 255);
  }
  return bytes;
}

function tokenFor(key, signaturePath, expires, ip, params) {
  var data = params.map(function (p) { return p[0] + '=' + p[1]; }).join('&');
  var hmac = crypto.createHmac('sha256', key);
  hmac.update(signaturePath + expires);
  if (ip) hmac.update(Buffer.from(ip));
  hmac.update(data);
  var b64 = hmac.digest('base64').replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  return 'HS256-' + (ip ? '1-' : '') + b64;
}

function sameString(a, b) {
  if (a.length !== b.length) return false;
  var diff = 0;
  for (var i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

// The token, the origin path and the signed parameters of a request; null if malformed.
function parse(request) {
  var uri = request.uri;
  var token, path, pairs = [];
  var qs = request.querystring || {};
  if (uri.indexOf(DIRECTORY_MARK) === 0) {
    if (qs.token) return null; // two tokens: which one, which expiry? (as the Rust verifier)
    var rest = uri.slice(DIRECTORY_MARK.length);
    var slash = rest.indexOf('/');
    if (slash === -1) return null;
    var parts = rest.slice(0, slash).split('&');
    token = decode(parts[0]);
    path = rest.slice(slash);
    for (var i = 1; i < parts.length; i++) {
      var eq = parts[i].indexOf('=');
      pairs.push(eq === -1 ? [decode(parts[i]), ''] : [decode(parts[i].slice(0, eq)), decode(parts[i].slice(eq + 1))]);
    }
  } else {
    path = uri;
    for (var name in qs) {
      if (qs[name].multiValue && qs[name].multiValue.length > 1) return null;
      var value = decode(qs[name].value || '');
      if (name === 'token') token = value;
      else pairs.push([name, value]);
    }
    if (!token) return null;
  }
  var expires = null, params = [], seen = {};
  for (var j = 0; j < pairs.length; j++) {
    var k = pairs[j][0], v = pairs[j][1];
    if (seen[k] || k === 'token') return null;
    seen[k] = true;
    if (k === 'expires') {
      if (!/^\d+$/.test(v)) return null;
      expires = parseInt(v, 10);
    } else {
      params.push([k, v]);
    }
  }
  if (expires === null) return null;
  params.sort(function (a, b) { return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0; });
  return { token: token, path: path, expires: expires, params: params };
}

async function handler(event) {
  var request = event.request;
  var t;
  try {
    t = parse(request);
    if (!t || !safePath(t.path) || ORIGINAL.test(t.path)) return deny();
  } catch (e) {
    return deny();
  }
  var tokenPath = null;
  for (var i = 0; i < t.params.length; i++) {
    if (t.params[i][0] === 'token_path') tokenPath = t.params[i][1];
  }
  if (tokenPath !== null && !within(t.path, tokenPath)) return deny();
  if (t.token.indexOf('HS256-') !== 0) return deny();
  var ip = null;
  if (t.token.indexOf('HS256-1-') === 0) {
    ip = ipBytes((event.viewer && event.viewer.ip) || '');
    if (!ip) return deny();
  }
  var key;
  try {
    key = await kvs.get(KEY_NAME);
  } catch (e) {
    return deny(); // no key configured: fail closed
  }
  var expected = tokenFor(key, tokenPath !== null ? tokenPath : t.path, t.expires, ip, t.params);
  if (!sameString(expected, t.token)) return deny();
  if (Math.floor(Date.now() / 1000) >= t.expires) return deny();

  request.uri = t.path;
  var kept = {};
  for (var name in request.querystring || {}) {
    if (name !== 'token' && name !== 'expires' && name.indexOf('token_') !== 0 && name !== 'limit') {
      kept[name] = request.querystring[name];
    }
  }
  request.querystring = kept;
  return request;
}
