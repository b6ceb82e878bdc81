"""The web page's models: the process-wide unetbg.inference.ModelCache, so a checkpoint
rewritten in place (training saving best_model.pth again) is loaded afresh."""

from __future__ import annotations

from inference_fixtures import person_photo, rewrite_as_constant, tiny_checkpoint


def test_the_pages_model_follows_a_checkpoint_rewritten_in_place(tmp_path_factory, tmp_path):
    from unetbg.web.common import load_model

    source = tiny_checkpoint(tmp_path_factory)
    path = rewrite_as_constant(source, tmp_path / "best_model.pth", person=True)
    photo = person_photo(40, 30)
    first = load_model(path, "cpu")
    assert first.inference.predict_arrays([photo])[0].min() > 0.99
    again = load_model(path, "cpu")
    assert again.inference is first.inference and again.key == first.key  # loaded once

    rewrite_as_constant(source, path, person=False)
    second = load_model(path, "cpu")
    assert second.key != first.key  # the page's stored predictions are not reused
    assert second.inference.predict_arrays([photo])[0].max() < 0.01
