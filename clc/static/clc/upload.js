// Uploads a disk file to walrus in 8 MiB pieces with a progress bar. A failed piece is retried with back-off; a
// page reload or a cut connection resumes: choosing the same file again continues the same upload, whose offset
// walrus keeps (a 409 answer tells where to go on from).
(function () {
  "use strict";
  const section = document.getElementById("upload");
  const input = document.getElementById("upload-file");
  const go = document.getElementById("upload-go");
  const pause = document.getElementById("upload-cancel");
  const bar = document.getElementById("upload-progress");
  const status = document.getElementById("upload-status");
  const PIECE = 8 * 1024 * 1024;
  let paused = false;

  const storageKey = (file) =>
    `educloud-upload:${section.dataset.image}:${file.name}:${file.size}:${file.lastModified}`;
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function mib(bytes) { return (bytes / 1048576).toFixed(1) + " MiB"; }

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": window.CSRF_TOKEN},
      body: JSON.stringify(body),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(answer.detail || JSON.stringify(answer) || "HTTP " + response.status);
    return answer;
  }

  // One piece by XHR, so the bar moves while the piece is on its way.
  function putPiece(url, blob, offset, total, started) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", url);
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.upload.onprogress = (event) => show(offset + event.loaded, total, started);
      xhr.onload = () => {
        let answer = {};
        try { answer = JSON.parse(xhr.responseText); } catch (error) { answer = {}; }
        resolve({status: xhr.status, answer: answer});
      };
      xhr.onerror = () => reject(new Error("connection lost"));
      xhr.send(blob);
    });
  }

  function show(done, total, started) {
    const seconds = Math.max((Date.now() - started.time) / 1000, 0.001);
    const speed = (done - started.offset) / seconds;
    const left = speed > 0 ? Math.round((total - done) / speed) : 0;
    bar.value = total ? (100 * done) / total : 100;
    status.textContent = `${mib(done)} of ${mib(total)} (${(bar.value).toFixed(1)}%), ` +
      `${mib(speed)}/s, about ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")} left`;
  }

  async function upload(file) {
    let saved = JSON.parse(localStorage.getItem(storageKey(file)) || "null");
    if (!saved) {
      const started = await post(section.dataset.start, {size: file.size});
      saved = {
        uploadId: started.upload_id,
        dataUrl: (section.dataset.walrusLocal ? "" : started.walrus_url) + started.data_url,
        completeUrl: `${section.dataset.start}${started.upload_id}/complete/`,
      };
      localStorage.setItem(storageKey(file), JSON.stringify(saved));
    }
    let offset = 0;
    let failures = 0;
    const started = {time: Date.now(), offset: null};
    while (offset < file.size) {
      if (paused) { status.textContent = `Paused at ${mib(offset)}; press Upload to go on.`; return; }
      const end = Math.min(offset + PIECE, file.size);
      try {
        if (started.offset === null) started.offset = offset;
        const {status: code, answer} = await putPiece(`${saved.dataUrl}&offset=${offset}`, file.slice(offset, end),
                                                      offset, file.size, started);
        if (code === 409 && Number.isInteger(answer.offset)) {
          offset = answer.offset;
          started.offset = offset;
          started.time = Date.now();
          continue;
        }
        if (code < 200 || code >= 300) throw new Error(answer.detail || "walrus answered " + code);
        offset = answer.offset;
        failures = 0;
      } catch (error) {
        failures += 1;
        if (failures > 8) throw error;
        const wait = Math.min(1000 * 2 ** failures, 30000);
        status.textContent = `${error.message}; retrying in ${wait / 1000} s (resumes at ${mib(offset)})`;
        await sleep(wait);
      }
      show(offset, file.size, started);
    }
    status.textContent = "Verifying the checksum and storing the new version…";
    await post(saved.completeUrl, {});
    localStorage.removeItem(storageKey(file));
    status.textContent = "Uploaded.";
    window.location.reload();
  }

  go.addEventListener("click", async () => {
    const file = input.files[0];
    if (!file) { status.textContent = "Choose a disk file first."; return; }
    paused = false;
    go.disabled = true;
    pause.hidden = false;
    bar.hidden = false;
    try {
      await upload(file);
    } catch (error) {
      status.textContent = "Upload failed: " + error.message + ". Choose the same file again to resume.";
    } finally {
      go.disabled = false;
      pause.hidden = true;
    }
  });
  pause.addEventListener("click", () => { paused = true; });
})();
