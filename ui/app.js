// The cluster page: draws GET /v1/cluster/feed (one snapshot of the serving
// member's view a second) and the changes of GET /v1/watch/?prefix=. Both are
// EventSources, which reconnect by themselves. Everything from the server is
// put in the page as text, never as HTML: keys and values are anyone's.
'use strict';

(() => {
  const HISTORY_MS = 5 * 60 * 1000; // the most the charts show
  const MIN_SPAN_MS = 60 * 1000; // the least: a page just opened draws its first minute
  const STALE_MS = 3000; // a feed silent this long is a feed lost
  const MAX_CHANGES = 20;
  const SVG = 'http://www.w3.org/2000/svg';

  const $ = (id) => document.getElementById(id);
  let selfID = 0;
  let lastFrameAt = 0;
  let counters = null; // {t, writes, reads} of the frame the rates are measured from
  let history = []; // {t, term, leader, wps, rps}, oldest first
  const rows = new Map(); // member id -> its row's cells

  $('origin').textContent = location.host;

  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    Object.assign(e, props || {});
    e.append(...children);
    return e;
  }

  function setAlert(msg) {
    const a = $('alert');
    a.textContent = msg || '';
    a.hidden = !msg;
  }

  function badge(id, text, ok) {
    const b = $(id);
    b.textContent = text;
    b.className = 'badge ' + (ok ? 'ok' : 'bad');
  }

  function memberName() {
    return selfID ? `member ${selfID}` : 'the member serving this page';
  }

  // offline blanks every number: they would be stale, and say nothing of
  // the cluster now.
  function offline(reason) {
    if (document.body.classList.contains('offline')) return;
    document.body.classList.add('offline');
    document.body.classList.remove('noleader');
    counters = null;
    for (const id of ['leader', 'term', 'state', 'commit', 'applied', 'revision', 'keys', 'cluster']) $(id).textContent = '—';
    $('leader').dataset.id = '';
    for (const r of rows.values()) r.tr.remove();
    rows.clear();
    badge('feedstate', 'no contact', false);
    setAlert(`Cut off from ${memberName()} at ${location.host}: ${reason}. Nothing is shown until it answers again; the page keeps trying by itself.`);
  }

  function onFrame(f) {
    const s = f.status;
    const now = Date.now();
    selfID = s.id;
    lastFrameAt = now;
    document.body.classList.remove('offline');
    badge('feedstate', 'live', true);
    $('self').textContent = `member ${s.id}`;
    document.title = `raftexample cluster: member ${s.id}`;

    let wps = null, rps = null;
    if (!counters) {
      counters = { t: now, writes: f.writes, reads: f.reads };
    } else if (now - counters.t >= 900) { // frames at a leader change come sooner: measure over a second
      const dt = (now - counters.t) / 1000;
      wps = Math.max(0, f.writes - counters.writes) / dt;
      rps = Math.max(0, f.reads - counters.reads) / dt;
      counters = { t: now, writes: f.writes, reads: f.reads };
    }
    history.push({ t: now, term: s.term, leader: s.leader, wps, rps });
    history = history.filter((h) => h.t >= now - HISTORY_MS);

    const noLeader = !s.leader;
    document.body.classList.toggle('noleader', noLeader);
    setAlert(noLeader ? `Member ${s.id} knows no leader: it is cut off from a majority of the cluster, or an election is under way. ` +
      'Writes and linearizable reads fail here until it knows one; the other members\u2019 state is not shown, as this member has no current view of it.' : '');
    $('leader').textContent = noLeader ? 'none known' : `member ${s.leader}`;
    $('leader').dataset.id = String(s.leader);
    $('term').textContent = s.term;
    $('state').textContent = `${s.id}: ${s.state}${s.learner ? ' (learner)' : ''}`;
    $('commit').textContent = s.commit;
    $('applied').textContent = s.applied;
    $('revision').textContent = s.revision;
    $('keys').textContent = s.keys;
    $('cluster').textContent = s.clusterID;
    if (wps !== null) {
      $('wps').textContent = wps.toFixed(1);
      $('rps').textContent = rps.toFixed(1);
    }
    drawMembers(s);
    const span = Math.min(HISTORY_MS, Math.max(MIN_SPAN_MS, now - history[0].t));
    $('span').textContent = span >= HISTORY_MS ? 'last 5 minutes' : `since the page opened (${Math.round((now - history[0].t) / 1000)} s)`;
    drawTerms(now, span);
    drawSpark($('writes'), now, span, 'wps');
    drawSpark($('reads'), now, span, 'rps');
  }

  function drawMembers(s) {
    const noLeader = !s.leader;
    const followers = new Map((s.followers || []).map((f) => [f.id, f]));
    const seen = new Set();
    const members = [...s.members].sort((a, b) => a.id - b.id);
    for (const m of members) {
      seen.add(m.id);
      const r = rows.get(m.id) || addRow(m);
      const f = followers.get(m.id);
      let state, reach;
      if (m.id === s.id) {
        state = s.state;
        reach = 'this member';
      } else if (noLeader) {
        state = reach = 'not known here';
      } else {
        state = m.id === s.leader ? 'leader' : 'follower';
        if (s.state === 'leader') reach = f && f.recentActive ? 'yes' : 'no: not heard from lately';
        else reach = m.id === s.leader ? 'yes (its leader)' : 'not known here';
      }
      r.tr.className = m.id === s.leader ? 'leader' : '';
      r.role.textContent = m.learner ? 'learner' : 'voter';
      r.state.textContent = state;
      r.reach.textContent = reach;
      r.url.textContent = m.peerURL;
      drawLog(r, s, m, f);
      r.transfer.disabled = noLeader || m.id === s.leader || !!m.learner;
      r.member = m;
    }
    for (const [id, r] of rows) {
      if (!seen.has(id)) {
        r.tr.remove();
        rows.delete(id);
      }
    }
  }

  function addRow(m) {
    const r = {
      tr: el('tr'), id: el('td', { textContent: m.id }), role: el('td'), state: el('td'), reach: el('td'),
      url: el('td'), log: el('td'), actions: el('td'), member: m,
    };
    r.tr.dataset.id = String(m.id);
    r.transfer = el('button', { type: 'button', textContent: 'Make leader', title: `Move leadership to member ${m.id}` });
    r.transfer.dataset.transfer = String(m.id);
    r.transfer.addEventListener('click', () => transfer(r.member));
    r.remove = el('button', { type: 'button', textContent: 'Remove', title: `Remove member ${m.id} from the cluster` });
    r.remove.dataset.remove = String(m.id);
    r.remove.addEventListener('click', () => removeMember(r.member));
    r.actions.append(r.transfer, r.remove);
    r.tr.append(r.id, r.role, r.state, r.reach, r.url, r.log, r.actions);
    // Rows in id order.
    const after = [...rows.keys()].filter((id) => id > m.id).sort((a, b) => a - b)[0];
    $('members').tBodies[0].insertBefore(r.tr, after === undefined ? null : rows.get(after).tr);
    rows.set(m.id, r);
    return r;
  }

  function drawLog(r, s, m, f) {
    if (s.state === 'leader' && s.lastIndex) {
      const last = s.lastIndex;
      const match = m.id === s.id ? last : f ? f.match : 0;
      const sent = m.id === s.id ? last : f ? Math.max(0, f.next - 1) : 0;
      const bar = el('span', { className: 'bar' }, el('span', { className: 'sent' }), el('span', { className: 'match' }));
      bar.children[0].style.width = `${Math.min(100, (100 * sent) / last)}%`;
      bar.children[1].style.width = `${Math.min(100, (100 * match) / last)}%`;
      const what = m.id === s.id ? `last index ${last}` : f ? `match ${f.match} · next ${f.next} of ${last} (${f.state})` : 'no progress known';
      r.log.replaceChildren(bar, what);
    } else if (m.id === s.id) {
      r.log.replaceChildren(`commit ${s.commit} · applied ${s.applied}`);
    } else {
      r.log.replaceChildren('on the leader\u2019s page');
    }
  }

  function svgEl(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // drawTerms plots the term as a step line, a mark at each change of
  // leader (labelled with the new one), red dots where none was known.
  function drawTerms(now, span) {
    const svg = $('terms');
    const W = 600, H = 120, PAD = 14;
    const x = (t) => (W * (t - (now - span))) / span;
    const terms = history.map((h) => h.term);
    const lo = Math.min(...terms), hi = Math.max(...terms);
    const y = (term) => (hi === lo ? H / 2 : H - PAD - ((H - 2 * PAD) * (term - lo)) / (hi - lo));
    const parts = [];
    let points = '';
    let prev = null;
    for (const h of history) {
      if (prev) points += ` ${x(h.t).toFixed(1)},${y(prev.term).toFixed(1)}`;
      points += ` ${x(h.t).toFixed(1)},${y(h.term).toFixed(1)}`;
      if (!h.leader) parts.push(svgEl('circle', { class: 'nolead', cx: x(h.t), cy: y(h.term), r: 2.5 }));
      if (prev && h.leader && h.leader !== prev.leader) {
        parts.push(svgEl('line', { class: 'change', x1: x(h.t), x2: x(h.t), y1: 0, y2: H }));
        parts.push(svgEl('text', { x: x(h.t) + 2, y: 10 }, `\u2192${h.leader}`));
      }
      if (h.leader) prev = h;
      else prev = prev || h;
    }
    parts.unshift(svgEl('polyline', { class: 'line', points: points.trim() }));
    parts.push(svgEl('text', { x: 2, y: H - 3 }, hi === lo ? `term ${hi}` : `term ${lo}\u2013${hi}`));
    svg.replaceChildren(...parts);
  }

  function drawSpark(svg, now, span, field) {
    const W = 600, H = 60;
    const pts = history.filter((h) => h[field] !== null);
    const top = Math.max(1, ...pts.map((h) => h[field]));
    const points = pts.map((h) => `${((W * (h.t - (now - span))) / span).toFixed(1)},${(H - 2 - ((H - 4) * h[field]) / top).toFixed(1)}`);
    svg.replaceChildren(svgEl('polyline', { class: 'line', points: points.join(' ') }), svgEl('text', { x: 3, y: 12 }, `max ${top.toFixed(top < 10 ? 1 : 0)}/s`));
  }

  function say(msg) {
    $('action').textContent = msg;
  }

  async function send(method, path, body) {
    const r = await fetch(path, { method, headers: body ? { 'Content-Type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined });
    if (r.ok) return null;
    const text = await r.text();
    try {
      return JSON.parse(text).error || `status ${r.status}`;
    } catch {
      return `status ${r.status}: ${text}`;
    }
  }

  async function transfer(m) {
    say(`Moving leadership to member ${m.id}…`);
    try {
      const err = await send('POST', '../v1/leader', { id: m.id });
      say(err ? `Could not move leadership to member ${m.id}: ${err}` : `Member ${m.id} leads.`);
    } catch (e) {
      say(`Could not ask ${memberName()}: ${e.message}`);
    }
  }

  async function removeMember(m) {
    if (!confirm(`Remove member ${m.id} (${m.peerURL}) from the cluster?\n\nIt leaves for good: its id is never used again.`)) return;
    say(`Removing member ${m.id}…`);
    try {
      const err = await send('DELETE', `../v1/members/${m.id}`);
      say(err ? `Could not remove member ${m.id}: ${err}` : `Member ${m.id} is removed.`);
    } catch (e) {
      say(`Could not ask ${memberName()}: ${e.message}`);
    }
  }

  function connectFeed() {
    const es = new EventSource('../v1/cluster/feed');
    es.onmessage = (e) => {
      let f;
      try {
        f = JSON.parse(e.data);
      } catch {
        return;
      }
      onFrame(f);
    };
    es.onerror = () => {
      offline('its feed of the cluster state dropped');
      if (es.readyState === EventSource.CLOSED) setTimeout(connectFeed, 2000); // refused: EventSource gives up
    };
  }

  function addChange(kind, d) {
    const key = d.encoding === 'base64' ? `${d.key} (base64)` : d.key;
    const value = d.value === undefined ? '' : d.value.length > 80 ? `${d.value.slice(0, 80)}…` : d.value;
    const what = kind === 'put' ? `put ${key} = ${value}${d.ttl ? ` (ttl ${d.ttl})` : ''}` : `delete ${key}${d.expired ? ' (expired)' : ''}`;
    const li = el('li', { className: kind }, el('span', { className: 'rev', textContent: `rev ${d.revision}` }), what);
    li.dataset.key = d.key;
    const list = $('changes');
    list.prepend(li);
    while (list.children.length > MAX_CHANGES) list.lastChild.remove();
  }

  function connectWatch() {
    const es = new EventSource('../v1/watch/?prefix=');
    es.onopen = () => badge('watchstate', 'live: as this member applies them', true);
    for (const kind of ['put', 'delete']) {
      es.addEventListener(kind, (e) => {
        try {
          addChange(kind, JSON.parse(e.data));
        } catch {
          // not a change this page understands
        }
      });
    }
    es.onerror = () => {
      badge('watchstate', 'reconnecting…', false);
      // Refused (e.g. 410: this member's history no longer reaches back to
      // where the stream was): start again from now.
      if (es.readyState === EventSource.CLOSED) setTimeout(connectWatch, 2000);
    };
  }

  setInterval(() => {
    if (lastFrameAt && Date.now() - lastFrameAt > STALE_MS) offline(`no news from it for ${STALE_MS / 1000} s`);
  }, 1000);
  connectFeed();
  connectWatch();
})();
