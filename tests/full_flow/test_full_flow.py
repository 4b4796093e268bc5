"""Full-flow tests: the original Distiller's ``tests/full_flow_tests.py``, driving ``distiller classify`` on real data.

Every case runs the CLI in-process on ``../shared/data`` (skipped when it is absent), parses the output contract
(DESIGN.md §7: ``Log dir:``, ``Saved:``, the last ``==> Top1:`` line) and checks accuracies. The module is
``slow`` (``make test-full`` runs it; ``make test`` does not) and ``realdata``.

The original ran each case for its full epochs on a GPU with the whole 50,000-image CIFAR-10 training set and
compared with ``math.isclose(rel_tol=0.05)``. Here the CPU budget is a few minutes, and the shared CIFAR-10 train
folder holds a 10,000-image subset (it may grow: every size below is a fixed sample count, so the runtime does
not), so training cases draw a seeded per-epoch subset (``--etrs``), validate on ``--evs`` images and test on
all 10,000 test images or a seeded ``--etes`` subset of them. Two epochs on a few thousand images cannot reach the
original's figures, so those cases assert floors: well above chance and about 5 points below what was measured
here. The PTQ and sensitivity cases start from the original's trained dense ResNet-20: PTQ is compared with
the original's 8-bit figure and with the dense model on the same images, sensitivity with the dense accuracy.

All runs use one intra-op thread (see ``one_thread``) and ``--deterministic``; "time" is the wall time of the
case in one run of the module on the 2-core development machine while other jobs shared it (load average
about 5): 491 s (8 min 11 s) for the six cases, torch 2.14 on CPU.

Every case below: the command (after ``distiller classify DATASET_DIR -j 0 --deterministic -p 500``), what it
measured here, the original's figure, and what is asserted. Each test prints its measured line (see it with
``pytest -m "" tests/full_flow -rP``).

1. simplenet_cifar, 2 epochs (full test set)
   command:  -a simplenet_cifar --epochs 2 -b 64 --lr 0.05 --etrs 9000 --evs 1000
   measured: Top1 35.93  Top5 87.37 on the 10,000 test images; 27 s
   original: Top1 47.43  Top5 92.51 (2 epochs on 45,000 images)
   asserted: Top1 >= 30, Top5 >= 80 (chance: 10 / 50)

2. resnet20_cifar 8-bit post-training quantization of the original's dense checkpoint
   command:  -a resnet20_cifar --resume-from checkpoint_trained_dense.pth.tar --evaluate -b 250 --etes 2000
             --quantize-eval --qe-dynamic --qe-clip-acts avg --qe-no-clip-layers fc;
             and the same without the --q* flags (dense, same images)
   measured: PTQ Top1 92.15  Top5 99.65, dense 91.75 on the 2,000-image subset; 29 s for both.
             On all 10,000 test images (not run by the test: ~110 s): PTQ 91.57 / 99.61 (dense 91.71 / 99.63)
   original: Top1 91.47  Top5 99.62 (10,000 test images)
   asserted: 91.47 - 1.0 <= Top1 <= 91.47 + 1.5, Top1 >= dense Top1 - 1.0, Top5 >= 99.0; the quantized
             checkpoint is saved

3. preact_resnet20_cifar PACT (a4/w3), 2 epochs from scratch
   command:  -a preact_resnet20_cifar --epochs 2 -b 32 --lr 0.05 --wd 0.0002 --etrs 4500 --evs 500 --etes 2000
             --compress examples/quantization/preact_resnet20_cifar_pact.yaml
   measured: Top1 31.00  Top5 83.40; 164 s
   original: Top1 47.47  Top5 93.87 (2 epochs on 45,000 images)
   asserted: Top1 >= 25, Top5 >= 75; the 17 quantized ReLUs have a learned clip_val (< its initial 8.0), the
             quantized convs keep a float_weight, the stem conv and fc stay float (the schedule's overrides)

4. filter sensitivity of the dense checkpoint
   command:  -a resnet20_cifar --resume-from checkpoint_trained_dense.pth.tar --sense filter
             --sense-range 0 0.10 0.05 --vs 0 --etes 1000 -b 250
   measured: dense Top1 90.70 on the 1,000 test images; worst 5%-pruned layer (layer2.0.conv2) 90.20; 80 s
   original: sensitivity.csv of 3,172 bytes and sensitivity.png of 96,157 bytes (exact sizes, +-2)
   asserted: the CSV lists the 21 convs x sparsities [0.0, 0.05]; its sparsity-0 rows equal the result line;
             |dense - 91.71| <= 2.0; every 5% row >= dense - 2.0 and some row < dense; the PNG is written

5. simplenet_mnist pruning with thinning, 3 epochs (full test set)
   command:  -a simplenet_mnist --epochs 3 -b 128 --lr 0.05 --etrs 15000 --evs 2000
             --compress tests/data_files/simplenet_mnist_thinning.yaml (the original's test schedule)
   measured: Top1 98.69  Top5 99.97; 1,736,200 MACs (dense 2,293,000); 70 s
   original: Top1 98.82  Top5 100.00 (3 epochs on 54,000 images)
   asserted: Top1 >= 97.5; conv1 20 -> 18 filters, conv2 50 -> 40 filters and 18 input channels, fc1 800 -> 640
             inputs; < 85% of the dense weights and < 90% of its MACs (--summary compute); the saved checkpoint
             re-evaluates to the same Top1

6. resnet20_cifar_earlyexit, 2 epochs
   command:  -a resnet20_cifar_earlyexit --epochs 2 -b 32 --lr 0.05 --etrs 4500 --evs 500 --etes 2000
             --earlyexit-rule ce --earlyexit_thresholds 0.9 --earlyexit_lossweights 0.3
   measured: exit 0 Top1 98.06 (taken 18.0%), final exit 23.84, totals Top1 37.20  Top5 85.50; 109 s
   original: exit 0 Top1 99.68, exit 1 Top1 31.86, totals Top1 36.04  Top5 85.91; result line 33.50 / 85.98
   asserted: exit 0 Top1 >= 90 and taken in (2%, 60%); the exits' shares sum to 100%; the result line is the
             totals; Top1 >= 30, Top5 >= 78

Notes on the choices:

- Batch size and learning rate differ from the original's defaults (256, 0.1; 0.3 for early exit): with ten
  times fewer samples per epoch, smaller batches give the two epochs enough optimizer steps. For simplenet_cifar
  ``-b 128 --lr 0.1`` measured 30.2, ``-b 64 --lr 0.1`` 27.2 and ``-b 32 --lr 0.1`` 16.6 (it stalls); for PACT
  ``-b 64 --lr 0.1 --etrs 4500`` measured 29.5 and the full 9,000 images at ``-b 128`` 34.9 (twice the time).
- PTQ: ``--qe-dynamic`` computes scales per batch, so results depend on the batch size (full test set: 91.62 at
  ``-b 256``, 91.57 at ``-b 250``). On the 2,000-image subset the 8-bit model happens to score above the dense
  one; the drop that matters is compared on the same images. The full test set takes ~110 s for PTQ here.
- Early exit uses ``--earlyexit-rule ce`` (the original's rule: a sample leaves when its cross-entropy against
  the label is below the threshold, so exit 0 keeps only samples it already classifies well), to compare with
  the original's per-exit figures; the default entropy rule is covered by ``tests/early_exit``.
- Sensitivity runs with ``--vs 0``, so it evaluates held-out test images (as the original did) rather than
  training images that the checkpoint was trained on. The original's checker compared exact file sizes of the
  CSV and the matplotlib PNG, which are not portable; the CSV's content is checked instead.
"""

from __future__ import annotations

import csv
import re

import pytest
import torch

from shared_data import CHECKPOINTS, CIFAR10_DIR, MNIST_DIR, REPO_ROOT, require

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

DENSE_CHECKPOINT = "checkpoint_trained_dense.pth.tar"
DENSE_TOP1 = 91.71  # the dense checkpoint on the 10,000 test images (distiller-checkpoints/README.md)
ORIGINAL_PTQ_TOP1 = 91.47  # the original's full_flow_tests.py, 8-bit dynamic PTQ of the same checkpoint
COMMON = ("-j", "0", "--deterministic", "-p", "500")
EXIT_LINE = re.compile(r"Exit (\d+)(?: \(final\))?: Top1 ([\d.]+)\s+Top5 ([\d.]+)\s+taken ([\d.]+)% \((\d+)\)")
TOTALS = re.compile(r"Totals with early exits: Top1 ([\d.]+)\s+Top5 ([\d.]+)")


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread. On the 2-core development machine shared with other jobs, torch's two OpenMP
    threads waiting for each other at every op made small-batch training up to 20x slower (a conv forward and
    backward: 6 ms with one thread, 127 ms with two); on an idle machine one thread costs at most 2x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def classify(run_cli, *args, **kwargs):
    run = run_cli("classify", *args, *COMMON, **kwargs)
    assert run.code == 0, f"{run.out}\n{run.err}"
    return run


def _checkpoint(run):
    return torch.load(run.log_dir() / "checkpoint.pth.tar", weights_only=True)


def test_simplenet_cifar_two_epochs(run_cli):
    data = require(CIFAR10_DIR)
    run = classify(run_cli, data, "-a", "simplenet_cifar", "--epochs", "2", "-b", "64", "--lr", "0.05",
                   "--etrs", "9000", "--evs", "1000")  # fmt: skip
    top1, top5, _ = run.result()
    assert "Test: 10000 samples" in run.out
    print(f"measured: Top1 {top1:.2f}  Top5 {top5:.2f}")
    assert top1 >= 30.0 and top5 >= 80.0, run.out  # chance is 10 / 50
    assert run.saved("checkpoint.pth.tar").parent == run.log_dir()


def test_resnet20_8bit_post_training_quantization_of_the_dense_checkpoint(run_cli, tmp_path):
    ckpt = require(CHECKPOINTS / DENSE_CHECKPOINT)
    data = require(CIFAR10_DIR)
    common = (data, "-a", "resnet20_cifar", "--resume-from", ckpt, "--evaluate", "-b", "250", "--etes", "2000")
    dense = classify(run_cli, *common, out_dir=tmp_path / "dense")
    ptq = classify(run_cli, *common, "--quantize-eval", "--qe-dynamic", "--qe-clip-acts", "avg",
                   "--qe-no-clip-layers", "fc", out_dir=tmp_path / "ptq")  # fmt: skip
    dense_top1, _, _ = dense.result()
    top1, top5, _ = ptq.result()
    print(f"measured: PTQ Top1 {top1:.2f}  Top5 {top5:.2f}; dense Top1 {dense_top1:.2f}")
    assert "Test: 2000 samples" in ptq.out
    assert ORIGINAL_PTQ_TOP1 - 1.0 <= top1 <= ORIGINAL_PTQ_TOP1 + 1.5, ptq.out  # a 2,000-image subset scores higher
    assert top1 >= dense_top1 - 1.0 and top5 >= 99.0, (dense.out, ptq.out)
    assert ptq.saved("quantized_checkpoint.pth.tar").exists()


def test_preact_resnet20_pact_two_epochs(run_cli):
    data = require(CIFAR10_DIR)
    schedule = REPO_ROOT / "examples" / "quantization" / "preact_resnet20_cifar_pact.yaml"
    run = classify(run_cli, data, "-a", "preact_resnet20_cifar", "--epochs", "2", "-b", "32", "--lr", "0.05",
                   "--wd", "0.0002", "--etrs", "4500", "--evs", "500", "--etes", "2000",
                   "--compress", schedule)  # fmt: skip
    top1, top5, _ = run.result()
    print(f"measured: Top1 {top1:.2f}  Top5 {top5:.2f}")
    assert top1 >= 25.0 and top5 >= 75.0, run.out
    state = _checkpoint(run)["state_dict"]
    clips = {key.removesuffix(".clip_val"): float(value) for key, value in state.items() if key.endswith("clip_val")}
    blocks = [f"layer{s}.{b}" for s in (1, 2, 3) for b in range(3)]
    quantized_relus = {f"{b}.relu" for b in blocks} | {f"{b}.pre_relu" for b in blocks if b != "layer1.0"}
    assert set(clips) == quantized_relus  # layer1.0.pre_relu and final_relu stay float (the schedule's overrides)
    assert all(0.0 < alpha < 8.0 for alpha in clips.values())  # learned from act_clip_init_val 8.0
    assert "layer2.0.conv1.float_weight" in state and "conv1.weight" in state and "fc.weight" in state
    assert "conv1.float_weight" not in state and "fc.float_weight" not in state


def test_resnet20_filter_sensitivity(run_cli):
    from distiller.models import create_model

    ckpt = require(CHECKPOINTS / DENSE_CHECKPOINT)
    data = require(CIFAR10_DIR)
    run = classify(run_cli, data, "-a", "resnet20_cifar", "--resume-from", ckpt, "--sense", "filter",
                   "--sense-range", "0", "0.10", "0.05", "--vs", "0", "--etes", "1000", "-b", "250")  # fmt: skip
    dense, _, _ = run.result()
    assert "Test: 1000 samples" in run.out
    assert abs(dense - DENSE_TOP1) <= 2.0, run.out
    csv_path, png_path = run.saved("sensitivity.csv"), run.saved("sensitivity.png")
    assert csv_path.parent == png_path.parent == run.log_dir()
    assert png_path.read_bytes()[:4] == b"\x89PNG"
    with open(csv_path, newline="") as f:
        header, *rows = list(csv.reader(f))
    assert header == ["parameter", "sparsity", "top1", "top5", "loss"]
    convs = [n for n, p in create_model("resnet20_cifar", "cifar10").named_parameters() if p.dim() == 4]
    assert [(r[0], r[1]) for r in rows] == [(c, s) for c in convs for s in ("0.0", "0.05")]
    assert all(round(float(r[2]), 3) == dense for r in rows if r[1] == "0.0")
    pruned = {r[0]: float(r[2]) for r in rows if r[1] == "0.05"}
    worst = min(pruned, key=pruned.get)
    print(f"measured: dense Top1 {dense:.2f}; worst 5% row {worst} {pruned[worst]:.2f}")
    assert pruned[worst] >= dense - 2.0, pruned  # 5% of one layer's filters costs little
    assert any(top1 < dense for top1 in pruned.values()), pruned


def test_simplenet_mnist_pruning_with_thinning(run_cli, tmp_path):
    from distiller.models import create_model

    data = require(MNIST_DIR)
    schedule = REPO_ROOT / "tests" / "data_files" / "simplenet_mnist_thinning.yaml"
    run = classify(run_cli, data, "-a", "simplenet_mnist", "--epochs", "3", "-b", "128", "--lr", "0.05",
                   "--etrs", "15000", "--evs", "2000", "--compress", schedule, out_dir=tmp_path / "train")  # fmt: skip
    top1, top5, _ = run.result()
    assert "Test: 10000 samples" in run.out
    assert top1 >= 97.5, run.out
    assert "net_thinner (remove_filters) at epoch 2" in run.out

    checkpoint = _checkpoint(run)
    state = checkpoint["state_dict"]
    assert state["conv1.weight"].shape[0] == 18  # 10% of 20 filters removed
    assert state["conv2.weight"].shape[:2] == (40, 18)  # 20% of 50 filters removed, and conv1's channels
    assert state["fc1.weight"].shape[1] == 40 * 4 * 4
    assert len(checkpoint["thinning_plans"]) == 1
    dense = create_model("simplenet_mnist", "mnist").state_dict()
    weights = [name for name in dense if name.endswith("weight")]
    assert sum(state[n].numel() for n in weights) < 0.85 * sum(dense[n].numel() for n in weights)

    saved = run.log_dir() / "checkpoint.pth.tar"
    macs = {}
    for label, extra in (("dense", ()), ("thinned", ("--resume-from", saved))):
        summary = run_cli("classify", "-a", "simplenet_mnist", "--summary", "compute", *extra,
                          out_dir=tmp_path / label)  # fmt: skip
        assert summary.code == 0, summary.err
        macs[label] = int(re.search(r"^Total MACs: ([\d,]+)$", summary.out, re.MULTILINE)[1].replace(",", ""))
    assert macs["thinned"] < 0.9 * macs["dense"], macs

    again = classify(run_cli, data, "-a", "simplenet_mnist", "--evaluate", "--resume-from", saved, "-b", "500",
                     out_dir=tmp_path / "eval")  # fmt: skip
    assert abs(again.result()[0] - top1) < 0.01
    print(f"measured: Top1 {top1:.2f}  Top5 {top5:.2f}; MACs {macs['thinned']:,} (dense {macs['dense']:,})")


def test_resnet20_cifar_earlyexit_two_epochs(run_cli):
    data = require(CIFAR10_DIR)
    run = classify(run_cli, data, "-a", "resnet20_cifar_earlyexit", "--epochs", "2", "-b", "32", "--lr", "0.05",
                   "--etrs", "4500", "--evs", "500", "--etes", "2000", "--earlyexit-rule", "ce",
                   "--earlyexit_thresholds", "0.9", "--earlyexit_lossweights", "0.3")  # fmt: skip
    start = run.out.index("Test: Early exit (ce rule, thresholds [0.9]), 2000 samples")
    report = run.out[start : run.out.index("==> Top1", start)]
    exits = [(int(e[0]), float(e[1]), float(e[3])) for e in EXIT_LINE.findall(report)]
    assert [e[0] for e in exits] == [0, 1], report
    assert sum(e[2] for e in exits) == pytest.approx(100.0, abs=0.01)
    (_, exit0_top1, exit0_taken), _ = exits
    assert 2.0 < exit0_taken < 60.0 and exit0_top1 >= 90.0, report  # it keeps the samples it is sure about
    totals = TOTALS.search(report)
    top1, top5, _ = run.result()
    print(
        f"measured: exit 0 Top1 {exit0_top1:.2f} taken {exit0_taken:.2f}%, final exit Top1 {exits[1][1]:.2f}; "
        f"totals Top1 {top1:.2f}  Top5 {top5:.2f}"
    )
    assert (top1, top5) == (float(totals[1]), float(totals[2]))
    assert top1 >= 30.0 and top5 >= 78.0, report
