""" "No person found": outputs that show no person are flagged per image and counted,
with the shipped default model on real photos (issue 19 item 7)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from inference_fixtures import photos_with_and_without_people
from unetbg.cli import main
from unetbg.removal import NO_PERSON_SHARE, no_person, person_share


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def mixed(tmp_path: Path) -> tuple[Path, list[str]]:
    return photos_with_and_without_people(tmp_path / "photos")


def test_person_share_counts_what_the_output_shows():
    probability = np.zeros((100, 100), np.float32)
    probability[:1, :9] = 0.5  # 9 pixels at exactly one half count
    probability[1, :50] = 0.4999  # below one half: not shown as person
    assert person_share(probability) == pytest.approx(9 / 10_000)
    assert no_person(person_share(probability))  # 0.09 % < 0.1 %
    probability[2, :1] = 1.0
    assert person_share(probability) == pytest.approx(NO_PERSON_SHARE)
    assert not no_person(person_share(probability))  # exactly 0.1 %: a person
    assert not no_person(None)  # not measured (not written) is not flagged


def test_remove_dir_flags_counts_and_lists_images_without_a_person(embedded_env, mixed, tmp_path):
    folder, without = mixed
    total = 1 + len(without)
    result = run("remove-dir", folder, tmp_path / "out", "--checkpoint", "default", "--wait")
    assert result.exit_code == 0, result.output
    job_id = result.stdout.splitlines()[0]
    summary = (
        f"{len(without)} of {total} found no person (unetbg status {job_id} --items no-person)"
    )
    assert summary in result.stderr
    assert len(list((tmp_path / "out").glob("*.png"))) == total  # written all the same

    status = run("status", job_id)
    assert status.exit_code == 0 and summary in status.stdout
    listed = run("status", job_id, "--items", "no-person")
    assert listed.exit_code == 0, listed.output
    rows = listed.stdout.split("no-person items:")[1].strip().splitlines()[1:]
    assert len(rows) == len(without) and "astronaut" not in listed.stdout
    for name in without:
        assert any(str(folder / name) in row and "no person" in row for row in rows)
    everything = run("status", job_id, "--items", "all").stdout.split("all items:")[1]
    marked = [line for line in everything.splitlines() if "no person" in line]
    assert len(marked) == len(without) and "astronaut.jpg" not in "".join(marked)

    lines = run("status", job_id, "--items", "all", "--json").stdout.splitlines()
    document, *listed = map(json.loads, lines)  # JSON Lines: the job, then its items
    assert document["no_person"] == len(without)
    items = {Path(i["source_path"]).name: i for i in listed}
    assert items["astronaut.jpg"]["no_person"] is False
    assert items["astronaut.jpg"]["person_share"] > 0.1  # the astronaut fills the photo
    for name in without:
        assert items[name]["no_person"] is True
        assert items[name]["person_share"] < NO_PERSON_SHARE


def test_remove_says_no_person_found_and_still_writes(mixed, tmp_path, monkeypatch):
    monkeypatch.delenv("UNETBG_DEFAULT_MODEL", raising=False)
    folder, without = mixed
    images = sorted(folder.iterdir())
    result = run("remove", *images, "-o", tmp_path / "out", "--checkpoint", "default")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == len(images)  # every output written
    flagged = [line for line in result.stderr.splitlines() if line.startswith("no person")]
    assert flagged == [f"no person found in {folder / name}" for name in sorted(without)]
