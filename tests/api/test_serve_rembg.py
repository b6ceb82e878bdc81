"""``unetbg serve`` as rembg's clients and unauthenticated clients see it: rembg's
parameters honoured or refused by name, 401 before any body limit, latency buckets that
reach a slow CPU request. A real server process (tests/api/api_server.py), real photos."""

from __future__ import annotations

import io
import os

import pytest
from api_server import MAX_UPLOAD_BYTES, copy_jpegs
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families


@pytest.fixture(scope="module")
def photo(coco_root, tmp_path_factory):
    return copy_jpegs(coco_root, tmp_path_factory.mktemp("photo"), 1)[0].read_bytes()


def test_rembg_bgc_is_an_opaque_colour_background(server, photo):
    size = Image.open(io.BytesIO(photo)).size
    with server.client() as client:
        # As rembg's clients send it: a query parameter, R,G,B,A.
        white = client.post("/api/remove?bgc=255,255,255,255", files={"file": photo})
        assert white.status_code == 200, white.text
        image = Image.open(io.BytesIO(white.content))
        assert (image.mode, image.size) == ("RGB", size)  # no alpha: composited on white
        # As a form field, and combined with rembg's own format choice of ours.
        green = client.post(
            "/api/remove", files={"file": photo}, data={"bgc": "0,255,0,255", "format": "jpeg"}
        )
        assert green.status_code == 200, green.text
        assert green.headers["content-type"] == "image/jpeg"
        refused = {
            text: client.post("/api/remove", files={"file": photo}, data={"bgc": text})
            for text in ("0,0,0,0", "255,255", "red", "255,255,255,256")
        }
        assert {t: r.status_code for t, r in refused.items()} == dict.fromkeys(refused, 400)
        assert "opaque" in refused["0,0,0,0"].json()["detail"]
        assert "R,G,B,A" in refused["red"].json()["detail"]
        both = client.post("/api/remove?bgc=255,255,255,255&color=red", files={"file": photo})
        assert both.status_code == 400 and "bgc" in both.json()["detail"]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("a=true", "a=true"),
        ("a=true&af=240&ab=10&ae=10", "a=true"),
        ("af=240", "af=240"),
        ("model=u2net", "model=u2net"),
        ("ppm=true", "ppm=true"),
        ("extras=%7B%7D", "extras={}"),
        ("treshold=0.5", "'treshold'"),  # a misspelt option of ours
    ],
)
def test_parameters_we_do_not_support_are_refused_by_name(server, photo, query, named):
    with server.client() as client:
        refused = client.post(f"/api/remove?{query}", files={"file": photo})
        assert refused.status_code == 400, refused.text
        assert named in refused.json()["detail"]
        # The same as a form field.
        name, _, value = query.partition("&")[0].partition("=")
        as_form = client.post("/api/remove", files={"file": photo}, data={name: value})
        assert as_form.status_code == 400 and name in as_form.json()["detail"]


def test_rembg_flags_that_ask_for_nothing_pass(server, photo):
    with server.client() as client:
        answer = client.post("/api/remove?a=false&ppm=false&om=false", files={"file": photo})
        assert answer.status_code == 200, answer.text
        assert Image.open(io.BytesIO(answer.content)).mode == "RGBA"


def test_unauthenticated_oversized_upload_gets_401_json(server):
    body = os.urandom(3 * MAX_UPLOAD_BYTES)  # over the route's limit and the JSON limit
    for key in (None, "wrong-key"):
        with server.client(key) as client:
            for path, kwargs in (
                ("/api/remove", {"files": {"file": body}}),
                ("/api/jobs", {"content": body, "headers": {"Content-Type": "application/json"}}),
            ):
                refused = client.post(path, **kwargs)
                assert refused.status_code == 401, (path, refused.status_code, refused.text)
                assert refused.headers["www-authenticate"] == "Bearer"
                assert "API key" in refused.json()["detail"]
    with server.client() as client:  # with the key, the limit answers, in JSON too
        too_large = client.post("/api/remove", files={"file": body})
        assert too_large.status_code == 413
        assert "upload too large" in too_large.json()["detail"]
        assert f"{MAX_UPLOAD_BYTES:,}" in too_large.json()["detail"]
        big_json = client.post(
            "/api/jobs", content=body, headers={"Content-Type": "application/json"}
        )
        assert big_json.status_code == 413
        assert "request body too large" in big_json.json()["detail"]


def test_latency_histogram_reaches_a_minute(server):
    with server.client() as client:
        assert client.get("/healthz").status_code == 200
        text = client.get("/metrics").text
    (family,) = [
        f
        for f in text_string_to_metric_families(text)
        if f.name == "unetbg_request_duration_seconds"
    ]
    bounds = {float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket")}
    assert max(b for b in bounds if b != float("inf")) >= 60
