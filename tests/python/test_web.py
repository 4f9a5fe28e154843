"""The web page (stackprocd --http-listen) in a real browser, Debian's chromium headless: the
rendered DOM of a running job twice (its id, state, a progress that grows), a screenshot; its
JSON with tokens (401, each caller its own jobs, an admin all, cancel); an output's preview."""

import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import tifffile

import stackproc
from conftest import BUILD, stack, write_tiff


def web_port(server):
    return int(server.printed(r"web page on http://[^:]+:(\d+)/").group(1))


def dom(url):
    """The page's DOM after its scripts ran (3 s of virtual time: a few refreshes)."""
    return subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000",
         "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout


def row(html, job_id):
    match = re.search(rf'<tr id="job-{job_id}" data-state="(\w+)" data-progress="([0-9.]+)"', html)
    assert match, f"no row for job {job_id} in the page"
    return match.group(1), float(match.group(2))


def call(url, token=None, method="GET", page=True):
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if page:
        request.add_header("X-Stackproc", "1")  # as the page's script sends it
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def slow_job(client):
    """A job that would run for minutes on two cores (bilateral filters on 200 slices): the
    tests cancel it."""
    return client.submit("big.tif", ["bilateral:d=15"] * 4, output="slow.tif")


def test_page_shows_a_running_job_progressing(start_server, tmp_path):
    server = start_server("--http-listen", "127.0.0.1:0")
    url = f"http://127.0.0.1:{web_port(server)}/"
    write_tiff(server.root / "big.tif", stack((200, 768, 768), "uint8"))
    with stackproc.Client(server.target) as client:
        job = slow_job(client)
        next(s for s in job.watch() if s.state == "running" and s.slices_done > 0)
        page = dom(url)
        first = row(page, job.id)
        assert ">Cancel</button>" in page
        assert '<div class="axes">200 z \u00d7 768 y \u00d7 768 x</div>' in page  # its axes
        time.sleep(1)
        second = row(dom(url), job.id)
        assert first[0] == "running" and 0 < first[1] < second[1], (first, second)
        shot = os.path.join(BUILD, "web-page.png")  # for the notes and the README
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                        "--window-size=1100,360", "--virtual-time-budget=3000",
                        f"--screenshot={shot}", url], capture_output=True, timeout=120,
                       check=True)
        assert cv2.imread(shot).shape[:2] == (360, 1100)
        assert job.cancel().state == "cancelled"
        assert ">Cancel</button>" not in dom(url)  # the button goes with the job's end


def test_json_with_tokens_and_cancel(start_server, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("alice alice-token-0123456789\nroot root-token-0123456789 admin\n")
    server = start_server("--http-listen", "127.0.0.1:0", "--auth-token-file", tokens)
    base = f"http://127.0.0.1:{web_port(server)}"
    write_tiff(server.root / "big.tif", stack((200, 768, 768), "uint8"))
    assert 'id="token-form" style="display: block;"' in dom(base + "/")  # the page asks
    assert call(base + "/api/status")[0] == 401
    with stackproc.Client(server.target, token="alice-token-0123456789") as alice:
        job = slow_job(alice)
    code, body = call(base + "/api/status", "alice-token-0123456789")
    status = json.loads(body)
    assert code == 200 and [j["id"] for j in status["jobs"]] == [job.id]
    assert int(status["memory_budget_bytes"]) > 0 and status["version"]
    with stackproc.Client(server.target, token="root-token-0123456789") as root:
        root.submit("big.tif", "gaussian", in_memory=True)  # queued behind alice's
    assert len(json.loads(call(base + "/api/status", "root-token-0123456789")[1])["jobs"]) == 2
    assert len(json.loads(call(base + "/api/status", "alice-token-0123456789")[1])["jobs"]) == 1
    # Another site's form (no X-Stackproc header) cannot cancel, even with a browser's token.
    assert call(f"{base}/api/jobs/{job.id}/cancel", "alice-token-0123456789", "POST",
                page=False)[0] == 403
    code, body = call(f"{base}/api/jobs/{job.id}/cancel", "alice-token-0123456789", "POST")
    assert code == 200 and json.loads(body)["id"] == job.id
    with stackproc.Client(server.target, token="alice-token-0123456789") as alice:
        assert [s.state for s in alice.job(job.id).watch()][-1] == "cancelled"
    code, body = call(f"{base}/api/jobs/{job.id}/cancel", "wrong-token-0123456789", "POST")
    assert code == 401


def test_zero_counts_are_said_and_refusals_are_json(start_server):
    """/api/status states what is 0 (protobuf's JSON left it out); what httplib refuses itself
    (a POST without Content-Length, as `curl -X POST` sends it; an unknown page) answers with
    the API's JSON error, not an empty body."""
    import http.client
    server = start_server("--http-listen", "127.0.0.1:0")
    port = web_port(server)
    status = json.loads(call(f"http://127.0.0.1:{port}/api/status")[1])
    assert status["queued"] == 0 and status["running"] == 0
    assert status["memory_in_use_bytes"] == "0" and status["jobs"] == []
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.putrequest("POST", "/api/jobs/abc/cancel")
    connection.putheader("X-Stackproc", "1")
    connection.endheaders()
    response = connection.getresponse()
    error = json.loads(response.read())
    assert response.status == 400 and error["code"] == 3 and "Content-Length" in error["message"]
    code, body = call(f"http://127.0.0.1:{port}/no/such/page")
    assert code == 404 and json.loads(body) == {"code": 5, "message": "no page /no/such/page"}


def test_preview_of_a_finished_output(start_server):
    server = start_server("--http-listen", "127.0.0.1:0")
    base = f"http://127.0.0.1:{web_port(server)}"
    write_tiff(server.root / "in.tif", stack((12, 80, 130), "uint8"))
    with stackproc.Client(server.target) as client:
        job = client.submit("in.tif", "gaussian:ksize=5", output="out.tif")
        job.wait()
        kept = client.submit("in.tif", "gaussian", in_memory=True)
        kept.wait()
    code, png = call(f"{base}/api/jobs/{job.id}/preview.png")
    assert code == 200
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    out = tifffile.imread(server.root / "out.tif")
    # One column (the output's slices), rows z = 2, 6, 10: tiles of 130 x 80 under one title.
    for r, z in enumerate((2, 6, 10)):
        y = 18 + 4 + r * (18 + 80 + 4) + 18
        assert np.array_equal(image[y:y + 80, 4:4 + 130], out[z])
    assert call(f"{base}/api/jobs/{kept.id}/preview.png")[0] == 409  # in memory: no file
