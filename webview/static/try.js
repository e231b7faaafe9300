// "Try it first", live: the form goes to the same address with fetch(), asking for one JSON
// object a line; what the program prints is added as it comes, then the verdict section the
// server renders replaces the live box. Leaving the page (or "Stop the try") ends the request,
// and the gateway then ends the program. Without this script the button posts the form and the
// page comes back with the verdict.
"use strict";
(function () {
  const form = document.querySelector("form[data-try-form]");
  if (!form || !window.fetch || !window.AbortController || !window.TextDecoder) return;
  const slot = form.querySelector("[data-try-slot]");
  const target = form.getAttribute("action");  // form.action is the buttons named "action"
  const KEEP = 500;  // lines the live box keeps
  let running = null;

  function fromTemplate(sel) {
    return form.querySelector(sel).content.firstElementChild.cloneNode(true);
  }

  function append(pre, line) {
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.appendChild(document.createTextNode(line + "\n"));
    while (pre.childNodes.length > KEEP) pre.removeChild(pre.firstChild);
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  }

  function show(html) {
    const tpl = document.createElement("template");
    tpl.innerHTML = html.trim();
    slot.replaceChildren(tpl.content);
    const pre = slot.querySelector("[data-try-lines]");
    if (pre) pre.scrollTop = pre.scrollHeight;
  }

  function plainPost() {  // the page without this script: the server answers with the whole form
    form.dataset.plain = "1";
    const hidden = document.createElement("input");
    hidden.type = "hidden"; hidden.name = "action"; hidden.value = "try";
    form.appendChild(hidden);
    form.submit();
  }

  async function run() {
    if (running) running.abort();
    const ctrl = running = new AbortController();
    const box = fromTemplate("[data-try-live]");
    const pre = box.querySelector("[data-try-lines]");
    slot.replaceChildren(box);
    box.querySelector("[data-try-stop]").addEventListener("click", function () { ctrl.abort(); });
    const body = new FormData(form);
    body.set("action", "try");
    try {
      const r = await fetch(target, { method: "POST", body: body, signal: ctrl.signal,
                                           headers: { "Accept": "application/x-ndjson" } });
      if (!(r.headers.get("content-type") || "").startsWith("application/x-ndjson")) {
        ctrl.abort();
        plainPost();  // something to fix in the form (or not signed in): show the page it answers
        return;
      }
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buffered = "", done = false;
      while (!done) {
        const chunk = await reader.read();
        buffered += decoder.decode(chunk.value || new Uint8Array(), { stream: !chunk.done });
        const parts = buffered.split("\n");
        buffered = parts.pop();
        for (const part of parts) {
          if (!part.trim()) continue;
          const m = JSON.parse(part);
          if (m.line !== undefined) append(pre, m.line);
          if (m.note) box.querySelector("[data-try-note]").textContent = m.note;
          if (m.done) { show(m.html); done = true; }
        }
        if (chunk.done && !done) throw new Error("cut off");
      }
    } catch (e) {
      if (running !== ctrl) return;  // a newer try took over the box
      box.querySelector("[data-verdict]").replaceWith(fromTemplate(ctrl.signal.aborted ? "[data-try-stopped]" : "[data-try-lost]"));
      box.classList.replace("running", "failed");
      const stop = box.querySelector("[data-try-stop]");
      if (stop) stop.remove();
    } finally {
      if (running === ctrl) running = null;
    }
  }

  form.addEventListener("submit", function (ev) {
    if (form.dataset.plain || !ev.submitter || ev.submitter.value !== "try") return;
    ev.preventDefault();
    run();
  });

  // A verdict is about the form as it was tried: say so when it has changed since.
  form.addEventListener("input", function () {
    const stale = slot.querySelector("[data-stale]");
    if (stale && stale.hidden) {
      stale.hidden = false;
      slot.querySelector("[data-tried]").classList.add("stale");
    }
  });
})();
