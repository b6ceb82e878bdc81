"""Sources whose masks label only some of the people: what the loss leaves out, and when."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from torch.utils.data import DataLoader

from maskgen import make_mask_folder
from unetbg.cli import main
from unetbg.model import CompositeLoss, ModelConfig, create_model
from unetbg.training.config import resolve_config
from unetbg.training.engine import train_one_epoch
from unetbg.training.loaders import build_data
from unetbg.training.partial import unlabelled_people

SIZE = 48  # margin: 2 px


def _scene():
    """Two samples: a labelled person at the left, the model's guesses elsewhere."""
    target = torch.zeros(2, 1, SIZE, SIZE)
    target[:, :, 10:30, 5:15] = 1  # the labelled (main) person
    ignore = torch.zeros(2, 1, SIZE, SIZE)
    ignore[:, :, 0:4, 40:48] = 1  # a crowd region, say
    probs = torch.full((2, 1, SIZE, SIZE), 0.1)
    probs[:, :, 10:30, 5:15] = 0.9  # the person, found
    probs[:, :, 10:30, 15:17] = 0.9  # its outline drawn 2 px too wide: within the margin
    probs[:, :, 20:40, 30:40] = 0.8  # a bystander nobody labelled, far away
    return probs, target, ignore


def test_only_far_person_guesses_of_partial_samples_leave_the_loss():
    probs, target, ignore = _scene()
    out = unlabelled_people(probs, target, ignore, torch.tensor([True, False]))
    partial, full = out[0, 0], out[1, 0]
    assert torch.equal(full, ignore[1, 0])  # a fully labelled sample: unchanged
    assert partial[20:40, 30:40].eq(1).all()  # the bystander: not taught as background
    assert partial[10:30, 15:17].eq(0).all()  # the too-wide outline: still corrected
    assert partial[10:30, 5:15].eq(0).all()  # labelled person pixels always count
    assert partial[0:4, 40:48].eq(1).all()  # existing ignore stays
    assert partial[40:48, 0:20].eq(0).all()  # background called background: taught
    assert int(partial.sum()) == 20 * 10 + 4 * 8
    # The band around the person is the margin wide: a guess one pixel further out leaves.
    probs[0, :, 10:30, 17] = 0.9
    assert (
        unlabelled_people(probs, target, ignore, torch.tensor([True, False]))[0, 0, 10:30, 17]
        .eq(1)
        .all()
    )
    # Inputs are not modified.
    assert int(ignore.sum()) == 2 * 4 * 8


def test_no_partial_sample_returns_ignore_itself():
    probs, target, ignore = _scene()
    assert unlabelled_people(probs, target, ignore, torch.tensor([False, False])) is ignore


def test_the_training_step_leaves_the_bystander_out_of_the_loss():
    """The recorded loss of a partial batch is the loss with the model's far guesses
    ignored; the same batch unflagged is scored on every pixel."""
    torch.manual_seed(0)
    target = torch.zeros(2, 1, 64, 64)
    target[:, :, 16:48, 8:24] = 1
    batch = {
        "image": torch.rand(2, 3, 64, 64),
        "raw": torch.rand(2, 3, 64, 64),
        "mask": target,
        "ignore": torch.zeros(2, 1, 64, 64),
        "source": torch.tensor([0, 1]),
    }
    model = create_model(ModelConfig(encoder_weights=None))
    criterion = CompositeLoss()
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def step(partial: list[bool]) -> float:
        model.load_state_dict(state)
        # lr 0: the step must not move the weights, so both runs see the same model.
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
        loader = DataLoader([batch | {"partial": torch.tensor(partial)}], batch_size=None)
        outcome = train_one_epoch(
            model, loader, criterion, optimizer, scheduler,
            torch.amp.GradScaler("cpu", enabled=False), torch.device("cpu"), total_steps=1,
        )  # fmt: skip
        return outcome.running.compute()["loss"]

    model.train()
    with torch.no_grad():
        model.load_state_dict(state)
        outputs = model(batch["image"])
        probs = torch.sigmoid(outputs["mask"].float())
        flags = torch.tensor([True, False])
        left_out = unlabelled_people(probs, target, batch["ignore"], flags)
        want_partial = float(criterion(outputs, target, ignore=left_out)[0])
        want_full = float(criterion(outputs, target, ignore=batch["ignore"])[0])
    assert int(left_out.sum()) > 0  # an untrained model calls some background person
    assert step([True, False]) == pytest.approx(want_partial, rel=1e-5)
    assert step([False, False]) == pytest.approx(want_full, rel=1e-5)
    assert want_partial != pytest.approx(want_full, rel=1e-5)


@pytest.fixture
def folders(tmp_path):
    return make_mask_folder(tmp_path / "street", seed=1), make_mask_folder(
        tmp_path / "scenes", seed=2
    )


def test_partial_sources_flag_their_training_samples_only(folders):
    cfg = resolve_config(
        "smoke",
        data=tuple(f"masks:{f}" for f in folders),
        partial_sources=("street",),
        samples_per_epoch=32,
        val_limit=None,
        copy_paste=0.5,
        copy_paste_empty=False,
        empty_share=0.25,
    ).for_device("cpu")
    data = build_data(cfg)
    mixture = data.train_samples.dataset
    # The run's options reach the mixture: photos without people come from the fully
    # labelled source only, and stay whole.
    assert mixture.empty_share == 0.25 and mixture.copy_paste.onto_empty is False
    assert mixture.empties and {r for r, _ in mixture.empties} == {1}
    data.set_epoch(1)
    seen = {(mixture.readers[r].name, bool(mixture[i]["partial"])) for i, (r, _) in
            enumerate(mixture.plan())}  # fmt: skip
    assert seen == {("street", True), ("scenes", False)}
    batch = next(iter(data.train_loader))
    assert batch["partial"].dtype == torch.bool and batch["partial"].shape == (cfg.batch_size,)
    assert "partial" not in data.val_loader.dataset[0]  # validation scores every pixel


def test_partial_sources_must_name_a_training_source(folders):
    with pytest.raises(ValueError, match=r"partial_sources names no training source: ccp.*"
                       r"the sources are: street, scenes"):  # fmt: skip
        resolve_config("smoke", data=tuple(f"masks:{f}" for f in folders),
                       partial_sources=("ccp",))  # fmt: skip
    with pytest.raises(ValueError, match="needs sources given with data"):
        resolve_config("smoke", coco_root="/data/coco", partial_sources=("coco",))


def test_cli_option_is_repeatable_checked_and_none_clears_it(folders, tmp_path):
    args = ["train", "--preset", "smoke", "--output-dir", str(tmp_path / "run")]
    args += [a for f in folders for a in ("--data", f"masks:{f}")]
    result = CliRunner().invoke(main, [*args, "--partial-sources", "nobody"])
    assert result.exit_code == 2
    assert "partial_sources names no training source: nobody" in result.output
    assert not (tmp_path / "run").exists()  # refused before anything was written

    from unetbg.cli._train_options import field_overrides

    assert field_overrides({"partial_sources": ("street", "scenes")}) == {
        "partial_sources": ("street", "scenes")
    }
    assert field_overrides({"partial_sources": ("none",)}) == {"partial_sources": ()}
    assert field_overrides({"partial_sources": ()}) == {}  # not given: the preset's stays
