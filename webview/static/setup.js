// The setup form's strength hint, as you type (the gateway checks again when you send it).
(function () {
  "use strict";
  var input = document.querySelector("[data-strength-of]"), out = document.querySelector("[data-strength]");
  if (!input || !out) return;
  var common = ["password", "12345678", "123456789", "qwertyuiop", "iloveyou", "password1", "11111111"];
  input.addEventListener("input", function () {
    var p = input.value, kinds = [/[a-z]/, /[A-Z]/, /[0-9]/, /[^A-Za-z0-9]/].filter(function (r) { return r.test(p); }).length;
    var level, words;
    if (p.length < 8) { level = "weak"; words = "Too short: use at least 8 characters."; }
    else if (common.indexOf(p.toLowerCase()) >= 0 || new Set(p).size < 4) { level = "weak"; words = "Too easy to guess."; }
    else if (p.length >= 14 || (p.length >= 10 && kinds >= 3)) { level = "strong"; words = "Strong."; }
    else { level = "ok"; words = "Good enough. Longer is stronger: a few unrelated words work well."; }
    out.dataset.level = level;
    out.textContent = words;
  });
})();
