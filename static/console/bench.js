// The test bench: clicking a value in the parse tree picks its v2 path (shown, and copied to the
// clipboard when the browser allows it). A file, not an inline script: the CSP allows 'self' only.
(function () {
  "use strict";

  document.addEventListener("click", function (event) {
    var node = event.target.closest("button.bench-path");
    if (!node) {
      return;
    }
    var picked = document.getElementById("bench-picked");
    document.querySelectorAll("button.bench-path.picked").forEach(function (b) {
      b.classList.remove("picked");
    });
    node.classList.add("picked");
    if (picked) {
      picked.textContent = node.dataset.path;
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(node.dataset.path).catch(function () {});
    }
  });
})();
