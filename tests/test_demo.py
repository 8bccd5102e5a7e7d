"""mmgen demo: the local page of a trained run, answered over HTTP on 127.0.0.1 (docs/report.md#demo)."""
import base64
import io
import json
import os
import re
import select
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest

from mmgen import cli, runs

pytestmark = pytest.mark.plugins("image")


@pytest.fixture(scope="module")
def caption_cvae_run(tmp_path_factory):
    """A caption-conditioned CVAE trained for 2 steps (prompt mode)."""
    pytest.importorskip("mmgen_text", reason="needs the text plugin (mmgen-text)")
    out = str(tmp_path_factory.mktemp("demo") / "cvae-text")
    assert cli.main(["train", "--preset", "cvae-mnist-text", "--out", out, "--set", "train.steps=2",
                     "--set", "train.batch_size=16", "--set", "eval.max_examples=8", "--set", "eval.k=2"]) == 0
    return out


@pytest.fixture(scope="module")
def class_run(tmp_path_factory):
    """A label-conditioned CVAE on 8x8 digits (17 grey levels) trained for 2 steps (class mode)."""
    pytest.importorskip("sklearn")
    out = str(tmp_path_factory.mktemp("demo") / "cvae-digits")
    config = {"data": {"name": "digits"},
              "model": {"model": "cvae", "encoder": {"name": "image.conv", "out_features": 64, "hidden": 16},
                        "decoder": {"name": "image.conv", "in_features": 18, "hidden": 16}, "latent_dim": 8,
                        "likelihood": {"name": "categorical", "levels": 17}},
              "train": {"steps": 2, "batch_size": 16, "progress": False}, "eval": {"max_examples": 8, "k": 2}}
    runs.train(config, out)
    return out


def serve(run):
    """The demo of ``run`` on a free port of 127.0.0.1, in a thread: (server, base URL)."""
    from mmgen.demo import Demo
    from mmgen.demo.server import make_server
    server = make_server(Demo(run))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    return server, f"http://{host}:{port}"


def post(url: str, request) -> tuple[int, dict]:
    body = request if isinstance(request, bytes) else json.dumps(request).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url + "/api/generate", data=body), timeout=60) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def media(item: dict, mime: str) -> bytes:
    """The bytes of the data: URI of ``mime`` in an answer item's HTML."""
    found = re.search(rf'src="data:{mime};base64,([^"]+)"', item["html"])
    assert found, item["html"][:200]
    return base64.b64decode(found.group(1))


def png_size(data: bytes) -> tuple[int, int]:
    from PIL import Image
    return Image.open(io.BytesIO(data)).size


@pytest.fixture(scope="module")
def mfm_demo(tiny_mfm_run):
    server, url = serve(tiny_mfm_run[0])
    yield url
    server.shutdown()
    server.server_close()


def test_multimodal_page_takes_an_upload_or_caption_per_modality(mfm_demo):
    assert mfm_demo.startswith("http://127.0.0.1:")
    page = urllib.request.urlopen(mfm_demo + "/", timeout=30).read().decode()
    assert 'id="form-image"' in page and 'accept=".png,.jpg,.jpeg"' in page
    assert 'id="form-audio"' in page and 'accept=".wav,.flac"' in page
    assert '<input name="text"' in page and 'id="sample-form"' in page


def test_caption_image_and_speech_uploads_generate_the_other_modalities(mfm_demo, tiny_mfm_run):
    status, answer = post(mfm_demo, {"action": "upload", "modality": "text", "text": "a handwritten seven", "n": 4})
    assert status == 200
    shown = {item["caption"]: item for item in answer["items"]}
    assert set(shown) == {"from_text-image", "from_text-audio"}
    width, height = png_size(media(shown["from_text-image"], "image/png"))
    assert width > height > 0  # a grid of 4 draws in one row
    assert media(shown["from_text-audio"], "audio/wav").startswith(b"RIFF")
    samples = os.path.join(tiny_mfm_run[0], "samples")
    for key, name, other in (("image", "step-000004-real-image.png", "from_image-text"),
                             ("audio", "step-000004-real-audio.wav", "from_audio-text")):
        data = base64.b64encode(open(os.path.join(samples, name), "rb").read()).decode()
        status, answer = post(mfm_demo, {"action": "upload", "modality": key, "file": data, "filename": name})
        assert status == 200, answer
        text = {item["caption"]: item["html"] for item in answer["items"]}[other]
        assert re.fullmatch(r'<pre class="text-sample">[^<]+</pre>', text)


def test_sampling_and_bad_requests(mfm_demo):
    status, answer = post(mfm_demo, {"action": "sample", "n": 3, "seed": 1})
    assert status == 200 and {"image", "audio", "text"} <= {item["caption"] for item in answer["items"]}
    for request, message in (({"action": "prompt"}, "accepted: ['sample', 'upload']"),
                             ({"action": "sample", "n": 65}, "n must be an integer in [1, 64]"),
                             ({"action": "upload", "modality": "video"}, "accepted: ['audio', 'image', 'text']"),
                             ({"action": "upload", "modality": "image", "file": "AAAA", "filename": "a.gif"},
                              "image uploads must be .png/.jpg/.jpeg files"),
                             ({"action": "upload", "modality": "image", "file": "AAAA", "filename": "a.png"},
                              "cannot be read as PNG/JPEG"),
                             (b"{not json", "not JSON")):
        status, answer = post(mfm_demo, request)
        assert status == 400 and message in answer["error"], answer
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(mfm_demo + "/etc/passwd", timeout=30)


def test_prompt_mode_answers_a_caption_with_images(caption_cvae_run):
    server, url = serve(caption_cvae_run)
    try:
        page = urllib.request.urlopen(url + "/", timeout=30).read().decode()
        assert 'id="prompt-form"' in page and "(prompt)" in page
        status, answer = post(url, {"action": "prompt", "prompt": "a thick seven", "n": 6})
        assert status == 200 and [item["caption"] for item in answer["items"]] == ["images"]
        width, height = png_size(media(answer["items"][0], "image/png"))
        assert width > height > 0  # a grid of 6 in one row
        status, answer = post(url, {"action": "prompt", "prompt": "  "})
        assert status == 400 and "prompt must be a non-empty caption" in answer["error"]
    finally:
        server.shutdown()
        server.server_close()


def test_class_mode_has_a_class_picker(class_run):
    server, url = serve(class_run)
    try:
        page = urllib.request.urlopen(url + "/", timeout=30).read().decode()
        assert page.count("<option value=") == 10
        status, answer = post(url, {"action": "class", "label": 3, "n": 4})
        assert status == 200 and png_size(media(answer["items"][0], "image/png"))[0] > 0
        status, answer = post(url, {"action": "class", "label": 10})
        assert status == 400 and "label must be an integer in [0, 9], got 10" in answer["error"]
    finally:
        server.shutdown()
        server.server_close()


def test_a_folder_without_a_model_is_refused(tmp_path, capsys):
    from helpers import cli_error
    (tmp_path / "run.json").write_text(json.dumps({"data": {"name": "digits"}, "model": {"model": "vae"}}))
    assert "holds no trained model (no model/ and no checkpoints/)" in cli_error(capsys, ["demo", str(tmp_path)])
    assert "is not a run folder" in cli_error(capsys, ["demo", str(tmp_path / "nowhere")])


def test_the_command_serves_on_127_0_0_1_and_prints_the_url(class_run):
    process = subprocess.Popen([sys.executable, "-m", "mmgen", "demo", class_run, "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        ready, _, _ = select.select([process.stdout], [], [], 120)
        assert ready, "mmgen demo printed no URL within 120 s"
        line = process.stdout.readline()
        url = re.search(r"at (http://127\.0\.0\.1:\d+/)", line).group(1)
        assert "(class)" in line
        assert '<select name="label">' in urllib.request.urlopen(url, timeout=30).read().decode()
    finally:
        process.terminate()
        process.wait(timeout=30)
