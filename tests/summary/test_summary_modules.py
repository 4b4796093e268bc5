"""Model and modules summaries: the module tree text, leaf modules with types and parameter counts."""

from __future__ import annotations

from torch import nn

from distiller.models import create_model
from distiller.summary import (
    MODULES_COLUMNS,
    model_summary_text,
    modules_summary,
    render_modules_summary,
    total_parameters,
)


def test_model_summary_is_the_module_tree():
    model = create_model("simplenet_cifar", "cifar10")
    assert model_summary_text(model) == str(model)
    assert "(conv1): Conv2d(3, 6, kernel_size=(5, 5)" in model_summary_text(model)


def test_modules_lists_leaves_with_types_and_parameter_counts():
    df = modules_summary(create_model("simplenet_cifar", "cifar10"))
    assert list(df.columns) == list(MODULES_COLUMNS) == ["Name", "Type", "Parameters"]
    assert df["Name"].tolist()[:3] == ["conv1", "relu_conv1", "pool1"]
    row = df.set_index("Name").loc["conv1"]
    assert (row["Type"], row["Parameters"]) == ("Conv2d", 6 * 3 * 25 + 6)
    assert df.set_index("Name").loc["pool1", "Parameters"] == 0
    assert total_parameters(df) == 62006 == df["Parameters"].sum()


def test_containers_are_not_listed_and_shared_parameters_count_once():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(nn.Sequential(shared, nn.ReLU()), shared)
    df = modules_summary(model)
    assert df["Name"].tolist() == ["0.0", "0.1"]  # named_modules() lists a shared module once
    assert total_parameters(df) == 20


def test_render_ends_with_the_total():
    df = modules_summary(create_model("resnet20_cifar", "cifar10"))
    text = render_modules_summary(df)
    assert "layer2.0.downsample.0" in text and "EltwiseAdd" in text
    assert text.splitlines()[-1] == f"Total parameters: {total_parameters(df):,}"
