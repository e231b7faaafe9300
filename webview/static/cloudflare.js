// The Cloudflare page: copy buttons, and noticing cloudflared once it is there (or why it is not).
(function () {
  document.addEventListener("click", function (ev) {
    var button = ev.target.closest("[data-copy]");
    if (!button) return;
    var text = document.getElementById(button.getAttribute("data-copy")).textContent;
    var done = function () { button.textContent = "Copied"; setTimeout(function () { button.textContent = "Copy"; }, 2000); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { button.textContent = "Select and copy it"; });
    } else {  // plain http from a phone: select the text so a long press copies it
      var range = document.createRange();
      range.selectNodeContents(document.getElementById(button.getAttribute("data-copy")));
      var sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
      try { document.execCommand("copy"); done(); } catch (e) { button.textContent = "Selected: copy it"; }
    }
  });
  var missing = document.querySelector("[data-cf-missing]");
  var state = document.querySelector("[data-cf-state]");
  var typing = function () { var t = document.querySelector("input[name=token]"); return t && t.value; };
  if (!missing && !state) return;
  setInterval(function () {
    fetch("/cloudflare/state.json", {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (s) {
      var changed = (missing && (s.cloudflared || (s.said || "") !== missing.getAttribute("data-said"))) ||
        (state && s.state !== state.getAttribute("data-cf-state"));
      if (changed && !typing()) location.reload();
    }).catch(function () {});
  }, 5000);
})();
