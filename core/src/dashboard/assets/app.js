// inloop dashboard: live updates over server-sent events and local times.
// Progressive enhancement only: every page and form works without this file.
'use strict';

(() => {
  const main = document.querySelector('main');
  if (!main) return;

  // ---- Times in the reader's locale, with "2 min ago" for recent ones. ----
  const rtf = typeof Intl.RelativeTimeFormat === 'function'
    ? new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' }) : null;
  const dtf = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  const STEPS = [[60, 'second'], [60, 'minute'], [24, 'hour'], [7, 'day']];

  function relative(date) {
    if (!rtf) return null;
    let delta = (date.getTime() - Date.now()) / 1000;
    for (const [size, unit] of STEPS) {
      if (Math.abs(delta) < size) return rtf.format(Math.round(delta), unit);
      delta /= size;
    }
    return null; // over a week: the date itself reads better
  }

  function localizeTimes(root) {
    for (const el of root.querySelectorAll('time[datetime]')) {
      const date = new Date(el.getAttribute('datetime'));
      if (Number.isNaN(date.getTime())) continue;
      const absolute = dtf.format(date);
      el.textContent = relative(date) || absolute;
      el.title = absolute;
    }
  }

  localizeTimes(document);
  setInterval(() => localizeTimes(document), 30000);

  // ---- Live updates. ----
  // Only pages with live regions (the queue, a task) listen: sign-in pages have none.
  if (typeof EventSource !== 'function' || !document.querySelector('[data-live]')) return;
  const taskId = main.dataset.taskId;
  const source = new EventSource('/events' + (taskId ? '?task=' + encodeURIComponent(taskId) : ''));
  let timer = null;
  let busy = false;
  let again = false;

  source.addEventListener('change', () => {
    clearTimeout(timer);
    timer = setTimeout(refresh, 150);
  });

  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const res = await fetch(location.href, {
        headers: { 'X-Inloop-Fragment': '1' },
        credentials: 'same-origin',
      });
      if (!res.ok) return;
      const doc = new DOMParser().parseFromString(await res.text(), 'text/html');
      apply(doc);
    } catch (_) {
      // A failed refresh is retried on the next event.
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }

  function apply(doc) {
    const fresh = doc.querySelector('main');
    if (!fresh) return;
    const active = document.activeElement;
    const activeId = active && active.id;
    const scroll = [window.scrollX, window.scrollY];

    const targets = [...document.querySelectorAll('[data-live][id]')];
    // The answer section is replaced only once the task has ended, never while someone types.
    const ended = fresh.dataset.status && fresh.dataset.status !== 'pending';
    if (ended) targets.push(...document.querySelectorAll('[data-respond][id]'));

    for (const old of targets) {
      const next = doc.getElementById(old.id);
      if (!next || next.isEqualNode(old)) continue;
      const imported = document.importNode(next, true);
      localizeTimes(imported);
      old.replaceWith(imported);
    }
    if (fresh.dataset.status) main.dataset.status = fresh.dataset.status;
    const title = doc.querySelector('title');
    if (title) document.title = title.textContent;

    if (activeId && document.activeElement !== active) {
      const again = document.getElementById(activeId);
      if (again) again.focus({ preventScroll: true });
    }
    window.scrollTo(scroll[0], scroll[1]);
  }

  // Focus the error summary after a refused answer, so it is read out and seen first.
  const summary = document.getElementById('answer-errors');
  if (summary) summary.focus();
})();
