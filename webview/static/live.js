// Live updates without a build step: server-sent status rows, buttons that answer at once,
// a following log. Without JavaScript every form still works by a normal POST and reload.
"use strict";
(function () {
  const note = document.getElementById("live-note");
  function say(text, bad) {
    if (!note) return;
    note.textContent = text;
    note.hidden = false;
    note.classList.toggle("error", !!bad);
  }

  // Buttons: POST in the background, show "working" at once, then the outcome in words.
  document.addEventListener("submit", async function (ev) {
    const form = ev.target;
    if (!form.matches("form[data-control]")) return;
    ev.preventDefault();
    const body = new FormData(form, ev.submitter);
    const verb = body.get("verb");
    const card = form.closest(".card");
    const buttons = form.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    if (card) {
      card.classList.add("pending");
      const badge = card.querySelector("[data-status]");
      if (badge) badge.textContent = verb === "stop" ? "stopping…" : verb === "start" ? "starting…" : "restarting…";
    }
    say((verb || "working") + "…");
    try {
      const r = await fetch(form.action, { method: "POST", body: body, headers: { "Accept": "application/json" } });
      const data = await r.json();
      say(r.ok ? data.message : "Error: " + data.error, !r.ok);
    } catch (e) {
      say("The gateway did not answer: " + e, true);
    } finally {
      buttons.forEach(function (b) { b.disabled = false; });
      if (card) card.classList.remove("pending");
    }
  });

  // Status rows: the server sends each changed card as HTML; swap it in by id.
  if (document.querySelector(".card[data-name]") || document.getElementById("servers")) {
    const hint = document.querySelector("[data-live-hint]");
    const source = new EventSource("/stream?back=" + encodeURIComponent(location.pathname));
    source.addEventListener("server", function (ev) {
      const tpl = document.createElement("template");
      tpl.innerHTML = ev.data.trim();
      const fresh = tpl.content.firstElementChild;
      if (!fresh) return;
      const old = document.getElementById(fresh.id);
      const cards = document.querySelector("#servers .cards");
      // the same card as shown (a stream that connects sends every card): keep the page's own,
      // whose figures are as fresh as the page; a cached copy's would go back in time
      if (old && old.dataset.v && old.dataset.v === fresh.dataset.v) return;
      if (old) { old.replaceWith(fresh); tick(); }
      else if (cards && !location.search) { cards.appendChild(fresh); tick(); }  // a new server: shown at once
      else if (document.getElementById("servers") && hint) hint.textContent = "New server " + fresh.dataset.name + ": reload to see it.";
    });
    source.addEventListener("gone", function (ev) {
      const old = document.getElementById("srv-" + ev.data.trim());
      if (old && document.getElementById("servers")) old.remove();
    });
    // What moves without a state change: the counts, CPU and memory.
    source.addEventListener("stats", function (ev) {
      const d = JSON.parse(ev.data);
      setText("[data-count-running]", d.running);
      setText("[data-count-total]", d.total);
      setText("[data-count-off]", d.off ? " · " + d.off + " stopped on purpose" : "");
      const att = document.querySelector("[data-count-attention]");
      if (att) {
        att.textContent = d.attention ? d.attention + (d.attention === 1 ? " needs" : " need") + " attention: " +
          d.attention_names.join(", ") : "Nothing needs your attention.";
        att.classList.toggle("none", !d.attention);
      }
      if (d.host) {
        ["cpu", "mem", "disk", "internet", "battery"].forEach(function (key) {
          const el = document.querySelector('[data-host="' + key + '"]');
          if (!el) return;
          el.textContent = d.host[key] || "";
          el.hidden = !d.host[key];
          if (key === "internet") { el.classList.toggle("ok", !!d.host.internet_ok); el.classList.toggle("bad", !d.host.internet_ok); }
        });
      }
      Object.keys(d.servers).forEach(function (name) {
        const c = document.getElementById("srv-" + name);
        if (!c) return;
        const cpu = c.querySelector("[data-cpu]"), mem = c.querySelector("[data-mem]");
        if (cpu) cpu.textContent = d.servers[name].cpu;
        if (mem) mem.textContent = d.servers[name].mem;
      });
    });
    source.addEventListener("open", function () { if (hint) hint.textContent = "Live: changes appear by themselves."; });
    source.addEventListener("error", function () { if (hint) hint.textContent = "Live updates paused; retrying…"; });
  }

  // "Open on this computer" links go to 127.0.0.1: from a phone they would open the phone itself.
  const onThisComputer = ["localhost", "127.0.0.1", "[::1]", "::1"].indexOf(location.hostname) >= 0;
  function hideLocalLinks(root) {
    if (onThisComputer) return;
    root.querySelectorAll("[data-open]").forEach(function (a) { a.remove(); });
  }
  if (!onThisComputer) {
    hideLocalLinks(document);
    new MutationObserver(function () { hideLocalLinks(document); }).observe(document.body, { childList: true, subtree: true });
  }

  function setText(sel, value) {
    document.querySelectorAll(sel).forEach(function (el) { el.textContent = value; });
  }

  // Times tick here, from the card's own deadlines: one countdown, the same in every place.
  function dur(s) {
    s = Math.max(0, Math.floor(s));
    if (s >= 86400) return Math.floor(s / 86400) + " d " + Math.floor(s % 86400 / 3600) + " h";
    if (s >= 3600) return Math.floor(s / 3600) + " h " + Math.floor(s % 3600 / 60) + " min";
    return s >= 60 ? Math.floor(s / 60) + " min" : s + " s";
  }
  function wait(s) {
    s = Math.max(0, Math.round(s));
    if (s === 0) return "a moment";
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min" + (s % 60 ? " " + (s % 60) + " s" : "");
    return Math.floor(s / 3600) + " h " + Math.floor(s % 3600 / 60) + " min";
  }
  function tick() {
    const now = Date.now() / 1000;
    document.querySelectorAll("[data-since]").forEach(function (el) { el.textContent = dur(now - parseFloat(el.dataset.since)); });
    document.querySelectorAll("[data-until]").forEach(function (el) { el.textContent = wait(parseFloat(el.dataset.until) - now); });
  }
  setInterval(tick, 1000);

  // Log: opens at the newest line, then follows while the page is open.
  const log = document.getElementById("log");
  if (log) log.scrollTop = log.scrollHeight;
  if (log) {
    const url = "/servers/" + encodeURIComponent(log.dataset.log) + "/log?q=" + encodeURIComponent(log.dataset.q || "");
    setInterval(async function () {
      if (document.hidden) return;
      const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      try {
        const r = await fetch(url, { headers: { "Accept": "application/json" } });
        if (!r.ok) return;
        const data = await r.json();
        log.textContent = data.lines.join("\n") + (data.lines.length ? "\n" : "");
        if (atEnd) log.scrollTop = log.scrollHeight;
      } catch (e) { /* the next tick tries again */ }
    }, 2000);
  }
})();

// "Check port" without leaving the form.
document.addEventListener("click", async function (ev) {
  const button = ev.target.closest && ev.target.closest("[data-check-port]");
  if (!button) return;
  ev.preventDefault();
  const form = button.form;
  const out = document.getElementById("port-note");
  out.textContent = "Checking…";
  const q = new URLSearchParams({ port: form.querySelector("[data-port]").value, name: form.elements.name.value });
  try {
    const r = await fetch("/check-port?" + q, { headers: { "Accept": "application/json" } });
    out.textContent = (await r.json()).message;
  } catch (e) { out.textContent = "Could not check: " + e; }
});
