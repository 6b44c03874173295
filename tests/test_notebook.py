"""The lesson notebook runs top to bottom on cnnlab, and every assert of the seed lesson holds."""

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "lesson.ipynb"

# The seed lesson's asserts (its exercises); each must appear in the notebook and pass.
SEED_ASSERTS = [
    "assert len(train_loader) == 938",
    "assert out_feat_F.shape == torch.Size([1, 1, 26, 26])",
    "assert out_feat_F.shape == torch.Size([1, 1, 28, 28])",
    "assert out_feat_F.shape == torch.Size([1, 1, 15, 14])",
    "assert int(max_pooling) == 6 and int(average_pooling) == 4",
    "assert accuracy > 80",
]


def test_notebook_holds_every_seed_assert():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for line in SEED_ASSERTS:
        assert line in source, f"missing: {line}"
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") for c in code_cells), "commit it without outputs"


@pytest.mark.slow
def test_notebook_executes(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb,
        timeout=600,
        startup_timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError (with the failing cell) on any error or assert
    outputs = "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "total images : 60000" in outputs
    assert "Your accuracy is" in outputs
    nbformat.write(nb, tmp_path / "lesson.executed.ipynb")
