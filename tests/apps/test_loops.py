import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from distiller.apps.loops import EvalResult, evaluate, train_one_epoch
from distiller.scheduler import CompressionScheduler


def _separable_data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=32, shuffle=False)


class RecordingScheduler(CompressionScheduler):
    def __init__(self, model):
        super().__init__(model)
        self.calls = []

    def on_minibatch_begin(self, epoch, minibatch_id, minibatches_per_epoch, optimizer=None):
        self.calls.append("begin")

    def before_backward_pass(self, *args, **kwargs):
        self.calls.append("backward")
        return super().before_backward_pass(*args, **kwargs)

    def before_parameter_optimization(self, *args, **kwargs):
        self.calls.append("pre-step")

    def on_minibatch_end(self, *args, **kwargs):
        self.calls.append("end")
        super().on_minibatch_end(*args, **kwargs)


def test_training_learns_and_calls_hooks_in_order():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    loader = _separable_data()
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = RecordingScheduler(model)
    before = evaluate(model, loader, criterion)
    for epoch in range(5):
        result = train_one_epoch(model, loader, criterion, optimizer, scheduler, epoch, progress=False)
    after = evaluate(model, loader, criterion)
    assert after.loss < before.loss / 2
    assert after.top1 > 90.0 and after.num_samples == 256
    assert result.losses["Overall Loss"] == result.losses["Objective Loss"]
    assert scheduler.calls[:4] == ["begin", "backward", "pre-step", "end"]
    assert len(scheduler.calls) == 4 * 8 * 5


def test_masks_stay_applied_after_each_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 2))
    scheduler = CompressionScheduler(model)
    mask = torch.ones(2, 4)
    mask[:, 0] = 0
    scheduler.masks["0.weight"] = mask
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
    train_one_epoch(model, _separable_data(), nn.CrossEntropyLoss(), optimizer, scheduler, 0, progress=False)
    assert torch.count_nonzero(model[0].weight[:, 0]) == 0
    assert torch.count_nonzero(model[0].weight[:, 1:]) == 6


def test_result_line_format():
    line = EvalResult(top1=91.71, top5=99.62, loss=0.3412).result_line()
    assert line == "==> Top1: 91.710    Top5: 99.620    Loss: 0.341"
