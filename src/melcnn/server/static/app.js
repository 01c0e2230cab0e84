// melcnn web page: upload, analyse, show the verdict, the chunk timeline and the measurements.
// Plain JavaScript, no build step, no external resources.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const els = {
    form: $("form"), file: $("file"), drop: $("drop"), fileName: $("file-name"), analyze: $("analyze"),
    plots: $("plots"), keyBox: $("key-box"), apiKey: $("api-key"), status: $("status"),
    progressWrap: $("progress-wrap"), progress: $("progress"), result: $("result"), resultFile: $("result-file"),
    verdict: $("verdict"), meter: $("meter"), meterFill: $("meter-fill"), meterThreshold: $("meter-threshold"),
    scoreText: $("score-text"), explain: $("explain"), warnings: $("warnings"), player: $("player"),
    playerNote: $("player-note"), timeline: $("timeline"), thresholdLine: $("threshold-line"),
    playhead: $("playhead"), axisMid: $("axis-mid"), axisEnd: $("axis-end"), pictureFig: $("picture-fig"),
    picture: $("picture"), pictureCaption: $("picture-caption"), measurements: $("measurements"),
    download: $("download"), models: $("models"), overlap: $("overlap"), overlapHint: $("overlap-hint"),
    chunkLen: $("chunk-len"),
  };
  const state = { file: null, audioUrl: null, pictureUrl: null, reportUrl: null, models: null, limits: null,
                  duration: 0, bars: [] };

  // ---------------------------------------------------------------- helpers
  function setStatus(text, isError) {
    els.status.textContent = text;
    els.status.classList.toggle("error", Boolean(isError));
    els.status.setAttribute("role", isError ? "alert" : "status");
  }

  function fmt(x, digits) {
    return (x === null || x === undefined || Number.isNaN(x)) ? "n/a" : Number(x).toFixed(digits);
  }

  function fmtTime(s) {
    if (s < 60) return fmt(s, s < 10 ? 1 : 0) + " s";
    const m = Math.floor(s / 60);
    const r = Math.round(s - 60 * m);
    return m + ":" + String(r).padStart(2, "0");
  }

  function fmtBytes(n) {
    if (n < 1024 * 1024) return Math.max(1, Math.round(n / 1024)) + " KB";
    return (n / 1024 / 1024).toFixed(1) + " MB";
  }

  function authHeaders() {
    const key = els.apiKey.value.trim();
    return key ? { "X-API-Key": key } : {};
  }

  function errorText(status, body) {
    if (body && body.error && body.error.message) return body.error.message;
    if (status === 0) return "The server could not be reached.";
    return "The server answered " + status + ".";
  }

  // ---------------------------------------------------------------- models
  // Everything that differs between models comes from each model's spec in GET /v1/models: its label and
  // hint, its overlap range and default, which picture it draws. Nothing here names a model.
  function selectedModel() {
    const radio = els.form.querySelector('input[name="model"]:checked');
    return radio && state.models ? state.models[radio.value] : null;
  }

  function modelChoice(m, isDefault) {
    const spec = m.spec || {};
    const label = document.createElement("label");
    label.className = "choice";
    const radio = document.createElement("input");
    radio.type = "radio";
    radio.name = "model";
    radio.value = m.variant;
    radio.checked = isDefault;
    radio.addEventListener("change", showOverlapRange);
    const text = document.createElement("span");
    const strong = document.createElement("strong");
    strong.textContent = spec.label || m.variant;
    const hint = document.createElement("span");
    hint.className = "hint";
    hint.textContent = spec.hint || "";
    text.append(strong, " ", hint);
    label.append(radio, text);
    return label;
  }

  // the overlap field's bounds and hint: the chosen model's (the server applies the same rule)
  function showOverlapRange() {
    const m = selectedModel();
    const spec = (m && m.spec) || null;
    if (!spec) return;
    els.overlap.min = String(spec.min_overlap_s);
    els.overlap.max = String(spec.max_overlap_s);
    els.overlap.placeholder = String(spec.default_overlap_s);
    els.overlapHint.textContent = "seconds, " + spec.min_overlap_s + " to " + spec.max_overlap_s +
      "; empty: the model's default (" + spec.default_overlap_s + ")";
  }

  async function loadModels() {
    let resp;
    try {
      resp = await fetch("/v1/models", { headers: authHeaders() });
    } catch (e) {
      setStatus("The server could not be reached.", true);
      return;
    }
    if (resp.status === 401) {
      els.keyBox.open = true;
      setStatus("This server needs an API key: enter it under \u201cAPI key\u201d.", false);
      return;
    }
    if (!resp.ok) return;
    const data = await resp.json();
    state.models = {};
    for (const m of data.models) state.models[m.variant] = m;
    state.limits = data.limits;
    for (const old of els.models.querySelectorAll(".choice")) old.remove();
    for (const m of data.models) els.models.appendChild(modelChoice(m, m.variant === data.default));
    showOverlapRange();
    if (els.status.textContent.startsWith("This server needs")) setStatus("", false);
  }

  // ---------------------------------------------------------------- file choice
  function chooseFile(file) {
    if (!file) return;
    state.file = file;
    els.fileName.textContent = file.name + " (" + fmtBytes(file.size) + ")";
    els.drop.classList.add("has-file");
    els.analyze.disabled = false;
    if (state.limits && file.size > state.limits.max_upload_bytes) {
      setStatus("This file is larger than the server accepts (" + fmtBytes(state.limits.max_upload_bytes) + ").", true);
    } else {
      setStatus("Ready: press Analyse.", false);
    }
  }

  els.file.addEventListener("change", () => chooseFile(els.file.files[0]));
  for (const type of ["dragenter", "dragover"]) {
    els.drop.addEventListener(type, (ev) => {
      ev.preventDefault();
      els.drop.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "dragend", "drop"]) {
    els.drop.addEventListener(type, () => els.drop.classList.remove("dragging"));
  }
  els.drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    if (ev.dataTransfer && ev.dataTransfer.files.length) chooseFile(ev.dataTransfer.files[0]);
  });
  // a file dropped next to the zone should not make the browser navigate away
  window.addEventListener("dragover", (ev) => ev.preventDefault());
  window.addEventListener("drop", (ev) => ev.preventDefault());
  els.apiKey.addEventListener("change", loadModels);

  // ---------------------------------------------------------------- analysis request
  const BUSY_RETRIES = 20; // tries after a 503 before giving up (about 100 s at the server's Retry-After: 5)
  const MAX_RETRY_WAIT_S = 120;

  // seconds to wait from a Retry-After header (delay in seconds or an HTTP date); 5 when absent
  function retryDelaySeconds(header) {
    if (header === null || header === undefined || header === "") return 5;
    const seconds = Number(header);
    if (Number.isFinite(seconds)) return Math.min(Math.max(seconds, 1), MAX_RETRY_WAIT_S);
    const date = Date.parse(header);
    if (!Number.isNaN(date)) return Math.min(Math.max((date - Date.now()) / 1000, 1), MAX_RETRY_WAIT_S);
    return 5;
  }

  // count down on the status line so the user sees the page is waiting, not stuck
  async function waitWhileBusy(seconds, retry) {
    for (let left = Math.ceil(seconds); left > 0; left--) {
      setStatus("The server is busy with other analyses. Waiting " + left + " s, then trying again (retry " +
                retry + " of " + BUSY_RETRIES + ")\u2026", false);
      await new Promise((done) => setTimeout(done, 1000));
    }
  }

  function upload(form) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/v1/analyze");
      for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
      xhr.responseType = "json";
      xhr.upload.addEventListener("progress", (ev) => {
        if (ev.lengthComputable) {
          els.progress.value = Math.round((100 * ev.loaded) / ev.total);
          if (ev.loaded >= ev.total) {
            els.progress.removeAttribute("value");
            setStatus("Analysing\u2026", false);
          }
        }
      });
      xhr.addEventListener("load", () =>
        resolve({ status: xhr.status, body: xhr.response, retryAfter: xhr.getResponseHeader("Retry-After") }));
      xhr.addEventListener("error", () => resolve({ status: 0, body: null, retryAfter: null }));
      xhr.send(form);
    });
  }

  els.form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!state.file) {
      setStatus("Choose a file first.", true);
      return;
    }
    const model = (els.form.querySelector('input[name="model"]:checked') || {}).value;
    const form = new FormData();
    form.append("media", state.file, state.file.name);
    if (model) form.append("model", model);
    const overlap = els.overlap.value.trim();
    if (overlap !== "") form.append("overlap", overlap);
    form.append("plots", els.plots.checked ? "true" : "false");
    els.analyze.disabled = true;
    let status, body;
    for (let attempt = 0; ; attempt++) {
      els.progressWrap.hidden = false;
      els.progress.value = 0;
      setStatus(attempt ? "Uploading again\u2026" : "Uploading\u2026", false);
      let retryAfter;
      ({ status, body, retryAfter } = await upload(form));
      els.progressWrap.hidden = true;
      // 503: every worker busy and the queue full. Wait as long as the server asks, then try again.
      if (status !== 503 || attempt >= BUSY_RETRIES) break;
      await waitWhileBusy(retryDelaySeconds(retryAfter), attempt + 1);
    }
    els.analyze.disabled = false;
    if (status !== 200 || !body || !body.prediction) {
      if (status === 401) els.keyBox.open = true;
      setStatus("Could not analyse " + state.file.name + ": " + errorText(status, body), true);
      return;
    }
    setStatus("Done: " + state.file.name + " analysed in " + fmt(body.processing_time, 1) + " s.", false);
    showReport(body);
  });

  // ---------------------------------------------------------------- report
  function eerSentence(model) {
    const metrics = (model && model.metrics) || {};
    for (const [k, v] of Object.entries(metrics)) {
      if (/eer/i.test(k) && typeof v === "number") {
        return " On those recordings both error rates were " + fmt(100 * v, 1) + "%.";
      }
    }
    return "";
  }

  function showVerdict(r) {
    const fake = r.prediction === "FAKE";
    els.verdict.textContent = fake ? "FAKE" : "REAL";
    els.verdict.className = "verdict " + (fake ? "fake" : "real");
    els.meterFill.style.width = (100 * r.fake_score).toFixed(1) + "%";
    els.meterFill.className = "meter-fill " + (fake ? "fake" : "real");
    els.meterThreshold.style.left = (100 * r.threshold).toFixed(1) + "%";
    els.meter.setAttribute("aria-label", "fake score " + fmt(r.fake_score, 2) + " of 1; threshold " + fmt(r.threshold, 2));
    els.scoreText.textContent = "Fake score " + fmt(r.fake_score, 2) + " (threshold " + fmt(r.threshold, 2) +
      ") \u00b7 confidence " + fmt(100 * r.confidence, 0) + "%";
    const model = state.models && state.models[r.model.variant];
    els.explain.textContent =
      "The fake score is the model's calibrated estimate, from 0 (sounds like real speech) to 1 (sounds like " +
      "synthetic speech), averaged over " + r.chunks.length + " chunk" + (r.chunks.length === 1 ? "" : "s") +
      ". Recordings scoring " + fmt(r.threshold, 2) + " or more are called FAKE: " + fmt(r.threshold, 2) +
      " is the equal-error point on the model's development recordings, where real recordings wrongly called " +
      "fake were as frequent as fakes that were missed." + eerSentence(model) +
      " The score is evidence, not proof: the model has only seen the voice generators it was trained on.";
    els.warnings.replaceChildren();
    for (const w of r.warnings || []) {
      const li = document.createElement("li");
      li.textContent = w;
      els.warnings.appendChild(li);
    }
  }

  function chunkStep(r) {
    if (r.chunks.length > 1) return Math.max(0.05, r.chunks[1].start_s - r.chunks[0].start_s);
    return r.chunks[0].end_s - r.chunks[0].start_s;
  }

  function showTimeline(r) {
    for (const b of state.bars) b.remove();
    state.bars = [];
    const total = Math.max(r.properties.duration_seconds || 0, r.chunks[r.chunks.length - 1].end_s);
    state.duration = total;
    const step = chunkStep(r);
    els.chunkLen.textContent = fmt(r.chunks[0].end_s - r.chunks[0].start_s, 1).replace(/\.0$/, "") + " s";
    els.thresholdLine.style.bottom = (100 * r.threshold).toFixed(1) + "%";
    r.chunks.forEach((c, i) => {
      const centre = (c.start_s + c.end_s) / 2;
      const left = Math.max(0, centre - step / 2);
      const right = Math.min(total, centre + step / 2);
      const fake = c.fake_score >= r.threshold;
      const bar = document.createElement("button");
      bar.type = "button";
      bar.className = "bar" + (fake ? " fake" : "");
      bar.style.left = ((100 * left) / total).toFixed(3) + "%";
      bar.style.width = ((100 * (right - left)) / total).toFixed(3) + "%";
      bar.dataset.start = String(c.start_s);
      bar.dataset.index = String(i);
      bar.setAttribute("aria-label", "Chunk " + (i + 1) + ", " + fmt(c.start_s, 1) + " to " + fmt(c.end_s, 1) +
        " s, fake score " + fmt(c.fake_score, 2) + (fake ? ", at or above the threshold" : "") + ". Play from here.");
      bar.title = fmt(c.start_s, 1) + "\u2013" + fmt(c.end_s, 1) + " s: " + fmt(c.fake_score, 2);
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.height = Math.max(2, 100 * c.fake_score).toFixed(1) + "%";
      bar.appendChild(fill);
      bar.addEventListener("click", () => seek(c.start_s, bar));
      els.timeline.appendChild(bar);
      state.bars.push(bar);
    });
    els.axisMid.textContent = fmtTime(total / 2);
    els.axisEnd.textContent = fmtTime(total);
    els.playhead.style.left = "0%";
  }

  function seek(t, bar) {
    for (const b of state.bars) b.classList.remove("current");
    if (bar) bar.classList.add("current");
    els.player.currentTime = t;
    const played = els.player.play();
    if (played && played.catch) played.catch(() => {});
  }

  els.player.addEventListener("timeupdate", () => {
    if (!state.duration) return;
    const pct = Math.min(100, (100 * els.player.currentTime) / state.duration);
    els.playhead.style.left = pct.toFixed(2) + "%";
  });
  els.player.addEventListener("error", () => {
    els.playerNote.textContent = "Your browser cannot play this file's format; the timeline and scores are still valid.";
  });

  async function showPicture(r) {
    if (state.pictureUrl) URL.revokeObjectURL(state.pictureUrl);
    state.pictureUrl = null;
    els.pictureFig.hidden = true;
    const url = r.visualization && r.visualization.spectrogram_url;
    if (!url) return;
    try {
      const resp = await fetch(url, { headers: authHeaders() });
      if (!resp.ok) return;
      state.pictureUrl = URL.createObjectURL(await resp.blob());
    } catch (e) {
      return;
    }
    const model = state.models && state.models[r.model.variant];
    const timeline = Boolean(model && model.spec && model.spec.picture === "timeline");
    els.picture.alt = timeline
      ? "Chart: the fake score of each chunk over time, with the threshold line and suspicious spans shaded, " +
        "above the mel spectrogram of the recording."
      : "Mel spectrogram of the recording: time across, frequency up, loudness as colour.";
    els.pictureCaption.textContent = timeline
      ? "Chunk fake scores over time (top) above the spectrogram (bottom); red spans score at or above the threshold."
      : "Mel spectrogram of the whole recording.";
    els.picture.src = state.pictureUrl;
    els.pictureFig.hidden = false;
  }

  function addRow(term, value) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    els.measurements.append(dt, dd);
  }

  function showMeasurements(r) {
    els.measurements.replaceChildren();
    const p = r.properties || {};
    const pitch = r.pitch || {};
    const energy = r.energy || {};
    const spectral = r.spectral || {};
    addRow("Duration", fmt(p.duration_seconds, 1) + " s (" + fmt(p.analyzed_seconds, 1) + " s scored)");
    addRow("Format", (p.format || "?") + ", " + p.original_sample_rate + " Hz, " + p.original_channels +
      " channel" + (p.original_channels === 1 ? "" : "s"));
    addRow("Mean pitch", pitch.mean_pitch_hz ? fmt(pitch.mean_pitch_hz, 0) + " Hz" : "no voiced speech found");
    addRow("Pitch stability", pitch.pitch_stability_score === null || pitch.pitch_stability_score === undefined
      ? "n/a" : fmt(pitch.pitch_stability_score, 2) + " (0\u20131, higher = steadier)");
    if (pitch.voiced_ratio !== undefined) addRow("Voiced", fmt(100 * pitch.voiced_ratio, 0) + "% of the time");
    const dbfs = energy.rms_energy > 0 ? 20 * Math.log10(energy.rms_energy) : null;
    addRow("Loudness (RMS)", fmt(energy.rms_energy, 3) + (dbfs === null ? "" : " (" + fmt(dbfs, 1) + " dBFS)"));
    addRow("Silence", fmt(100 * energy.silence_ratio, 0) + "% of the time");
    addRow("Spectral centroid", fmt(spectral.spectral_centroid, 0) + " Hz");
    addRow("Spectral contrast", fmt(spectral.spectral_contrast, 1) + " dB");
    addRow("Model", r.model.name + " " + r.model.version);
    addRow("Processing time", fmt(r.processing_time, 2) + " s");
  }

  function showPlayer() {
    if (state.audioUrl) URL.revokeObjectURL(state.audioUrl);
    state.audioUrl = URL.createObjectURL(state.file);
    els.playerNote.textContent = "";
    els.player.src = state.audioUrl;
  }

  function showReport(r) {
    els.result.hidden = false;
    els.resultFile.textContent = "\u2014 " + (r.file || state.file.name);
    showVerdict(r);
    showPlayer();
    showTimeline(r);
    showMeasurements(r);
    if (state.reportUrl) URL.revokeObjectURL(state.reportUrl);
    state.reportUrl = URL.createObjectURL(new Blob([JSON.stringify(r, null, 2)], { type: "application/json" }));
    els.download.href = state.reportUrl;
    showPicture(r);
    els.result.scrollIntoView({ behavior: "smooth", block: "start" });
  }

  loadModels();
})();
