"""``POST /api/remove`` and the web page say whether a cut-out shows a person (issue 19
item 7), with the real shipped model behind a real ``unetbg serve``."""

from __future__ import annotations

import numpy as np
from api_server import serve, server_env

from inference_fixtures import photos_with_and_without_people
from unetbg.removal import NO_PERSON_SHARE
from unetbg.web.remove_page import no_person_note


def test_api_and_web_page_say_whether_a_person_was_found(tmp_path):
    # The real shipped model behind a real `unetbg serve`: each answer says whether its
    # cut-out shows a person, in headers a client of 10,000 photos can filter on.
    folder, without = photos_with_and_without_people(tmp_path / "photos")
    env = server_env(tmp_path / "data")
    env.pop("UNETBG_DEFAULT_MODEL", None)
    answers = {}
    for server in serve(tmp_path, "default", env):
        with server.client() as client:
            for image in sorted(folder.iterdir()):
                answer = client.post("/api/remove", files={"file": image.read_bytes()})
                assert answer.status_code == 200, answer.text
                answers[image.name] = answer.headers
    assert answers["astronaut.jpg"]["x-unetbg-person-found"] == "yes"
    assert float(answers["astronaut.jpg"]["x-unetbg-person-share"]) > 0.1
    for name in without:
        assert answers[name]["x-unetbg-person-found"] == "no"
        assert float(answers[name]["x-unetbg-person-share"]) < NO_PERSON_SHARE

    # The web page's warning, from the same definition.
    empty = np.zeros((120, 160), np.float32)
    assert no_person_note("grey.png", empty) == (
        "no person found in grey.png (under 0.1 % of the photo shows one)"
    )
    assert no_person_note("astronaut.jpg", np.ones((120, 160), np.float32)) is None
