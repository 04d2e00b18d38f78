// Runs in the mail body frame (archive/mailview.py inlines it; the body's CSP
// allows this script by its hash and no other). The frame is sandboxed without
// same-origin, so the View tab cannot measure it: it tells the page its height.
(function () {
  "use strict";
  var last = -1;
  function post(again) {
    var height = Math.ceil(document.documentElement.getBoundingClientRect().height);
    if (height !== last || again === true) {
      last = height;
      parent.postMessage({ mailFrameHeight: height }, "*");
    }
  }
  if (window.ResizeObserver) new ResizeObserver(post).observe(document.documentElement);
  window.addEventListener("load", post);
  // The page asks again when it starts listening after the frame has loaded.
  window.addEventListener("message", function (event) {
    if (event.source === parent) post(true);
  });
  post();
})();
