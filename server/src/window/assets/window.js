// The window's live parts, all optional: without JavaScript every form
// still works. Counts down, watches for the phone's answer, and posts the
// final result on to the shop.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  document.querySelectorAll("[data-countdown]").forEach(function (el) {
    var left = parseInt(el.getAttribute("data-countdown"), 10) || 0;
    var tick = function () {
      el.textContent = Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
      if (left > 0) { left -= 1; setTimeout(tick, 1000); }
    };
    tick();
  });

  document.querySelectorAll("form[data-autosubmit]").forEach(function (form) {
    var delay = parseInt(form.getAttribute("data-autosubmit"), 10) || 0;
    setTimeout(function () { form.submit(); }, delay);
  });

  // Long polling: the server answers when the screen would change (the
  // phone approved, the push timed out into a code, the purchase ended);
  // the page then shows the new screen through its own refresh form.
  var refresh = document.getElementById("refresh");
  if (refresh && refresh.hasAttribute("data-poll")) {
    var seen = refresh.getAttribute("data-poll");
    var busy = false;
    var poll = function () {
      if (busy) { return; }
      busy = true;
      var body = new URLSearchParams();
      body.set("session", refresh.elements.session.value);
      body.set("csrf", refresh.elements.csrf.value);
      body.set("seen", seen);
      fetch("/challenge/poll", { method: "POST", body: body, credentials: "omit", cache: "no-store" })
        .then(function (r) { return r.json(); })
        .then(function (answer) {
          busy = false;
          if (answer.screen && answer.screen !== seen && answer.screen !== "gone") {
            refresh.submit();
          } else if (answer.screen !== "gone") {
            setTimeout(poll, 200);
          }
        })
        .catch(function () { busy = false; setTimeout(poll, 3000); });
    };
    poll();
  }

  var first = document.querySelector("main input:not([type=hidden])");
  if (first) { first.focus(); } else {
    var h1 = document.querySelector("main h1");
    if (h1) { h1.focus(); }
  }
})();
