"""``unetbg evaluate`` as a user reads it: columns in words, and a warning on stderr when
the model does worse than calling every pixel a person (issue 11, item 14)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from service_fixtures import embedded_env, make_checkpoint  # noqa: F401  (a fixture)
from unetbg.cli import main


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    """A real checkpoint of a randomly initialised model: it finds nobody."""
    return make_checkpoint(tmp_path_factory.mktemp("random") / "model.pth")


def _evaluate(checkpoint, coco_mini, *extra: str):
    args = ["evaluate", str(checkpoint), "--coco-root", str(coco_mini), "--limit", "4"]
    return CliRunner().invoke(main, [*args, "--device", "cpu", *extra])


@pytest.mark.usefixtures("embedded_env")
def test_a_useless_model_is_flagged_and_columns_are_words(random_checkpoint, coco_mini):
    result = _evaluate(random_checkpoint, coco_mini)
    assert result.exit_code == 0, result.output
    warning = "warning: the model scores below the all-person baseline (overall)"
    assert warning in result.stderr and warning not in result.stdout
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["pooled", "per", "image", "baseline", "per", "image"]
    assert [line[:16].strip() for line in lines[2:5]] == ["IoU", "Dice", "pixel accuracy"]
    assert "baseline: every pixel called person" in result.stdout
    assert lines[5].startswith("pooled IoU, 90 % of photo resamplings: ")
    assert "all-fg" not in result.stdout

    # --json: one document on stdout; the warning still on stderr.
    as_json = _evaluate(random_checkpoint, coco_mini, "--json")
    assert as_json.exit_code == 0, as_json.output
    figures = json.loads(as_json.stdout)
    assert figures["iou"] < figures["baseline"]["iou"]
    low, high = figures["iou_interval"]
    assert low <= figures["iou"] <= high and lines[5].endswith(f"{low:.4f}–{high:.4f}")
    assert warning in as_json.stderr


@pytest.mark.usefixtures("embedded_env")
def test_image_size_runs_the_model_at_another_letterbox(random_checkpoint, coco_mini):
    own = json.loads(_evaluate(random_checkpoint, coco_mini, "--json").stdout)
    bigger = _evaluate(random_checkpoint, coco_mini, "--json", "--image-size", "128")
    assert bigger.exit_code == 0, bigger.output
    figures = json.loads(bigger.stdout)
    assert own["image_size"] == 64 and figures["image_size"] == 128
    assert figures["baseline"] == own["baseline"]  # the same photos and masks
    assert figures["iou"] != own["iou"]  # the network saw other pixels
    assert (
        "letterbox 128 px" in _evaluate(random_checkpoint, coco_mini, "--image-size", "128").stdout
    )

    odd = _evaluate(random_checkpoint, coco_mini, "--image-size", "100")
    assert odd.exit_code == 2 and "100 is not a multiple of 32" in odd.output


@pytest.mark.usefixtures("embedded_env")
def test_photos_without_people_report_the_person_the_model_imagines(random_checkpoint, tmp_path):
    from maskgen import make_mask_folder

    # Every third photo has nobody in it; img000 of those has an ignore area (a crowd, say),
    # so it is not a photo without people: 3 of the 12 are.
    folder = make_mask_folder(tmp_path / "street", count=12)

    def run(threshold: str, *extra: str):
        args = ["evaluate", str(random_checkpoint), "--data", f"masks:{folder}"]
        args += ["--val-percent", "100", "--device", "cpu", "--threshold", threshold]
        return CliRunner().invoke(main, [*args, *extra])

    # Called person everywhere: every photo without people is all false person.
    everything = json.loads(run("0.000001", "--json").stdout)
    assert everything["empty"] == {"images": 3, "with_false_person": 3, "false_person": 1.0}
    assert everything["sources"]["street"]["empty"] == everything["empty"]
    nothing = json.loads(run("0.999999", "--json").stdout)
    assert nothing["empty"] == {"images": 3, "with_false_person": 0, "false_person": 0.0}
    text = run("0.000001").stdout
    assert (
        "photos without people: 3; a person called on 3 of them (> 1 % of the photo), "
        "100.0% of their pixels on average" in text
    )
    assert "photos without people in street: 3;" in text
    # Called person everywhere, a photo's IoU is its person share: 0 for those without.
    low, high = everything["sources"]["street"]["iou_interval"]
    assert low < everything["sources"]["street"]["iou"] < high
    row = next(line for line in text.splitlines() if line.startswith("street "))
    assert f"{low:.3f}–{high:.3f}" in row.split()


@pytest.mark.usefixtures("embedded_env")
@pytest.mark.parametrize(
    ("field", "header"), [("flip_average", "flip-averaged"), ("refine_edges", "edges refined")]
)
def test_inference_steps_follow_the_checkpoint_unless_told(
    random_checkpoint, coco_mini, tmp_path, field, header
):
    from unetbg.model import load_checkpoint, save_checkpoint

    flag = field.replace("_", "-")
    own = json.loads(_evaluate(random_checkpoint, coco_mini, "--json").stdout)
    told = _evaluate(random_checkpoint, coco_mini, f"--{flag}")
    assert own[field] is False and told.exit_code == 0, told.output
    assert f"letterbox 64 px, {header}, cpu" in told.stdout.splitlines()[0]

    state = load_checkpoint(random_checkpoint, map_location="cpu")
    state["preprocessing"][field] = True
    save_checkpoint(tmp_path / "asks.pth", state)
    asks = json.loads(_evaluate(tmp_path / "asks.pth", coco_mini, "--json").stdout)
    off = json.loads(_evaluate(tmp_path / "asks.pth", coco_mini, "--json", f"--no-{flag}").stdout)
    assert asks[field] is True and off[field] is False
    # What runs is what is scored: other figures with the step, the same without it.
    assert asks["images"] == off["images"] == own["images"]
    assert (asks["dice"], asks["iou"]) != (off["dice"], off["iou"])
    assert (off["dice"], off["iou"]) == (own["dice"], own["iou"])


@pytest.mark.usefixtures("embedded_env")
def test_alpha_curve_switch_is_scored_and_said(random_checkpoint, coco_mini):
    own = json.loads(_evaluate(random_checkpoint, coco_mini, "--json").stdout)
    told = _evaluate(random_checkpoint, coco_mini, "--alpha-curve")
    assert told.exit_code == 0, told.output
    assert "letterbox 64 px, alpha curve, cpu" in told.stdout.splitlines()[0]
    curved = json.loads(_evaluate(random_checkpoint, coco_mini, "--json", "--alpha-curve").stdout)
    assert own["alpha_curve"] is None and curved["alpha_curve"] == [0.1, 0.9]
    # The 0.5 cut stays where it was: the same masks, so the same figures; less veil.
    assert (curved["iou"], curved["dice"]) == (own["iou"], own["dice"])
    assert curved["alpha"]["background_alpha"] <= own["alpha"]["background_alpha"]


@pytest.mark.usefixtures("embedded_env")
def test_groups_missed_photos_and_alpha_cleanliness(random_checkpoint, tmp_path):
    from maskgen import make_mask_folder

    folder = make_mask_folder(tmp_path / "studio", count=12)
    names = sorted(p.stem for p in (folder / "images").iterdir())
    rows = ["name\tbackdrop\tframing"] + [
        f"{n}\t{'red' if i % 2 else 'white'}\t{'head' if i < 6 else 'whole'}"
        for i, n in enumerate(names)
    ]
    (folder / "manifest.tsv").write_text("\n".join(rows) + "\n")
    (folder / "VALIDATION_ONLY").write_text("")

    def run(threshold: str, *extra: str):
        args = ["evaluate", str(random_checkpoint), "--data", f"masks:{folder}"]
        args += ["--device", "cpu", "--threshold", threshold, "--group-by", "backdrop"]
        return CliRunner().invoke(main, [*args, "--group-by", "framing,backdrop", *extra])

    # Every pixel called person: the 8 photos with people score their person share,
    # all below 0.2 (small ellipses); every background pixel is visible.
    everything = run("0.000001", "--json")
    assert everything.exit_code == 0, everything.output
    source = json.loads(everything.stdout)["sources"]["studio"]
    assert source["images"] == 12  # VALIDATION_ONLY: all of the folder validates
    assert source["low_iou"] == 8
    groups = source["groups"]
    assert set(groups["backdrop"]) == {"red", "white"}
    assert sum(g["images"] for g in groups["backdrop"].values()) == 12
    assert set(groups["framing,backdrop"]) == {"head/red", "head/white", "whole/red", "whole/white"}
    assert sum(g["low_iou"] for g in groups["backdrop"].values()) == 8
    nothing = json.loads(run("0.999999", "--json").stdout)["sources"]["studio"]
    assert nothing["low_iou"] == 8  # found nobody: IoU 0 on each photo with a person
    text = run("0.5").stdout
    assert "studio by framing,backdrop:" in text and "head/red" in text
    assert "photos in studio with a person scored below IoU 0.2:" in text
    # A column the manifest lacks is named, with the ones it has.
    wrong = CliRunner().invoke(
        main,
        ["evaluate", str(random_checkpoint), "--data", f"masks:{folder}", "--group-by", "wall"],
    )
    assert wrong.exit_code == 1 and "no column wall (columns: backdrop, framing)" in wrong.output


def test_alpha_figures_count_visible_background_and_empty_photos():
    import numpy as np

    from unetbg.training.evaluation import AlphaFigures

    mask = np.zeros((10, 10), np.uint8)
    mask[:5] = 1
    ignore = np.zeros_like(mask)
    ignore[9] = 1  # not scored
    prob = np.zeros((10, 10), np.float32)
    prob[5] = 2.4 / 255  # rounds to 2: invisible
    prob[6] = 2.6 / 255  # rounds to 3: visible
    prob[9] = 1.0  # ignored
    figures = AlphaFigures()
    figures.update([prob], [mask], [ignore])
    empty = np.full((4, 4), 0.25, np.float32)
    figures.update([empty], [np.zeros((4, 4), np.uint8)], [np.zeros((4, 4), np.uint8)])
    result = figures.compute()
    assert result["background_alpha"] == pytest.approx((10 + 16) / (40 + 16))
    assert result["empty_mean_alpha"] == pytest.approx(0.25)
