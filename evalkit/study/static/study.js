// Participant page: enrol once (POST; the server sets an HttpOnly session cookie), then fetch
// the trial the server serves, record one choice per question, submit.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const questions = Array.from(document.querySelectorAll("#questions li")).map((li) => li.dataset.question);
  let participant = null, trial = null, shownAt = 0, choice = {}, choiceRt = {};

  function show(section) {
    for (const id of ["intro", "trial", "done"]) $(id).hidden = id !== section;
  }

  function loaded(img, src) {
    return new Promise((resolve) => {
      img.onload = img.onerror = () => resolve();
      img.src = src;
    });
  }

  async function nextTrial() {
    const res = await fetch("/api/next", { credentials: "same-origin" });
    const data = await res.json();
    if (!res.ok) { $("intro-message").textContent = data.error; show("intro"); return; }
    if (data.done) { show("done"); return; }
    trial = data; choice = {}; choiceRt = {};
    $("progress").textContent = "Page " + (data.answered + 1) + " of " + data.total;
    $("message").textContent = "";
    $("submit").disabled = true;
    const box = $("candidates");
    box.replaceChildren();
    const loads = [loaded($("cond"), data.cond), loaded($("exemplar"), data.exemplar)];
    data.candidates.forEach((cand, k) => {
      const fig = document.createElement("figure");
      fig.className = "candidate";
      const img = document.createElement("img");
      img.alt = "candidate " + String.fromCharCode(65 + k);
      loads.push(loaded(img, cand.src));
      const cap = document.createElement("figcaption");
      const label = document.createElement("div");
      label.className = "label";
      label.textContent = String.fromCharCode(65 + k);
      cap.appendChild(label);
      questions.forEach((q, qi) => {
        const b = document.createElement("button");
        b.type = "button"; b.className = "choose"; b.disabled = true; // enabled once every image is shown
        b.dataset.question = q; b.dataset.candidate = cand.id;
        b.setAttribute("aria-pressed", "false");
        b.textContent = "Q" + (qi + 1);
        b.addEventListener("click", () => pick(q, cand.id));
        cap.appendChild(b);
      });
      fig.append(img, cap);
      box.appendChild(fig);
    });
    show("trial");
    await Promise.all(loads);
    shownAt = performance.now(); // times count from when every image is on screen
    document.querySelectorAll(".choose").forEach((b) => { b.disabled = false; });
  }

  function pick(q, cand) {
    choice[q] = cand;
    choiceRt[q] = Math.max(0, performance.now() - shownAt);
    document.querySelectorAll('.choose[data-question="' + q + '"]').forEach((b) => {
      b.setAttribute("aria-pressed", String(b.dataset.candidate === cand));
    });
    $("submit").disabled = !questions.every((name) => name in choice);
  }

  async function submit() {
    $("submit").disabled = true;
    const res = await fetch("/api/vote", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        trial: trial.trial, answers: choice,
        rt_ms: Math.max(0, performance.now() - shownAt), answer_rt_ms: choiceRt,
      }),
    });
    if (!res.ok && res.status !== 409) {
      $("message").textContent = (await res.json()).error;
      $("submit").disabled = false;
      return;
    }
    await nextTrial();
  }

  async function enrol() {
    const res = await fetch("/api/enrol", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ participant: participant }),
    });
    if (!res.ok) { $("intro-message").textContent = (await res.json()).error; show("intro"); return; }
    await nextTrial();
  }

  $("start-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    participant = $("participant").value.trim();
    if (participant) enrol();
  });
  $("submit").addEventListener("click", submit);
  const preset = new URLSearchParams(location.search).get("participant");
  if (preset) $("participant").value = preset;
})();
