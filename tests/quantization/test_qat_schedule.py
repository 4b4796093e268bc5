"""QAT driven by a schedule: preparation at the policy's first firing (after pruning), optimizer
groups and LR schedulers for the new parameters, resume across the QAT start, the original PACT
sample, and runs through ``distiller classify``."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from distiller.checkpoint import load_checkpoint, save_checkpoint
from distiller.config import dict_config, validate_schedule
from distiller.models import create_model
from distiller.quantization import LearnedClippedLinearQuantization, PACTQuantizer
from distiller.scheduler.policies import QuantizationPolicy, quantization_prepared
from shared_data import MNIST_DIR, ORIGINAL_SAMPLES, REPO_ROOT, require

EXAMPLES = REPO_ROOT / "examples" / "quantization"


def _schedule(qat_start: int = 2, epochs: int = 4) -> dict:
    """AGP pruning over epochs 0-1, then PACT from ``qat_start``; MultiStepLR at epochs 1 and 3."""
    return {
        "version": 1,
        "pruners": {
            "agp": {
                "class": "AutomatedGradualPruner",
                "initial_sparsity": 0.2,
                "final_sparsity": 0.5,
                "weights": ["conv2.weight", "fc.weight"],
            }
        },
        "quantizers": {
            "pact": {
                "class": "PACTQuantizer",
                "bits_activations": 4,
                "bits_weights": 4,
                "act_clip_init_val": 4.0,
                "act_clip_decay": 0.0005,
                "overrides": {"fc": {"bits_weights": None}},
            }
        },
        "lr_schedulers": {"steps": {"class": "MultiStepLR", "milestones": [1, 3], "gamma": 0.1}},
        "policies": [
            {"pruner": {"instance_name": "agp"}, "starting_epoch": 0, "ending_epoch": 2, "frequency": 1},
            {"quantizer": {"instance_name": "pact"}, "starting_epoch": qat_start, "ending_epoch": epochs},
            {"lr_scheduler": {"instance_name": "steps"}, "starting_epoch": 0, "ending_epoch": epochs},
        ],
    }


def _batches(n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(n)]


def _train_epoch(model, scheduler, optimizer, epoch, batches) -> None:  # noqa: ANN001
    scheduler.on_epoch_begin(epoch, optimizer)
    model.train()
    for step, (x, y) in enumerate(batches):
        scheduler.on_minibatch_begin(epoch, step, len(batches), optimizer)
        loss = nn.functional.cross_entropy(model(x), y)
        loss = scheduler.before_backward_pass(epoch, step, len(batches), loss, optimizer)
        optimizer.zero_grad()
        loss.backward()
        scheduler.before_parameter_optimization(epoch, step, len(batches), optimizer)
        optimizer.step()
        scheduler.on_minibatch_end(epoch, step, len(batches), optimizer)
    scheduler.on_epoch_end(epoch, optimizer, metrics={"min": 1.0, "max": 50.0})


def _setup(seed: int = 0):  # noqa: ANN202
    torch.manual_seed(seed)
    model = create_model("simplenet_digits", "digits")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    return model, optimizer


def test_pact_after_pruning_prepares_when_it_first_fires_and_keeps_the_masks():
    model, optimizer = _setup()
    scheduler = dict_config(model, optimizer, _schedule())
    policy = next(e.policy for e in scheduler.entries if isinstance(e.policy, QuantizationPolicy))
    batches = _batches()
    for epoch in range(2):
        _train_epoch(model, scheduler, optimizer, epoch, batches)
        assert not policy.prepared and isinstance(model.relu1, nn.ReLU) and len(optimizer.param_groups) == 1
    mask = scheduler.masks["conv2.weight"].mask
    assert mask is not None and (mask == 0).float().mean() == pytest.approx(0.5, abs=0.01)
    conv2_weight = model.conv2.weight  # the parameter object the optimizer holds
    _train_epoch(model, scheduler, optimizer, 2, batches)
    assert policy.prepared
    assert isinstance(model.relu1, LearnedClippedLinearQuantization)
    assert model.conv2.float_weight is conv2_weight  # same object: optimizer state and masks stay valid
    assert torch.equal(model.conv2.float_weight.detach() * mask, model.conv2.float_weight.detach())  # still pruned
    assert torch.equal(model.conv2.weight * mask, model.conv2.weight)  # and so is the quantized weight
    assert model.conv2.weight[mask.bool()].unique().numel() <= 16
    assert isinstance(model.fc.weight, nn.Parameter)  # overridden: float
    assert len(optimizer.param_groups) == 2
    alpha = optimizer.param_groups[1]
    assert alpha["params"] == [model.relu1.clip_val, model.relu2.clip_val] and alpha["weight_decay"] == 0.0005
    assert any(not torch.equal(p.detach(), torch.tensor([4.0])) for p in alpha["params"])  # alpha trained


def test_lr_schedulers_cover_the_new_param_group():
    model, optimizer = _setup()
    scheduler = dict_config(model, optimizer, _schedule())
    lr_sched = next(e.policy.lr_scheduler for e in scheduler.entries if e.is_lr)
    batches = _batches(1)
    for epoch in range(2):
        _train_epoch(model, scheduler, optimizer, epoch, batches)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.01])
    _train_epoch(model, scheduler, optimizer, 2, batches)
    # added at epoch 2 with the first group's current LR; the scheduler then steps both to epoch 3's
    assert len(lr_sched.base_lrs) == 2 and lr_sched.base_lrs == pytest.approx([0.1, 0.1])
    assert optimizer.param_groups[1]["initial_lr"] == pytest.approx(0.1)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.001, 0.001])
    assert len(lr_sched.get_last_lr()) == 2


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_resume_after_the_qat_start_is_bit_equal(tmp_path):
    """QAT from epoch 1; interrupted after epoch 2 and resumed: the app's order of operations."""
    batches = _batches()
    epochs = 4
    sched = _schedule(qat_start=1, epochs=epochs)
    model, optimizer = _setup()
    scheduler = dict_config(model, optimizer, sched)
    for epoch in range(epochs):
        _train_epoch(model, scheduler, optimizer, epoch, batches)
        if epoch == 2:
            save_checkpoint(
                tmp_path,
                model=model,
                arch="simplenet_digits",
                dataset="digits",
                epoch=epoch,
                optimizer=optimizer,
                scheduler_state=scheduler.state_dict(),
            )
    expected = _state(model)
    checkpoint = tmp_path / "checkpoint.pth.tar"

    # 1. a fresh float model and its optimizer; 2. the schedule with that optimizer;
    # 3. the scheduler state (the quantization policy prepares the model and adds its group);
    # 4. the weights; 5. the optimizer state.
    from distiller.checkpoint.read import read_checkpoint

    saved_sched = read_checkpoint(checkpoint)["compression_sched"]
    assert quantization_prepared(saved_sched)
    model2, optimizer2 = _setup(seed=123)  # other initial weights: everything must come from the checkpoint
    scheduler2 = dict_config(model2, optimizer2, sched, resumed_epoch=2)
    scheduler2.load_state_dict(saved_sched)
    assert isinstance(model2.relu1, LearnedClippedLinearQuantization) and len(optimizer2.param_groups) == 2
    loaded = load_checkpoint(checkpoint, model2)  # strict: the re-prepared model fits the checkpoint
    optimizer2.load_state_dict(loaded.optimizer_state)
    for epoch in range(loaded.start_epoch, epochs):
        _train_epoch(model2, scheduler2, optimizer2, epoch, batches)
    actual = _state(model2)
    assert list(actual) == list(expected)
    for key, value in expected.items():
        assert torch.equal(value, actual[key]), key
    assert [g["lr"] for g in optimizer2.param_groups] == [g["lr"] for g in optimizer.param_groups]


def test_resume_before_the_qat_start_prepares_at_the_first_firing():
    model, optimizer = _setup()
    scheduler = dict_config(model, optimizer, _schedule(qat_start=2))
    _train_epoch(model, scheduler, optimizer, 0, _batches(1))
    state = scheduler.state_dict()
    assert not quantization_prepared(state)
    model2, optimizer2 = _setup()
    scheduler2 = dict_config(model2, optimizer2, _schedule(qat_start=2), resumed_epoch=0)
    scheduler2.load_state_dict(state)
    assert isinstance(model2.relu1, nn.ReLU)


def test_original_pact_sample_validates_and_keeps_its_overrides_float():
    model = create_model("preact_resnet20_cifar")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    plan = validate_schedule(require(ORIGINAL_SAMPLES / "preact_resnet20_cifar_pact.yaml"), model, optimizer)
    assert not hasattr(model.conv1, "float_weight")  # validation does not touch the model
    plan.scheduler.on_epoch_begin(0, optimizer)
    quantizer = plan.scheduler.entries[0].policy.quantizer
    assert isinstance(quantizer, PACTQuantizer) and quantizer.act_clip_init_val == 8.0
    assert isinstance(model.conv1.weight, nn.Parameter) and isinstance(model.fc.weight, nn.Parameter)
    assert isinstance(model.layer1[0].pre_relu, nn.ReLU) and isinstance(model.final_relu, nn.ReLU)
    assert isinstance(model.layer1[0].relu, LearnedClippedLinearQuantization)
    assert isinstance(model.layer1[1].pre_relu, LearnedClippedLinearQuantization)
    assert model.layer1[0].relu.num_bits == 4
    assert isinstance(model.layer1[0].conv1.float_weight, nn.Parameter)
    assert quantizer.params_to_quantize[0].num_bits == 3
    assert len(optimizer.param_groups) == 2
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    "name, arch",
    [
        ("preact_resnet20_cifar_pact.yaml", "preact_resnet20_cifar"),
        ("simplenet_mnist_pact.yaml", "simplenet_mnist"),
        ("resnet20_prune_then_pact.yaml", "resnet20_cifar"),
    ],
)
def test_examples_validate_without_preparing_the_model(name, arch):
    model = create_model(arch)
    plan = validate_schedule(EXAMPLES / name, model)
    assert not plan.warnings
    assert not any(n.startswith("float_") or ".float_" in n for n, _ in model.named_parameters())


def test_prune_then_pact_runs_through_the_classifier(run_cli, tmp_path):
    schedule = tmp_path / "digits_prune_then_pact.yaml"
    schedule.write_text(yaml.safe_dump(_schedule(qat_start=2, epochs=3)))
    run = run_cli(
        "classify",
        "-a",
        "simplenet_digits",
        "--dataset",
        "digits",
        "-b",
        "64",
        "--lr",
        "0.1",
        "-j",
        "0",
        "--deterministic",
        "--epochs",
        "3",
        "--compress",
        schedule,
    )
    assert run.code == 0, run.err
    assert run.result()[0] > 80.0
    ckpt = torch.load(run.log_dir() / "checkpoint.pth.tar", weights_only=True)
    state = ckpt["state_dict"]
    assert "conv2.float_weight" in state and "conv2.weight" not in state  # one copy of each weight
    assert "relu1.clip_val" in state and state["relu1.clip_val"].item() != 4.0
    assert (state["conv2.float_weight"] == 0).float().mean().item() == pytest.approx(0.5, abs=0.01)
    assert len(ckpt["optimizer_state_dict"]["param_groups"]) == 2
    assert quantization_prepared(ckpt["compression_sched"])


@pytest.mark.realdata
@pytest.mark.slow
def test_simplenet_mnist_pact_4_4_is_within_one_point_of_float(run_cli, tmp_path):
    """Two 2-epoch runs on the 60,000 MNIST images: 2 to 7 minutes on two CPU cores, depending on load."""
    data = require(MNIST_DIR)
    flags = ("-a", "simplenet_mnist", "--epochs", "2", "--lr", "0.05", "-j", "0", "--deterministic", data)
    float_run = run_cli("classify", *flags, out_dir=tmp_path / "float")
    pact_run = run_cli(
        "classify", *flags, "--compress", EXAMPLES / "simplenet_mnist_pact.yaml", out_dir=tmp_path / "pact"
    )
    assert float_run.code == 0 and pact_run.code == 0, (float_run.err, pact_run.err)
    float_top1, pact_top1 = float_run.result()[0], pact_run.result()[0]
    print(f"simplenet_mnist 2 epochs: float top-1 {float_top1:.3f}, PACT a4/w4 top-1 {pact_top1:.3f}")
    assert pact_top1 >= float_top1 - 1.0
