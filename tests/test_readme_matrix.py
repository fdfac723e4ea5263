"""The README's provider matrix is generated from the catalog; this keeps the two from drifting."""

from pathlib import Path

from wan_pipeline.providers.matrix import BEGIN, END, render

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_provider_matrix_matches_the_catalog() -> None:
    text = README.read_text(encoding="utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    assert text[start:end] == render(), (
        "run `python -m wan_pipeline.providers.matrix` and paste its output into README.md"
    )


def test_matrix_lists_every_catalog_model_once() -> None:
    from wan_pipeline.providers.catalog import CATALOG

    rendered = render()
    for info in CATALOG:
        assert rendered.count(f"| `{info.provider}` `{info.model}` |") == 1
