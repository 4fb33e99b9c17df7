// The Mapping page's rule editor: rules and lookup tables edited in the page, previewed on a
// sample with the dry run, saved as one document. Clicking a value in the parse tree sets the
// selected rule's source. A file, not an inline script: the CSP allows 'self' only.
(function () {
  "use strict";

  var script = document.getElementById("mapping-script");
  var state = JSON.parse(document.getElementById("mapping-editor").textContent);
  var rules = state.rules.map(function (r) { return Object.assign({}, r); });
  var tables = Object.assign({}, state.tables);
  var active = rules.length ? 0 : -1;
  var csrf = (document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/) || [])[1];

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") { node.textContent = attrs[k]; } else { node.setAttribute(k, attrs[k]); }
    });
    (children || []).forEach(function (c) { node.appendChild(c); });
    return node;
  }

  function input(rule, key, label, placeholder) {
    var value = rule[key] === undefined ? "" : rule[key];
    if (key === "transforms") { value = value ? JSON.stringify(value) : ""; }
    if (key === "source" && Array.isArray(value)) { value = JSON.stringify(value); }
    var field = el("input", {
      "class": "form-control form-control-sm font-monospace", "data-key": key,
      placeholder: placeholder, "aria-label": label
    });
    field.value = value;
    return el("div", { "class": "col-md-" + (key === "name" ? 12 : 4) }, [
      el("label", { "class": "form-label small mb-0", text: label }), field
    ]);
  }

  function transformChoices() {
    var select = el("select", { "class": "form-select form-select-sm", "data-action": "add-transform", "aria-label": "Add a transform" });
    var options = [["", "add a transform…"], ["trim", "trim"], ["upper", "upper"], ["lower", "lower"], ["date", "date"]];
    Object.keys(tables).forEach(function (name) { options.push(["lookup:" + name, "lookup in " + name]); });
    options.forEach(function (o) { select.appendChild(el("option", { value: o[0], text: o[1] })); });
    return select;
  }

  function renderRules() {
    var box = document.getElementById("rules");
    box.textContent = "";
    if (!rules.length) {
      box.appendChild(el("p", { "class": "text-body-secondary", text: "No field rules: the built-in map alone. Add one, then click a field in the parse tree." }));
    }
    rules.forEach(function (rule, i) {
      var enabled = el("input", { type: "checkbox", "class": "form-check-input", "data-key": "enabled" });
      enabled.checked = rule.enabled !== false;
      var card = el("div", { "class": "mapping-rule border rounded p-2 mb-2" + (i === active ? " active" : ""), "data-index": i }, [
        el("div", { "class": "d-flex align-items-center gap-2 mb-1" }, [
          el("strong", { "class": "small", text: "#" + (i + 1) }),
          el("label", { "class": "form-check small mb-0 me-auto" }, [enabled, el("span", { "class": "form-check-label", text: " enabled" })]),
          el("button", { type: "button", "class": "btn btn-sm btn-outline-secondary", "data-action": "rule-up", title: "Move up", text: "↑" }),
          el("button", { type: "button", "class": "btn btn-sm btn-outline-secondary", "data-action": "rule-down", title: "Move down", text: "↓" }),
          el("button", { type: "button", "class": "btn btn-sm btn-outline-danger", "data-action": "rule-delete", title: "Delete", text: "Delete" })
        ]),
        el("div", { "class": "row g-2" }, [
          input(rule, "name", "Name", "e.g. family name in capitals"),
          input(rule, "source", "Source", "click the parse tree"),
          input(rule, "target", "Target", "Patient.name[0].family"),
          input(rule, "transforms", "Transforms", '["trim", "upper"]'),
          el("div", { "class": "col-md-4 ms-auto" }, [transformChoices()])
        ]),
        el("div", { "class": "rule-error small text-danger mt-1" })
      ]);
      box.appendChild(card);
    });
  }

  function renderTables() {
    var box = document.getElementById("tables");
    box.textContent = "";
    Object.keys(tables).forEach(function (name) {
      var text = el("textarea", { "class": "form-control form-control-sm font-monospace", rows: 4, "data-table": name, "aria-label": "Table " + name });
      text.value = tables[name];
      box.appendChild(el("div", { "class": "mb-3", "data-table-box": name }, [
        el("div", { "class": "d-flex align-items-center mb-1" }, [
          el("strong", { "class": "small me-auto", text: name }),
          el("button", { type: "button", "class": "btn btn-sm btn-outline-danger", "data-action": "table-delete", "data-name": name, text: "Delete" })
        ]),
        text,
        el("div", { "class": "table-error small text-danger" })
      ]));
    });
    if (!Object.keys(tables).length) {
      box.appendChild(el("p", { "class": "text-body-secondary mb-0", text: "No lookup tables." }));
    }
  }

  // The edited keys over the rule as it was: keys the page does not edit (required,
  // description) are kept.
  function readRule(card) {
    var rule = Object.assign({}, rules[Number(card.dataset.index)]);
    card.querySelectorAll("[data-key]").forEach(function (field) {
      var key = field.dataset.key;
      delete rule[key];
      if (key === "enabled") { if (!field.checked) { rule.enabled = false; } return; }
      var value = field.value.trim();
      if (!value) { return; }
      if (key === "transforms" || (key === "source" && value.charAt(0) === "[")) {
        try { value = JSON.parse(value); } catch (e) { throw { card: Number(card.dataset.index), detail: key + ": not valid JSON (" + e.message + ")" }; }
      }
      rule[key] = value;
    });
    return rule;
  }

  // Rules left blank (just added) are not sent; `sent` maps a sent rule's index to its card.
  var sent = [];

  function collect() {
    document.querySelectorAll(".mapping-rule").forEach(function (card) {
      rules[Number(card.dataset.index)] = readRule(card);
    });
    document.querySelectorAll("[data-table]").forEach(function (t) { tables[t.dataset.table] = t.value; });
    sent = [];
    var filled = rules.filter(function (rule, i) {
      var keep = Object.keys(rule).some(function (k) { return k !== "enabled"; });
      if (keep) { sent.push(i); }
      return keep;
    });
    return { rules: filled, tables: tables };
  }

  function cardIndex(sentIndex) {
    return sent[sentIndex] === undefined ? sentIndex : sent[sentIndex];
  }

  function clearErrors() {
    document.querySelectorAll(".rule-error, .table-error, #preview-error").forEach(function (n) { n.textContent = ""; });
    status("", "");
  }

  function showError(problem) {
    var where = null;
    var card = problem.card !== undefined ? problem.card : problem.rule;
    if (card !== null && card !== undefined) {
      if (problem.card === undefined) { card = cardIndex(card); }
      where = document.querySelector('.mapping-rule[data-index="' + card + '"] .rule-error');
    } else if ((problem.part || "").indexOf("tables.") === 0) {
      var box = document.querySelector('[data-table-box="' + problem.part.slice(7) + '"] .table-error');
      where = box;
    }
    (where || document.getElementById("mapping-status")).textContent = problem.detail;
    if (!where) { status(problem.detail, "text-danger"); }
  }

  function status(text, kind) {
    var node = document.getElementById("mapping-status");
    node.className = "small mb-2 " + kind;
    node.textContent = text;
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": decodeURIComponent(csrf || "") },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(function (data) { return { ok: response.ok, data: data }; });
    });
  }

  function withMapping(extra) {
    clearErrors();
    try {
      return Object.assign(collect(), extra || {});
    } catch (problem) {
      showError(problem);
      return null;
    }
  }

  function save() {
    var body = withMapping();
    if (!body) { return; }
    post(script.dataset.save, body).then(function (answer) {
      if (!answer.ok) { showError(answer.data); return; }
      status("Saved to the draft: " + answer.data.rules + " rule(s)" + (answer.data.changed ? "" : " (nothing changed)") + ". They run once the draft is published. ", "text-success");
      var publish = document.createElement("a");
      publish.href = answer.data.publish_url;
      publish.textContent = "Review & publish";
      publish.dataset.action = "review-publish";
      document.getElementById("mapping-status").appendChild(publish);
    });
  }

  function preview() {
    var body = withMapping({ raw: document.getElementById("preview-raw").value });
    if (!body) { return; }
    post(script.dataset.preview, body).then(function (answer) {
      if (!answer.ok) {
        if (answer.data.part === "raw") { document.getElementById("preview-error").textContent = answer.data.detail; } else { showError(answer.data); }
        return;
      }
      var data = answer.data;
      document.getElementById("preview-tree").innerHTML = data.tree_html;  // rendered by Django, escaped
      document.getElementById("preview-bundle").textContent = data.bundle ? JSON.stringify(data.bundle, null, 2) : "";
      document.getElementById("preview-error").textContent = data.error ? data.error.stage + " (" + data.error.where + "): " + data.error.detail : "";
      var list = document.getElementById("preview-issues");
      list.textContent = "";
      (data.issues || []).forEach(function (issue) {
        var text = (issue.field ? issue.field + " → " : "") + issue.target + ": " + issue.reason;
        list.appendChild(el("li", { "class": issue.severity === "error" ? "text-danger" : "", text: text }));
        var match = /^rule #(\d+)/.exec(issue.rule || "");
        if (match) {
          var slot = document.querySelector('.mapping-rule[data-index="' + cardIndex(Number(match[1]) - 1) + '"] .rule-error');
          if (slot) { slot.textContent = issue.reason; }
        }
      });
      if (!list.children.length) { list.appendChild(el("li", { "class": "text-body-secondary", text: "none" })); }
    });
  }

  function choose(index) {
    active = index;
    document.querySelectorAll(".mapping-rule").forEach(function (card) {
      card.classList.toggle("active", Number(card.dataset.index) === active);
    });
  }

  function move(index, by) {
    collect();
    var to = index + by;
    if (to < 0 || to >= rules.length) { return; }
    var rule = rules.splice(index, 1)[0];
    rules.splice(to, 0, rule);
    active = to;
    renderRules();
  }

  document.addEventListener("focusin", function (event) {
    var card = event.target.closest(".mapping-rule");
    if (card) { choose(Number(card.dataset.index)); }
  });

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.id === "sample-select" && target.value) {
      var sample = state.samples.find(function (s) { return String(s.id) === target.value; });
      document.getElementById("preview-raw").value = sample ? sample.raw.replace(/\r/g, "\n") : "";
      preview();
    } else if (target.dataset.action === "add-transform" && target.value) {
      var field = target.closest(".mapping-rule").querySelector('[data-key="transforms"]');
      var list = [];
      try { list = field.value.trim() ? JSON.parse(field.value) : []; } catch (e) { list = []; }
      list.push(target.value.indexOf("lookup:") === 0 ? { op: "lookup", table: target.value.slice(7) } : target.value);
      field.value = JSON.stringify(list);
      target.value = "";
    } else if (target.id === "table-file" && target.files.length) {
      var file = target.files[0];
      var name = (document.getElementById("table-name").value.trim() || file.name.replace(/\.[^.]*$/, ""));
      file.text().then(function (text) {
        collect();
        tables[name] = text;
        renderTables();
        renderRules();
        target.value = "";
      });
    }
  });

  document.addEventListener("click", function (event) {
    var node = event.target.closest("button.bench-path, [data-action]");
    if (!node) { return; }
    var card = node.closest(".mapping-rule");
    var index = card ? Number(card.dataset.index) : -1;
    switch (node.classList.contains("bench-path") ? "pick" : node.dataset.action) {
      case "pick":
        if (active < 0) { collect(); rules.push({}); active = rules.length - 1; renderRules(); }
        var source = document.querySelector('.mapping-rule[data-index="' + active + '"] [data-key="source"]');
        if (source) { source.value = node.dataset.path; }
        document.querySelectorAll("button.bench-path.picked").forEach(function (b) { b.classList.remove("picked"); });
        node.classList.add("picked");
        break;
      case "add-rule":
        collect(); rules.push({}); active = rules.length - 1; renderRules();
        break;
      case "rule-up": move(index, -1); break;
      case "rule-down": move(index, 1); break;
      case "rule-delete":
        collect(); rules.splice(index, 1); active = Math.min(active, rules.length - 1); renderRules();
        break;
      case "save-mapping": save(); break;
      case "preview": preview(); break;
      case "add-table":
        var name = document.getElementById("table-name").value.trim();
        if (name && !(name in tables)) { collect(); tables[name] = ""; renderTables(); renderRules(); }
        break;
      case "table-delete":
        collect(); delete tables[node.dataset.name]; renderTables(); renderRules();
        break;
    }
  });

  state.samples.forEach(function (s) {
    document.getElementById("sample-select").appendChild(el("option", { value: s.id, text: s.name }));
  });
  renderRules();
  renderTables();
})();
