import torch
from torch import nn

from distiller.apps.meters import AccuracyMeter, AverageMeter
from distiller.apps.performance_tracker import SparsityAccuracyTracker


def test_accuracy_meter_topk_and_confusion():
    logits = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])
    target = torch.tensor([0, 1, 1, 2])
    meter = AccuracyMeter(topk=(1, 2), num_classes=3)
    meter.update(logits[:2], target[:2])
    meter.update(logits[2:], target[2:])
    assert meter.value(1) == 50.0  # samples 0 and 3
    assert meter.value(2) == 100.0  # class 1 is second for samples 1 and 2
    assert meter.confusion.tolist() == [[1, 0, 0], [1, 0, 1], [0, 0, 1]]


def test_accuracy_meter_top5_with_fewer_classes():
    meter = AccuracyMeter()
    meter.update(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([0, 0]))
    assert meter.value(1) == 50.0 and meter.value(5) == 100.0


def test_average_meter_is_sample_weighted():
    m = AverageMeter()
    m.update(1.0, 1)
    m.update(4.0, 3)
    assert m.mean == 13.0 / 4


def test_tracker_prefers_sparsity_then_accuracy():
    model = nn.Linear(4, 2, bias=False)
    tracker = SparsityAccuracyTracker(num_best_scores=2)
    tracker.step(model, epoch=0, top1=90.0, top5=99.0)
    with torch.no_grad():
        model.weight[0].zero_()
    tracker.step(model, epoch=1, top1=80.0, top5=98.0)  # sparser beats more accurate
    tracker.step(model, epoch=2, top1=85.0, top5=98.0)  # same sparsity, more accurate
    assert [s.epoch for s in tracker.scores] == [2, 1]
    assert tracker.best().sparsity == 50.0
    restored = SparsityAccuracyTracker(2)
    restored.load_state_dict(tracker.state_dict())
    assert restored.scores == tracker.scores
