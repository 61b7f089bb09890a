// phasegate console: follows a running run's test output (server-sent events). Text only:
// every line is added as a text node, never parsed as HTML.
"use strict";
(function () {
  var log = document.getElementById("log");
  if (!log || !log.dataset.events || !window.EventSource) {
    return;
  }
  var stage = document.getElementById("stage");
  var live = document.getElementById("live");
  var source = new EventSource(log.dataset.events);
  source.addEventListener("log", function (e) {
    var atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 8;
    log.appendChild(document.createTextNode(e.data + "\n"));
    if (atBottom) {
      window.scrollTo(0, document.body.scrollHeight);
    }
  });
  source.addEventListener("stage", function (e) {
    if (stage) {
      stage.textContent = e.data;
    }
  });
  source.addEventListener("end", function (e) {
    source.close();
    if (stage) {
      stage.textContent = e.data;
    }
    if (live) {
      live.textContent = "Finished: " + e.data + ". Reloading for the answer…";
    }
    window.setTimeout(function () { window.location.reload(); }, 1500);
  });
})();
