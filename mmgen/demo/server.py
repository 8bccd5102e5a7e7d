"""The demo's HTTP server: the standard library's ``ThreadingHTTPServer``, bound to 127.0.0.1 unless
told otherwise. ``GET /`` is the page, ``POST /api/generate`` takes a JSON request (see
:meth:`mmgen.demo.Demo.answer`) and returns JSON: the outputs as HTML fragments with embedded media,
or ``{"error": message}`` with status 400. Nothing is fetched from anywhere else."""
from __future__ import annotations

import html
import json
import sys
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from mmgen.demo import MAX_SAMPLES, Demo, DemoRequestError

MAX_BODY = 32 * 2 ** 20  # bytes of one request (an upload in base64)
LOOPBACK = ("127.0.0.1", "localhost")

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
form { margin: .6em 0; padding: .6em; border: 1px solid #ddd; background: #fafafa; }
#outputs { display: flex; flex-wrap: wrap; gap: 10px; margin-top: 1em; }
figure { margin: 0; padding: 6px; border: 1px solid #ddd; }
figcaption { font-size: 12px; color: #555; }
figure img { max-width: 640px; min-width: 160px; }
#status { color: #555; } #status.error { color: #b00; }
"""

# Each form posts its fields (and a file input's contents, base64) as JSON; the answer's HTML
# fragments (made by the modality plugins from files the server wrote) go into #outputs.
SCRIPT = """
const status = document.getElementById("status"), outputs = document.getElementById("outputs");
const number = id => Number(document.getElementById(id).value);
const common = () => ({n: number("n"), seed: number("seed")});
function readBase64(file) {
  return new Promise((resolve, reject) => { const r = new FileReader();
    r.onload = () => resolve(r.result.split(",", 2)[1]); r.onerror = reject; r.readAsDataURL(file); });
}
async function submit(form) {
  const request = {action: form.dataset.action, ...common()};
  for (const field of form.querySelectorAll("[name]")) {
    if (field.type === "file") {
      if (!field.files.length) { status.textContent = "choose a file first"; status.className = "error"; return; }
      request.file = await readBase64(field.files[0]); request.filename = field.files[0].name;
    } else { request[field.name] = field.value; }
  }
  status.textContent = "generating..."; status.className = "";
  const response = await fetch("/api/generate", {method: "POST", headers: {"Content-Type": "application/json"},
                                                  body: JSON.stringify(request)});
  const answer = await response.json();
  if (!response.ok) { status.textContent = answer.error; status.className = "error"; return; }
  outputs.replaceChildren(...answer.items.map(item => { const figure = document.createElement("figure");
    const caption = document.createElement("figcaption"); caption.textContent = item.caption;
    figure.append(caption); figure.insertAdjacentHTML("beforeend", item.html); return figure; }));
  status.textContent = `done in ${answer.seconds} s` + (answer.warning ? `; ${answer.warning}` : "");
}
for (const form of document.querySelectorAll("form[data-action]")) {
  form.addEventListener("submit", event => { event.preventDefault();
    submit(form).catch(error => { status.textContent = String(error); status.className = "error"; }); });
}
"""


def page(demo: Demo) -> str:
    """The demo page of ``demo``'s model: a form for its mode, and plain sampling."""
    forms = []
    if demo.mode == "prompt":
        forms.append('<form data-action="prompt" id="prompt-form"><label>caption <input name="prompt" id="prompt" '
                     'size="48" required></label> <button type="submit">generate images</button></form>')
    elif demo.mode == "class":
        options = "".join(f'<option value="{c}">{c}</option>' for c in range(demo.model.num_classes))
        forms.append(f'<form data-action="class" id="class-form"><label>class <select name="label">{options}</select>'
                     '</label> <button type="submit">generate</button></form>')
    for item in demo.inputs():
        key = html.escape(item["key"])
        if item["typed"]:
            field = f'<input name="text" size="48" required placeholder="type a caption" id="input-{key}">'
        else:
            field = f'<input name="file" type="file" accept="{html.escape(item["accept"])}" id="input-{key}">'
        forms.append(f'<form data-action="upload" id="form-{key}"><input type="hidden" name="modality" value="{key}">'
                     f'<label>{key} ({html.escape(item["modality"])}) {field}</label> '
                     f'<button type="submit">generate the others from {key}</button></form>')
    forms.append('<form data-action="sample" id="sample-form">'
                 '<button type="submit">sample from the model</button></form>')
    title = f"mmgen demo: {demo.run_dir}"
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>model: {html.escape(str(demo.name))} ({demo.mode})</p>",
        f'<p><label>samples <input id="n" type="number" min="1" max="{MAX_SAMPLES}" value="8"></label> '
        '<label>seed <input id="seed" type="number" min="0" value="0"></label></p>',
        *forms, '<p id="status"></p><div id="outputs"></div>',
        f"<script>{SCRIPT}</script></body></html>"])


def make_server(demo: Demo, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server of ``demo`` on ``host:port`` (port 0: a free one; ``server.server_address`` says which)."""
    body = page(demo).encode()

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, content: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(content)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(content)

        def _json(self, status: int, value: dict) -> None:
            self._send(status, json.dumps(value).encode(), "application/json")

        def do_GET(self):
            if self.path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, body, "text/html; charset=utf-8")
            elif self.path == "/favicon.ico":
                self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {self.path}; the demo is at /"})

        def do_POST(self):
            if self.path != "/api/generate":
                return self._json(HTTPStatus.NOT_FOUND, {"error": f"no endpoint {self.path}; POST /api/generate"})
            length = self.headers.get("Content-Length", "")
            length = int(length) if length.isdigit() else 0
            if not 0 < length <= MAX_BODY:
                return self._json(HTTPStatus.BAD_REQUEST, {"error": f"a request body of 1 to {MAX_BODY} bytes is "
                                                                    f"expected, got {length}"})
            try:
                request = json.loads(self.rfile.read(length))
                return self._json(HTTPStatus.OK, demo.answer(request))
            except json.JSONDecodeError as exc:
                return self._json(HTTPStatus.BAD_REQUEST, {"error": f"the request is not JSON: {exc}"})
            except (DemoRequestError, ValueError) as exc:  # a bad upload (handler.example) is a ValueError too
                return self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            except Exception as exc:  # the page shows it; the server goes on
                traceback.print_exc(file=sys.stderr)
                return self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(exc).__name__}: {exc}"})

        def log_message(self, format, *args):  # one short line per request on stderr
            sys.stderr.write(f"mmgen demo: {self.address_string()} {format % args}\n")

    return ThreadingHTTPServer((host, port), Handler)
