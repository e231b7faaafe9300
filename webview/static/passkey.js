// Passkeys: buttons with data-passkey="signin" | "register" fetch options (JSON) from
// data-options, ask the browser (navigator.credentials), and post the answer to data-post.
// The CSRF token, when signed in, comes from data-csrf. No library: base64url by hand.
(function () {
  "use strict";
  function bytes(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    return Uint8Array.from(atob(s), function (c) { return c.charCodeAt(0); }).buffer;
  }
  function text(buf) {
    var s = "", b = new Uint8Array(buf);
    for (var i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function creds(list) {
    return (list || []).map(function (c) { return Object.assign({}, c, { id: bytes(c.id) }); });
  }
  function answer(cred) {
    var r = cred.response, out = { id: cred.id, rawId: text(cred.rawId), type: cred.type, response: {
      clientDataJSON: text(r.clientDataJSON) }, clientExtensionResults: cred.getClientExtensionResults() };
    if (r.attestationObject) {
      out.response.attestationObject = text(r.attestationObject);
      if (r.getTransports) out.response.transports = r.getTransports();
    }
    if (r.authenticatorData) {
      out.response.authenticatorData = text(r.authenticatorData);
      out.response.signature = text(r.signature);
      if (r.userHandle) out.response.userHandle = text(r.userHandle);
    }
    return out;
  }
  async function post(url, body, csrf) {
    var headers = { "content-type": "application/json", "accept": "application/json" };
    if (csrf) headers["x-csrf-token"] = csrf;
    var r = await fetch(url, { method: "POST", headers: headers, body: JSON.stringify(body), credentials: "same-origin" });
    var data = await r.json().catch(function () { return {}; });
    if (!r.ok) throw new Error(data.error || ("the gateway answered " + r.status));
    return data;
  }
  async function run(button) {
    var note = button.parentNode.querySelector("[data-passkey-note]");
    var say = function (t) { if (note) note.textContent = t; };
    if (!window.PublicKeyCredential) { say("This browser cannot use passkeys."); return; }
    var kind = button.dataset.passkey, csrf = button.dataset.csrf || "";
    button.disabled = true;
    try {
      var label = "";
      if (kind === "register") {
        var field = document.getElementById(button.dataset.label || "");
        label = field ? field.value : "";
      }
      var o = await post(button.dataset.options, {}, csrf);
      o.challenge = bytes(o.challenge);
      var cred;
      if (kind === "register") {
        o.user.id = bytes(o.user.id);
        o.excludeCredentials = creds(o.excludeCredentials);
        say("Follow your device: fingerprint, face or PIN…");
        cred = await navigator.credentials.create({ publicKey: o });
      } else {
        o.allowCredentials = creds(o.allowCredentials);
        say("Follow your device: fingerprint, face or PIN…");
        cred = await navigator.credentials.get({ publicKey: o });
      }
      var done = await post(button.dataset.post, Object.assign(answer(cred), { label: label }), csrf);
      say("Done.");
      window.location.assign(done.next || "/");
    } catch (e) {
      say(e && e.name === "NotAllowedError" ? "Cancelled, or the passkey was not accepted." : (e.message || String(e)));
      button.disabled = false;
    }
  }
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest && ev.target.closest("[data-passkey]");
    if (b) { ev.preventDefault(); run(b); }
  });
})();
