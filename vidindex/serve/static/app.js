// vidindex web page: search, a video with its captions and answers, ask as of now, ask the archive.
// Plain JavaScript, no build step. URLs are relative, so the page works under any route prefix.
// Text from the index is always put in with textContent, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { videos: [], videoById: new Map(), current: null, jobTimer: null };

// ---- helpers

async function api(path, options = {}) {
  const init = { credentials: "same-origin", ...options, headers: { Accept: "application/json", ...(options.headers || {}) } };
  if (options.json !== undefined) {
    init.method = init.method || "POST";
    init.body = JSON.stringify(options.json);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  let data = null;
  try { data = await response.json(); } catch (e) { /* not JSON */ }
  if (!response.ok) throw new Error((data && data.error) || `${response.status} ${response.statusText}`);
  return data;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function clock(seconds, decimals = 0) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "";
  const sign = seconds < 0 ? "-" : "";
  seconds = Math.abs(seconds);
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60);
  let s = (seconds % 60).toFixed(decimals);
  if (parseFloat(s) >= 60) s = (0).toFixed(decimals);
  const pad = (n) => String(n).padStart(2, "0");
  const [whole, frac] = s.split(".");
  return `${sign}${pad(h)}:${pad(m)}:${pad(whole)}${frac ? "." + frac : ""}`;
}

function toast(message) {
  const box = $("toast");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 6000);
}

function parseHash() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = hash.split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query) };
}

function go(path, params) {
  const query = params ? new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v !== null && v !== undefined)).toString() : "";
  location.hash = "#/" + path + (query ? "?" + query : "");
}

function frameUrl(videoId, t, width = 320) {
  return `api/videos/${encodeURIComponent(videoId)}/frame?t=${Number(t).toFixed(1)}&w=${width}`;
}

function thumb(videoId, t, label, kind) {
  const img = el("img", { src: frameUrl(videoId, t), alt: "", loading: "lazy" });
  img.addEventListener("error", () => { img.remove(); });
  return el("div", { class: "thumb" }, img, kind ? el("span", { class: "kind" }, kind) : null,
            el("span", { class: "time" }, label));
}

// ---- views

function show(view) {
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== "view-" + view;
  for (const link of document.querySelectorAll("nav a[data-view]")) link.classList.toggle("active", link.dataset.view === view);
  if (view !== "video") $("player").pause();
  if (view !== "archive") stopPolling();
}

async function route() {
  const { parts, params } = parseHash();
  const view = parts[0] || "search";
  if (view === "video" && parts[1]) {
    show("video");
    await openVideo(parts[1], params);
  } else if (view === "archive") {
    show("archive");
    loadJobs();
    if (params.get("job")) pollJob(params.get("job"));
  } else if (view === "videos") {
    show("videos");
    renderVideos();
  } else {
    show("search");
    await runSearch(params);
  }
}

// ---- search

function searchParams() {
  return { q: $("q").value.trim(), mode: $("mode").value, video: $("video-filter").value,
           from: $("t-from").value.trim(), to: $("t-to").value.trim() };
}

async function runSearch(params) {
  for (const [key, id] of [["q", "q"], ["mode", "mode"], ["video", "video-filter"], ["from", "t-from"], ["to", "t-to"]]) {
    if (params.has(key)) $(id).value = params.get(key);
  }
  const q = params.get("q");
  const status = $("search-status");
  const hits = $("hits");
  if (!q) {
    hits.replaceChildren();
    status.className = "status";
    status.textContent = "Search captions by words, by meaning, or both. Click a result to play that moment.";
    return;
  }
  status.className = "status";
  status.textContent = "Searching…";
  const query = new URLSearchParams({ q, mode: params.get("mode") || "hybrid", limit: "48" });
  for (const key of ["video", "from", "to"]) if (params.get(key)) query.set(key, params.get(key));
  const started = performance.now();
  try {
    const result = await api("api/search?" + query);
    const ms = Math.round(performance.now() - started);
    status.textContent = `${result.hits.length} moment${result.hits.length === 1 ? "" : "s"} for “${result.query}” (${result.mode}, ${ms} ms)`;
    hits.replaceChildren(...result.hits.map(hitCard));
    if (!result.hits.length) status.textContent += ": try other words, another mode, or fewer filters.";
  } catch (error) {
    status.className = "status error";
    status.textContent = error.message;
    hits.replaceChildren();
  }
}

function hitCard(hit) {
  const label = hit.t_start === hit.t_end ? clock(hit.t_end) : `${clock(hit.t_start)}–${clock(hit.t_end)}`;
  const card = el("a", { class: "card hit", href: `#/video/${encodeURIComponent(hit.video_id)}?t=${hit.t_start}`,
                         dataset: { video: hit.video_id, t: hit.t_start }, title: hit.text },
    thumb(hit.video_id, hit.t_start, label, hit.source === "answer" ? "answer" : null),
    el("div", { class: "body" }, el("div", { class: "name" }, hit.name), el("div", { class: "text" }, hit.text)));
  return card;
}

// ---- one video

async function openVideo(videoId, params) {
  const t = parseFloat(params.get("t") || "0") || 0;
  const player = $("player");
  if (state.current && state.current.video_id === videoId) {
    seek(t, true);
    return;
  }
  let video;
  try {
    video = await api(`api/videos/${encodeURIComponent(videoId)}`);
  } catch (error) {
    $("video-title").textContent = error.message;
    return;
  }
  state.current = video;
  $("video-title").textContent = video.name;
  const facts = [video.status, video.duration_s ? clock(video.duration_s) : null, `${video.captions.length} captions`,
                 `${video.answers.length} answers`, `${video.snapshots.length} snapshots`, video.video_id];
  $("video-meta").textContent = facts.filter(Boolean).join(" · ") + (video.error ? ` — ${video.error}` : "");
  delete player.dataset.seekedTo;
  player.dataset.start = String(t);
  player.src = `api/videos/${encodeURIComponent(videoId)}/source`;
  player.addEventListener("loadedmetadata", () => seek(t, true), { once: true });
  renderMoments(video);
  $("ask-answer").hidden = true;
  $("ask-timing").textContent = "";
}

function seek(t, play) {
  const player = $("player");
  player.dataset.start = String(t);
  if (player.readyState < 1) return; // loadedmetadata seeks
  player.currentTime = t;
  if (play) player.play().catch(() => { /* autoplay refused: the controls are there */ });
}

function duration() {
  const player = $("player");
  return (isFinite(player.duration) && player.duration) || (state.current && state.current.duration_s) || 1;
}

function renderMoments(video) {
  const items = [
    ...video.captions.map((c) => ({ t: c.t_start, end: c.t_end, text: c.text, kind: "caption" })),
    ...video.answers.map((a) => ({ t: a.t, end: a.t, text: a.answer, question: a.question, kind: "answer" })),
  ].sort((a, b) => a.t - b.t || (a.kind === "caption" ? -1 : 1));
  const list = $("moments");
  list.replaceChildren(...items.map((item) => el("li", { class: item.kind + "-row", dataset: { t: item.t, end: item.end },
      onclick: () => seek(item.t, true) },
    el("span", { class: "t" }, clock(item.t)),
    el("span", {}, item.question ? el("div", { class: "q" }, "Q: " + item.question) : null,
       el("div", {}, (item.kind === "answer" ? "A: " : "") + item.text)))));
  if (!items.length) list.replaceChildren(el("li", {}, el("span"), el("span", { class: "muted" }, "nothing indexed yet")));
  drawTimeline(items);
}

function drawTimeline(items) {
  const bar = $("timeline");
  const total = duration();
  bar.replaceChildren($("playhead"), ...items.map((item) => item.kind === "caption"
    ? el("div", { class: "seg", title: `${clock(item.t)} ${item.text}`,
                  style: `left:${(100 * item.t) / total}%;width:${Math.max(0.4, (100 * (item.end - item.t)) / total - 0.3)}%` })
    : el("div", { class: "dot", title: `${clock(item.t)} Q: ${item.question} A: ${item.text}`, style: `left:${(100 * item.t) / total}%` })));
}

function onTimeUpdate() {
  const player = $("player");
  const t = player.currentTime;
  $("ask-at").textContent = clock(t, 1);
  $("playhead").style.left = `${(100 * t) / duration()}%`;
  let current = null;
  for (const li of $("moments").children) {
    const start = parseFloat(li.dataset.t), end = parseFloat(li.dataset.end);
    const on = li.classList.contains("caption-row") && t > start && t <= end;
    li.classList.toggle("current", on);
    if (on) current = li;
  }
  if (current && !player.paused) current.scrollIntoView({ block: "nearest" });
}

async function askNow(event) {
  event.preventDefault();
  const video = state.current;
  if (!video) return;
  const player = $("player");
  const at = Math.round(player.currentTime * 1000) / 1000;
  const question = $("ask-question").value.trim();
  const button = $("ask-button"), answer = $("ask-answer"), timing = $("ask-timing");
  button.disabled = true;
  answer.hidden = true;
  timing.textContent = `asking as of ${clock(at, 1)}…`;
  const started = performance.now();
  try {
    const result = await api(`api/videos/${encodeURIComponent(video.video_id)}/ask`, { json: { question, at, config_id: video.config_id } });
    const seconds = (performance.now() - started) / 1000;
    answer.className = "answer";
    answer.textContent = result.answer || "(empty answer)";
    answer.hidden = false;
    const t = result.timings;
    const from = result.snapshot_t === null ? "from the start" : `from the snapshot at ${clock(result.snapshot_t)}`;
    const parts = [["model", t.load_model_s], ["replay", t.replay_s], ["answer", t.ask_s]]
      .filter(([, v]) => v !== undefined).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(", ");
    timing.textContent = `as of ${clock(result.as_of, 1)}, ${from}, ${result.frames_replayed} frame${result.frames_replayed === 1 ? "" : "s"} replayed · `
      + `${seconds.toFixed(2)} s (${parts}; on ${result.device})` + (result.note ? ` · ${result.note}` : "");
    timing.dataset.asOf = String(result.as_of);
  } catch (error) {
    answer.className = "answer error";
    answer.textContent = error.message;
    answer.hidden = false;
    timing.textContent = "";
  } finally {
    button.disabled = false;
  }
}

// ---- videos

function renderVideos() {
  const grid = $("videos");
  grid.replaceChildren(...state.videos.map((v) => {
    const t = v.duration_s ? Math.min(v.duration_s * 0.1, 30) : 0;
    const ok = v.status !== "failed" || v.last_snapshot !== null;
    return el("a", { class: "card hit video-card", href: `#/video/${encodeURIComponent(v.video_id)}?t=0`, title: v.uri },
      ok ? thumb(v.video_id, t, v.duration_s ? clock(v.duration_s) : "") : el("div", { class: "thumb" }),
      el("div", { class: "body" }, el("div", { class: "name" }, v.name),
         el("div", { class: v.status === "failed" ? "error small" : "muted small" },
            `${v.status} · ${v.caption_count} captions` + (v.error ? ` — ${v.error}` : ""))));
  }));
  if (!state.videos.length) grid.replaceChildren(el("p", { class: "muted" }, "No video is indexed yet."));
}

async function loadVideos() {
  try {
    state.videos = await api("api/videos");
  } catch (error) {
    toast(error.message);
    return;
  }
  state.videoById = new Map(state.videos.map((v) => [v.video_id, v]));
  const select = $("video-filter"), chosen = select.value;
  const seen = new Set();
  select.replaceChildren(el("option", { value: "" }, "all videos"), ...state.videos
    .filter((v) => !seen.has(v.video_id) && seen.add(v.video_id))
    .map((v) => el("option", { value: v.video_id }, v.name)));
  select.value = chosen;
  const captions = state.videos.reduce((n, v) => n + v.caption_count, 0);
  $("index-info").textContent = `${seen.size} video${seen.size === 1 ? "" : "s"} · ${captions} captions`;
  if (!$("view-videos").hidden) renderVideos();
}

// ---- ask the archive

function stopPolling() {
  clearTimeout(state.jobTimer);
  state.jobTimer = null;
}

async function submitArchive(event) {
  event.preventDefault();
  const body = { question: $("archive-question").value.trim(), force: $("archive-force").checked };
  if ($("archive-where").value.trim()) body.where = $("archive-where").value.trim();
  if ($("archive-at").value.trim()) body.at = $("archive-at").value.trim();
  try {
    const job = await api("api/archive/jobs", { json: body });
    go("archive", { job: job.id });
  } catch (error) {
    toast(error.message);
  }
}

async function pollJob(jobId) {
  stopPolling();
  let job;
  try {
    job = await api(`api/archive/jobs/${encodeURIComponent(jobId)}`);
  } catch (error) {
    toast(error.message);
    return;
  }
  renderJob(job);
  if (job.state === "queued" || job.state === "running") state.jobTimer = setTimeout(() => pollJob(jobId), 400);
  else loadJobs();
}

function renderJob(job) {
  $("job").hidden = false;
  $("job-question").textContent = job.question;
  const badge = $("job-state");
  badge.textContent = job.state;
  badge.className = "badge " + job.state;
  const fraction = job.total ? job.done / job.total : job.state === "done" ? 1 : 0;
  $("job-bar").style.width = `${Math.round(100 * fraction)}%`;
  const result = job.result;
  $("job-count").textContent = job.total === null ? "planning…"
    : `${job.done} of ${job.total} video stream${job.total === 1 ? "" : "s"} answered` + (result
      ? ` · ${result.answers.filter((a) => !a.cached).length} new, ${result.answers.filter((a) => a.cached).length} stored earlier · ${result.timings.total_s.toFixed(2)} s`
      : "") + (job.error ? ` · ${job.error}` : "");
  const answers = result ? result.answers : [];
  $("job-answers").replaceChildren(...answers.map((a) => el("a", { class: "card hit", href: `#/video/${encodeURIComponent(a.video_id)}?t=${a.t}` },
    thumb(a.video_id, a.t, `as of ${clock(a.t)}`),
    el("div", { class: "body" }, el("div", { class: "name" }, a.uri.split("/").pop() + (a.cached ? " · stored earlier" : "")),
       el("div", { class: "text" }, a.answer)))));
  const problems = result ? [...result.skipped.map((s) => ["skipped", s]), ...result.errors.map((s) => ["error", s])] : [];
  $("job-problems").replaceChildren(...problems.map(([kind, s]) => el("p", { class: kind === "error" ? "error small" : "muted small" },
    `${kind}: ${s.uri.split("/").pop()} — ${s.reason}`)));
}

async function loadJobs() {
  let jobs;
  try { jobs = await api("api/archive/jobs"); } catch (error) { return; }
  $("jobs").replaceChildren(...jobs.map((job) => el("li", {},
    el("a", { href: `#/archive?job=${job.id}` }, job.question), " ",
    el("span", { class: "badge " + job.state }, job.state), " ",
    el("span", { class: "muted small" }, new Date(job.submitted_at * 1000).toLocaleTimeString()))));
  if (!jobs.length) $("jobs").replaceChildren(el("li", { class: "muted" }, "none yet"));
}

// ---- start

function start() {
  $("search-form").addEventListener("submit", (event) => { event.preventDefault(); go("search", searchParams()); });
  $("ask-form").addEventListener("submit", askNow);
  $("archive-form").addEventListener("submit", submitArchive);
  const player = $("player");
  player.addEventListener("timeupdate", onTimeUpdate);
  player.addEventListener("seeked", () => { player.dataset.seekedTo = String(player.currentTime); onTimeUpdate(); });
  player.addEventListener("loadedmetadata", () => state.current && renderMoments(state.current));
  player.addEventListener("error", () => toast("the video cannot be played here: " + ((player.error && player.error.message) || "unsupported format")));
  $("timeline").addEventListener("click", (event) => {
    const box = event.currentTarget.getBoundingClientRect();
    seek(((event.clientX - box.left) / box.width) * duration(), false);
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "/" && !["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName)) {
      event.preventDefault();
      go("search", searchParams());
      $("q").focus();
    }
  });
  window.addEventListener("hashchange", route);
  loadVideos();
  route();
}

start();
