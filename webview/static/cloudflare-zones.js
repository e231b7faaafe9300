// The add/edit form's web address: suggest NAME.ZONE for each domain of the connected
// Cloudflare account (a name + a zone), from /cloudflare/zones.json.
(function () {
  var input = document.querySelector("input[data-cf-zones]");
  var list = document.getElementById("cf-zones");
  if (!input || !list) return;
  var zones = [];
  var fill = function () {
    var typed = input.value.trim().toLowerCase();
    var name = typed.split(".")[0] || "www";
    list.textContent = "";
    zones.forEach(function (zone) {
      var option = document.createElement("option");
      option.value = typed.endsWith(zone) ? typed : name + "." + zone;
      list.appendChild(option);
    });
  };
  fetch("/cloudflare/zones.json", {credentials: "same-origin"}).then(function (r) { return r.json(); })
    .then(function (data) { zones = data.zones || []; fill(); }).catch(function () {});
  input.addEventListener("input", fill);
})();
