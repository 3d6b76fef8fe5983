// The demo page: what a frontend does with exvid's API. Plain JS; hls.js, tus-js-client and Uppy
// are vendored from npm and served by the devstack.
'use strict';

const $ = (id) => document.getElementById(id);
const TYPES = { mp4: 'video/mp4', mov: 'video/quicktime', webm: 'video/webm' };
const IMAGE_TYPES = { jpg: 'image/jpeg', jpeg: 'image/jpeg', png: 'image/png', webp: 'image/webp', svg: 'image/svg+xml' };
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
let hls = null;
let polling = null;
let uppy = null; // the AWS upload in progress, for pause/resume

function log(line) {
  const li = document.createElement('li');
  li.textContent = `${new Date().toLocaleTimeString()} ${line}`;
  $('log').prepend(li);
}

async function token() {
  const q = new URLSearchParams({ role: $('role').value, org: $('org').value });
  const r = await fetch(`/local/token?${q}`);
  return (await r.json()).token;
}

// `path` is below the exercise: /video, /media, /thumbnail, /instructions/{step}/image.
async function api(method, body, path = '/video') {
  const headers = { authorization: `Bearer ${await token()}`, 'x-exvid-provider': $('provider').value };
  if (body) headers['content-type'] = 'application/json';
  // An admin console shows the state as it is now: the media view may be cached privately for
  // minutes (Cache-Control), which would hide the change an admin just made.
  const r = await fetch(`/v1/exercises/${encodeURIComponent($('exercise').value)}${path}`, {
    method, headers, body: body ? JSON.stringify(body) : undefined, cache: 'no-store',
  });
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
  return { status: r.status, json };
}

function setUploadProgress(percent) {
  const p = Math.max(0, Math.min(100, Math.round(percent)));
  $('upload-progress').value = p;
  $('upload-percent').textContent = `${p}%`;
}

function putToS3(upload, file, onProgress = setUploadProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', upload.url);
    // The browser sets content-length itself; every other signed header is sent as given.
    for (const [k, v] of Object.entries(upload.headers || {})) {
      if (k.toLowerCase() !== 'content-length') xhr.setRequestHeader(k, v);
    }
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress((100 * e.loaded) / e.total);
    xhr.onload = () => (xhr.status < 300 ? resolve() : reject(new Error(`S3 answered ${xhr.status}`)));
    xhr.onerror = () => reject(new Error('S3 upload failed'));
    xhr.send(file);
  });
}

// AWS path: a stock Uppy (@uppy/core + @uppy/aws-s3 5.x, from the vendored `uppy` bundle)
// drives the multipart routes, one callback per route. Pause aborts the part in flight; resume
// asks which parts S3 has and sends the rest.
async function must(request, status, what) {
  const r = await request;
  if (r.status !== status) {
    throw new Error(`${what}: ${r.status} ${r.json ? r.json.detail || r.json.title || r.json.message : ''}`);
  }
  return r.json;
}

function uppyUpload(intake, file) {
  const uploads = `/video/uploads/${encodeURIComponent(intake.upload_id)}`;
  uppy = new Uppy.Uppy({ id: `exvid-${intake.upload_id}`, autoProceed: false });
  uppy.use(Uppy.AwsS3, {
    shouldUseMultipart: true,
    getChunkSize: () => intake.upload.part_size,
    createMultipartUpload: async () => ({ uploadId: intake.upload_id, key: intake.upload.key }),
    signPart: async (_file, { partNumber }) => {
      const signed = await must(api('POST', { part_numbers: [partNumber] }, `${uploads}/parts`), 200, 'sign part');
      const part = signed.parts[0];
      // The browser sets Content-Length itself (and must: it is signed).
      const headers = Object.fromEntries(Object.entries(part.headers).filter(([k]) => k !== 'content-length'));
      return { method: 'PUT', url: part.url, headers };
    },
    listParts: async () => {
      const listed = await must(api('GET', null, `${uploads}/parts`), 200, 'list parts');
      log(`resuming: S3 has part ${listed.parts.map((p) => p.part_number).join(', ') || '(none)'}`);
      return listed.parts.map((p) => ({ PartNumber: p.part_number, Size: p.size, ETag: p.etag }));
    },
    completeMultipartUpload: async (_file, { parts }) => {
      const named = parts.map((p) => ({ part_number: p.PartNumber, etag: p.ETag }));
      await must(api('POST', { parts: named }, `${uploads}/complete`), 200, 'complete');
      return {};
    },
    abortMultipartUpload: async () => { await api('DELETE', null, uploads); },
  });
  uppy.use(Uppy.StatusBar, { target: '#uppy-status', hideUploadButton: true, hideAfterFinish: false, showProgressDetails: true });
  uppy.on('upload-progress', (_f, p) => p.bytesTotal && setUploadProgress((100 * p.bytesUploaded) / p.bytesTotal));
  uppy.on('s3-multipart:part-uploaded', (_f, part) => log(`part ${part.PartNumber} uploaded`));
  uppy.addFile({ name: file.name, type: file.type || 'video/mp4', data: file, source: 'exvid-demo' });
  $('pause').hidden = false;
  return uppy.upload().then((result) => {
    if (result.failed && result.failed.length) throw new Error(String(result.failed[0].error));
  }).finally(() => { $('pause').hidden = true; });
}

function pauseResume() {
  const file = uppy && uppy.getFiles()[0];
  if (!file) return;
  const paused = uppy.pauseResume(file.id);
  $('pause').textContent = paused ? 'Resume' : 'Pause';
  log(paused ? 'upload paused' : 'upload resumed');
}

function tusUpload(upload, file) {
  return new Promise((resolve, reject) => {
    const u = new tus.Upload(file, {
      endpoint: upload.endpoint,
      headers: upload.headers,
      metadata: upload.metadata,
      retryDelays: [0, 1000, 3000, 5000],
      onProgress: (sent, total) => setUploadProgress((100 * sent) / total),
      onSuccess: resolve,
      onError: reject,
    });
    u.start();
  });
}

async function uploadFile() {
  const file = $('file').files[0];
  if (!file) { log('pick a file first'); return; }
  const ext = (file.name.split('.').pop() || '').toLowerCase();
  const contentType = TYPES[ext] || file.type;
  setUploadProgress(0);
  $('error').textContent = '';
  // The AWS path always goes resumable here (multipart; one part for a small file).
  const aws = $('provider').value === 'aws_mediaconvert';
  const r = await api('POST', {
    filename: file.name, content_type: contentType, size_bytes: file.size, ...(aws ? { multipart: true } : {}),
  });
  if (r.status !== 201) {
    $('error').textContent = `${r.status} ${r.json ? r.json.title || r.json.message : ''}`;
    log(`upload refused: ${r.status} ${JSON.stringify(r.json)}`);
    return;
  }
  log(`upload ${r.json.upload_id} via ${r.json.video_provider}`);
  try {
    if (r.json.upload.protocol === 'tus') await tusUpload(r.json.upload, file);
    else if (r.json.upload.protocol === 's3-multipart') await uppyUpload(r.json, file);
    else await putToS3(r.json.upload, file);
  } catch (e) {
    $('error').textContent = String(e.message || e);
    log(`upload failed: ${e}`);
    return;
  }
  setUploadProgress(100);
  log('upload finished; waiting for the transcode');
  startPolling();
}

function show(v) {
  $('status').textContent = v.video_status || 'no video yet';
  $('transcode').textContent = v.video_status === 'processing' && v.video_progress != null
    ? `(${v.video_progress}%)` : '';
  $('error').textContent = v.video_error ? `${v.video_error_code}: ${v.video_error}` : '';
  const downloads = v.video_downloads || [];
  if (downloads.length) {
    $('download').href = downloads[0].url;
    $('download').textContent = `Download MP4 (${downloads[0].height}p)`;
    $('download').hidden = false;
  } else {
    $('download').hidden = true;
  }
  showCaptions(v.video_captions || []);
  // A fresh answer signs the same rendition anew: play again only when the rendition changed.
  if (v.video_url && $('player').dataset.rendition !== rendition(v.video_url)) play(v);
}

// Caption tracks: the list GET …/video gives (each with its signed .vtt sidecar) and a delete
// button each; the player shows them from the master playlist's subtitle group.
function showCaptions(tracks) {
  $('captions').replaceChildren(...tracks.map((t) => {
    const li = document.createElement('li');
    li.dataset.language = t.language;
    const a = document.createElement('a');
    a.href = t.url;
    a.textContent = `${t.label} (${t.language}${t.default ? ', default' : ''})`;
    const del = document.createElement('button');
    del.type = 'button';
    del.textContent = 'Delete';
    del.onclick = () => captionRequest('DELETE', t.language).catch((e) => log(`error: ${e}`));
    li.append(a, ' ', del);
    return li;
  }));
}

// PUT or DELETE …/video/captions/{lang}; the file goes as it is (WebVTT or SRT, by its name).
// The master playlist changed: the player reloads it and shows the track just added.
async function captionRequest(method, lang, file) {
  const q = new URLSearchParams({ label: $('caption-label').value, default: $('caption-default').checked });
  const path = `/v1/exercises/${encodeURIComponent($('exercise').value)}/video/captions/${encodeURIComponent(lang)}`;
  const headers = { authorization: `Bearer ${await token()}` };
  if (file) headers['content-type'] = /\.srt$/i.test(file.name) ? 'application/x-subrip' : 'text/vtt';
  const r = await fetch(method === 'PUT' ? `${path}?${q}` : path, { method, headers, body: file, cache: 'no-store' });
  const text = await r.text();
  if (r.status >= 300) {
    let p = {};
    try { p = JSON.parse(text); } catch (_) { /* not JSON */ }
    log(`captions ${lang}: ${r.status} ${p.detail || text}${p.line ? ` (line ${p.line})` : ''}`);
    return;
  }
  log(`captions ${lang}: ${method === 'PUT' ? 'stored' : 'deleted'}`);
  const v = await api('GET');
  if (v.status !== 200) return;
  show(v.json);
  play(v.json, method === 'PUT' ? lang : null);
}

// The active cue of the showing text track, as plain text.
function followCues() {
  const video = $('player');
  const update = () => {
    const showing = [...video.textTracks].find((t) => t.mode === 'showing');
    const cues = showing && showing.activeCues ? [...showing.activeCues] : [];
    $('cue').textContent = cues.length ? cues.map((c) => c.text).join(' / ') : '—';
    $('cue').dataset.at = video.currentTime.toFixed(2);
    $('cue').dataset.language = showing ? showing.language : '';
  };
  video.textTracks.addEventListener('addtrack', (e) => e.track.addEventListener('cuechange', update));
  video.addEventListener('timeupdate', update);
}

// How playback goes is reported as CMCD v2 event reports to the playback session's report URL
// (hls.js configuration only: the loader adds the bearer token, which event targets cannot).
// Request-mode CMCD stays off (`includeKeys: []`): segment URLs keep their shape.
function cmcd(v) {
  const s = v.playback_session;
  if (!s) return {};
  return {
    cmcd: {
      version: 2,
      sessionId: s.id,
      contentId: $('exercise').value,
      includeKeys: [],
      eventTargets: [{ url: s.report_url, events: ['ps', 'e', 't', 'bc'], interval: 3, batchSize: 1 }],
      loader: async (r) => {
        const headers = { ...r.headers, authorization: `Bearer ${await token()}` };
        const res = await fetch(r.url, { method: r.method, headers, body: r.body });
        return { status: res.status };
      },
    },
  };
}

// The quality panel: the session's stats as the Telemetry service reads them.
async function showQuality(sessionId) {
  const r = await fetch(`/v1/media/bandwidth/stats?session=${encodeURIComponent(sessionId)}`, {
    headers: { authorization: `Bearer ${await token()}` }, cache: 'no-store',
  });
  if (r.status !== 200) return;
  const s = (await r.json()).sessions[0];
  const rung = s.rungs.length ? s.rungs.map((x) => `${x.bitrate_kbps} kbps ${Math.round(x.share * 100)}%`).join(', ') : '—';
  const buffer = hls && $('player').buffered.length
    ? ($('player').buffered.end($('player').buffered.length - 1) - $('player').currentTime).toFixed(1) : '—';
  $('quality').dataset.reports = s.reports;
  $('quality').dataset.rungs = s.rungs.length;
  $('quality').dataset.stalls = s.rebuffer_count;
  $('quality').dataset.verdict = s.current_verdict;
  $('quality').textContent = `session ${s.session_id.slice(0, 8)}: rungs ${rung}; throughput p50 `
    + `${s.throughput_kbps ? s.throughput_kbps.p50 : '—'} kbps; buffer ${buffer} s; stalls ${s.rebuffer_count} `
    + `(${(s.rebuffer_ratio * 100).toFixed(1)}%); now ${s.current_verdict} (${s.current_rule}); `
    + `${s.reports} reports`;
}

let qualityTimer = null;

// The rendition a signed URL plays: its path without the directory token or query.
function rendition(url) {
  const u = new URL(url);
  return `${u.host}${u.pathname.replace(/^\/bcdn_token=[^/]*/, '')}`;
}

// `language`: the subtitle track to show (else the playlist's default, if any).
function play(v, language = null) {
  const video = $('player');
  video.dataset.src = v.video_url;
  video.dataset.rendition = rendition(v.video_url);
  if (v.video_thumbnail_url) video.poster = v.video_thumbnail_url;
  if (hls) { hls.destroy(); hls = null; }
  clearInterval(qualityTimer);
  if (window.Hls && Hls.isSupported()) {
    // The track asked for is shown (hls.js's subtitlePreference); else the playlist's
    // DEFAULT=YES track, if any.
    hls = new Hls({ ...cmcd(v), ...(language ? { subtitlePreference: { lang: language } } : {}) });
    if (v.playback_session) {
      const id = v.playback_session.id;
      qualityTimer = setInterval(() => showQuality(id).catch(() => {}), 3000);
    }
    hls.on(Hls.Events.ERROR, (_, d) => d.fatal && log(`player error: ${d.type} ${d.details}`));
    hls.on(Hls.Events.SUBTITLE_TRACKS_UPDATED, (_, d) => d.subtitleTracks.length
      && log(`subtitle tracks: ${d.subtitleTracks.map((t) => t.lang).join(', ')}`));
    hls.loadSource(v.video_url);
    hls.attachMedia(video);
  } else {
    video.src = v.video_url; // Safari plays HLS natively
  }
  video.play().catch(() => log('press play to start'));
  log(`playing ${v.video_provider} rendition`);
}

async function refresh() {
  const r = await api('GET');
  if (r.status === 404) {
    $('status').textContent = 'no video yet';
    $('transcode').textContent = '(upload one above)';
    return 'none';
  }
  if (r.status !== 200) {
    $('status').textContent = `error ${r.status}`;
    return 'error';
  }
  show(r.json);
  return r.json.video_status;
}

function startPolling() {
  clearInterval(polling);
  let readyPolls = 0;
  polling = setInterval(async () => {
    const s = await refresh();
    // Bunny plays at "resolution finished" and adds the MP4 download a moment later: keep
    // polling a while after `ready` until the download link is there.
    if (s === 'ready') readyPolls += 1;
    const settled = s === 'ready' && (!$('download').hidden || readyPolls > 30);
    if (settled || s === 'failed' || s === 'none') {
      clearInterval(polling);
      log(`status ${s}`);
    }
  }, 1000);
}

// Status changes are pushed: notify signs each video.* event for the devstack's own
// subscriber, which relays it here (long poll). The page refreshes the moment one arrives for
// the exercise shown; the slow poll above only moves the progress bar.
async function listen() {
  let after = 0;
  for (;;) {
    try {
      const r = await (await fetch(`/local/events?after=${after}`)).json();
      after = r.next;
      for (const e of r.events) {
        if (e.data.exercise_id !== $('exercise').value) continue;
        if (e.type.startsWith('playback.')) {
          log(`event ${e.type} (${e.data.rule}) pushed`);
          continue;
        }
        if (e.type === 'video.captions_ready') {
          log(`event ${e.type} (${e.data.video_captions.map((t) => t.language).join(', ') || 'none'}) pushed`);
          continue;
        }
        log(`event ${e.type} (${e.data.video_provider}${e.data.video_error_code ? `, ${e.data.video_error_code}` : ''}) pushed`);
        const s = await refresh();
        if (s === 'ready' || s === 'failed') startPolling();
      }
    } catch (err) {
      await new Promise((done) => setTimeout(done, 2000));
    }
  }
}

async function remove() {
  const r = await api('DELETE');
  log(`delete: ${r.status}`);
  if (hls) { hls.destroy(); hls = null; }
  clearInterval(qualityTimer);
  const video = $('player');
  video.removeAttribute('src');
  video.removeAttribute('poster');
  delete video.dataset.src;
  delete video.dataset.rendition;
  $('download').hidden = true;
  setUploadProgress(0);
  await refresh();
  await showMedia();
}

// Images: the thumbnail and one image per instruction step, signed by GET …/media. An image
// is listed once its Object Created event found a whole image of the declared type.
function imageRow(i) {
  const li = document.createElement('li');
  li.dataset.step = i.step;
  const img = document.createElement('img');
  img.src = i.url;
  img.alt = `step ${i.step}`;
  const name = document.createElement('span');
  name.textContent = `step ${i.step} (${i.content_type})`;
  const replace = document.createElement('input');
  replace.type = 'file';
  replace.accept = $('step-file').accept;
  replace.title = `replace step ${i.step}`;
  replace.onchange = () => replace.files[0] && uploadImage(i.step, replace.files[0]).catch((e) => log(`error: ${e}`));
  const del = document.createElement('button');
  del.type = 'button';
  del.textContent = 'Delete';
  del.onclick = () => deleteImage(i.step).catch((e) => log(`error: ${e}`));
  li.append(img, name, replace, del);
  return li;
}

async function showMedia() {
  const r = await api('GET', null, '/media');
  const m = r.status === 200 ? r.json : { thumbnail_url: null, instructions: [] };
  if (r.status !== 200 && r.status !== 404) log(`media: ${r.status} ${JSON.stringify(r.json)}`);
  $('thumbnail').hidden = !m.thumbnail_url;
  if (m.thumbnail_url) $('thumbnail').src = m.thumbnail_url;
  $('thumbnail-none').textContent = m.thumbnail_url ? '' : 'no thumbnail';
  const rows = m.instructions.map(imageRow);
  if (!rows.length) {
    const li = document.createElement('li');
    li.textContent = 'no instruction images yet';
    rows.push(li);
  }
  $('steps').replaceChildren(...rows);
  return m;
}

// Uploads to `step` (or the thumbnail when step is null), then waits for it to be listed.
async function uploadImage(step, file) {
  const ext = (file.name.split('.').pop() || '').toLowerCase();
  const path = step == null ? '/thumbnail' : `/instructions/${encodeURIComponent(step)}/image`;
  const r = await api('POST', { filename: file.name, content_type: IMAGE_TYPES[ext] || file.type, size_bytes: file.size }, path);
  if (r.status !== 201) {
    log(`image refused: ${r.status} ${r.json ? r.json.title || r.json.message : ''}`);
    return;
  }
  await putToS3(r.json.upload, file, () => {});
  const what = step == null ? 'thumbnail' : `step ${step}`;
  log(`${what} uploaded; listed once its bytes are checked`);
  const listed = (m) => (step == null
    ? m.thumbnail_url && new URL(m.thumbnail_url).pathname.endsWith(r.json.key)
    : m.instructions.some((i) => i.step === step && new URL(i.url).pathname.endsWith(r.json.key)));
  for (let i = 0; i < 40; i += 1) {
    if (listed(await showMedia())) { log(`${what} listed`); return; }
    await sleep(500);
  }
  log(`${what} was not listed: its bytes are not a whole ${IMAGE_TYPES[ext] || file.type}`);
}

async function deleteImage(step) {
  const r = await api('DELETE', null, `/instructions/${encodeURIComponent(step)}/image`);
  log(`delete step ${step} image: ${r.status}`);
  await showMedia();
}

async function init() {
  const config = await (await fetch('/local/config')).json();
  for (const p of config.providers) {
    const o = document.createElement('option');
    o.value = p;
    o.textContent = p === 'bunny_stream' ? 'Bunny Stream' : 'S3 + MediaConvert';
    o.selected = p === config.default_provider;
    $('provider').append(o);
  }
  $('upload').onclick = () => uploadFile().catch((e) => log(`error: ${e}`));
  $('refresh').onclick = () => refresh();
  $('pause').onclick = () => pauseResume();
  $('delete').onclick = () => remove().catch((e) => log(`error: ${e}`));
  $('step-upload').onclick = () => {
    const file = $('step-file').files[0];
    if (!file) { log('pick an image first'); return; }
    uploadImage($('step').value, file).catch((e) => log(`error: ${e}`));
  };
  $('thumbnail-file').onchange = () => $('thumbnail-file').files[0]
    && uploadImage(null, $('thumbnail-file').files[0]).catch((e) => log(`error: ${e}`));
  $('caption-upload').onclick = () => {
    const file = $('caption-file').files[0];
    if (!file) { log('pick a caption file first'); return; }
    captionRequest('PUT', $('caption-lang').value, file).catch((e) => log(`error: ${e}`));
  };
  followCues();
  $('exercise').onchange = () => { refresh(); showMedia(); };
  refresh();
  showMedia();
  listen();
}

init();
