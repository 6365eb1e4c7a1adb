// Live refresh: pages that ask for it (data-refresh="SECONDS") reload themselves,
// unless the operator is typing into a form.
(function () {
  var seconds = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  if (!seconds) return;
  setInterval(function () {
    var active = document.activeElement;
    var typing = active && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName) && active.value !== "";
    if (!typing && document.visibilityState === "visible") location.reload();
  }, seconds * 1000);
})();
