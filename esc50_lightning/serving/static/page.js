// The page of `esc50-lightning serve`: a file (dropped or chosen) or a recording goes to POST /predict;
// the answer's top classes become bars, its spectrogram an image. No library, nothing from elsewhere.
"use strict";
const $ = (id) => document.getElementById(id);
const SENT_AS_IS = /\.(wav|flac|ogg|oga)$/i;  // what the server decodes itself; anything else is made a WAV here
const RECORD_SECONDS = 5;

function state(name, message) {
  document.body.dataset.state = name;
  $("status").textContent = message || "";
}

async function describeModel() {
  try {
    const info = (await (await fetch("/info")).json()).model;
    const n = info.checkpoints.length;
    $("model").textContent = `${info.classes.length} classes · ${info.sample_rate} Hz · ` +
      `${info.clip_seconds} s windows · ${n} checkpoint${n > 1 ? "s (averaged)" : ""} · up to ` +
      `${(info.max_bytes / 1e6).toFixed(0)} MB, ${info.max_seconds} s`;
  } catch (err) {
    $("model").textContent = "the server's /info did not answer";
  }
}

// Any audio the browser decodes -> a 16-bit mono WAV Blob (for recordings and MP3, M4A, WebM files).
async function toWav(blob) {
  const buffer = await new OfflineAudioContext(1, 1, 44100).decodeAudioData(await blob.arrayBuffer());
  const n = buffer.length, rate = buffer.sampleRate, mono = new Float32Array(n);
  for (let c = 0; c < buffer.numberOfChannels; c++) {
    const data = buffer.getChannelData(c);
    for (let i = 0; i < n; i++) mono[i] += data[i] / buffer.numberOfChannels;
  }
  const view = new DataView(new ArrayBuffer(44 + 2 * n));
  const text = (at, s) => { for (let i = 0; i < s.length; i++) view.setUint8(at + i, s.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + 2 * n, true); text(8, "WAVE"); text(12, "fmt ");
  view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, rate, true); view.setUint32(28, 2 * rate, true); view.setUint16(32, 2, true);
  view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, 2 * n, true);
  for (let i = 0; i < n; i++) view.setInt16(44 + 2 * i, Math.max(-1, Math.min(1, mono[i])) * 0x7fff, true);
  return new Blob([view], { type: "audio/wav" });
}

async function classify(blob, name) {
  state("busy", `classifying ${name}…`);
  $("player").src = URL.createObjectURL(blob);
  $("player").hidden = false;
  try {
    if (!SENT_AS_IS.test(name)) {
      try { blob = await toWav(blob); name = name.replace(/\.[^.]*$/, "") + ".wav"; } catch (err) { /* server says */ }
    }
    const form = new FormData();
    form.append("file", blob, name);
    const response = await fetch("/predict?spectrogram=1", { method: "POST", body: form });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || answer.detail || `HTTP ${response.status}`);
    show(answer, name);
    state("done", "");
  } catch (err) {
    $("result").hidden = true;
    state("error", String(err.message || err));
  }
}

function row(item) {
  const div = document.createElement("div");
  div.className = "row";
  const pct = (100 * item.probability).toFixed(1);
  div.innerHTML = `<span class="name"></span><span class="track"><span class="fill"></span></span>` +
    `<span class="value">${pct}%</span>`;
  div.querySelector(".name").textContent = item.class.replace(/_/g, " ");
  div.querySelector(".fill").style.width = `${pct}%`;
  div.querySelector(".fill").style.display = "block";
  return div;
}

function show(answer, name) {
  $("top-class").textContent = answer.top[0].class;
  $("seconds").textContent = `${name}, ${answer.seconds} s`;
  $("bars").replaceChildren(...answer.top.map(row));
  const spec = answer.spectrogram;
  $("spec-image").src = spec ? spec.image : "";
  $("f-max").textContent = spec ? `${(spec.f_max / 1000).toFixed(1)} kHz` : "";
  $("f-min").textContent = spec ? `${spec.f_min} Hz` : "";
  $("t-max").textContent = `${answer.seconds} s`;
  const rows = (answer.windows || []).map((w) => {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td>${w.start.toFixed(2)} s</td><td></td><td>${(100 * w.top[0].probability).toFixed(1)}%</td>`;
    tr.children[1].textContent = w.top[0].class;
    return tr;
  });
  $("windows").querySelector("tbody").replaceChildren(...rows);
  $("windows").hidden = rows.length === 0;
  $("result").hidden = false;
}

function wireFiles() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => e.target.files[0] && classify(e.target.files[0], e.target.files[0].name));
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    const file = e.dataTransfer.files[0];
    if (file) classify(file, file.name);
  });
}

function wireMicrophone() {
  const button = $("record");
  let recorder = null, timer = null;
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    button.disabled = true;
    $("mic-status").textContent = "this browser cannot record here (the page needs localhost or HTTPS)";
    return;
  }
  button.addEventListener("click", async () => {
    if (recorder) { recorder.stop(); return; }
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      const chunks = [];
      recorder = new MediaRecorder(stream);
      recorder.ondataavailable = (e) => chunks.push(e.data);
      recorder.onstop = async () => {
        clearTimeout(timer);
        stream.getTracks().forEach((t) => t.stop());
        button.classList.remove("on");
        button.textContent = `● Record ${RECORD_SECONDS} s`;
        recorder = null;
        const blob = new Blob(chunks, { type: chunks[0] ? chunks[0].type : "audio/webm" });
        try { classify(await toWav(blob), "recording.wav"); } catch (err) { state("error", `recording: ${err}`); }
      };
      recorder.start();
      button.classList.add("on");
      button.textContent = "■ Stop";
      state("busy", `recording (${RECORD_SECONDS} s at most)…`);
      timer = setTimeout(() => recorder && recorder.stop(), RECORD_SECONDS * 1000);
    } catch (err) {
      state("error", `microphone: ${err.message || err}`);
    }
  });
}

describeModel();
wireFiles();
wireMicrophone();
