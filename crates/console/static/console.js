// Slipway console: live pages over server-sent events. The page names its stream in
// <body data-live>; on each `change` it fetches itself again and swaps its <main>; each
// `service-event` is added to the events list at once. Without this script every page still
// reads (and a reload shows the present).
(() => {
  "use strict";
  const url = document.body.dataset.live;
  // The logs page has a stream of its own (below).
  if (!url || !window.EventSource || document.querySelector("pre.logs")) return;
  const source = new EventSource(url);
  document.body.dataset.liveState = "connecting";
  source.addEventListener("open", () => { document.body.dataset.liveState = "open"; });
  source.addEventListener("error", () => { document.body.dataset.liveState = "reconnecting"; });

  let running = false;
  let again = false;
  async function refresh() {
    if (running) { again = true; return; }
    running = true;
    try {
      do {
        again = false;
        const r = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
        // Redirected (to the login page): the session ended; leave the page as it is.
        if (!r.ok || r.redirected) { source.close(); document.body.dataset.liveState = "closed"; return; }
        const fresh = new DOMParser().parseFromString(await r.text(), "text/html").querySelector("main");
        const main = document.querySelector("main");
        if (!fresh || !main) return;
        // Keep what the reader opened.
        main.querySelectorAll("details[open]").forEach((d, i) => {
          const same = fresh.querySelectorAll("details")[i];
          if (same) same.open = true;
        });
        main.replaceWith(fresh);
        document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
      } while (again);
    } finally {
      running = false;
    }
  }
  source.addEventListener("change", refresh);
  source.addEventListener("service-event", (m) => {
    const e = JSON.parse(m.data);
    const list = document.querySelector("ol.events");
    if (!list || list.querySelector(`li[data-event-id="${e.id}"]`)) return;
    const li = document.createElement("li");
    li.dataset.eventId = String(e.id);
    const t = document.createElement("time");
    t.dateTime = e.at;
    t.textContent = e.at;
    li.append(t, " ", e.message); // text, never HTML
    list.prepend(li);
  });
})();

// The logs page: each `log` event is one line, added as text.
(() => {
  "use strict";
  const pre = document.querySelector("pre.logs");
  const url = document.body.dataset.live;
  if (!pre || !url || !window.EventSource) return;
  const MAX_LINES = 5000;
  const source = new EventSource(url);
  source.addEventListener("open", () => { document.body.dataset.logsState = "open"; });
  source.addEventListener("log", (m) => {
    pre.append(document.createTextNode(JSON.parse(m.data) + "\n"));
    while (pre.childNodes.length > MAX_LINES) pre.removeChild(pre.firstChild);
    pre.dataset.lines = String(Number(pre.dataset.lines || 0) + 1);
  });
})();
