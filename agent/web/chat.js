// The llmcrs chat page: a thin client of the LangGraph server API on this origin.
// A turn is one run streamed from POST /threads/{id}/runs/stream: `updates` events show the stages
// (1 sub-task, 2 expert, 3 expert output, 4 response), `custom` events ({reply}) stream the answer as
// the graph checks it (the grounded part at once, then each sentence the grounding check keeps: the
// LLM's raw tokens are never sent, so nothing shown is taken back). Everything the user or the model wrote is inserted as text
// (textContent, text nodes, new Option), never as HTML.
"use strict";

(() => {
  const GRAPH = "llmcrs";
  const SHOWN_ITEMS = 5;
  const $ = (id) => document.getElementById(id);
  const conversation = $("conversation");
  const form = $("composer");
  const input = $("message");
  const send = $("send");
  const picker = $("threads");
  const status = $("status");
  let threadId = new URLSearchParams(location.search).get("thread");

  /** A new element holding `text` as text. */
  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  const clip = (text, n) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

  /** The text of a message's content: a string or a list of content blocks. */
  function contentText(content) {
    if (typeof content === "string") return content;
    if (!Array.isArray(content)) return "";
    return content.map((b) => (typeof b === "string" ? b : b && b.type === "text" ? b.text : "")).join(" ");
  }

  /** Why a response failed: its JSON `detail` when it has one. */
  async function failure(response) {
    let detail = response.statusText;
    try {
      const body = await response.json();
      detail = body.detail ?? body.message ?? detail;
    } catch {
      // not JSON
    }
    return `${response.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`;
  }

  /** GET `path`, or POST `body` to it as JSON; the parsed JSON answer. */
  async function api(path, body) {
    const init = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
    const response = await fetch(path, init);
    if (!response.ok) throw new Error(await failure(response));
    return response.json();
  }

  /** The Server-Sent Events of a streamed response, as {event, data} with data parsed from JSON. */
  async function* events(response) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.search(/\r\n\r\n|\n\n/)) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end).replace(/^(\r\n\r\n|\n\n)/, "");
        let event = "message";
        const data = [];
        for (const line of block.split(/\r\n|\n/)) {
          if (line.startsWith(":")) continue; // a comment (heartbeat)
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") event = value;
          else if (field === "data") data.push(value);
        }
        if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
      }
    }
  }

  function addUserMessage(text) {
    const item = el("li", null, "message user");
    item.append(el("span", "You", "who"), el("p", text, "text"));
    conversation.append(item);
    item.scrollIntoView({ block: "end" });
  }

  /** The assistant's side of one turn: its stage lines, its streamed answer, its error. */
  class Turn {
    constructor() {
      this.item = el("li", null, "message assistant");
      this.stages = el("ol", null, "stages");
      this.stages.setAttribute("aria-label", "Stages of this turn");
      this.answer = el("p", null, "text answer");
      this.answer.hidden = true;
      this.streamed = this.answer.appendChild(document.createTextNode(""));
      this.chunks = 0;
      this.item.append(el("span", "llmcrs", "who"), this.stages, this.answer);
      conversation.append(this.item);
    }

    /** Set stage `n`'s line (1 sub-task, 2 expert, 3 expert output, 4 response), keeping stage order. */
    stage(n, label, text) {
      let line = this.stages.querySelector(`[data-stage="${n}"]`);
      if (!line) {
        line = el("li", null, "stage");
        line.value = n;
        line.dataset.stage = String(n);
        const next = [...this.stages.children].find((li) => Number(li.dataset.stage) > n);
        this.stages.insertBefore(line, next || null);
      }
      line.replaceChildren(el("span", `${label}: `, "label"), el("span", text, "value"));
      this.item.scrollIntoView({ block: "end" });
      return line;
    }

    /** A node's state update (or a thread's stored values). */
    update(node, u) {
      if (!u || typeof u !== "object") return;
      if (u.error) this.fail(u.error);
      if (u.subtask) {
        const args = Object.entries(u.subtask.args || {})
          .filter(([k, v]) => k !== "dialogue context" && v !== null && v !== "")
          .map(([k, v]) => `${k}: ${clip(typeof v === "string" ? v : JSON.stringify(v), 60)}`);
        this.stage(1, "Sub-task", u.subtask.name + (args.length ? ` (${args.join("; ")})` : ""));
      }
      if (Array.isArray(u.candidates) && u.candidates.length && !u.expert) {
        this.stage(2, "Expert", `choosing among ${u.candidates.join(", ")}…`);
      }
      if (u.expert) this.stage(2, "Expert", u.expert);
      if (u.expert_output) this.output(u.expert_output);
      if (u.response) {
        this.final(u.response);
        this.stage(4, "Response", this.chunks ? `streamed in ${this.chunks} checked ${this.chunks > 1 ? "parts" : "part"}` : "done");
      }
    }

    output(out) {
      const line = this.stage(3, "Expert output", out.text ?? "");
      const items = Array.isArray(out.items) ? out.items : [];
      if (!items.length) return;
      const list = el("ul", null, "items");
      list.setAttribute("aria-label", "Items");
      for (const item of items.slice(0, SHOWN_ITEMS)) list.append(el("li", item));
      if (items.length > SHOWN_ITEMS) list.append(el("li", `… and ${items.length - SHOWN_ITEMS} more`));
      line.append(list);
    }

    /** A `custom` event: the checked reply so far. */
    reply(text) {
      if (typeof text !== "string" || !text || text === this.streamed.data) return;
      if (!this.chunks) this.stage(4, "Response", "generating…");
      this.chunks += 1;
      this.answer.dataset.chunks = String(this.chunks);
      this.answer.hidden = false;
      this.streamed.data = text;
    }

    /** A `messages` event: the complete message the `respond` node returned (its tokens are not streamed). */
    chunk(message, meta) {
      if (!message || !meta || meta.langgraph_node !== "respond" || message.type === "AIMessageChunk") return;
      this.final(contentText(message.content));
    }

    /** The final response completes what was streamed, or replaces it after a fallback. */
    final(text) {
      this.answer.hidden = !text;
      if (this.answer.textContent !== text) this.streamed.data = text;
    }

    fail(message) {
      const error = el("p", message, "error");
      error.setAttribute("role", "alert");
      this.item.append(error);
    }
  }

  function setThread(id, push) {
    threadId = id || null;
    const url = new URL(location.href);
    if (threadId) url.searchParams.set("thread", threadId);
    else url.searchParams.delete("thread");
    if (url.href !== location.href) history[push ? "pushState" : "replaceState"](null, "", url);
    picker.value = threadId || "";
  }

  /** The thread picker: this graph's threads, the last updated first. */
  async function refreshThreads() {
    try {
      const threads = await api("/threads/search", { metadata: { graph_id: GRAPH }, limit: 50, sort_by: "updated_at", sort_order: "desc" });
      const options = [new Option("New conversation", "")];
      for (const t of threads) {
        const first = ((t.values && t.values.messages) || []).find((m) => m.type === "human");
        const label = first ? clip(contentText(first.content), 48) : "(no messages yet)";
        options.push(new Option(`${label} · ${new Date(t.updated_at).toLocaleString()}`, t.thread_id));
      }
      if (threadId && !threads.some((t) => t.thread_id === threadId)) options.splice(1, 0, new Option(threadId, threadId));
      picker.replaceChildren(...options);
      picker.value = threadId || "";
    } catch (e) {
      status.textContent = `Could not list the conversations: ${e.message}`;
    }
  }

  /** Show a stored thread: its messages, and the stages of its last turn. */
  async function openThread(id) {
    conversation.replaceChildren();
    status.textContent = "";
    setThread(id, false);
    if (!id) return;
    let values;
    try {
      values = (await api(`/threads/${encodeURIComponent(id)}/state`)).values || {};
    } catch (e) {
      status.textContent = `Could not open conversation ${id}: ${e.message}`;
      setThread(null, false);
      return;
    }
    let last = null;
    for (const m of values.messages || []) {
      if (m.type === "human") addUserMessage(contentText(m.content));
      else if (m.type === "ai") {
        last = new Turn();
        last.final(contentText(m.content));
      }
    }
    if (last) last.update("state", values);
    else if (values.error) new Turn().fail(values.error);
  }

  /** One turn: the user's message in, the run's stages and streamed response out. */
  async function sendMessage(text) {
    // one conversation at a time: switching threads mid-run would show this run's answer in another thread
    send.disabled = picker.disabled = $("new").disabled = true;
    form.setAttribute("aria-busy", "true");
    status.textContent = "";
    addUserMessage(text);
    const turn = new Turn();
    try {
      if (!threadId) setThread((await api("/threads", {})).thread_id, true);
      const response = await fetch(`/threads/${encodeURIComponent(threadId)}/runs/stream`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
          assistant_id: GRAPH,
          input: { messages: [{ role: "user", content: text }] },
          stream_mode: ["updates", "custom", "messages-tuple"],
        }),
      });
      if (!response.ok) throw new Error(await failure(response));
      for await (const { event, data } of events(response)) {
        if (event === "updates") for (const [node, update] of Object.entries(data)) turn.update(node, update);
        else if (event === "custom" && data && typeof data === "object") turn.reply(data.reply);
        else if (event === "messages" && Array.isArray(data)) turn.chunk(data[0], data[1]);
        else if (event === "error") turn.fail(`run failed: ${data.message || data.error || JSON.stringify(data)}`);
      }
    } catch (e) {
      turn.fail(String(e.message || e));
    } finally {
      await refreshThreads();
      send.disabled = picker.disabled = $("new").disabled = false;
      form.removeAttribute("aria-busy");
      input.focus();
    }
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text || send.disabled) return;
    input.value = "";
    sendMessage(text);
  });
  picker.addEventListener("change", () => {
    setThread(picker.value, true);
    openThread(picker.value);
  });
  $("new").addEventListener("click", () => {
    setThread(null, true);
    openThread(null);
    input.focus();
  });
  window.addEventListener("popstate", () => {
    if (!send.disabled) openThread(new URLSearchParams(location.search).get("thread"));
  });

  api("/llmcrs/info")
    .then((info) => ($("info").textContent = `Recommends ${info.domain} · dataset ${info.dataset}`))
    .catch(() => {});
  api("/llmcrs/limits")
    .then((limits) => (input.maxLength = limits.max_message_chars))
    .catch(() => {});
  openThread(threadId).then(refreshThreads);
})();
