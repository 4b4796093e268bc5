import pytest

from distiller.errors import ConfigError, DistillerError
from distiller.registry import Registry, close_matches


def test_register_decorator_and_lookup():
    reg = Registry("widget")

    @reg.register("alpha")
    def make_alpha():
        return "a"

    reg.register("beta", make_alpha)
    assert reg.get("alpha") is make_alpha
    assert "beta" in reg and "gamma" not in reg
    assert reg.names() == ["alpha", "beta"]
    assert len(reg) == 2


def test_register_defaults_to_object_name():
    reg = Registry("widget")

    @reg.register()
    class Pruner:
        pass

    assert reg.get("Pruner") is Pruner


def test_unknown_name_suggests_close_matches():
    reg = Registry("model")
    for name in ["resnet20_cifar", "resnet32_cifar", "simplenet_mnist"]:
        reg.register(name, object())
    with pytest.raises(ConfigError, match=r"Unknown model 'resnet20_cifr'.*Did you mean 'resnet20_cifar'") as info:
        reg.get("resnet20_cifr")
    assert isinstance(info.value, DistillerError)


def test_unknown_name_without_close_match_has_no_suggestion():
    reg = Registry("model")
    reg.register("resnet20_cifar", object())
    with pytest.raises(ConfigError) as info:
        reg.get("zzz")
    assert "Did you mean" not in str(info.value)


def test_duplicate_registration_is_refused_unless_replaced():
    reg = Registry("model")
    reg.register("a", 1)
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("a", 2)
    reg.register("a", 2, replace=True)
    assert reg.get("a") == 2


def test_close_matches_is_case_insensitive():
    assert close_matches("AutomatedGradualPruner".lower(), ["AutomatedGradualPruner", "SplicingPruner"]) == [
        "AutomatedGradualPruner"
    ]
